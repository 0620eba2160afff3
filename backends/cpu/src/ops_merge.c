/* MERGE_LOW_RANK: y = w + up @ down (+ dense), rounded once to y's dtype.
 *
 * The LoRA / LoCon merge: ΔW = up @ down is a GEMM of a [R, K] by a [K, I]
 * matrix with a small K (the rank). The op is bound by memory (w read once,
 * y written once, mostly pages touched for the first time), so a chunk is a
 * block of whole rows — one contiguous stretch of w and of y: per column
 * block it packs its share of up and down (K x (MB + NB) floats, a few
 * percent of the K·MB·NB FMAs) and runs the gemm.h driver into a float32
 * block of rows in scratch; then adds w (widened exactly) and rounds the sum
 * to the output dtype, ties to even — as an add into an f16 weight does in
 * stable-diffusion.cpp — row after row. Only the output weight and one block
 * of rows per thread are ever written: no float32 copy of the weight exists. */
#include <stdio.h>

#include "common.h"
#include "gemm.h"
#include "ops_merge.h"

#define MRG_ROW_FLOATS (48 * 2048) /* float32 scratch of a block of rows (384 KiB) */
#define MRG_MAX_ROWS 384            /* rows of a chunk at most */
#define MRG_NB 512                  /* columns per gemm call */
#define MRG_KC 256                  /* rank block */

typedef struct mrg_shape {
  int64_t R, I, K, mb, nm, kc;
} mrg_shape;

static void mrg_shape_of(const sdf_op *op, mrg_shape *s) {
  s->R = op->in[0]->dims[0];
  s->I = op->in[0]->dims[1];
  s->K = op->in[1]->dims[1];
  /* Rows per chunk: a multiple of 12 (whole AVX-512 tiles), as many as the scratch holds, 12 at least and
   * MRG_MAX_ROWS at most (the packed up factor takes kc floats per row). */
  s->mb = sdfg_min(MRG_MAX_ROWS, sdfg_max(12, (MRG_ROW_FLOATS / s->I) / 12 * 12));
  s->nm = sdfg_cdiv(s->R, s->mb);
  s->kc = sdfg_max(1, sdfg_min(s->K, MRG_KC));
}

static int32_t mrg_prepare(sdf_op *op, char *err, size_t err_len) {
  if (op->n_in < 3 || op->n_in > 4 || op->n_out != 1)
    return sdf_fail(err, err_len, SDF_E_INVALID, "MERGE_LOW_RANK takes w, up, down, optional dense and one output");
  const sdf_tensor *w = op->in[0], *up = op->in[1], *down = op->in[2], *y = op->out[0];
  if (!sdfg_is_float_dtype(w->dtype) || w->dtype != y->dtype)
    return sdf_fail(err, err_len, SDF_E_UNSUPPORTED,
                    "MERGE_LOW_RANK: w and y must have one float dtype (f32, f16, bf16), got %s and %s",
                    sdf_dtype_name(w->dtype), sdf_dtype_name(y->dtype));
  if (up->dtype != SDF_F32 || down->dtype != SDF_F32 || (op->n_in == 4 && op->in[3]->dtype != SDF_F32))
    return sdf_fail(err, err_len, SDF_E_INVALID, "MERGE_LOW_RANK: up, down and dense must be f32");
  if (w->ndim != 2 || up->ndim != 2 || down->ndim != 2 || y->ndim != 2)
    return sdf_fail(err, err_len, SDF_E_INVALID, "MERGE_LOW_RANK: w, up, down and y must be 2-D");
  const int64_t R = w->dims[0], I = w->dims[1], K = up->dims[1];
  if (up->dims[0] != R || down->dims[0] != K || down->dims[1] != I || y->dims[0] != R || y->dims[1] != I) {
    char a[64], b[64], c[64];
    return sdf_fail(err, err_len, SDF_E_INVALID, "MERGE_LOW_RANK: w %s, up %s, down %s do not fit",
                    sdf_shape_str(w, a, sizeof a), sdf_shape_str(up, b, sizeof b), sdf_shape_str(down, c, sizeof c));
  }
  if (op->n_in == 4 && (op->in[3]->ndim != 2 || op->in[3]->dims[0] != R || op->in[3]->dims[1] != I))
    return sdf_fail(err, err_len, SDF_E_INVALID, "MERGE_LOW_RANK: dense must have w's shape");
  mrg_shape s;
  mrg_shape_of(op, &s);
  op->n_chunks = s.nm;
  op->scratch_bytes = ((size_t)(s.kc * (s.mb + MRG_NB) + s.mb * s.I) + sdfg_pad_floats(s.kc) + 16) * sizeof(float);
  return SDF_OK;
}

static void mrg_run(const sdf_op *op, int64_t chunk, void *scratch) {
  mrg_shape s;
  mrg_shape_of(op, &s);
  const int64_t m0 = chunk * s.mb, mc = sdfg_min(s.mb, s.R - m0);
  const float *up = (const float *)op->in[1]->data, *down = (const float *)op->in[2]->data;
  const float *dense = op->n_in == 4 ? (const float *)op->in[3]->data : NULL;
  float *bp = (float *)scratch;
  float *ap = bp + s.kc * MRG_NB;
  float *c = ap + s.kc * s.mb;
  float *pad = c + s.mb * s.I;
  const sdfg_kernels *u = sdfg_select();
  for (int64_t k0 = 0; k0 < s.K; k0 += s.kc) {
    const int64_t kc = sdfg_min(s.kc, s.K - k0);
    sdfg_pack_a(ap, up + m0 * s.K, SDF_F32, s.K, mc, k0, kc);
    for (int64_t n0 = 0; n0 < s.I; n0 += MRG_NB) {
      const int64_t nc = sdfg_min(MRG_NB, s.I - n0);
      sdfg_pack_b(bp, down + n0, s.I, nc, k0, kc);
      sdfg_gemm(u, mc, nc, kc, ap, bp, c + n0, s.I, 0, mc, 0, nc, kc, k0 > 0, pad);
    }
  }
  const int32_t dt = op->in[0]->dtype;
  const size_t es = sdf_dtype_size(dt);
  void (*round_row)(int32_t, const void *, const float *, const float *, void *, int64_t) = sdf_merge_round_scalar;
#if defined(__x86_64__) || defined(_M_X64)
  if (sdf_current_isa == SDF_ISA_AVX2 || sdf_current_isa == SDF_ISA_AVX512) round_row = sdf_merge_round_avx2;
#endif
  /* The block's rows are one contiguous stretch of w, of y and of c. */
  const int64_t base = m0 * s.I;
  round_row(dt, (const char *)op->in[0]->data + base * es, c, dense ? dense + base : NULL,
            (char *)op->out[0]->data + base * es, mc * s.I);
}

void sdf_merge_round_scalar(int32_t dtype, const void *w, const float *c, const float *d, void *y, int64_t n) {
  if (dtype == SDF_F32) {
    const float *wf = (const float *)w;
    float *yf = (float *)y;
    for (int64_t j = 0; j < n; j++) yf[j] = wf[j] + (d ? c[j] + d[j] : c[j]);
  } else if (dtype == SDF_F16) {
    const uint16_t *wh = (const uint16_t *)w;
    uint16_t *yh = (uint16_t *)y;
    for (int64_t j = 0; j < n; j++) yh[j] = sdf_f32_to_f16(sdf_f16_to_f32(wh[j]) + (d ? c[j] + d[j] : c[j]));
  } else {
    const uint16_t *wh = (const uint16_t *)w;
    uint16_t *yh = (uint16_t *)y;
    for (int64_t j = 0; j < n; j++) yh[j] = sdf_f32_to_bf16(sdf_bf16_to_f32(wh[j]) + (d ? c[j] + d[j] : c[j]));
  }
}

const sdf_kernel sdf_kernel_merge_low_rank = {SDF_OP_MERGE_LOW_RANK, "merge_low_rank", mrg_prepare, mrg_run, NULL};
