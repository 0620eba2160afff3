/* AVX2 + FMA GEMM micro-kernel: 6 x 16 register tile, 12 ymm accumulators. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "gemm.h"

static void ukr_avx2_6x16(int64_t kc, const float *const *a,
                          const float *const *b, float *c, int64_t ldc,
                          int mr, int nr, int accumulate) {
  const float *a0 = a[0], *b0 = b[0];
  __m256 acc[6][2];
#pragma GCC unroll 6
  for (int i = 0; i < 6; i++) {
    acc[i][0] = _mm256_setzero_ps();
    acc[i][1] = _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kc; k++) {
    const __m256 bv0 = _mm256_loadu_ps(b0 + k * 16);
    const __m256 bv1 = _mm256_loadu_ps(b0 + k * 16 + 8);
    const float *pa = a0 + k * 6;
    /* A streams from memory when B is narrow (few Winograd tiles). */
    _mm_prefetch((const char *)(pa + 384), _MM_HINT_T0);
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
      const __m256 av = _mm256_broadcast_ss(pa + i);
      acc[i][0] = _mm256_fmadd_ps(av, bv0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(av, bv1, acc[i][1]);
    }
  }
  if (mr == 6 && nr == 16) {
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
      float *ci = c + i * ldc;
      __m256 v0 = acc[i][0], v1 = acc[i][1];
      if (accumulate) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(ci));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(ci + 8));
      }
      _mm256_storeu_ps(ci, v0);
      _mm256_storeu_ps(ci + 8, v1);
    }
    return;
  }
  float tmp[6][16];
#pragma GCC unroll 6
  for (int i = 0; i < 6; i++) {
    _mm256_storeu_ps(tmp[i], acc[i][0]);
    _mm256_storeu_ps(tmp[i] + 8, acc[i][1]);
  }
  for (int i = 0; i < mr; i++) {
    float *ci = c + i * ldc;
    if (accumulate)
      for (int j = 0; j < nr; j++) ci[j] += tmp[i][j];
    else
      for (int j = 0; j < nr; j++) ci[j] = tmp[i][j];
  }
}

const sdfg_kernels sdfg_kernels_avx2 = {{1, 1, ukr_avx2_6x16}, {0, 0, NULL}, {0, 0, NULL}};
#endif
