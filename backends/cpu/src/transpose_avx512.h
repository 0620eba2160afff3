/*
 * AVX-512 register transposes shared by the GEMM packers and the Winograd
 * transforms. Include only from files compiled with AVX-512 flags.
 */
#ifndef SDF_CPU_TRANSPOSE_AVX512_H
#define SDF_CPU_TRANSPOSE_AVX512_H

#include <immintrin.h>

/* Two independent 8x8 transposes, one per 256-bit half. */
static inline __attribute__((always_inline)) void tr8x8x2(__m512 *r) {
  __m512 t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; i++) {
    u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
  }
  const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25,
                                       26, 27);
  const __m512i hi = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28,
                                       29, 30, 31);
  for (int i = 0; i < 4; i++) {
    r[i] = _mm512_permutex2var_ps(u[i], lo, u[4 + i]);
    r[4 + i] = _mm512_permutex2var_ps(u[i], hi, u[4 + i]);
  }
}

#endif
