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

/* In-register 16x16 transpose of 32-bit lanes: r[i] lane j -> r[j] lane i. Pure data movement, so it serves
 * any 32-bit payload (bf16 pairs through _mm512_castsi512_ps). */
static inline __attribute__((always_inline)) void tr16x16(__m512 *r) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
  }
  /* r[4a+b] now holds, per 128-bit lane L, row group a's column 4L+b
   * elements; interleave the 128-bit lanes of the four row groups. */
  for (int b = 0; b < 4; b++) {
    __m512 x0 = _mm512_shuffle_f32x4(r[b], r[4 + b], 0x88);
    __m512 x1 = _mm512_shuffle_f32x4(r[b], r[4 + b], 0xdd);
    __m512 x2 = _mm512_shuffle_f32x4(r[8 + b], r[12 + b], 0x88);
    __m512 x3 = _mm512_shuffle_f32x4(r[8 + b], r[12 + b], 0xdd);
    t[b] = _mm512_shuffle_f32x4(x0, x2, 0x88);
    t[8 + b] = _mm512_shuffle_f32x4(x0, x2, 0xdd);
    t[4 + b] = _mm512_shuffle_f32x4(x1, x3, 0x88);
    t[12 + b] = _mm512_shuffle_f32x4(x1, x3, 0xdd);
  }
  for (int i = 0; i < 16; i++) r[i] = t[i];
}

#endif
