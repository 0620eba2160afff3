/*
 * Portable versions of the vector primitives (the "scalar" ISA and the
 * NEON/other fallback; the compiler's auto-vectoriser does what it can).
 */
#include <math.h>

#include "common.h"
#include "simd.h"

static void qk_block(const float *q, int64_t ldq, int nq, const float *k, int64_t ldk, int nk, int d, float scale,
                     float *s, int64_t lds) {
  for (int i = 0; i < nq; i++) {
    const float *qi = q + i * ldq;
    for (int j = 0; j < nk; j++) {
      const float *kj = k + j * ldk;
      float acc[4] = {0, 0, 0, 0};
      int c = 0;
      for (; c + 4 <= d; c += 4)
        for (int u = 0; u < 4; u++) acc[u] += qi[c + u] * kj[c + u];
      float a = (acc[0] + acc[1]) + (acc[2] + acc[3]);
      for (; c < d; c++) a += qi[c] * kj[c];
      s[i * lds + j] = a * scale;
    }
  }
}

static void pv_block(const float *p, int64_t ldp, int nq, int nk, const float *v, int64_t ldv, int d, float *o,
                     int64_t ldo) {
  for (int i = 0; i < nq; i++) {
    float *oi = o + i * ldo;
    const float *pi = p + i * ldp;
    for (int j = 0; j < nk; j++) {
      float w = pi[j];
      const float *vj = v + j * ldv;
      for (int c = 0; c < d; c++) oi[c] += w * vj[c];
    }
  }
}

static float exp_sub_sum(float *x, int64_t n, float m) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) {
    x[i] = expf(x[i] - m);
    s += x[i];
  }
  return (float)s;
}

static float vmax(const float *x, int64_t n) {
  float m = x[0];
  for (int64_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

static void x_sigmoid(float *y, const float *x, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-alpha * x[i]));
}

static double sum_f64(const float *x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i];
  return s;
}

static double sqdev_f64(const float *x, int64_t n, double mean) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) {
    double t = x[i] - mean;
    s += t * t;
  }
  return s;
}

static void f16_to_f32(float *y, const uint16_t *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = sdf_f16_to_f32(x[i]);
}

static void bf16_to_f32(float *y, const uint16_t *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = sdf_bf16_to_f32(x[i]);
}

static void gelu_mul(float *y, const float *a, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float g = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
    y[i] = a ? a[i] * g : g;
  }
}

const sdf_simd_ops sdf_simd_scalar = {qk_block,  pv_block,   exp_sub_sum, vmax,    x_sigmoid,
                                      sum_f64,   sqdev_f64,  f16_to_f32,  bf16_to_f32, gelu_mul};
