/* AVX-512 GEMM micro-kernel: 12 x 32 register tile (2 A panels x 2 B panels),
 * 24 zmm accumulators, A broadcast from memory, f32 FMA. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "gemm.h"

static void ukr_avx512_12x32(int64_t kc, const float *a0, const float *a1,
                             const float *b0, const float *b1, float *c,
                             int64_t ldc, int mr, int nr, int accumulate) {
  __m512 acc[12][2];
#pragma GCC unroll 12
  for (int i = 0; i < 12; i++) {
    acc[i][0] = _mm512_setzero_ps();
    acc[i][1] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < kc; k++) {
    const __m512 bv0 = _mm512_loadu_ps(b0 + k * 16);
    const __m512 bv1 = _mm512_loadu_ps(b1 + k * 16);
    const float *pa0 = a0 + k * 6, *pa1 = a1 + k * 6;
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
      const __m512 av = _mm512_set1_ps(pa0[i]);
      acc[i][0] = _mm512_fmadd_ps(av, bv0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(av, bv1, acc[i][1]);
    }
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
      const __m512 av = _mm512_set1_ps(pa1[i]);
      acc[6 + i][0] = _mm512_fmadd_ps(av, bv0, acc[6 + i][0]);
      acc[6 + i][1] = _mm512_fmadd_ps(av, bv1, acc[6 + i][1]);
    }
  }
  if (mr == 12 && nr == 32) {
    if (accumulate) {
#pragma GCC unroll 12
      for (int i = 0; i < 12; i++) {
        float *ci = c + i * ldc;
        _mm512_storeu_ps(ci, _mm512_add_ps(_mm512_loadu_ps(ci), acc[i][0]));
        _mm512_storeu_ps(ci + 16,
                         _mm512_add_ps(_mm512_loadu_ps(ci + 16), acc[i][1]));
      }
    } else {
#pragma GCC unroll 12
      for (int i = 0; i < 12; i++) {
        _mm512_storeu_ps(c + i * ldc, acc[i][0]);
        _mm512_storeu_ps(c + i * ldc + 16, acc[i][1]);
      }
    }
    return;
  }
  const __mmask16 m0 =
      nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1u);
  const __mmask16 m1 =
      nr >= 32 ? (__mmask16)0xffff
               : (nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u) : 0);
#pragma GCC unroll 12
  for (int i = 0; i < 12; i++) {
    if (i >= mr) break;
    float *ci = c + i * ldc;
    __m512 v0 = acc[i][0], v1 = acc[i][1];
    if (accumulate) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, ci));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, ci + 16));
    }
    _mm512_mask_storeu_ps(ci, m0, v0);
    _mm512_mask_storeu_ps(ci + 16, m1, v1);
  }
}

const sdfg_ukr sdfg_ukr_avx512 = {2, 2, ukr_avx512_12x32};
#endif
