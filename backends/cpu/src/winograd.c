/* Winograd F(m,3) stage ops (see winograd.h for layouts and chunking) and the
 * portable transforms. */
#include <stdio.h>
#include <stdlib.h>

#include "gemm.h"
#include "winograd.h"

#define WT float
#include "winograd_tx.h"
#undef WT

int sdfw_check_m(const sdf_op *op, char *err, size_t n) {
  if (op->n_p < 1) {
    snprintf(err, n, "missing param m");
    return -1;
  }
  int64_t m = op->p[0];
  if (m != 2 && m != 4 && m != 6) {
    snprintf(err, n, "Winograd m must be 2, 4 or 6, got %lld", (long long)m);
    return -1;
  }
  return (int)m;
}

int sdfw_check_f32(const sdf_tensor *t, int ndim, const char *what, char *err,
                   size_t n) {
  if (t->dtype != SDF_F32) {
    snprintf(err, n, "%s must be f32", what);
    return 0;
  }
  if (ndim > 0 && t->ndim != ndim) {
    snprintf(err, n, "%s must have rank %d, got %d", what, ndim, t->ndim);
    return 0;
  }
  return 1;
}

#define FAIL(...)                         \
  do {                                    \
    snprintf(err, err_len, __VA_ARGS__);  \
    return SDF_E_INVALID;                 \
  } while (0)

/* ---------------- WINO_FILTER ---------------- */

static int32_t filter_prepare(sdf_op *op, char *err, size_t err_len) {
  int m = sdfw_check_m(op, err, err_len);
  if (m < 0) return SDF_E_INVALID;
  if (op->n_in != 1 || op->n_out != 1) FAIL("WINO_FILTER takes 1 input and 1 output");
  const sdf_tensor *w = op->in[0], *u = op->out[0];
  if (!sdfg_is_weight_dtype(w->dtype)) {
    snprintf(err, err_len, "WINO_FILTER weight dtype %d unsupported", w->dtype);
    return SDF_E_UNSUPPORTED;
  }
  if (w->ndim != 4 || w->dims[2] != 3 || w->dims[3] != 3)
    FAIL("WINO_FILTER weight must be [Co,Ci,3,3]");
  if (!sdfw_check_f32(u, 3, "WINO_FILTER output u", err, err_len)) return SDF_E_INVALID;
  int64_t A = m + 2, Co = w->dims[0], Ci = w->dims[1];
  if (Co < 1 || Ci < 1) FAIL("WINO_FILTER needs Co, Ci >= 1");
  if (u->dims[0] != A * A || u->dims[1] != Co || u->dims[2] != Ci)
    FAIL("WINO_FILTER u must be [%lld,%lld,%lld]", (long long)(A * A),
         (long long)Co, (long long)Ci);
  op->n_chunks = sdfg_cdiv(Co, SDFG_MR);
  op->scratch_bytes = 0;
  return SDF_OK;
}

#include "winograd_filter.h"

static void filter_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  const sdf_tensor *w = op->in[0];
  const int m = (int)op->p[0];
  const int64_t Co = w->dims[0], Ci = w->dims[1];
  float *u = op->out[0]->data;
  const int64_t p0 = chunk * SDFG_MR, h = sdfg_min(SDFG_MR, Co - p0);
#if defined(__x86_64__) || defined(_M_X64)
  if (sdf_current_isa == SDF_ISA_AVX512) {
    sdfw_filter_avx512(m, w, u, Co, Ci, p0, h);
    return;
  }
#endif
  sdfw_filter_panels(m, w, u, Co, Ci, p0, h);
}

const sdf_kernel sdf_kernel_wino_filter = {SDF_OP_WINO_FILTER, "wino_filter",
                                           filter_prepare, filter_run, NULL};

/* ---------------- geometry shared by INPUT / OUTPUT ---------------- */

static void geom_init(sdfw_geom *g, int m, int64_t N, int64_t C, int64_t OH,
                      int64_t OW, int64_t row0, int64_t rows) {
  g->m = m;
  g->A = m + 2;
  g->N = N;
  g->C = C;
  g->OH = OH;
  g->OW = OW;
  g->row0 = row0;
  g->th = rows;
  g->tw = sdfg_cdiv(OW, m);
  g->T = N * g->th * g->tw;
}

/* The row band of p[3] = row0, p[4] = rows (in tile rows; rows absent or 0:
 * all tile_h rows, row0 must then be 0 or absent). tiles_h = ceil(OH / m). */
static void band_of(const sdf_op *op, int64_t tiles_h, int64_t *row0, int64_t *rows) {
  *row0 = op->n_p >= 4 ? op->p[3] : 0;
  *rows = op->n_p >= 5 ? op->p[4] : 0;
  if (*rows == 0 && *row0 == 0) *rows = tiles_h;
}

/* prepare(): the band, or 0 with err written when it is out of range. */
static int band_check(const sdf_op *op, int64_t tiles_h, int64_t *row0, int64_t *rows,
                      const char *name, char *err, size_t err_len) {
  band_of(op, tiles_h, row0, rows);
  if (*rows == 0) {
    snprintf(err, err_len, "%s: row0 (p[3]) = %lld needs rows (p[4]) >= 1 (rows 0 means all "
             "%lld tile rows from row 0)", name, (long long)*row0, (long long)tiles_h);
    return 0;
  }
  if (*row0 < 0 || *rows < 0 || *row0 > tiles_h || *rows > tiles_h - *row0) {
    snprintf(err, err_len, "%s: row band row0 %lld + rows %lld must lie within the %lld tile rows "
             "(tiles_h = ceil(OH / m))", name, (long long)*row0, (long long)*rows,
             (long long)tiles_h);
    return 0;
  }
  return 1;
}

/* Transform chunks: (block of tile panels, block of channels). A panel block
 * spans ~8 tile rows, so one channel's input rows stay cached while its
 * panels are transformed; channel blocks shrink until there are enough chunks
 * for the threads to balance. */
typedef struct tx_plan {
  int64_t nq, qb, nqb, cb, ncb;
} tx_plan;

static void tx_plan_make(tx_plan *tp, const sdfw_geom *g) {
  tp->nq = sdfg_cdiv(g->T, SDFG_NR);
  int64_t qb = sdfg_max(1, sdfg_min(SDFW_QB_MAX, sdfg_cdiv(8 * g->tw, SDFG_NR)));
  qb = sdfg_min(qb, tp->nq);
  tp->nqb = sdfg_cdiv(tp->nq, qb);
  tp->qb = sdfg_cdiv(tp->nq, tp->nqb);
  tp->cb = 8;
  while (tp->cb > 1 && tp->nqb * sdfg_cdiv(g->C, tp->cb) < 32) tp->cb /= 2;
  tp->ncb = sdfg_cdiv(g->C, tp->cb);
}

static void tx_chunk(const tx_plan *tp, const sdfw_geom *g, int64_t chunk,
                     int64_t *q0, int64_t *q1, int64_t *c0, int64_t *c1) {
  *q0 = (chunk / tp->ncb) * tp->qb;
  *q1 = sdfg_min(tp->nq, *q0 + tp->qb);
  *c0 = (chunk % tp->ncb) * tp->cb;
  *c1 = sdfg_min(g->C, *c0 + tp->cb);
}

/* SIMD paths index with 32-bit offsets. */
#define SDFW_I32_LIMIT ((int64_t)1 << 31)

/* ---------------- WINO_INPUT ---------------- */

static int32_t input_prepare(sdf_op *op, char *err, size_t err_len) {
  int m = sdfw_check_m(op, err, err_len);
  if (m < 0) return SDF_E_INVALID;
  if (op->n_p < 3) FAIL("WINO_INPUT needs params m, pad_h, pad_w (optional row0, rows)");
  if (op->n_in != 1 || op->n_out != 1) FAIL("WINO_INPUT takes 1 input and 1 output");
  const sdf_tensor *x = op->in[0], *v = op->out[0];
  if (!sdfw_check_f32(x, 4, "WINO_INPUT input x", err, err_len) ||
      !sdfw_check_f32(v, 3, "WINO_INPUT output v", err, err_len))
    return SDF_E_INVALID;
  int64_t ph = op->p[1], pw = op->p[2];
  if (ph < 0 || pw < 0 || ph > 64 || pw > 64) FAIL("WINO_INPUT padding must be 0..64");
  int64_t N = x->dims[0], Ci = x->dims[1], H = x->dims[2], W = x->dims[3];
  int64_t OH = H + 2 * ph - 2, OW = W + 2 * pw - 2;
  if (N < 1 || Ci < 1 || OH < 1 || OW < 1) FAIL("WINO_INPUT: empty input or output");
  int64_t row0, rows;
  if (!band_check(op, sdfg_cdiv(OH, m), &row0, &rows, "WINO_INPUT", err, err_len))
    return SDF_E_INVALID;
  sdfw_geom g;
  geom_init(&g, m, N, Ci, OH, OW, row0, rows);
  int64_t A = m + 2;
  if (v->dims[0] != A * A || v->dims[1] != Ci || v->dims[2] != g.T)
    FAIL("WINO_INPUT v must be [%lld,%lld,%lld] (T = N %lld * rows %lld * tiles_w %lld), "
         "got [%lld,%lld,%lld]", (long long)(A * A), (long long)Ci, (long long)g.T,
         (long long)N, (long long)rows, (long long)g.tw, (long long)v->dims[0],
         (long long)v->dims[1], (long long)v->dims[2]);
  tx_plan tp;
  tx_plan_make(&tp, &g);
  op->n_chunks = tp.nqb * tp.ncb;
  op->scratch_bytes = 0;
  return SDF_OK;
}

static void input_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  const sdf_tensor *x = op->in[0];
  sdfw_geom g;
  int64_t ph = op->p[1], pw = op->p[2];
  const int m = (int)op->p[0];
  int64_t H = x->dims[2], W = x->dims[3], row0, rows;
  band_of(op, sdfg_cdiv(H + 2 * ph - 2, m), &row0, &rows);
  geom_init(&g, m, x->dims[0], x->dims[1], H + 2 * ph - 2, W + 2 * pw - 2, row0, rows);
  g.H = H;
  g.W = W;
  g.pad_h = ph;
  g.pad_w = pw;
  tx_plan tp;
  tx_plan_make(&tp, &g);
  int64_t q0, q1, c0, c1;
  tx_chunk(&tp, &g, chunk, &q0, &q1, &c0, &c1);
  sdfw_input_fn fn = sdfw_input_scalar;
#if defined(__x86_64__) || defined(_M_X64)
  if (x->numel < SDFW_I32_LIMIT) {
    if (sdf_current_isa == SDF_ISA_AVX512) fn = sdfw_input_avx512;
    else if (sdf_current_isa == SDF_ISA_AVX2) fn = sdfw_input_avx2;
  }
#endif
#if defined(__aarch64__)
  if (sdf_current_isa == SDF_ISA_NEON) fn = sdfw_input_neon;
#endif
  fn(&g, x->data, op->out[0]->data, q0, q1, c0, c1);
}

const sdf_kernel sdf_kernel_wino_input = {SDF_OP_WINO_INPUT, "wino_input",
                                          input_prepare, input_run, NULL};

/* Scalar input transform: one tile at a time. */
void sdfw_input_scalar(const sdfw_geom *g, const float *x, float *v, int64_t q0,
                       int64_t q1, int64_t c0, int64_t c1) {
  const int m = g->m, A = g->A;
  const int64_t C = g->C, T = g->T, HW = g->H * g->W;
  for (int64_t q = q0; q < q1; q++) {
    const int64_t t0 = q * SDFG_NR, w = sdfg_min(SDFG_NR, T - t0);
    for (int64_t j = 0; j < w; j++) {
      int64_t n, oy0, ox0;
      sdfw_tile(g, t0 + j, &n, &oy0, &ox0);
      const int64_t iy0 = oy0 - g->pad_h, ix0 = ox0 - g->pad_w;
      for (int64_t ci = c0; ci < c1; ci++) {
        const float *xc = x + (n * C + ci) * HW;
        float d[8][8], t[8][8], o[8][8];
        for (int r = 0; r < A; r++) {
          int64_t iy = iy0 + r;
          for (int c = 0; c < A; c++) {
            int64_t ix = ix0 + c;
            d[r][c] = (iy >= 0 && iy < g->H && ix >= 0 && ix < g->W)
                          ? xc[iy * g->W + ix]
                          : 0.0f;
          }
        }
        for (int r = 0; r < A; r++) sdfw_bt(m, d[r], 1, t[r], 1);
        for (int c = 0; c < A; c++) sdfw_bt(m, &t[0][c], 8, &o[0][c], 8);
        float *vp = v + t0 * C + ci * w + j;
        for (int k = 0; k < A * A; k++) vp[k * C * T] = o[k / A][k % A];
      }
    }
  }
}

/* ---------------- WINO_OUTPUT ---------------- */

static int32_t output_prepare(sdf_op *op, char *err, size_t err_len) {
  int m = sdfw_check_m(op, err, err_len);
  if (m < 0) return SDF_E_INVALID;
  if (op->n_p < 3)
    FAIL("WINO_OUTPUT needs params m, has_bias, has_residual (optional row0, rows)");
  int hb = op->p[1] != 0, hr = op->p[2] != 0;
  if (op->n_in != 1 + hb + hr || op->n_out != 1)
    FAIL("WINO_OUTPUT takes %d inputs (m_%s%s) and 1 output", 1 + hb + hr,
         hb ? ", b" : "", hr ? ", residual" : "");
  const sdf_tensor *mm = op->in[0], *y = op->out[0];
  if (!sdfw_check_f32(mm, 3, "WINO_OUTPUT m_", err, err_len) ||
      !sdfw_check_f32(y, 4, "WINO_OUTPUT output y", err, err_len))
    return SDF_E_INVALID;
  int64_t N = y->dims[0], Co = y->dims[1], OH = y->dims[2], OW = y->dims[3];
  if (N < 1 || Co < 1 || OH < 1 || OW < 1) FAIL("WINO_OUTPUT: empty output");
  int64_t row0, rows;
  if (!band_check(op, sdfg_cdiv(OH, m), &row0, &rows, "WINO_OUTPUT", err, err_len))
    return SDF_E_INVALID;
  sdfw_geom g;
  geom_init(&g, m, N, Co, OH, OW, row0, rows);
  int64_t A = m + 2;
  if (mm->dims[0] != A * A || mm->dims[1] != Co || mm->dims[2] != g.T)
    FAIL("WINO_OUTPUT m_ must be [%lld,%lld,%lld] (T = N %lld * rows %lld * tiles_w %lld), "
         "got [%lld,%lld,%lld]", (long long)(A * A), (long long)Co, (long long)g.T,
         (long long)N, (long long)rows, (long long)g.tw, (long long)mm->dims[0],
         (long long)mm->dims[1], (long long)mm->dims[2]);
  if (hb) {
    const sdf_tensor *b = op->in[1];
    if (!sdfw_check_f32(b, 1, "WINO_OUTPUT bias", err, err_len)) return SDF_E_INVALID;
    if (b->dims[0] != Co) FAIL("WINO_OUTPUT bias must be [%lld]", (long long)Co);
  }
  if (hr) {
    const sdf_tensor *r = op->in[1 + hb];
    if (!sdfw_check_f32(r, 4, "WINO_OUTPUT residual", err, err_len)) return SDF_E_INVALID;
    for (int d = 0; d < 4; d++)
      if (r->dims[d] != y->dims[d]) FAIL("WINO_OUTPUT residual shape must equal y's");
  }
  tx_plan tp;
  tx_plan_make(&tp, &g);
  op->n_chunks = tp.nqb * tp.ncb;
  op->scratch_bytes = 0;
  return SDF_OK;
}

static void output_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  const sdf_tensor *y = op->out[0];
  sdfw_geom g;
  const int m = (int)op->p[0];
  int64_t row0, rows;
  band_of(op, sdfg_cdiv(y->dims[2], m), &row0, &rows);
  geom_init(&g, m, y->dims[0], y->dims[1], y->dims[2], y->dims[3], row0, rows);
  g.H = g.W = 0;
  g.pad_h = g.pad_w = 0;
  int hb = op->p[1] != 0, hr = op->p[2] != 0;
  const float *bias = hb ? op->in[1]->data : NULL;
  const float *res = hr ? op->in[1 + hb]->data : NULL;
  tx_plan tp;
  tx_plan_make(&tp, &g);
  int64_t q0, q1, c0, c1;
  tx_chunk(&tp, &g, chunk, &q0, &q1, &c0, &c1);
  sdfw_output_fn fn = sdfw_output_scalar;
#if defined(__x86_64__) || defined(_M_X64)
  if (y->numel < SDFW_I32_LIMIT) {
    if (sdf_current_isa == SDF_ISA_AVX512) fn = sdfw_output_avx512;
    else if (sdf_current_isa == SDF_ISA_AVX2) fn = sdfw_output_avx2;
  }
#endif
#if defined(__aarch64__)
  if (sdf_current_isa == SDF_ISA_NEON) fn = sdfw_output_neon;
#endif
  fn(&g, op->in[0]->data, bias, res, y->data, q0, q1, c0, c1);
}

const sdf_kernel sdf_kernel_wino_output = {SDF_OP_WINO_OUTPUT, "wino_output",
                                           output_prepare, output_run, NULL};

void sdfw_output_scalar(const sdfw_geom *g, const float *mm, const float *bias,
                        const float *res, float *y, int64_t q0, int64_t q1,
                        int64_t c0, int64_t c1) {
  const int m = g->m, A = g->A;
  const int64_t C = g->C, T = g->T, OHW = g->OH * g->OW;
  for (int64_t q = q0; q < q1; q++) {
    const int64_t t0 = q * SDFG_NR, w = sdfg_min(SDFG_NR, T - t0);
    for (int64_t j = 0; j < w; j++) {
      int64_t n, oy0, ox0;
      sdfw_tile(g, t0 + j, &n, &oy0, &ox0);
      for (int64_t co = c0; co < c1; co++) {
        float d[8][8], t[8][6], o[6][6];
        const float *mp = mm + co * T + t0 + j;
        for (int k = 0; k < A * A; k++) d[k / A][k % A] = mp[k * C * T];
        for (int r = 0; r < A; r++) sdfw_at(m, d[r], 1, t[r], 1);
        for (int c = 0; c < m; c++) sdfw_at(m, &t[0][c], 6, &o[0][c], 6);
        const float b = bias ? bias[co] : 0.0f;
        const int64_t plane = (n * C + co) * OHW;
        for (int r = 0; r < m && oy0 + r < g->OH; r++)
          for (int c = 0; c < m && ox0 + c < g->OW; c++) {
            int64_t idx = plane + (oy0 + r) * g->OW + ox0 + c;
            float val = o[r][c] + b;
            if (res) val += res[idx];
            y[idx] = val;
          }
      }
    }
  }
}

/* ---------------- choice of m (for the planner to mirror) ---------------- */

/* Columns the GEMM effectively computes for T tiles: 32-wide main tiles, a
 * last group of <= 16 columns on the 16-wide tile. */
static int64_t gemm_cols(int64_t T) {
  int64_t full = (T / 32) * 32, rest = T % 32;
  return full + (rest == 0 ? 0 : (rest <= 16 ? 16 : 32));
}

int sdfw_choose_m(int64_t N, int64_t Ci, int64_t Co, int64_t OH, int64_t OW) {
  if (N < 1 || OH < 1 || OW < 1 || Ci < 16 || Co < 16) return 0;
  int best = 0;
  double best_cost = 0;
  for (int m = 6; m >= 2; m -= 2) {
    const double A2 = (double)(m + 2) * (m + 2);
    const int64_t T = N * sdfg_cdiv(OH, m) * sdfg_cdiv(OW, m);
    const double cost = A2 * ((double)gemm_cols(T) * (double)Ci * (double)Co +
                              60.0 * (double)T * (double)(Ci + Co));
    if (!best || cost < best_cost) best = m, best_cost = cost;
  }
  return best;
}
