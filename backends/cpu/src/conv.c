/* CONV2D: direct (reference-grade, any kernel / stride / padding / weight
 * dtype) and im2col + GEMM on the gemm.h engine (1x1 stride-1 unpadded convs
 * skip im2col: x already is the B matrix).
 *
 * im2col chunks are (column group, Co block): a column group is up to 2048
 * output pixels, either a block of one image or several whole small images.
 * Per K block a chunk builds the im2col matrix of its group once (kc x
 * pixels, directly in the packed B format), then packs each 240-row slice of
 * W (A, converting f16 / bf16) once and runs the GEMM driver for every image
 * of the group. So W is packed once per run for all but the largest maps,
 * and im2col is repeated only per Co block (Co blocks are >= 240 rows unless
 * more chunks are needed to feed the threads).
 * Per-thread scratch: conv_scratch_floats (about 2.3 MB).
 *
 * Auto (algo 0) picks, at prepare: the AVX-512 direct kernel of conv.h for
 * stride-1 convs with Co <= 8 (e.g. the VAE's 128 -> 3 output conv), else
 * im2col. The choice is kept in op->state so chunking and scratch stay
 * consistent even if the ISA is reconfigured before the run.
 *
 * Under precision bf16 the im2col path runs on the gemm_bf16.h engine: the
 * im2col matrix is built in f32 as above and rounded to bf16 panels (a 1x1
 * conv's x directly), each W slice is rounded while packed, and the
 * products accumulate in f32 on AMX tiles or AVX512-BF16. */
#include <stdio.h>
#include <stdlib.h>

#include "conv.h"
#include "common.h"
#include "gemm.h"
#include "gemm_bf16.h"

#define CV_KC 256
#define CV_MC 240
#define CV_COLS 2048

typedef struct conv_geom {
  int64_t N, Ci, H, W, Co, KH, KW, OH, OW, sh, sw, ph, pw;
  int algo; /* 1 direct (reference), 2 im2col, 3 small-Co direct (AVX-512) */
  int64_t rb, nrb; /* small-Co direct: output rows per chunk, row blocks */
  /* im2col plan */
  int64_t K, P, kc;
  int64_t gi, pb, npb, ngr; /* images per group, pixels per group, blocks */
  int64_t cob, nco;         /* Co block */
} conv_geom;

static void conv_geom_make(conv_geom *g, const sdf_op *op) {
  const sdf_tensor *x = op->in[0], *w = op->in[1], *y = op->out[0];
  g->N = x->dims[0];
  g->Ci = x->dims[1];
  g->H = x->dims[2];
  g->W = x->dims[3];
  g->Co = w->dims[0];
  g->KH = w->dims[2];
  g->KW = w->dims[3];
  g->OH = y->dims[2];
  g->OW = y->dims[3];
  g->sh = op->p[0];
  g->sw = op->p[1];
  g->ph = op->p[2];
  g->pw = op->p[3];
  g->algo = op->state ? *(const int *)op->state : 2;
  g->rb = sdfg_max(1, g->OH / 16);
  g->nrb = sdfg_cdiv(g->OH, g->rb);
  g->K = g->Ci * g->KH * g->KW;
  g->P = g->OH * g->OW;
  g->kc = sdfg_max(1, sdfg_min(g->K, CV_KC));
  if (g->P >= CV_COLS / 2) {
    g->gi = 1;
    g->npb = sdfg_cdiv(g->P, CV_COLS);
    g->pb = sdfg_rup(sdfg_cdiv(g->P, g->npb), SDFG_NR);
    g->npb = sdfg_cdiv(g->P, g->pb);
  } else {
    g->gi = sdfg_max(1, sdfg_min(g->N, CV_COLS / sdfg_max(1, g->P)));
    g->pb = g->P;
    g->npb = 1;
  }
  g->ngr = sdfg_cdiv(g->N, g->gi) * g->npb;
  int64_t nco = sdfg_cdiv(g->Co, 2 * CV_MC);
  while (g->ngr * nco < 4 && sdfg_cdiv(g->Co, nco + 1) >= 48) nco++;
  g->cob = sdfg_rup(sdfg_cdiv(g->Co, nco), 12);
  g->nco = sdfg_cdiv(g->Co, g->cob);
}

static size_t conv_scratch_floats(const conv_geom *g) {
  return (size_t)(g->kc * g->pb * g->gi + sdfg_min(g->cob, CV_MC) * g->kc) +
         sdfg_pad_floats(g->kc) + 16;
}

/* Bytes of per-thread scratch of the bf16 im2col path: the f32 im2col of
 * one image, the bf16 B panels of the group's images, one bf16 W slice. */
static size_t conv_scratch_bf16(const conv_geom *g) {
  return (size_t)(g->kc * g->pb) * sizeof(float) +
         ((size_t)g->gi * sdfb_elems(g->pb, g->kc) + sdfb_elems(sdfg_min(g->cob, CV_MC), g->kc)) * sizeof(uint16_t) +
         64;
}

static int32_t conv_prepare(sdf_op *op, char *err, size_t err_len) {
#define CFAIL(...)                       \
  do {                                   \
    snprintf(err, err_len, __VA_ARGS__); \
    return SDF_E_INVALID;                \
  } while (0)
  if (op->n_in < 2 || op->n_in > 3 || op->n_out != 1)
    CFAIL("CONV2D takes x, w, optional b and one output");
  if (op->n_p < 4) CFAIL("CONV2D needs params stride_h, stride_w, pad_h, pad_w");
  const sdf_tensor *x = op->in[0], *w = op->in[1], *y = op->out[0];
  if (x->dtype != SDF_F32 || y->dtype != SDF_F32) CFAIL("CONV2D x and y must be f32");
  if (!sdfg_is_weight_dtype(w->dtype)) {
    snprintf(err, err_len, "CONV2D weight dtype %d unsupported (f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0)",
             w->dtype);
    return SDF_E_UNSUPPORTED;
  }
  if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4) CFAIL("CONV2D tensors must be rank 4");
  if (sdfq_is_quant(w->dtype) && (w->dims[1] * w->dims[2] * w->dims[3]) % sdfq_block_elems(w->dtype) != 0)
    CFAIL("CONV2D: a %s weight's rows (Ci*KH*KW = %lld) do not split into blocks of %d", sdf_dtype_name(w->dtype),
          (long long)(w->dims[1] * w->dims[2] * w->dims[3]), (int)sdfq_block_elems(w->dtype));
  if (w->dims[1] != x->dims[1])
    CFAIL("CONV2D: x has %lld channels, w expects %lld (groups unsupported)",
          (long long)x->dims[1], (long long)w->dims[1]);
  int64_t sh = op->p[0], sw = op->p[1], ph = op->p[2], pw = op->p[3];
  if (sh < 1 || sw < 1 || ph < 0 || pw < 0) CFAIL("CONV2D: bad stride or padding");
  int64_t algo = op->n_p > 4 ? op->p[4] : 0;
  if (algo < 0 || algo > 2) CFAIL("CONV2D algo must be 0, 1 or 2");
  int64_t KH = w->dims[2], KW = w->dims[3];
  if (KH < 1 || KW < 1 || w->dims[0] < 1) CFAIL("CONV2D: empty kernel");
  int64_t OH = (x->dims[2] + 2 * ph - KH) / sh + 1, OW = (x->dims[3] + 2 * pw - KW) / sw + 1;
  if (x->dims[2] + 2 * ph < KH || x->dims[3] + 2 * pw < KW) CFAIL("CONV2D: kernel larger than padded input");
  if (y->dims[0] != x->dims[0] || y->dims[1] != w->dims[0] || y->dims[2] != OH ||
      y->dims[3] != OW)
    CFAIL("CONV2D output must be [%lld,%lld,%lld,%lld]", (long long)x->dims[0],
          (long long)w->dims[0], (long long)OH, (long long)OW);
  if (op->n_in == 3 && (!sdfg_is_float_dtype(op->in[2]->dtype) ||
                        op->in[2]->numel != w->dims[0]))
    CFAIL("CONV2D bias must hold Co float values");
#undef CFAIL
  int chosen = algo == 1 ? 1 : 2;
#if defined(__x86_64__) || defined(_M_X64)
  if (algo == 0 && sdf_current_isa == SDF_ISA_AVX512 && sh == 1 && sw == 1 &&
      w->dims[0] <= SDFC_SMALL_CO && KW <= SDFC_SMALL_KW)
    chosen = 3;
#endif
  int *st = op->state ? op->state : malloc(sizeof(int));
  if (!st) {
    snprintf(err, err_len, "CONV2D: out of memory");
    return SDF_E_NOMEM;
  }
  *st = chosen;
  op->state = st;
  conv_geom g;
  conv_geom_make(&g, op);
  if (g.N < 1 || g.Ci < 1) {
    op->n_chunks = 1;
    op->scratch_bytes = 0;
    return SDF_OK;
  }
  if (g.algo == 1) {
    op->n_chunks = g.N * g.Co;
    op->scratch_bytes = (size_t)g.P * sizeof(double);
  } else if (g.algo == 3) {
    op->n_chunks = g.N * g.nrb;
    op->scratch_bytes = (size_t)(g.K * SDFC_SMALL_CO + g.OW + 16) * sizeof(float);
  } else {
    op->n_chunks = g.ngr * g.nco;
    op->scratch_bytes = conv_scratch_floats(&g) * sizeof(float);
    if (sdf_current_bf16 != SDF_BF16_NONE && conv_scratch_bf16(&g) > op->scratch_bytes)
      op->scratch_bytes = conv_scratch_bf16(&g);
  }
  return SDF_OK;
}

/* Output plane (n, co), directly, accumulated in double in acc (P values):
 * the reference the fast paths are tested against. */
static void conv_direct(const conv_geom *g, const float *x, const void *w, int32_t wdt,
                        const void *b, int32_t bdt, float *y, int64_t n, int64_t co,
                        double *acc) {
  float *yp = y + (n * g->Co + co) * g->P;
  const double bv = b ? sdfg_load(b, bdt, co) : 0.0;
  for (int64_t i = 0; i < g->P; i++) acc[i] = bv;
  for (int64_t ci = 0; ci < g->Ci; ci++) {
    const float *xp = x + (n * g->Ci + ci) * g->H * g->W;
    for (int64_t kh = 0; kh < g->KH; kh++)
      for (int64_t kw = 0; kw < g->KW; kw++) {
        const double wv = sdfg_load(w, wdt, ((co * g->Ci + ci) * g->KH + kh) * g->KW + kw);
        /* ox range with 0 <= ox*sw - pw + kw < W */
        int64_t lo = g->pw - kw > 0 ? sdfg_cdiv(g->pw - kw, g->sw) : 0;
        int64_t hi = g->W - 1 + g->pw - kw;
        hi = hi < 0 ? -1 : sdfg_min(g->OW - 1, hi / g->sw);
        for (int64_t oy = 0; oy < g->OH; oy++) {
          const int64_t iy = oy * g->sh - g->ph + kh;
          if (iy < 0 || iy >= g->H) continue;
          const int64_t off = iy * g->W - g->pw + kw;
          double *ar = acc + oy * g->OW;
          for (int64_t ox = lo; ox <= hi; ox++) ar[ox] += wv * xp[off + ox * g->sw];
        }
      }
  }
  for (int64_t i = 0; i < g->P; i++) yp[i] = (float)acc[i];
}

/* im2col of rows [k0, k0+kc) and pixels [p0, p0+np) of image n, packed as
 * the B operand (column panels of 16 pixels). */
static void im2col_pack(const conv_geom *g, const float *x, float *dst, int64_t n,
                        int64_t k0, int64_t kc, int64_t p0, int64_t np) {
  const int64_t KK = g->KH * g->KW;
  for (int64_t q0 = 0; q0 < np; q0 += SDFG_NR) {
    const int64_t w = sdfg_min(SDFG_NR, np - q0);
    float *d = dst + q0 * kc;
    for (int64_t kk = 0; kk < kc; kk++) {
      const int64_t k = k0 + kk, ci = k / KK, kh = (k % KK) / g->KW, kw = k % g->KW;
      const float *xp = x + (n * g->Ci + ci) * g->H * g->W;
      float *row = d + kk * w;
      int64_t j = 0;
      while (j < w) {
        const int64_t p = p0 + q0 + j, oy = p / g->OW, ox = p % g->OW;
        const int64_t seg = sdfg_min(w - j, g->OW - ox); /* same output row */
        const int64_t iy = oy * g->sh - g->ph + kh;
        if (iy < 0 || iy >= g->H) {
          for (int64_t s = 0; s < seg; s++) row[j + s] = 0.0f;
        } else if (g->sw == 1) {
          /* ix = ox + s - pw + kw: zeros, a contiguous run, zeros */
          const float *xr = xp + iy * g->W;
          const int64_t off = ox - g->pw + kw;
          const int64_t lo = sdfg_min(seg, sdfg_max(0, -off));
          const int64_t hi = sdfg_max(lo, sdfg_min(seg, g->W - off));
          for (int64_t s = 0; s < lo; s++) row[j + s] = 0.0f;
          if (hi > lo) memcpy(row + j + lo, xr + off + lo, (size_t)(hi - lo) * sizeof(float));
          for (int64_t s = hi; s < seg; s++) row[j + s] = 0.0f;
        } else {
          const float *xr = xp + iy * g->W;
          for (int64_t s = 0; s < seg; s++) {
            const int64_t ix = (ox + s) * g->sw - g->pw + kw;
            row[j + s] = (ix >= 0 && ix < g->W) ? xr[ix] : 0.0f;
          }
        }
        j += seg;
      }
    }
  }
}

static void conv_run(const sdf_op *op, int64_t chunk, void *scratch) {
  conv_geom g;
  conv_geom_make(&g, op);
  if (g.N < 1 || g.Ci < 1) return;
  const sdf_tensor *w = op->in[1];
  const sdf_tensor *b = op->n_in == 3 ? op->in[2] : NULL;
  const float *x = op->in[0]->data;
  float *y = op->out[0]->data;
  if (g.algo == 1) {
    conv_direct(&g, x, w->data, w->dtype, b ? b->data : NULL, b ? b->dtype : 0, y,
                chunk / g.Co, chunk % g.Co, scratch);
    return;
  }
#if defined(__x86_64__) || defined(_M_X64)
  if (g.algo == 3) {
    float *wt = scratch; /* [Ci][KH][KW][8] */
    for (int64_t i = 0; i < g.K * SDFC_SMALL_CO; i++) wt[i] = 0.0f;
    for (int64_t co = 0; co < g.Co; co++)
      for (int64_t k = 0; k < g.K; k++)
        wt[k * SDFC_SMALL_CO + co] = sdfg_load(w->data, w->dtype, co * g.K + k);
    sdfc_small c = {x,    wt,   NULL, y,    wt + g.K * SDFC_SMALL_CO, g.Ci, g.H, g.W,
                    g.Co, g.KH, g.KW, g.OH, g.OW, g.ph, g.pw};
    float bias[SDFC_SMALL_CO];
    if (b) {
      for (int64_t co = 0; co < g.Co; co++) bias[co] = sdfg_load(b->data, b->dtype, co);
      c.bias = bias;
    }
    const int64_t n = chunk / g.nrb, oy0 = (chunk % g.nrb) * g.rb;
    sdfc_direct_small_avx512(&c, n, oy0, sdfg_min(g.OH, oy0 + g.rb));
    return;
  }
#endif
  const int64_t gr = chunk / g.nco, cb = chunk % g.nco;
  const int64_t co0 = cb * g.cob, co1 = sdfg_min(g.Co, co0 + g.cob);
  const int64_t n0 = (gr / g.npb) * g.gi, n1 = sdfg_min(g.N, n0 + g.gi);
  const int64_t p0 = (gr % g.npb) * g.pb, p1 = sdfg_min(g.P, p0 + g.pb);
  const int64_t np = p1 - p0;
  const int pointwise = g.KH == 1 && g.KW == 1 && g.sh == 1 && g.sw == 1 &&
                        g.ph == 0 && g.pw == 0;
#if defined(__x86_64__) || defined(_M_X64)
  if (sdf_current_bf16 != SDF_BF16_NONE) {
    float *cols = (float *)scratch; /* f32 im2col of one image, kc x np in column panels */
    uint16_t *bb = (uint16_t *)(cols + g.kc * g.pb);
    const size_t b_stride = sdfb_elems(g.pb, g.kc);
    uint16_t *ab = bb + (size_t)g.gi * b_stride;
    for (int64_t k0 = 0; k0 < g.K; k0 += g.kc) {
      const int64_t kc = sdfg_min(g.kc, g.K - k0), kp = sdfb_kp(kc);
      for (int64_t n = n0; n < n1; n++) {
        uint16_t *bn = bb + (size_t)(n - n0) * b_stride;
        if (pointwise) {
          sdfb_pack_b(bn, x + n * g.Ci * g.P + p0, g.P, np, k0, kc);
          continue;
        }
        im2col_pack(&g, x, cols, n, k0, kc, p0, np);
        /* Panel q0 of the f32 im2col is kc x w (w <= 16) row-major at cols + q0*kc. */
        for (int64_t q0 = 0; q0 < np; q0 += SDFG_NR) {
          const int64_t w = sdfg_min(SDFG_NR, np - q0);
          sdfb_pack_b(bn + q0 * kp, cols + q0 * kc, w, w, 0, kc);
        }
      }
      for (int64_t cs = co0; cs < co1; cs += CV_MC) {
        const int64_t mc = sdfg_min(CV_MC, co1 - cs);
        sdfb_pack_a(ab, sdfg_elem_ptr(w->data, w->dtype, cs * g.K), w->dtype, g.K, mc, k0, kc);
        for (int64_t n = n0; n < n1; n++)
          sdfb_gemm(sdf_current_bf16, mc, np, kp, ab, bb + (size_t)(n - n0) * b_stride,
                    y + n * g.Co * g.P + cs * g.P + p0, g.P, k0 > 0, NULL);
      }
    }
  } else
#endif
  {
    float *bp = (float *)scratch;
    float *ap = bp + g.kc * g.pb * g.gi;
    float *pad = ap + sdfg_min(g.cob, CV_MC) * g.kc;
    const sdfg_kernels *u = sdfg_select();
    for (int64_t k0 = 0; k0 < g.K; k0 += g.kc) {
      const int64_t kc = sdfg_min(g.kc, g.K - k0);
      for (int64_t n = n0; n < n1; n++) {
        float *bn = bp + (n - n0) * kc * np;
        if (pointwise)
          sdfg_pack_b(bn, x + n * g.Ci * g.P + p0, g.P, np, k0, kc);
        else
          im2col_pack(&g, x, bn, n, k0, kc, p0, np);
      }
      for (int64_t cs = co0; cs < co1; cs += CV_MC) {
        const int64_t mc = sdfg_min(CV_MC, co1 - cs);
        sdfg_pack_a(ap, sdfg_elem_ptr(w->data, w->dtype, cs * g.K), w->dtype, g.K, mc, k0, kc);
        for (int64_t n = n0; n < n1; n++)
          sdfg_gemm(u, mc, np, kc, ap, bp + (n - n0) * kc * np,
                    y + n * g.Co * g.P + cs * g.P + p0, g.P, 0, mc, 0, np, kc, k0 > 0,
                    pad);
      }
    }
  }
  if (b)
    for (int64_t n = n0; n < n1; n++)
      for (int64_t co = co0; co < co1; co++) {
        const float bv = sdfg_load(b->data, b->dtype, co);
        float *yr = y + (n * g.Co + co) * g.P + p0;
        for (int64_t i = 0; i < np; i++) yr[i] += bv;
      }
}

static void conv_release(sdf_op *op) {
  free(op->state);
  op->state = NULL;
}

const sdf_kernel sdf_kernel_conv2d = {SDF_OP_CONV2D, "conv2d", conv_prepare, conv_run,
                                      conv_release};
