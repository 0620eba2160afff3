/* AVX-512 Winograd input / output transforms: one zmm lane per tile, 16 tiles
 * (one v panel) at a time; NCHW is read with masked gathers (zero padding and
 * edge tiles come from the masks) and written with masked scatters. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "gemm.h"
#include "winograd.h"

typedef float v16 __attribute__((vector_size(64)));
#define WT v16
#include "winograd_tx.h"
#undef WT

#define AI static inline __attribute__((always_inline))

/* Per-lane tile origins and validity masks of panel q. rows/cols: bit j set
 * when row (col) r of lane j's patch lies inside [0, lim). */
AI void lanes(const sdfw_geom *g, int64_t q, int64_t plane, int64_t oh,
              int64_t ow, int64_t lim_h, int64_t lim_w, int extent,
              int32_t *base, __mmask16 *rows, __mmask16 *cols) {
  const int64_t t0 = q * 16, w = sdfg_min(16, g->T - t0);
  for (int r = 0; r < extent; r++) rows[r] = cols[r] = 0;
  for (int j = 0; j < 16; j++) {
    int64_t n, y0, x0;
    sdfw_tile(g, t0 + (j < w ? j : w - 1), &n, &y0, &x0);
    y0 -= oh;
    x0 -= ow;
    base[j] = (int32_t)(n * plane + y0 * lim_w + x0);
    if (j >= w) continue;
    for (int r = 0; r < extent; r++) {
      if (y0 + r >= 0 && y0 + r < lim_h) rows[r] |= (__mmask16)(1u << j);
      if (x0 + r >= 0 && x0 + r < lim_w) cols[r] |= (__mmask16)(1u << j);
    }
  }
}

AI void input_m(const int m, const sdfw_geom *g, const float *x, float *v,
                int64_t q, int64_t c0, int64_t c1) {
  const int A = m + 2;
  const int64_t C = g->C, T = g->T, HW = g->H * g->W, W = g->W;
  const int64_t t0 = q * 16, w = sdfg_min(16, T - t0);
  const __mmask16 lm = (__mmask16)(w == 16 ? 0xffffu : (1u << w) - 1u);
  int32_t base[16];
  __mmask16 rows[8], cols[8];
  lanes(g, q, C * HW, g->pad_h, g->pad_w, g->H, W, A, base, rows, cols);
  const __m512i vb = _mm512_loadu_si512(base);
  for (int64_t ci = c0; ci < c1; ci++) {
    const float *xc = x + ci * HW;
    v16 d[8][8], t[8][8], o[8][8];
    for (int r = 0; r < A; r++)
      for (int c = 0; c < A; c++) {
        __m512i idx = _mm512_add_epi32(vb, _mm512_set1_epi32((int32_t)(r * W + c)));
        d[r][c] = (v16)_mm512_mask_i32gather_ps(_mm512_setzero_ps(),
                                                 rows[r] & cols[c], idx, xc, 4);
      }
    for (int r = 0; r < A; r++) sdfw_bt(m, d[r], 1, t[r], 1);
    for (int c = 0; c < A; c++) sdfw_bt(m, &t[0][c], 8, &o[0][c], 8);
    float *vp = v + t0 * C + ci * w;
    if (w == 16) {
      for (int k = 0; k < A * A; k++)
        _mm512_storeu_ps(vp + k * C * T, (__m512)o[k / A][k % A]);
    } else {
      for (int k = 0; k < A * A; k++)
        _mm512_mask_storeu_ps(vp + k * C * T, lm, (__m512)o[k / A][k % A]);
    }
  }
}

void sdfw_input_avx512(const sdfw_geom *g, const float *x, float *v, int64_t q,
                       int64_t c0, int64_t c1) {
  switch (g->m) {
  case 2: input_m(2, g, x, v, q, c0, c1); break;
  case 4: input_m(4, g, x, v, q, c0, c1); break;
  default: input_m(6, g, x, v, q, c0, c1); break;
  }
}

AI void output_m(const int m, const sdfw_geom *g, const float *mm,
                 const float *bias, const float *res, float *y, int64_t q,
                 int64_t c0, int64_t c1) {
  const int A = m + 2;
  const int64_t C = g->C, T = g->T, OHW = g->OH * g->OW, OW = g->OW;
  const int64_t t0 = q * 16, w = sdfg_min(16, T - t0);
  const __mmask16 lm = (__mmask16)(w == 16 ? 0xffffu : (1u << w) - 1u);
  int32_t base[16];
  __mmask16 rows[8], cols[8];
  lanes(g, q, C * OHW, 0, 0, g->OH, OW, m, base, rows, cols);
  const __m512i vb = _mm512_loadu_si512(base);
  for (int64_t co = c0; co < c1; co++) {
    v16 d[8][8], t[8][6], o[6][6];
    const float *mp = mm + co * T + t0;
    for (int k = 0; k < A * A; k++)
      d[k / A][k % A] = (v16)_mm512_maskz_loadu_ps(lm, mp + k * C * T);
    for (int r = 0; r < A; r++) sdfw_at(m, d[r], 1, t[r], 1);
    for (int c = 0; c < m; c++) sdfw_at(m, &t[0][c], 6, &o[0][c], 6);
    const v16 b = (v16)_mm512_set1_ps(bias ? bias[co] : 0.0f);
    float *yc = y + co * OHW;
    const float *rc = res ? res + co * OHW : NULL;
    for (int r = 0; r < m; r++)
      for (int c = 0; c < m; c++) {
        const __mmask16 k = rows[r] & cols[c];
        __m512i idx = _mm512_add_epi32(vb, _mm512_set1_epi32((int32_t)(r * OW + c)));
        __m512 val = (__m512)(o[r][c] + b);
        if (rc)
          val = _mm512_add_ps(val, _mm512_mask_i32gather_ps(_mm512_setzero_ps(),
                                                            k, idx, rc, 4));
        _mm512_mask_i32scatter_ps(yc, k, idx, val, 4);
      }
  }
}

void sdfw_output_avx512(const sdfw_geom *g, const float *mm, const float *bias,
                        const float *res, float *y, int64_t q, int64_t c0,
                        int64_t c1) {
  switch (g->m) {
  case 2: output_m(2, g, mm, bias, res, y, q, c0, c1); break;
  case 4: output_m(4, g, mm, bias, res, y, q, c0, c1); break;
  default: output_m(6, g, mm, bias, res, y, q, c0, c1); break;
  }
}
#endif
