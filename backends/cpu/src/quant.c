/*
 * Scalar dequantization of ggml's blocks (formulas in sdflow_backend.h) and
 * the range helper every kernel uses; the AVX-512 file speeds up the
 * common formats with the same arithmetic, so results are identical.
 */
#include "quant.h"

#include <string.h>

#include "half.h"
#include "kernel.h"

static inline float f16_at(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return sdf_f16_to_f32(h);
}

void sdfq_blocks_scalar(int32_t dtype, float *dst, const uint8_t *src, int64_t nb) {
  const size_t bs = sdfq_block_bytes(dtype);
  for (int64_t b = 0; b < nb; b++, src += bs, dst += SDFQ_BLOCK) {
    const float d = f16_at(src);
    switch (dtype) {
    case SDF_Q8_0: {
      const int8_t *q = (const int8_t *)(src + 2);
      for (int j = 0; j < 32; j++) dst[j] = (float)q[j] * d;
      break;
    }
    case SDF_Q4_0: {
      const uint8_t *q = src + 2;
      for (int j = 0; j < 16; j++) {
        dst[j] = (float)((q[j] & 15) - 8) * d;
        dst[j + 16] = (float)((q[j] >> 4) - 8) * d;
      }
      break;
    }
    case SDF_Q4_1: {
      const float m = f16_at(src + 2);
      const uint8_t *q = src + 4;
      for (int j = 0; j < 16; j++) {
        dst[j] = (float)(q[j] & 15) * d + m;
        dst[j + 16] = (float)(q[j] >> 4) * d + m;
      }
      break;
    }
    case SDF_Q5_0:
    case SDF_Q5_1: {
      const int one = dtype == SDF_Q5_1;
      const float m = one ? f16_at(src + 2) : 0.0f;
      uint32_t qh;
      memcpy(&qh, src + (one ? 4 : 2), 4);
      const uint8_t *q = src + (one ? 8 : 6);
      for (int j = 0; j < 16; j++) {
        const int lo = (q[j] & 15) | (int)(((qh >> j) & 1u) << 4);
        const int hi = (q[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        if (one) {
          dst[j] = (float)lo * d + m;
          dst[j + 16] = (float)hi * d + m;
        } else {
          dst[j] = (float)(lo - 16) * d;
          dst[j + 16] = (float)(hi - 16) * d;
        }
      }
      break;
    }
    default:
      for (int j = 0; j < 32; j++) dst[j] = 0.0f;
      break;
    }
  }
}

static void blocks(int32_t dtype, float *dst, const uint8_t *src, int64_t nb) {
#if defined(__x86_64__) || defined(_M_X64)
  if (sdf_current_isa == SDF_ISA_AVX512 && sdfq_blocks_avx512(dtype, dst, src, nb)) return;
#endif
  sdfq_blocks_scalar(dtype, dst, src, nb);
}

void sdfq_to_f32(float *dst, const void *base, int32_t dtype, int64_t e0, int64_t n) {
  if (n <= 0) return;
  const size_t bs = sdfq_block_bytes(dtype);
  const uint8_t *p = (const uint8_t *)base;
  int64_t b = e0 / SDFQ_BLOCK;
  const int64_t head = e0 % SDFQ_BLOCK;
  float tmp[SDFQ_BLOCK];
  if (head) { /* a partial first block */
    blocks(dtype, tmp, p + (size_t)b * bs, 1);
    const int64_t take = n < SDFQ_BLOCK - head ? n : SDFQ_BLOCK - head;
    memcpy(dst, tmp + head, (size_t)take * sizeof(float));
    dst += take;
    n -= take;
    b++;
  }
  const int64_t whole = n / SDFQ_BLOCK;
  if (whole) blocks(dtype, dst, p + (size_t)b * bs, whole);
  dst += whole * SDFQ_BLOCK;
  n -= whole * SDFQ_BLOCK;
  b += whole;
  if (n) { /* a partial last block */
    blocks(dtype, tmp, p + (size_t)b * bs, 1);
    memcpy(dst, tmp, (size_t)n * sizeof(float));
  }
}

float sdfq_load1(const void *base, int32_t dtype, int64_t i) {
  float v;
  sdfq_to_f32(&v, base, dtype, i, 1);
  return v;
}
