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

/* The 6-bit scale and minimum j of a q4_K / q5_K block's 12 scale bytes. */
static inline void scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

/* One 256-element K-quant block. */
static void kblock(int32_t dtype, float *y, const uint8_t *b) {
  switch (dtype) {
  case SDF_Q2_K: { /* scales[16], qs[64], d, dmin */
    const float d = f16_at(b + 80), min = f16_at(b + 82);
    const uint8_t *sc = b, *q = b + 16;
    for (int n = 0, is = 0; n < 256; n += 128, q += 32)
      for (int shift = 0; shift < 8; shift += 2)
        for (int half = 0; half < 2; half++, is++) {
          const float dl = d * (float)(sc[is] & 0xF), ml = min * (float)(sc[is] >> 4);
          for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
        }
    break;
  }
  case SDF_Q3_K: { /* hmask[32], qs[64], scales[12], d */
    const float d = f16_at(b + 108);
    const uint8_t *hm = b, *q = b + 32, *s = b + 96;
    int8_t scales[16];
    for (int j = 0; j < 16; j++) {
      /* 6-bit scales: low 4 bits from bytes 0..7 (nibble j / 8), high 2 bits from bytes 8..11 */
      const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
      const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
      scales[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
    uint8_t m = 1;
    for (int n = 0, is = 0; n < 256; n += 128, q += 32)
      for (int shift = 0; shift < 8; shift += 2, m <<= 1)
        for (int half = 0; half < 2; half++, is++) {
          const float dl = d * (float)scales[is];
          for (int l = 0; l < 16; l++) {
            const int k = l + 16 * half;
            *y++ = dl * (float)(((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4));
          }
        }
    break;
  }
  case SDF_Q4_K:
  case SDF_Q5_K: { /* d, dmin, scales[12], (q5_K: qh[32]), qs[128] */
    const int five = dtype == SDF_Q5_K;
    const float d = f16_at(b), min = f16_at(b + 2);
    const uint8_t *sc = b + 4, *qh = b + 16, *q = b + (five ? 48 : 16);
    for (int j = 0, is = 0; j < 256; j += 64, q += 32, is += 2) {
      int s1, m1, s2, m2;
      scale_min_k4(is, sc, &s1, &m1);
      scale_min_k4(is + 1, sc, &s2, &m2);
      const float d1 = d * (float)s1, dm1 = min * (float)m1, d2 = d * (float)s2, dm2 = min * (float)m2;
      const int u1 = 1 << (j / 32), u2 = 2 << (j / 32);
      for (int l = 0; l < 32; l++) *y++ = d1 * (float)((q[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - dm1;
      for (int l = 0; l < 32; l++) *y++ = d2 * (float)((q[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - dm2;
    }
    break;
  }
  case SDF_Q6_K: { /* ql[128], qh[64], scales[16] (int8), d */
    const float d = f16_at(b + 208);
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
      for (int l = 0; l < 32; l++) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * (float)sc[is] * (float)q1;
        y[l + 32] = d * (float)sc[is + 2] * (float)q2;
        y[l + 64] = d * (float)sc[is + 4] * (float)q3;
        y[l + 96] = d * (float)sc[is + 6] * (float)q4;
      }
    break;
  }
  default:
    for (int j = 0; j < 256; j++) y[j] = 0.0f;
  }
}

void sdfq_blocks_scalar(int32_t dtype, float *dst, const uint8_t *src, int64_t nb) {
  const size_t bs = sdfq_block_bytes(dtype);
  if (dtype >= SDF_Q2_K) {
    for (int64_t b = 0; b < nb; b++) kblock(dtype, dst + b * 256, src + b * bs);
    return;
  }
  for (int64_t b = 0; b < nb; b++, src += bs, dst += 32) {
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
  const int64_t be = sdfq_block_elems(dtype);
  const uint8_t *p = (const uint8_t *)base;
  int64_t b = e0 / be;
  const int64_t head = e0 % be;
  float tmp[SDFQ_MAX_BLOCK];
  if (head) { /* a partial first block */
    blocks(dtype, tmp, p + (size_t)b * bs, 1);
    const int64_t take = n < be - head ? n : be - head;
    memcpy(dst, tmp + head, (size_t)take * sizeof(float));
    dst += take;
    n -= take;
    b++;
  }
  const int64_t whole = n / be;
  if (whole) blocks(dtype, dst, p + (size_t)b * bs, whole);
  dst += whole * be;
  n -= whole * be;
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
