/* AVX2 Winograd input / output transforms: one ymm lane per tile, a 16-tile
 * v panel as two halves of 8. Input via masked gathers; AVX2 has no scatter,
 * so outputs leave through a small per-lane store loop. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "gemm.h"
#include "winograd.h"

typedef float v8 __attribute__((vector_size(32)));
#define WT v8
#include "winograd_tx.h"
#undef WT

#define AI static inline __attribute__((always_inline))

/* Lane-validity bits -> AVX2 mask vector (sign bit per lane). */
AI __m256i mask8(unsigned bits) {
  const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), lane),
                            lane);
}

/* Tile origins and validity bits for the 8 lanes starting at tile t0. */
AI void lanes8(const sdfw_geom *g, int64_t t0, int64_t w, int64_t plane,
               int64_t oh, int64_t ow, int64_t lim_h, int64_t lim_w,
               int extent, int32_t *base, unsigned *rows, unsigned *cols) {
  for (int r = 0; r < extent; r++) rows[r] = cols[r] = 0;
  for (int j = 0; j < 8; j++) {
    int64_t n, y0, x0;
    sdfw_tile(g, t0 + (j < w ? j : w - 1), &n, &y0, &x0);
    y0 -= oh;
    x0 -= ow;
    base[j] = (int32_t)(n * plane + y0 * lim_w + x0);
    if (j >= w) continue;
    for (int r = 0; r < extent; r++) {
      if (y0 + r >= 0 && y0 + r < lim_h) rows[r] |= 1u << j;
      if (x0 + r >= 0 && x0 + r < lim_w) cols[r] |= 1u << j;
    }
  }
}

AI void input_q(const int m, const sdfw_geom *g, const float *x, float *v,
                int64_t q, int64_t c0, int64_t c1) {
  const int A = m + 2;
  const int64_t C = g->C, T = g->T, HW = g->H * g->W, W = g->W;
  const int64_t t0 = q * 16, w = sdfg_min(16, T - t0);
  for (int64_t half = 0; half * 8 < w; half++) {
    const int64_t hw = sdfg_min(8, w - half * 8);
    int32_t base[8];
    unsigned rows[8], cols[8];
    lanes8(g, t0 + half * 8, hw, C * HW, g->pad_h, g->pad_w, g->H, W, A, base,
           rows, cols);
    const __m256i vb = _mm256_loadu_si256((const __m256i *)base);
    const __m256i sm = mask8(hw == 8 ? 0xffu : (1u << hw) - 1u);
    for (int64_t ci = c0; ci < c1; ci++) {
      const float *xc = x + ci * HW;
      v8 d[8][8], t[8][8], o[8][8];
      for (int r = 0; r < A; r++)
        for (int c = 0; c < A; c++) {
          __m256i idx = _mm256_add_epi32(vb, _mm256_set1_epi32((int32_t)(r * W + c)));
          d[r][c] = (v8)_mm256_mask_i32gather_ps(
              _mm256_setzero_ps(), xc, idx,
              _mm256_castsi256_ps(mask8(rows[r] & cols[c])), 4);
        }
      for (int r = 0; r < A; r++) sdfw_bt(m, d[r], 1, t[r], 1);
      for (int c = 0; c < A; c++) sdfw_bt(m, &t[0][c], 8, &o[0][c], 8);
      float *vp = v + t0 * C + ci * w + half * 8;
      for (int k = 0; k < A * A; k++)
        _mm256_maskstore_ps(vp + k * C * T, sm, (__m256)o[k / A][k % A]);
    }
  }
}

/* Channel-major over the panel block, so a channel's rows stay cached. */
AI void input_m(const int m, const sdfw_geom *g, const float *x, float *v,
                int64_t q0, int64_t q1, int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; c++)
    for (int64_t q = q0; q < q1; q++) input_q(m, g, x, v, q, c, c + 1);
}

void sdfw_input_avx2(const sdfw_geom *g, const float *x, float *v, int64_t q0,
                     int64_t q1, int64_t c0, int64_t c1) {
  switch (g->m) {
  case 2: input_m(2, g, x, v, q0, q1, c0, c1); break;
  case 4: input_m(4, g, x, v, q0, q1, c0, c1); break;
  default: input_m(6, g, x, v, q0, q1, c0, c1); break;
  }
}

AI void output_q(const int m, const sdfw_geom *g, const float *mm,
                 const float *bias, const float *res, float *y, int64_t q,
                 int64_t c0, int64_t c1) {
  const int A = m + 2;
  const int64_t C = g->C, T = g->T, OHW = g->OH * g->OW, OW = g->OW;
  const int64_t t0 = q * 16, w = sdfg_min(16, T - t0);
  for (int64_t half = 0; half * 8 < w; half++) {
    const int64_t hw = sdfg_min(8, w - half * 8);
    int32_t base[8];
    unsigned rows[8], cols[8];
    lanes8(g, t0 + half * 8, hw, C * OHW, 0, 0, g->OH, OW, m, base, rows, cols);
    const __m256i lm = mask8(hw == 8 ? 0xffu : (1u << hw) - 1u);
    for (int64_t co = c0; co < c1; co++) {
      v8 d[8][8], t[8][6], o[6][6];
      const float *mp = mm + co * T + t0 + half * 8;
      for (int k = 0; k < A * A; k++)
        d[k / A][k % A] = (v8)_mm256_maskload_ps(mp + k * C * T, lm);
      for (int r = 0; r < A; r++) sdfw_at(m, d[r], 1, t[r], 1);
      for (int c = 0; c < m; c++) sdfw_at(m, &t[0][c], 6, &o[0][c], 6);
      const float b = bias ? bias[co] : 0.0f;
      float *yc = y + co * OHW;
      const float *rc = res ? res + co * OHW : NULL;
      for (int r = 0; r < m; r++)
        for (int c = 0; c < m; c++) {
          float lane[8];
          _mm256_storeu_ps(lane, (__m256)o[r][c]);
          unsigned k = rows[r] & cols[c];
          for (int j = 0; j < 8; j++) {
            if (!(k >> j & 1u)) continue;
            int64_t idx = (int64_t)base[j] + r * OW + c;
            yc[idx] = lane[j] + b + (rc ? rc[idx] : 0.0f);
          }
        }
    }
  }
}

AI void output_m(const int m, const sdfw_geom *g, const float *mm,
                 const float *bias, const float *res, float *y, int64_t q0,
                 int64_t q1, int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; c++)
    for (int64_t q = q0; q < q1; q++) output_q(m, g, mm, bias, res, y, q, c, c + 1);
}

void sdfw_output_avx2(const sdfw_geom *g, const float *mm, const float *bias,
                      const float *res, float *y, int64_t q0, int64_t q1,
                      int64_t c0, int64_t c1) {
  switch (g->m) {
  case 2: output_m(2, g, mm, bias, res, y, q0, q1, c0, c1); break;
  case 4: output_m(4, g, mm, bias, res, y, q0, q1, c0, c1); break;
  default: output_m(6, g, mm, bias, res, y, q0, q1, c0, c1); break;
  }
}
#endif
