/*
 * Vector primitives shared by the attention, bmm, softmax, norm and
 * elementwise kernels, one implementation per ISA (simd.c = portable,
 * simd_avx2.c, simd_avx512.c) behind one dispatch point: sdf_simd().
 * All pointers are unaligned-safe; leading dimensions are in elements.
 */
#ifndef SDF_CPU_SIMD_H
#define SDF_CPU_SIMD_H

#include <stdint.h>

#include "kernel.h"

typedef struct sdf_simd_ops {
  /* s[i*lds + j] = scale * dot(q[i*ldq .. +d], k[j*ldk .. +d]), i < nq, j < nk */
  void (*qk_block)(const float *q, int64_t ldq, int nq, const float *k, int64_t ldk, int nk, int d, float scale,
                   float *s, int64_t lds);
  /* o[i*ldo + c] += sum_j p[i*ldp + j] * v[j*ldv + c], i < nq, j < nk, c < d */
  void (*pv_block)(const float *p, int64_t ldp, int nq, int nk, const float *v, int64_t ldv, int d, float *o,
                   int64_t ldo);
  /* x[i] = exp(x[i] - m); returns the sum (in float) */
  float (*exp_sub_sum)(float *x, int64_t n, float m);
  /* max of x[0..n), n >= 1 */
  float (*max)(const float *x, int64_t n);
  /* y[i] = x[i] * sigmoid(alpha * x[i])  (SiLU for alpha = 1) */
  void (*x_sigmoid)(float *y, const float *x, int64_t n, float alpha);
  /* sum of x in double */
  double (*sum_f64)(const float *x, int64_t n);
  /* sum of (x - mean)^2 in double */
  double (*sqdev_f64)(const float *x, int64_t n, double mean);
  /* dtype conversions to f32 */
  void (*f16_to_f32)(float *y, const uint16_t *x, int64_t n);
  void (*bf16_to_f32)(float *y, const uint16_t *x, int64_t n);
  /* y[i] = a[i] * gelu(x[i]) with the exact (erf) GELU; a == NULL means a[i] = 1 (UNARY gelu, GEGLU) */
  void (*gelu_mul)(float *y, const float *a, const float *x, int64_t n);
} sdf_simd_ops;

extern const sdf_simd_ops sdf_simd_scalar;
#if defined(__x86_64__)
extern const sdf_simd_ops sdf_simd_avx2;
extern const sdf_simd_ops sdf_simd_avx512;
#endif

/* The primitives for the ISA chosen by sdf_init. */
static inline const sdf_simd_ops *sdf_simd(void) {
#if defined(__x86_64__)
  if (sdf_current_isa == SDF_ISA_AVX512) return &sdf_simd_avx512;
  if (sdf_current_isa == SDF_ISA_AVX2) return &sdf_simd_avx2;
#endif
  return &sdf_simd_scalar;
}

#endif
