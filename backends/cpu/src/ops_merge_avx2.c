/* MERGE_LOW_RANK's rounding step with AVX2 + F16C (ops_merge.h): eight
 * elements at a time, the tail through the scalar version. f16: the F16C
 * conversions are IEEE round-to-nearest-even, as sdf_f32_to_f16; bf16: the
 * same bias-and-truncate as sdf_f32_to_bf16, NaNs kept quiet by a blend. */
#include <immintrin.h>

#include "common.h"
#include "ops_merge.h"

static inline __m256 delta8(const float *c, const float *d, int64_t j) {
  __m256 v = _mm256_loadu_ps(c + j);
  return d ? _mm256_add_ps(v, _mm256_loadu_ps(d + j)) : v;
}

static inline __m128i bf16_round8(__m256 v) {
  const __m256i x = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
  const __m256 isnan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  r = _mm256_blendv_epi8(r, quiet, _mm256_castps_si256(isnan));
  /* 32-bit lanes holding 16-bit values -> 8 packed u16 (packus keeps them: all < 65536). */
  r = _mm256_and_si256(r, _mm256_set1_epi32(0xffff));
  return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}

void sdf_merge_round_avx2(int32_t dtype, const void *w, const float *c, const float *d, void *y, int64_t n) {
  int64_t j = 0;
  if (dtype == SDF_F32) {
    const float *wf = (const float *)w;
    float *yf = (float *)y;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(yf + j, _mm256_add_ps(_mm256_loadu_ps(wf + j), delta8(c, d, j)));
  } else if (dtype == SDF_F16) {
    const uint16_t *wh = (const uint16_t *)w;
    uint16_t *yh = (uint16_t *)y;
    for (; j + 8 <= n; j += 8) {
      const __m256 wv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wh + j)));
      _mm_storeu_si128((__m128i *)(yh + j),
                       _mm256_cvtps_ph(_mm256_add_ps(wv, delta8(c, d, j)), _MM_FROUND_TO_NEAREST_INT));
    }
  } else {
    const uint16_t *wh = (const uint16_t *)w;
    uint16_t *yh = (uint16_t *)y;
    for (; j + 8 <= n; j += 8) {
      const __m128i raw = _mm_loadu_si128((const __m128i *)(wh + j));
      const __m256 wv = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
      _mm_storeu_si128((__m128i *)(yh + j), bf16_round8(_mm256_add_ps(wv, delta8(c, d, j))));
    }
  }
  if (j < n) {
    const size_t es = dtype == SDF_F32 ? 4 : 2;
    sdf_merge_round_scalar(dtype, (const char *)w + j * es, c + j, d ? d + j : NULL, (char *)y + j * es, n - j);
  }
}
