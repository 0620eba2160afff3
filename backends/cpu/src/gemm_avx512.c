/* AVX-512 GEMM micro-kernels, f32 FMA, A broadcast from memory:
 *   12 x 32 (2 A panels x 2 B panels) main tile,
 *   24 x 16 (4 x 1) for C blocks at most 16 columns wide (few Winograd tiles),
 *    6 x 64 (1 x 4) for C blocks at most 6 rows high (e.g. Co = 3).
 * All use 24 zmm accumulators. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "gemm.h"

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
