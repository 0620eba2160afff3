/*
 * AVX-512 dequantization of Q8_0, Q4_0 and Q4_1 blocks: the same f32
 * products (and, for Q4_1, separate adds, never fused) as quant.c, so
 * the results are bit-identical to the scalar path.
 */
#include <immintrin.h>
#include <string.h>

#include "half.h"
#include "quant.h"

static inline __m512 f16_bcast(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return _mm512_set1_ps(sdf_f16_to_f32(h));
}

/* 16 nibbles (low or high halves of 16 bytes) as int32 lanes. */
static inline __m512i nibbles(const uint8_t *q, int high) {
  const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)q));
  return high ? _mm512_srli_epi32(b, 4) : _mm512_and_si512(b, _mm512_set1_epi32(15));
}

int sdfq_blocks_avx512(int32_t dtype, float *dst, const uint8_t *src, int64_t nb) {
  switch (dtype) {
  case SDF_Q8_0:
    for (int64_t b = 0; b < nb; b++, src += 34, dst += 32) {
      const __m512 d = f16_bcast(src);
      const __m512i q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(src + 2)));
      const __m512i q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(src + 18)));
      _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d));
      _mm512_storeu_ps(dst + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d));
    }
    return 1;
  case SDF_Q4_0: {
    const __m512i eight = _mm512_set1_epi32(8);
    for (int64_t b = 0; b < nb; b++, src += 18, dst += 32) {
      const __m512 d = f16_bcast(src);
      const __m512i lo = _mm512_sub_epi32(nibbles(src + 2, 0), eight);
      const __m512i hi = _mm512_sub_epi32(nibbles(src + 2, 1), eight);
      _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d));
      _mm512_storeu_ps(dst + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d));
    }
    return 1;
  }
  case SDF_Q4_1:
    for (int64_t b = 0; b < nb; b++, src += 20, dst += 32) {
      const __m512 d = f16_bcast(src), m = f16_bcast(src + 2);
      const __m512 lo = _mm512_mul_ps(_mm512_cvtepi32_ps(nibbles(src + 4, 0)), d);
      const __m512 hi = _mm512_mul_ps(_mm512_cvtepi32_ps(nibbles(src + 4, 1)), d);
      _mm512_storeu_ps(dst, _mm512_add_ps(lo, m));
      _mm512_storeu_ps(dst + 16, _mm512_add_ps(hi, m));
    }
    return 1;
  default:
    return 0;
  }
}
