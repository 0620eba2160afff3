/*
 * AVX2 + FMA + F16C vector primitives. See simd.h for the contracts.
 */
#include <immintrin.h>
#include <math.h>

#include "common.h"
#include "simd.h"

static const int32_t mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* lanes [0, rem) set, rem in 0..8 */
SDF_INLINE __m256i tail_mask(int64_t rem) {
  if (rem > 8) rem = 8;
  return _mm256_loadu_si256((const __m256i *)(mask_table + 8 - rem));
}

SDF_INLINE float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

SDF_INLINE __m256 exp8(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-87.33654f), x);
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

SDF_INLINE void qk_tile(const int NR, const int NC, const float *q, int64_t ldq, const float *k, int64_t ldk, int d,
                        float scale, float *s, int64_t lds) {
  __m256 acc[2][4];
  for (int r = 0; r < NR; r++)
    for (int c = 0; c < NC; c++) acc[r][c] = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= d; i += 8) {
    __m256 kv[4];
    for (int c = 0; c < NC; c++) kv[c] = _mm256_loadu_ps(k + c * ldk + i);
    for (int r = 0; r < NR; r++) {
      __m256 qv = _mm256_loadu_ps(q + r * ldq + i);
      for (int c = 0; c < NC; c++) acc[r][c] = _mm256_fmadd_ps(qv, kv[c], acc[r][c]);
    }
  }
  if (i < d) {
    __m256i m = tail_mask(d - i);
    __m256 kv[4];
    for (int c = 0; c < NC; c++) kv[c] = _mm256_maskload_ps(k + c * ldk + i, m);
    for (int r = 0; r < NR; r++) {
      __m256 qv = _mm256_maskload_ps(q + r * ldq + i, m);
      for (int c = 0; c < NC; c++) acc[r][c] = _mm256_fmadd_ps(qv, kv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < NR; r++)
    for (int c = 0; c < NC; c++) s[r * lds + c] = hsum(acc[r][c]) * scale;
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
                        __m256i m0, __m256i m1, float *o, int64_t ldo) {
  __m256 acc[4][2];
  for (int r = 0; r < NR; r++) {
    acc[r][0] = _mm256_maskload_ps(o + r * ldo, m0);
    if (NV == 2) acc[r][1] = _mm256_maskload_ps(o + r * ldo + 8, m1);
  }
  for (int j = 0; j < nk; j++) {
    __m256 v0 = _mm256_maskload_ps(v + j * ldv, m0);
    __m256 v1 = NV == 2 ? _mm256_maskload_ps(v + j * ldv + 8, m1) : v0;
    for (int r = 0; r < NR; r++) {
      __m256 w = _mm256_broadcast_ss(p + r * ldp + j);
      acc[r][0] = _mm256_fmadd_ps(w, v0, acc[r][0]);
      if (NV == 2) acc[r][1] = _mm256_fmadd_ps(w, v1, acc[r][1]);
    }
  }
  for (int r = 0; r < NR; r++) {
    _mm256_maskstore_ps(o + r * ldo, m0, acc[r][0]);
    if (NV == 2) _mm256_maskstore_ps(o + r * ldo + 8, m1, acc[r][1]);
  }
}

static void pv_block(const float *p, int64_t ldp, int nq, int nk, const float *v, int64_t ldv, int d, float *o,
                     int64_t ldo) {
  for (int c0 = 0; c0 < d; c0 += 16) {
    int rem = d - c0;
    __m256i m0 = tail_mask(rem), m1 = tail_mask(rem > 8 ? rem - 8 : 0);
    int i = 0;
    if (rem > 8) {
      for (; i + 4 <= nq; i += 4) pv_tile(4, 2, p + i * ldp, ldp, nk, v + c0, ldv, m0, m1, o + i * ldo + c0, ldo);
      for (; i < nq; i++) pv_tile(1, 2, p + i * ldp, ldp, nk, v + c0, ldv, m0, m1, o + i * ldo + c0, ldo);
    } else {
      for (; i + 4 <= nq; i += 4) pv_tile(4, 1, p + i * ldp, ldp, nk, v + c0, ldv, m0, m1, o + i * ldo + c0, ldo);
      for (; i < nq; i++) pv_tile(1, 1, p + i * ldp, ldp, nk, v + c0, ldv, m0, m1, o + i * ldo + c0, ldo);
    }
  }
}

static float exp_sub_sum(float *x, int64_t n, float m) {
  __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float s = hsum(acc);
  for (; i < n; i++) {
    x[i] = expf(x[i] - m);
    s += x[i];
  }
  return s;
}

static float vmax(const float *x, int64_t n) {
  __m256 acc = _mm256_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_max_ps(acc, _mm256_loadu_ps(x + i));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  float m = _mm_cvtss_f32(h);
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

/* erf / erfc / GELU: the same two fits as simd_avx512.c (see there for the error bounds). */
#define SDF_ERF_SPLIT 0.921875f

SDF_INLINE __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

SDF_INLINE __m256 erf_small8(__m256 z) {
  __m256 s = _mm256_mul_ps(z, z);
  __m256 p = _mm256_set1_ps(8.370319847e-05f);
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(-8.142757579e-04f));
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(5.201037042e-03f));
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(-2.685940079e-02f));
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(1.128369570e-01f));
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(-3.761263490e-01f));
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(1.283791666e-01f));
  return _mm256_fmadd_ps(z, p, z);
}

/* erfc(a) for a >= SDF_ERF_SPLIT (or nan), given a^2 = hi + lo */
SDF_INLINE __m256 erfc_large8(__m256 a, __m256 hi, __m256 lo) {
  __m256 one = _mm256_set1_ps(1.0f);
  __m256 d = _mm256_fmadd_ps(a, _mm256_set1_ps(0.4f), one);
  __m256 t = _mm256_rcp_ps(d);
  t = _mm256_fmadd_ps(_mm256_fnmadd_ps(d, t, one), t, t);
  t = _mm256_fmadd_ps(_mm256_fnmadd_ps(d, t, one), t, t); /* rcp is 12 bits: two Newton steps */
  __m256 q = _mm256_set1_ps(6.427241117e-02f);
  q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-2.363125831e-01f));
  q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(2.542851567e-01f));
  q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-7.946537435e-02f));
  q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(1.792725176e-01f));
  q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(1.568645388e-01f));
  q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(2.099574059e-01f));
  q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(2.254635394e-01f));
  q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(2.256842256e-01f));
  q = _mm256_mul_ps(q, t);
  q = _mm256_fnmadd_ps(q, lo, q);
  __m256 e = _mm256_mul_ps(exp8(_mm256_sub_ps(_mm256_setzero_ps(), hi)), q);
  return _mm256_and_ps(_mm256_cmp_ps(a, _mm256_set1_ps(9.34f), _CMP_NGE_UQ), e);
}

/* gelu(x) = x * Phi(x), Phi(x) = 0.5 * erfc(-x / sqrt 2) */
SDF_INLINE __m256 gelu8(__m256 x) {
  __m256 half = _mm256_set1_ps(0.5f);
  __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
  __m256 a = abs8(z);
  __m256 xx = _mm256_mul_ps(x, x);
  __m256 hi = _mm256_mul_ps(xx, half), lo = _mm256_mul_ps(_mm256_fmsub_ps(x, x, xx), half);
  __m256 he = _mm256_mul_ps(erfc_large8(a, hi, lo), half);
  __m256 big = _mm256_blendv_ps(he, _mm256_sub_ps(_mm256_set1_ps(1.0f), he),
                                _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ));
  __m256 sm = _mm256_fmadd_ps(erf_small8(z), half, half);
  __m256 small = _mm256_cmp_ps(a, _mm256_set1_ps(SDF_ERF_SPLIT), _CMP_LT_OQ);
  return _mm256_mul_ps(x, _mm256_blendv_ps(big, sm, small));
}

static void x_sigmoid(float *y, const float *x, int64_t n, float alpha) {
  __m256 na = _mm256_set1_ps(-alpha), one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, exp8(_mm256_mul_ps(na, v)))));
  }
  for (; i < n; i++) y[i] = x[i] / (1.0f + expf(-alpha * x[i]));
}

SDF_INLINE double hsum_pd(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

static double sum_f64(const float *x, int64_t n) {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
    a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
  }
  double s = hsum_pd(_mm256_add_pd(a0, a1));
  for (; i < n; i++) s += x[i];
  return s;
}

static double sqdev_f64(const float *x, int64_t n, double mean) {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), mu = _mm256_set1_pd(mean);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256d t0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), mu);
    __m256d t1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), mu);
    a0 = _mm256_fmadd_pd(t0, t0, a0);
    a1 = _mm256_fmadd_pd(t1, t1, a1);
  }
  double s = hsum_pd(_mm256_add_pd(a0, a1));
  for (; i < n; i++) {
    double t = x[i] - mean;
    s += t * t;
  }
  return s;
}

static void f16_to_f32(float *y, const uint16_t *x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
  for (; i < n; i++) y[i] = sdf_f16_to_f32(x[i]);
}

static void bf16_to_f32(float *y, const uint16_t *x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
    _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
  for (; i < n; i++) y[i] = sdf_bf16_to_f32(x[i]);
}

static void gelu_mul(float *y, const float *a, const float *x, int64_t n) {
  int64_t i = 0;
  if (a) {
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), gelu8(_mm256_loadu_ps(x + i))));
  } else {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
  }
  if (i < n) {
    __m256i k = tail_mask(n - i);
    __m256 g = gelu8(_mm256_maskload_ps(x + i, k));
    if (a) g = _mm256_mul_ps(_mm256_maskload_ps(a + i, k), g);
    _mm256_maskstore_ps(y + i, k, g);
  }
}

const sdf_simd_ops sdf_simd_avx2 = {qk_block,  pv_block,   exp_sub_sum, vmax,        x_sigmoid,
                                    sum_f64,   sqdev_f64,  f16_to_f32,  bf16_to_f32, gelu_mul};
