/* AVX2 Winograd input / output transforms: one ymm lane per tile, a 16-tile
 * v panel as two halves of 8. As in the AVX-512 file, each tile's patch row
 * is one masked 8-float load (maskload never faults on masked lanes), and an
 * 8x8 transpose turns 8 such rows into vectors across tiles; outputs go back
 * through the inverse transpose and one masked store per tile row (no
 * gathers or scatters, which are slow on AMD cores). */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "gemm.h"
#include "winograd.h"

typedef float v8 __attribute__((vector_size(32)));
#define WT v8
#include "winograd_tx.h"
#undef WT

#define AI static inline __attribute__((always_inline))

/* Bit mask -> AVX2 lane mask (sign bit per lane). */
AI __m256i mask8(unsigned bits) {
  const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), lane),
                            lane);
}

AI void tr8x8(__m256 *r) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; i++) {
    u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
    r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
  }
}

/* Per 8-lane half panel: tile origins (offsets from the plane start), and per
 * lane the rows / columns of its patch inside [0, lim). */
typedef struct half_info {
  int32_t base[8];
  uint8_t rows[8]; /* bit r: patch row r inside */
  uint8_t cols[8]; /* bit c: patch column c inside */
  int64_t t0, w;   /* first tile, lanes in use */
} half_info;

AI void half_lanes(const sdfw_geom *g, int64_t t0, int64_t w, int64_t plane,
                   int64_t oh, int64_t ow, int64_t lim_h, int64_t lim_w, int extent,
                   half_info *h) {
  h->t0 = t0;
  h->w = w;
  for (int j = 0; j < 8; j++) {
    int64_t n, y0, x0;
    sdfw_tile(g, t0 + (j < w ? j : w - 1), &n, &y0, &x0);
    y0 -= oh;
    x0 -= ow;
    h->base[j] = (int32_t)(n * plane + y0 * lim_w + x0);
    h->rows[j] = h->cols[j] = 0;
    if (j >= w) continue;
    for (int r = 0; r < extent; r++) {
      if (y0 + r >= 0 && y0 + r < lim_h) h->rows[j] |= (uint8_t)(1u << r);
      if (x0 + r >= 0 && x0 + r < lim_w) h->cols[j] |= (uint8_t)(1u << r);
    }
  }
}

#define HALVES_MAX (2 * SDFW_QB_MAX)

AI void input_m(const int m, const sdfw_geom *g, const float *x, float *v,
                int64_t q0, int64_t q1, int64_t c0, int64_t c1) {
  const int A = m + 2;
  const int64_t C = g->C, T = g->T, HW = g->H * g->W, W = g->W;
  half_info hi[HALVES_MAX];
  int nh = 0;
  for (int64_t q = q0; q < q1; q++) {
    const int64_t t0 = q * 16, w = sdfg_min(16, T - t0);
    for (int64_t s = 0; s * 8 < w; s++)
      half_lanes(g, t0 + s * 8, sdfg_min(8, w - s * 8), C * HW, g->pad_h, g->pad_w,
                 g->H, W, A, &hi[nh++]);
  }
  for (int64_t ci = c0; ci < c1; ci++) {
    const float *xc = x + ci * HW;
    for (int hh = 0; hh < nh; hh++) {
      const half_info *h = &hi[hh];
      const int64_t q = h->t0 / 16, w = sdfg_min(16, T - q * 16);
      v8 d[8][8], t[8][8], o[8][8];
      for (int r = 0; r < A; r++) {
        __m256 rr[8];
        for (int j = 0; j < 8; j++) {
          const unsigned mb = (h->rows[j] >> r & 1u) ? h->cols[j] : 0u;
          rr[j] = _mm256_maskload_ps(xc + h->base[j] + r * W, mask8(mb));
        }
        tr8x8(rr);
        for (int c = 0; c < A; c++) d[r][c] = (v8)rr[c];
      }
      for (int r = 0; r < A; r++) sdfw_bt(m, d[r], 1, t[r], 1);
      for (int c = 0; c < A; c++) sdfw_bt(m, &t[0][c], 8, &o[0][c], 8);
      float *vp = v + q * 16 * C + ci * w + (h->t0 - q * 16);
      const __m256i sm = mask8(h->w == 8 ? 0xffu : (1u << h->w) - 1u);
      for (int k = 0; k < A * A; k++)
        _mm256_maskstore_ps(vp + k * C * T, sm, (__m256)o[k / A][k % A]);
    }
  }
}

void sdfw_input_avx2(const sdfw_geom *g, const float *x, float *v, int64_t q0,
                     int64_t q1, int64_t c0, int64_t c1) {
  switch (g->m) {
  case 2: input_m(2, g, x, v, q0, q1, c0, c1); break;
  case 4: input_m(4, g, x, v, q0, q1, c0, c1); break;
  default: input_m(6, g, x, v, q0, q1, c0, c1); break;
  }
}

AI void output_m(const int m, const sdfw_geom *g, const float *mm,
                 const float *bias, const float *res, float *y, int64_t q0,
                 int64_t q1, int64_t c0, int64_t c1) {
  const int A = m + 2;
  const int64_t C = g->C, T = g->T, OHW = g->OH * g->OW, OW = g->OW;
  half_info hi[HALVES_MAX];
  int nh = 0;
  for (int64_t q = q0; q < q1; q++) {
    const int64_t t0 = q * 16, w = sdfg_min(16, T - t0);
    for (int64_t s = 0; s * 8 < w; s++)
      half_lanes(g, t0 + s * 8, sdfg_min(8, w - s * 8), C * OHW, 0, 0, g->OH, OW, m,
                 &hi[nh++]);
  }
  for (int64_t co = c0; co < c1; co++) {
    const v8 b = (v8)_mm256_set1_ps(bias ? bias[co] : 0.0f);
    float *yc = y + co * OHW;
    const float *rc = res ? res + co * OHW : NULL;
    for (int hh = 0; hh < nh; hh++) {
      const half_info *h = &hi[hh];
      const __m256i lm = mask8(h->w == 8 ? 0xffu : (1u << h->w) - 1u);
      v8 d[8][8], t[8][6], o[6][6];
      const float *mp = mm + co * T + h->t0;
      /* two halves ahead in (channel, half panel) order */
      const int ha = hh + 2 < nh ? hh + 2 : hh + 2 - nh;
      const float *pf = mm + (hh + 2 < nh ? co : co + 1) * T + hi[ha].t0;
      for (int k = 0; k < A * A; k++)
        _mm_prefetch((const char *)(pf + k * C * T), _MM_HINT_T0);
      for (int k = 0; k < A * A; k++)
        d[k / A][k % A] = (v8)_mm256_maskload_ps(mp + k * C * T, lm);
      for (int r = 0; r < A; r++) sdfw_at(m, d[r], 1, t[r], 1);
      for (int c = 0; c < m; c++) sdfw_at(m, &t[0][c], 6, &o[0][c], 6);
      for (int r = 0; r < m; r++) {
        __m256 rr[8];
        for (int c = 0; c < 8; c++)
          rr[c] = c < m ? (__m256)(o[r][c] + b) : _mm256_setzero_ps();
        tr8x8(rr);
        for (int j = 0; j < 8; j++) {
          const unsigned mb = (h->rows[j] >> r & 1u) ? h->cols[j] : 0u;
          const __m256i mk = mask8(mb);
          float *p = yc + h->base[j] + r * OW;
          __m256 val = rr[j];
          if (rc) val = _mm256_add_ps(val, _mm256_maskload_ps(rc + h->base[j] + r * OW, mk));
          _mm256_maskstore_ps(p, mk, val);
        }
      }
    }
  }
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
/* ---- fused WINO_GEMM filter transform ---- */

AI void widen16(float *dst, const uint16_t *src, int32_t dtype, int64_t n) {
  int64_t e = 0;
  for (; e + 8 <= n; e += 8) {
    const __m128i hv = _mm_loadu_si128((const __m128i *)(src + e));
    _mm256_storeu_ps(dst + e, dtype == SDF_F16
                                  ? _mm256_cvtph_ps(hv)
                                  : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(hv), 16)));
  }
  for (; e < n; e++) dst[e] = sdfg_load(src, dtype, e);
}

#define FB_VL 8
#define FB_WIDEN widen16
#define WT v8
#include "winograd_fblock.h"
#undef WT

void sdfw_fblock_avx2(int m, const sdf_tensor *w, int64_t co0, int64_t mb, int64_t ci0,
                      int64_t kc, int64_t ps, float *dst, float *tmp) {
  fblock_dispatch(m, w, co0, mb, ci0, kc, ps, dst, tmp);
}
#endif
