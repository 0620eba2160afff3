/*
 * AVX-512 (F/BW/VL/DQ) vector primitives. See simd.h for the contracts.
 */
#include <immintrin.h>
#include <math.h>

#include "common.h"
#include "simd.h"

/* exp with a Cephes-style polynomial: ~1-2 ulp on [-87.3, 88]; nan kept. */
SDF_INLINE __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-87.33654f), x);
  x = _mm512_min_ps(_mm512_set1_ps(88.0f), x);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
  p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
  __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

/*
 * erf / erfc / the normal CDF. Two fits (Lawson-iterated minimax on relative error, coefficients in f32):
 *   |z| < 0.921875:  erf(z) = z * P(z^2), P of degree 6;
 *   |z| >= 0.921875: erfc(|z|) = exp(-z^2) * t * Q(t), t = 1/(1 + 0.4|z|), Q of degree 8,
 *                    with z^2 = hi + lo split exactly by an FMA so exp(-z^2) = exp(-hi) * (1 - lo);
 *                    erf = 1 - erfc. erfc is flushed to 0 past |z| = 9.34 (erfc < 2e-39, where exp16 clamps).
 * Measured over z in [-10, 10] (step 2^-14, every f32 there for |z| >= 0.5) against double erf: max relative
 * error of erf16 8.8e-8 (1.2 ulp); gelu16 over x in [-14, 14]: 4.3e-7 relative wherever |gelu| > 1e-30
 * (mostly the rounding of x / sqrt 2 on the negative tail), vs 4.9e-5 for the f32 scalar 1 + erff form.
 */
#define SDF_ERF_SPLIT 0.921875f

SDF_INLINE __m512 erf_small16(__m512 z) {
  __m512 s = _mm512_mul_ps(z, z);
  __m512 p = _mm512_set1_ps(8.370319847e-05f);
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-8.142757579e-04f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(5.201037042e-03f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-2.685940079e-02f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.128369570e-01f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-3.761263490e-01f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.283791666e-01f)); /* c0 - 1: z + z*(c0 - 1) keeps c0's bits */
  return _mm512_fmadd_ps(z, p, z);
}

/* erfc(a) for a >= SDF_ERF_SPLIT (or nan), given a^2 = hi + lo */
SDF_INLINE __m512 erfc_large16(__m512 a, __m512 hi, __m512 lo) {
  __m512 one = _mm512_set1_ps(1.0f);
  __m512 d = _mm512_fmadd_ps(a, _mm512_set1_ps(0.4f), one);
  __m512 t = _mm512_rcp14_ps(d);
  t = _mm512_fmadd_ps(_mm512_fnmadd_ps(d, t, one), t, t); /* one Newton step: ~2^-28 */
  __m512 q = _mm512_set1_ps(6.427241117e-02f);
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-2.363125831e-01f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(2.542851567e-01f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-7.946537435e-02f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(1.792725176e-01f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(1.568645388e-01f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(2.099574059e-01f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(2.254635394e-01f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(2.256842256e-01f));
  q = _mm512_mul_ps(q, t);
  q = _mm512_fnmadd_ps(q, lo, q);
  __m512 e = _mm512_mul_ps(exp16(_mm512_sub_ps(_mm512_setzero_ps(), hi)), q);
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, _mm512_set1_ps(9.34f), _CMP_NGE_UQ), e);
}

/* erf(z), ~2 ulp (see above) */
SDF_INLINE __m512 erf16(__m512 z) {
  __m512 a = _mm512_abs_ps(z);
  __m512 hi = _mm512_mul_ps(z, z), lo = _mm512_fmsub_ps(z, z, hi);
  __m512 big = _mm512_sub_ps(_mm512_set1_ps(1.0f), erfc_large16(a, hi, lo));
  big = _mm512_or_ps(big, _mm512_and_ps(z, _mm512_set1_ps(-0.0f)));
  __mmask16 small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(SDF_ERF_SPLIT), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(small, big, erf_small16(z));
}

/* gelu(x) = x * Phi(x), Phi(x) = 0.5 * erfc(-x / sqrt 2), accurate in relative terms on both tails */
SDF_INLINE __m512 gelu16(__m512 x) {
  __m512 half = _mm512_set1_ps(0.5f);
  __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
  __m512 a = _mm512_abs_ps(z);
  __m512 xx = _mm512_mul_ps(x, x);
  __m512 hi = _mm512_mul_ps(xx, half), lo = _mm512_mul_ps(_mm512_fmsub_ps(x, x, xx), half); /* z^2 = x^2 / 2 */
  __m512 he = _mm512_mul_ps(erfc_large16(a, hi, lo), half);                                 /* Phi(-|x|) */
  __m512 big = _mm512_mask_sub_ps(he, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ), _mm512_set1_ps(1.0f), he);
  __m512 sm = _mm512_fmadd_ps(erf_small16(z), half, half);
  __mmask16 small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(SDF_ERF_SPLIT), _CMP_LT_OQ);
  return _mm512_mul_ps(x, _mm512_mask_blend_ps(small, big, sm));
}

SDF_INLINE __mmask16 tail_mask(int64_t rem) { return rem >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << rem) - 1u); }

SDF_INLINE void qk_tile(const int NR, const int NC, const float *q, int64_t ldq, const float *k, int64_t ldk, int d,
                        float scale, float *s, int64_t lds) {
  __m512 acc[2][4];
  for (int r = 0; r < NR; r++)
    for (int c = 0; c < NC; c++) acc[r][c] = _mm512_setzero_ps();
  int i = 0;
  for (; i + 16 <= d; i += 16) {
    __m512 kv[4];
    for (int c = 0; c < NC; c++) kv[c] = _mm512_loadu_ps(k + c * ldk + i);
    for (int r = 0; r < NR; r++) {
      __m512 qv = _mm512_loadu_ps(q + r * ldq + i);
      for (int c = 0; c < NC; c++) acc[r][c] = _mm512_fmadd_ps(qv, kv[c], acc[r][c]);
    }
  }
  if (i < d) {
    __mmask16 m = tail_mask(d - i);
    __m512 kv[4];
    for (int c = 0; c < NC; c++) kv[c] = _mm512_maskz_loadu_ps(m, k + c * ldk + i);
    for (int r = 0; r < NR; r++) {
      __m512 qv = _mm512_maskz_loadu_ps(m, q + r * ldq + i);
      for (int c = 0; c < NC; c++) acc[r][c] = _mm512_fmadd_ps(qv, kv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < NR; r++)
    for (int c = 0; c < NC; c++) s[r * lds + c] = _mm512_reduce_add_ps(acc[r][c]) * scale;
}

static void qk_block(const float *q, int64_t ldq, int nq, const float *k, int64_t ldk, int nk, int d, float scale,
                     float *s, int64_t lds) {
  int i = 0;
  for (; i + 2 <= nq; i += 2) {
    int j = 0;
    for (; j + 4 <= nk; j += 4) qk_tile(2, 4, q + i * ldq, ldq, k + j * ldk, ldk, d, scale, s + i * lds + j, lds);
    for (; j < nk; j++) qk_tile(2, 1, q + i * ldq, ldq, k + j * ldk, ldk, d, scale, s + i * lds + j, lds);
  }
  for (; i < nq; i++) {
    int j = 0;
    for (; j + 4 <= nk; j += 4) qk_tile(1, 4, q + i * ldq, ldq, k + j * ldk, ldk, d, scale, s + i * lds + j, lds);
    for (; j < nk; j++) qk_tile(1, 1, q + i * ldq, ldq, k + j * ldk, ldk, d, scale, s + i * lds + j, lds);
  }
}

SDF_INLINE void pv_tile(const int NR, const int NV, const float *p, int64_t ldp, int nk, const float *v, int64_t ldv,
                        __mmask16 m0, __mmask16 m1, float *o, int64_t ldo) {
  __m512 acc[4][2];
  for (int r = 0; r < NR; r++) {
    acc[r][0] = _mm512_maskz_loadu_ps(m0, o + r * ldo);
    if (NV == 2) acc[r][1] = _mm512_maskz_loadu_ps(m1, o + r * ldo + 16);
  }
  for (int j = 0; j < nk; j++) {
    __m512 v0 = _mm512_maskz_loadu_ps(m0, v + j * ldv);
    __m512 v1 = NV == 2 ? _mm512_maskz_loadu_ps(m1, v + j * ldv + 16) : v0;
    for (int r = 0; r < NR; r++) {
      __m512 w = _mm512_set1_ps(p[r * ldp + j]);
      acc[r][0] = _mm512_fmadd_ps(w, v0, acc[r][0]);
      if (NV == 2) acc[r][1] = _mm512_fmadd_ps(w, v1, acc[r][1]);
    }
  }
  for (int r = 0; r < NR; r++) {
    _mm512_mask_storeu_ps(o + r * ldo, m0, acc[r][0]);
    if (NV == 2) _mm512_mask_storeu_ps(o + r * ldo + 16, m1, acc[r][1]);
  }
}

static void pv_block(const float *p, int64_t ldp, int nq, int nk, const float *v, int64_t ldv, int d, float *o,
                     int64_t ldo) {
  for (int c0 = 0; c0 < d; c0 += 32) {
    int rem = d - c0;
    __mmask16 m0 = tail_mask(rem), m1 = rem > 16 ? tail_mask(rem - 16) : 0;
    int i = 0;
    if (rem > 16) {
      for (; i + 4 <= nq; i += 4) pv_tile(4, 2, p + i * ldp, ldp, nk, v + c0, ldv, m0, m1, o + i * ldo + c0, ldo);
      for (; i < nq; i++) pv_tile(1, 2, p + i * ldp, ldp, nk, v + c0, ldv, m0, m1, o + i * ldo + c0, ldo);
    } else {
      for (; i + 4 <= nq; i += 4) pv_tile(4, 1, p + i * ldp, ldp, nk, v + c0, ldv, m0, m1, o + i * ldo + c0, ldo);
      for (; i < nq; i++) pv_tile(1, 1, p + i * ldp, ldp, nk, v + c0, ldv, m0, m1, o + i * ldo + c0, ldo);
    }
  }
}

static float exp_sub_sum(float *x, int64_t n, float m) {
  __m512 vm = _mm512_set1_ps(m), acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
    _mm512_storeu_ps(x + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (i < n) {
    __mmask16 k = tail_mask(n - i);
    __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm));
    _mm512_mask_storeu_ps(x + i, k, e);
    acc = _mm512_mask_add_ps(acc, k, acc, e);
  }
  return _mm512_reduce_add_ps(acc);
}

static float vmax(const float *x, int64_t n) {
  __m512 acc = _mm512_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_max_ps(acc, _mm512_loadu_ps(x + i));
  if (i < n) acc = _mm512_max_ps(acc, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail_mask(n - i), x + i));
  return _mm512_reduce_max_ps(acc);
}

static void x_sigmoid(float *y, const float *x, int64_t n, float alpha) {
  __m512 na = _mm512_set1_ps(-alpha), one = _mm512_set1_ps(1.0f);
  int64_t i = 0;
  for (; i < n; i += 16) {
    __mmask16 k = tail_mask(n - i);
    __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    __m512 e = exp16(_mm512_mul_ps(na, v));
    _mm512_mask_storeu_ps(y + i, k, _mm512_div_ps(v, _mm512_add_ps(one, e)));
  }
}

static double sum_f64(const float *x, int64_t n) {
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm256_loadu_ps(x + i)));
    a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8)));
  }
  double s = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
  for (; i < n; i++) s += x[i];
  return s;
}

static double sqdev_f64(const float *x, int64_t n, double mean) {
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd(), mu = _mm512_set1_pd(mean);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512d t0 = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), mu);
    __m512d t1 = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8)), mu);
    a0 = _mm512_fmadd_pd(t0, t0, a0);
    a1 = _mm512_fmadd_pd(t1, t1, a1);
  }
  double s = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
  for (; i < n; i++) {
    double t = x[i] - mean;
    s += t * t;
  }
  return s;
}

static void f16_to_f32(float *y, const uint16_t *x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))));
  for (; i < n; i++) y[i] = sdf_f16_to_f32(x[i]);
}

static void bf16_to_f32(float *y, const uint16_t *x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i)));
    _mm512_storeu_ps(y + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
  for (; i < n; i++) y[i] = sdf_bf16_to_f32(x[i]);
}

static void gelu_mul(float *y, const float *a, const float *x, int64_t n) {
  int64_t i = 0;
  if (a) {
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(a + i), gelu16(_mm512_loadu_ps(x + i))));
  } else {
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu16(_mm512_loadu_ps(x + i)));
  }
  if (i < n) {
    __mmask16 k = tail_mask(n - i);
    __m512 g = gelu16(_mm512_maskz_loadu_ps(k, x + i));
    if (a) g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, a + i), g);
    _mm512_mask_storeu_ps(y + i, k, g);
  }
}

const sdf_simd_ops sdf_simd_avx512 = {qk_block,  pv_block,   exp_sub_sum, vmax,        x_sigmoid,
                                      sum_f64,   sqdev_f64,  f16_to_f32,  bf16_to_f32, gelu_mul};
