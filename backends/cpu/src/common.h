/*
 * Helpers shared by the CPU backend's core and kernels: dtype conversions,
 * chunk ranges, aligned allocation, error formatting.
 */
#ifndef SDF_CPU_COMMON_H
#define SDF_CPU_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel.h"

#define SDF_ALIGN 64

#if defined(__GNUC__)
#define SDF_INLINE static inline __attribute__((always_inline))
#else
#define SDF_INLINE static inline
#endif

/* ---- dtype conversions (scalar, round-to-nearest-even) ----------------- */

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

/* Bytes per element of a plan dtype, 0 if unknown. */
static inline size_t sdf_dtype_size(int32_t dtype) {
  switch (dtype) {
  case SDF_F32:
  case SDF_I32:
    return 4;
  case SDF_F16:
  case SDF_BF16:
    return 2;
  default:
    return 0;
  }
}

static inline const char *sdf_dtype_name(int32_t dtype) {
  switch (dtype) {
  case SDF_F32:
    return "f32";
  case SDF_F16:
    return "f16";
  case SDF_BF16:
    return "bf16";
  case SDF_I32:
    return "i32";
  default:
    return "?";
  }
}

/* Element i of a float tensor of any float dtype, as f32. */
static inline float sdf_load_float(const void *base, int32_t dtype, int64_t i) {
  switch (dtype) {
  case SDF_F16:
    return sdf_f16_to_f32(((const uint16_t *)base)[i]);
  case SDF_BF16:
    return sdf_bf16_to_f32(((const uint16_t *)base)[i]);
  case SDF_I32:
    return (float)((const int32_t *)base)[i];
  default:
    return ((const float *)base)[i];
  }
}

/* ---- chunks ------------------------------------------------------------ */

/* Splits [0, total) into n_chunks near-equal ranges; writes chunk's range. */
static inline void sdf_chunk_range(int64_t total, int64_t n_chunks, int64_t chunk, int64_t *begin, int64_t *end) {
  int64_t base = total / n_chunks, extra = total % n_chunks;
  *begin = chunk * base + (chunk < extra ? chunk : extra);
  *end = *begin + base + (chunk < extra ? 1 : 0);
}

/* Number of chunks for `total` units of work of `unit_cost` each so that a
 * chunk holds about `target` cost; at least 1, at most total. */
static inline int64_t sdf_chunks_for(int64_t total, int64_t unit_cost, int64_t target) {
  if (total <= 0) return 1;
  if (unit_cost < 1) unit_cost = 1;
  int64_t per = target / unit_cost;
  if (per < 1) per = 1;
  int64_t n = (total + per - 1) / per;
  return n < 1 ? 1 : n;
}

/* ---- memory ------------------------------------------------------------ */

/* 64-byte aligned allocation; NULL on failure or zero size overflow. */
static inline void *sdf_aligned_alloc(size_t bytes) {
  void *p = NULL;
  if (bytes == 0) bytes = SDF_ALIGN;
  if (posix_memalign(&p, SDF_ALIGN, bytes) != 0) return NULL;
  return p;
}

static inline void sdf_aligned_free(void *p) { free(p); }

/* ---- errors ------------------------------------------------------------ */

/* Sets this thread's sdf_last_error message (printf-style). */
void sdf_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes a kernel prepare() error into (err, err_len) and returns code. */
static inline int32_t sdf_fail(char *err, size_t err_len, int32_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline int32_t sdf_fail(char *err, size_t err_len, int32_t code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, err_len, fmt, ap);
  va_end(ap);
  return code;
}

/* "[1, 320, 64, 64]" into buf. */
static inline const char *sdf_shape_str(const sdf_tensor *t, char *buf, size_t len) {
  size_t o = 0;
  o += (size_t)snprintf(buf + o, len - o, "[");
  for (int i = 0; i < t->ndim && o < len; i++)
    o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
  if (o < len) snprintf(buf + o, len - o, "]");
  return buf;
}

/* Product of dims [from, to) of t. */
static inline int64_t sdf_dims_prod(const sdf_tensor *t, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++) p *= t->dims[i];
  return p;
}

/* ---- prepare() validation helpers (message prefixed with `name: `) ---- */

#define SDF_ELEMS_PER_CHUNK 65536 /* elementwise ops: ~256 KiB of f32 per chunk */

/* n_in in [min_in, max_in] and n_out == n_out_want. */
static inline int32_t sdf_check_arity(const sdf_op *op, const char *name, int min_in, int max_in, int n_out_want,
                                      char *err, size_t len) {
  if (op->n_in < min_in || op->n_in > max_in) {
    if (min_in == max_in)
      return sdf_fail(err, len, SDF_E_INVALID, "%s: expects %d inputs, got %d", name, min_in, op->n_in);
    return sdf_fail(err, len, SDF_E_INVALID, "%s: expects %d to %d inputs, got %d", name, min_in, max_in, op->n_in);
  }
  if (op->n_out != n_out_want)
    return sdf_fail(err, len, SDF_E_INVALID, "%s: expects %d output%s, got %d", name, n_out_want,
                    n_out_want == 1 ? "" : "s", op->n_out);
  return SDF_OK;
}

/* t has dtype f32 (`what` names it in the message: "input 0", "output"). */
static inline int32_t sdf_check_f32(const sdf_tensor *t, const char *name, const char *what, char *err,
                                    size_t len) {
  if (t->dtype != SDF_F32)
    return sdf_fail(err, len, SDF_E_UNSUPPORTED, "%s: %s must be f32, got %s", name, what, sdf_dtype_name(t->dtype));
  return SDF_OK;
}

/* t is a float dtype (f32, f16, bf16). */
static inline int32_t sdf_check_float(const sdf_tensor *t, const char *name, const char *what, char *err,
                                      size_t len) {
  if (t->dtype != SDF_F32 && t->dtype != SDF_F16 && t->dtype != SDF_BF16)
    return sdf_fail(err, len, SDF_E_UNSUPPORTED, "%s: %s must be f32, f16 or bf16, got %s", name, what,
                    sdf_dtype_name(t->dtype));
  return SDF_OK;
}

static inline int sdf_same_shape(const sdf_tensor *a, const sdf_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

/* Requires n_p >= need (the op's int params). */
static inline int32_t sdf_check_params(const sdf_op *op, const char *name, int need_p, int need_f, char *err,
                                       size_t len) {
  if (op->n_p < need_p)
    return sdf_fail(err, len, SDF_E_INVALID, "%s: expects %d int params, got %d", name, need_p, op->n_p);
  if (op->n_f < need_f)
    return sdf_fail(err, len, SDF_E_INVALID, "%s: expects %d float params, got %d", name, need_f, op->n_f);
  return SDF_OK;
}

#define SDF_TRY(expr)                                                                                                  \
  do {                                                                                                                 \
    int32_t rc_ = (expr);                                                                                              \
    if (rc_ != SDF_OK) return rc_;                                                                                     \
  } while (0)

#endif
