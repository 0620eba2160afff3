/* AVX-512 GEMM micro-kernels, f32 FMA, A broadcast from memory:
 *   12 x 32 (2 A panels x 2 B panels) main tile,
 *   24 x 16 (4 x 1) for C blocks at most 16 columns wide (few Winograd tiles),
 *    6 x 64 (1 x 4) for C blocks at most 6 rows high (e.g. Co = 3).
 * All use 24 zmm accumulators. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "gemm.h"
#include "transpose_avx512.h"

#define AI static inline __attribute__((always_inline))

AI __mmask16 col_mask(int nr, int q) {
  int n = nr - 16 * q;
  return n >= 16 ? (__mmask16)0xffff : (n > 0 ? (__mmask16)((1u << n) - 1u) : 0);
}

AI void ukr_body(const int AP, const int BP, int64_t kc, const float *const *a,
                 const float *const *b, float *c, int64_t ldc, int mr, int nr,
                 int accumulate) {
  __m512 acc[24][4];
  const float *pa[4], *pb[4];
#pragma GCC unroll 4
  for (int p = 0; p < AP; p++) pa[p] = a[p];
#pragma GCC unroll 4
  for (int q = 0; q < BP; q++) pb[q] = b[q];
#pragma GCC unroll 24
  for (int i = 0; i < AP * 6; i++)
#pragma GCC unroll 4
    for (int q = 0; q < BP; q++) acc[i][q] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    __m512 bv[4];
#pragma GCC unroll 4
    for (int q = 0; q < BP; q++) bv[q] = _mm512_loadu_ps(pb[q] + k * 16);
    /* A panels stream from memory when B is narrow (Winograd GEMMs with few
     * tiles): keep ~1.5 KB of each in flight. */
#pragma GCC unroll 4
    for (int p = 0; p < AP; p++)
      _mm_prefetch((const char *)(pa[p] + k * 6 + 384), _MM_HINT_T0);
#pragma GCC unroll 4
    for (int p = 0; p < AP; p++) {
#pragma GCC unroll 6
      for (int i = 0; i < 6; i++) {
        const __m512 av = _mm512_set1_ps(pa[p][k * 6 + i]);
#pragma GCC unroll 4
        for (int q = 0; q < BP; q++)
          acc[p * 6 + i][q] = _mm512_fmadd_ps(av, bv[q], acc[p * 6 + i][q]);
      }
    }
  }
  if (mr == AP * 6 && nr == BP * 16) {
#pragma GCC unroll 24
    for (int i = 0; i < AP * 6; i++) {
      float *ci = c + i * ldc;
#pragma GCC unroll 4
      for (int q = 0; q < BP; q++) {
        __m512 v = acc[i][q];
        if (accumulate) v = _mm512_add_ps(v, _mm512_loadu_ps(ci + 16 * q));
        _mm512_storeu_ps(ci + 16 * q, v);
      }
    }
    return;
  }
#pragma GCC unroll 24
  for (int i = 0; i < AP * 6; i++) {
    if (i >= mr) break;
    float *ci = c + i * ldc;
#pragma GCC unroll 4
    for (int q = 0; q < BP; q++) {
      const __mmask16 m = col_mask(nr, q);
      __m512 v = acc[i][q];
      if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, ci + 16 * q));
      _mm512_mask_storeu_ps(ci + 16 * q, m, v);
    }
  }
}

static void ukr_12x32(int64_t kc, const float *const *a, const float *const *b,
                      float *c, int64_t ldc, int mr, int nr, int accumulate) {
  ukr_body(2, 2, kc, a, b, c, ldc, mr, nr, accumulate);
}
static void ukr_24x16(int64_t kc, const float *const *a, const float *const *b,
                      float *c, int64_t ldc, int mr, int nr, int accumulate) {
  ukr_body(4, 1, kc, a, b, c, ldc, mr, nr, accumulate);
}
static void ukr_6x64(int64_t kc, const float *const *a, const float *const *b,
                     float *c, int64_t ldc, int mr, int nr, int accumulate) {
  ukr_body(1, 4, kc, a, b, c, ldc, mr, nr, accumulate);
}

const sdfg_kernels sdfg_kernels_avx512 = {
    {2, 2, ukr_12x32}, {4, 1, ukr_24x16}, {1, 4, ukr_6x64}};
#endif

/* ---- AVX-512 packing (same format as the portable packers in gemm.c) ---- */
#if defined(__x86_64__) || defined(_M_X64)
/* 16 floats of row `src` from element i, widened from the tensor dtype;
 * n < 16 loads only the first n (rest zero). */
AI __m512 load16(const void *src, int32_t dtype, int64_t i, int n) {
  const __mmask16 m = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
  if (dtype == SDF_F32) return _mm512_maskz_loadu_ps(m, (const float *)src + i);
  const __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)src + i);
  if (dtype == SDF_F16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

void sdfg_pack_bt_avx512(float *dst, const void *src, int32_t dtype, int64_t ld,
                         int64_t N, int64_t k0, int64_t kc) {
  const size_t es = dtype == SDF_F32 ? 4 : 2;
  for (int64_t q0 = 0; q0 < N; q0 += 16) {
    const int64_t w = sdfg_min(16, N - q0);
    float *d = dst + q0 * kc;
    for (int64_t kb = 0; kb < kc; kb += 16) {
      const int n = (int)sdfg_min(16, kc - kb);
      __m512 r[16];
      for (int j = 0; j < 16; j++)
        r[j] = j < w ? load16((const char *)src + ((q0 + j) * ld + k0) * es, dtype, kb, n)
                     : _mm512_setzero_ps();
      tr16x16(r);
      const __mmask16 wm = (__mmask16)(w >= 16 ? 0xffffu : (1u << w) - 1u);
      for (int k = 0; k < n; k++) _mm512_mask_storeu_ps(d + (kb + k) * w, wm, r[k]);
    }
  }
}


/* 6-row panels: rows as 8 zmm (2 zero), 16 k at a time; after the two 8x8
 * transposes, half h of vector c holds k = 8h + c for the 8 rows, of which
 * the first h_panel are stored. */
void sdfg_pack_a_avx512(float *dst, const void *src, int32_t dtype, int64_t ld,
                        int64_t M, int64_t k0, int64_t kc) {
  const size_t es = dtype == SDF_F32 ? 4 : 2;
  for (int64_t p0 = 0; p0 < M; p0 += 6) {
    const int64_t h = sdfg_min(6, M - p0);
    float *d = dst + p0 * kc;
    const __mmask8 hm = (__mmask8)((1u << h) - 1u);
    for (int64_t kb = 0; kb < kc; kb += 16) {
      const int n = (int)sdfg_min(16, kc - kb);
      __m512 r[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; i++)
        r[i] = i < h ? load16((const char *)src + ((p0 + i) * ld + k0) * es, dtype, kb, n)
                     : _mm512_setzero_ps();
      tr8x8x2(r);
      if (n == 16) {
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
          _mm256_mask_storeu_ps(d + (kb + c) * h, hm, _mm512_castps512_ps256(r[c]));
          _mm256_mask_storeu_ps(d + (kb + 8 + c) * h, hm, _mm512_extractf32x8_ps(r[c], 1));
        }
      } else {
        for (int c = 0; c < 8; c++) {
          if (c < n)
            _mm256_mask_storeu_ps(d + (kb + c) * h, hm, _mm512_castps512_ps256(r[c]));
          if (8 + c < n)
            _mm256_mask_storeu_ps(d + (kb + 8 + c) * h, hm, _mm512_extractf32x8_ps(r[c], 1));
        }
      }
    }
  }
}
#endif
