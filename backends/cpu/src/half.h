/*
 * Scalar f16 / bf16 <-> f32 conversions, the one copy the CPU backend uses
 * (common.h for the ops, gemm.h for the packers). Widening is exact;
 * narrowing rounds to nearest, ties to even (as PyTorch and sdflow's
 * TypeScript, backends/float16.ts).
 */
#ifndef SDF_CPU_HALF_H
#define SDF_CPU_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t sdf_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static inline float sdf_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* IEEE half -> float, exact (subnormals, inf and nan included). */
static inline float sdf_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return sdf_bits_f32(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    if (man == 0) return sdf_bits_f32(sign);
    /* subnormal: value = man * 2^-24, exactly representable in f32 */
    float v = (float)man * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return sdf_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/* float -> IEEE half, round to nearest even, overflow to inf, nan kept. */
static inline uint16_t sdf_f32_to_f16(float f) {
  uint32_t x = sdf_f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return (uint16_t)(sign | (ax > 0x7f800000u ? 0x7e00u | ((ax >> 13) & 0x3ffu) : 0x7c00u));
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
  if (ax < 0x38800000u) { /* below the smallest normal half (2^-14): subnormal or zero */
    if (ax < 0x33000000u) return sign; /* < 2^-25: rounds to zero */
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14..24 */
    uint32_t h = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((ax >> 13) - (112u << 10));
  uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
  return (uint16_t)(sign | h);
}

static inline float sdf_bf16_to_f32(uint16_t b) { return sdf_bits_f32((uint32_t)b << 16); }

/* float -> bfloat16, round to nearest even, nan kept quiet. */
static inline uint16_t sdf_f32_to_bf16(float f) {
  uint32_t x = sdf_f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
  uint32_t lsb = (x >> 16) & 1u;
  x += 0x7fffu + lsb;
  return (uint16_t)(x >> 16);
}

#endif /* SDF_CPU_HALF_H */
