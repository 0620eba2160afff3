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

#include "half.h"
#include "kernel.h"
#include "quant.h"

#define SDF_ALIGN 64

#if defined(__GNUC__)
#define SDF_INLINE static inline __attribute__((always_inline))
#else
#define SDF_INLINE static inline
#endif

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

/* Whether a plan may declare dtype (element-sized or block-quantized). */
static inline int sdf_dtype_known(int32_t dtype) { return sdf_dtype_size(dtype) != 0 || sdfq_is_quant(dtype); }

/* Bytes of numel elements of dtype (numel whole blocks if quantized). */
static inline uint64_t sdf_dtype_bytes(int32_t dtype, int64_t numel) {
  return sdfq_is_quant(dtype) ? sdfq_bytes(dtype, numel) : (uint64_t)numel * sdf_dtype_size(dtype);
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
  case SDF_Q4_0:
    return "q4_0";
  case SDF_Q4_1:
    return "q4_1";
  case SDF_Q5_0:
    return "q5_0";
  case SDF_Q5_1:
    return "q5_1";
  case SDF_Q8_0:
    return "q8_0";
  case SDF_Q2_K:
    return "q2_K";
  case SDF_Q3_K:
    return "q3_K";
  case SDF_Q4_K:
    return "q4_K";
  case SDF_Q5_K:
    return "q5_K";
  case SDF_Q6_K:
    return "q6_K";
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
  case SDF_F32:
    return ((const float *)base)[i];
  default:
    return sdfq_load1(base, dtype, i);
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

/* Sets this thread's sdf_last_error message (printf-style) and its
 * sdf_last_status to SDF_E_INVALID (call sdf_set_status after it for another
 * code). */
void sdf_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Sets this thread's sdf_last_status (the code of a call that returns NULL). */
void sdf_set_status(int32_t code);

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
