/* AVX-512 Winograd input / output transforms: one zmm lane per tile, 16 tiles
 * (one v panel) at a time. Each tile's patch row is one masked 8-float load
 * (the masks give the zero padding and clip edge tiles); an 8x8 transpose in
 * both 256-bit halves turns 16 such rows into 8 vectors across tiles. Output
 * rows go back the same way (transpose, masked 8-float stores), which is
 * several times cheaper than gathers / scatters on Zen 4/5. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "gemm.h"
#include "winograd.h"

typedef float v16 __attribute__((vector_size(64)));
#define WT v16
#include "winograd_tx.h"
#undef WT
#include "transpose_avx512.h"

#define AI static inline __attribute__((always_inline))

#include "winograd_filter.h"

void sdfw_filter_avx512(int m, const sdf_tensor *w, float *u, int64_t Co,
                        int64_t Ci, int64_t p0, int64_t h) {
  sdfw_filter_panels(m, w, u, Co, Ci, p0, h);
}

/* Per-lane tile origins and validity masks of panel q. rows/cols: bit j set
 * when row (col) r of lane j's patch lies inside [0, lim). */
AI void lanes(const sdfw_geom *g, int64_t q, int64_t plane, int64_t oh,
              int64_t ow, int64_t lim_h, int64_t lim_w, int extent,
              int32_t *base, __mmask16 *rows, __mmask16 *cols, __mmask8 *lcol) {
  const int64_t t0 = q * 16, w = sdfg_min(16, g->T - t0);
  for (int r = 0; r < extent; r++) rows[r] = cols[r] = 0;
  for (int j = 0; j < 16; j++) lcol[j] = 0;
  for (int j = 0; j < 16; j++) {
    int64_t n, y0, x0;
    sdfw_tile(g, t0 + (j < w ? j : w - 1), &n, &y0, &x0);
    y0 -= oh;
    x0 -= ow;
    base[j] = (int32_t)(n * plane + y0 * lim_w + x0);
    if (j >= w) continue;
    for (int r = 0; r < extent; r++) {
      if (y0 + r >= 0 && y0 + r < lim_h) rows[r] |= (__mmask16)(1u << j);
      if (x0 + r >= 0 && x0 + r < lim_w) {
        cols[r] |= (__mmask16)(1u << j);
        lcol[j] |= (__mmask8)(1u << r);
      }
    }
  }
}

typedef struct lane_info {
  int32_t base[16];
  __mmask16 rows[8], cols[8];
  __mmask8 lcol[16]; /* per lane: columns inside the image */
} lane_info;


AI void input_m(const int m, const sdfw_geom *g, const float *x, float *v,
                int64_t q0, int64_t q1, int64_t c0, int64_t c1) {
  const int A = m + 2;
  const int64_t C = g->C, T = g->T, HW = g->H * g->W, W = g->W;
  /* v far larger than the caches is written with non-temporal stores (no
   * read-for-ownership); that needs every 16-float row 64-byte aligned. */
  const int stream = (int64_t)A * A * C * T * 4 > ((int64_t)8 << 20) &&
                     ((uintptr_t)v & 63) == 0 && ((C * T) & 15) == 0;
  lane_info li[SDFW_QB_MAX];
  for (int64_t q = q0; q < q1; q++)
    lanes(g, q, C * HW, g->pad_h, g->pad_w, g->H, W, A, li[q - q0].base,
          li[q - q0].rows, li[q - q0].cols, li[q - q0].lcol);
  for (int64_t ci = c0; ci < c1; ci++) {
    const float *xc = x + ci * HW;
    for (int64_t q = q0; q < q1; q++) {
      const lane_info *L = &li[q - q0];
      const int64_t t0 = q * 16, w = sdfg_min(16, T - t0);
      /* The same patch rows of the next channel, to hide DRAM latency from
       * the gathers. */
      if (ci + 1 < C)
        for (int j = 0; j < 16; j += 2)
          for (int r = 0; r < A; r++)
            _mm_prefetch((const char *)(xc + HW + L->base[j] + r * W), _MM_HINT_T0);
      v16 d[8][8], t[8][8], o[8][8];
      for (int r = 0; r < A; r++) {
        __m512 rr[8];
        for (int j = 0; j < 8; j++) {
          const __mmask8 ml = (L->rows[r] >> j & 1) ? L->lcol[j] : 0;
          const __mmask8 mh = (L->rows[r] >> (j + 8) & 1) ? L->lcol[j + 8] : 0;
          __m256 lo = _mm256_maskz_loadu_ps(ml, xc + L->base[j] + r * W);
          __m256 hi = _mm256_maskz_loadu_ps(mh, xc + L->base[j + 8] + r * W);
          rr[j] = _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
        }
        tr8x8x2(rr);
        for (int c = 0; c < A; c++) d[r][c] = (v16)rr[c];
      }
      for (int r = 0; r < A; r++) sdfw_bt(m, d[r], 1, t[r], 1);
      for (int c = 0; c < A; c++) sdfw_bt(m, &t[0][c], 8, &o[0][c], 8);
      float *vp = v + t0 * C + ci * w;
      if (w == 16 && stream) {
        for (int k = 0; k < A * A; k++)
          _mm512_stream_ps(vp + k * C * T, (__m512)o[k / A][k % A]);
      } else if (w == 16) {
        for (int k = 0; k < A * A; k++)
          _mm512_storeu_ps(vp + k * C * T, (__m512)o[k / A][k % A]);
      } else {
        const __mmask16 lm = (__mmask16)((1u << w) - 1u);
        for (int k = 0; k < A * A; k++)
          _mm512_mask_storeu_ps(vp + k * C * T, lm, (__m512)o[k / A][k % A]);
      }
    }
  }
}

void sdfw_input_avx512(const sdfw_geom *g, const float *x, float *v, int64_t q0,
                       int64_t q1, int64_t c0, int64_t c1) {
  switch (g->m) {
  case 2: input_m(2, g, x, v, q0, q1, c0, c1); break;
  case 4: input_m(4, g, x, v, q0, q1, c0, c1); break;
  default: input_m(6, g, x, v, q0, q1, c0, c1); break;
  }
  _mm_sfence();
}

AI void output_m(const int m, const sdfw_geom *g, const float *mm,
                 const float *bias, const float *res, float *y, int64_t q0,
                 int64_t q1, int64_t c0, int64_t c1) {
  const int A = m + 2;
  const int64_t C = g->C, T = g->T, OHW = g->OH * g->OW, OW = g->OW;
  lane_info li[SDFW_QB_MAX];
  for (int64_t q = q0; q < q1; q++)
    lanes(g, q, C * OHW, 0, 0, g->OH, OW, m, li[q - q0].base, li[q - q0].rows,
          li[q - q0].cols, li[q - q0].lcol);
  for (int64_t co = c0; co < c1; co++) {
    const v16 b = (v16)_mm512_set1_ps(bias ? bias[co] : 0.0f);
    float *yc = y + co * OHW;
    const float *rc = res ? res + co * OHW : NULL;
    /* next channel's runs: row pf_row (one per k), line pf_l of the run */
    const float *pf_row = mm + (co + 1) * T + q0 * 16;
    int64_t pf_l = 0;
    for (int64_t q = q0; q < q1; q++) {
      const lane_info *L = &li[q - q0];
      const int64_t t0 = q * 16, w = sdfg_min(16, T - t0);
      const __mmask16 lm = (__mmask16)(w == 16 ? 0xffffu : (1u << w) - 1u);
      v16 d[8][8], t[8][6], o[6][6];
      const float *mp = mm + co * T + t0;
      /* m_ is read as A*A strided streams, too many for the hardware
       * prefetchers. While channel co is transformed, fetch the next
       * channel's A*A runs (its panels q0 .. q1) in address order, A*A lines
       * per panel: sequential runs per stream keep far more lines in flight
       * than a fixed distance ahead (2.4x on the read pattern alone). */
      if (co + 1 < c1) {
        for (int j = 0; j < A * A; j++) {
          _mm_prefetch((const char *)(pf_row + pf_l * 16), _MM_HINT_T0);
          if (++pf_l == q1 - q0) pf_l = 0, pf_row += C * T;
        }
      }
      for (int k = 0; k < A * A; k++)
        d[k / A][k % A] = (v16)_mm512_maskz_loadu_ps(lm, mp + k * C * T);
      for (int r = 0; r < A; r++) sdfw_at(m, d[r], 1, t[r], 1);
      for (int c = 0; c < m; c++) sdfw_at(m, &t[0][c], 6, &o[0][c], 6);
      for (int r = 0; r < m; r++) {
        __m512 rr[8];
        for (int c = 0; c < 8; c++)
          rr[c] = c < m ? (__m512)(o[r][c] + b) : _mm512_setzero_ps();
        tr8x8x2(rr);
        for (int j = 0; j < 8; j++) {
          const __mmask8 ml = (L->rows[r] >> j & 1) ? L->lcol[j] : 0;
          const __mmask8 mh = (L->rows[r] >> (j + 8) & 1) ? L->lcol[j + 8] : 0;
          float *pl = yc + L->base[j] + r * OW, *ph = yc + L->base[j + 8] + r * OW;
          __m256 lo = _mm512_castps512_ps256(rr[j]);
          __m256 hi = _mm512_extractf32x8_ps(rr[j], 1);
          if (rc) {
            lo = _mm256_add_ps(lo, _mm256_maskz_loadu_ps(ml, rc + L->base[j] + r * OW));
            hi = _mm256_add_ps(hi, _mm256_maskz_loadu_ps(mh, rc + L->base[j + 8] + r * OW));
          }
          _mm256_mask_storeu_ps(pl, ml, lo);
          _mm256_mask_storeu_ps(ph, mh, hi);
        }
      }
    }
  }
}

void sdfw_output_avx512(const sdfw_geom *g, const float *mm, const float *bias,
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
  for (int64_t e = 0; e < n; e += 16) {
    const int r = (int)sdfg_min(16, n - e);
    const __mmask16 mk = (__mmask16)(r == 16 ? 0xffffu : (1u << r) - 1u);
    const __m256i hv = _mm256_maskz_loadu_epi16(mk, src + e);
    const __m512 f = dtype == SDF_F16
                         ? _mm512_cvtph_ps(hv)
                         : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(hv), 16));
    _mm512_mask_storeu_ps(dst + e, mk, f);
  }
}

#define FB_VL 16
#define FB_WIDEN widen16
#define WT v16
#include "winograd_fblock.h"
#undef WT

void sdfw_fblock_avx512(int m, const sdf_tensor *w, int64_t co0, int64_t mb, int64_t ci0,
                        int64_t kc, int64_t ps, float *dst, float *tmp) {
  fblock_dispatch(m, w, co0, mb, ci0, kc, ps, dst, tmp);
}
#endif
