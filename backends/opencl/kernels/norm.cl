/* GROUP_NORM (+ SiLU), LAYER_NORM, SOFTMAX: one work-group per group / row,
 * two-pass statistics (mean, then squared deviations) in acc_t. */

inline float silu(float t) { return t / (1.0f + exp(-t)); }

/* Global size (WG * N * G), local WG (a power of two). */
__kernel void group_norm(__global const uchar *xb, ulong xo, __global const uchar *gb, ulong go,
                         __global const uchar *bb, ulong bo, __global uchar *yb, ulong yo, long C, long G, long S,
                         float eps, int use_silu, __local acc_t *red) {
  const long grp = get_group_id(0), n = grp / G, g = grp % G, cpg = C / G, cnt = cpg * S;
  const long base = (n * C + g * cpg) * S;
  const int l = get_local_id(0), wg = get_local_size(0);
  __global const float *x = CPTR(float, xb, xo) + base;
  __global float *y = PTR(float, yb, yo) + base;
  __global const float *gamma = CPTR(float, gb, go), *beta = CPTR(float, bb, bo);
  acc_t s = 0;
  for (long e = l; e < cnt; e += wg) s += x[e];
  const acc_t mean = wg_sum(s, red) / (acc_t)cnt;
  acc_t d = 0;
  for (long e = l; e < cnt; e += wg) {
    acc_t t = (acc_t)x[e] - mean;
    d += t * t;
  }
  const acc_t var = wg_sum(d, red) / (acc_t)cnt;
  const acc_t rstd = (acc_t)1 / sqrt(var + (acc_t)eps);
  for (long e = l; e < cnt; e += wg) {
    const long c = g * cpg + e / S;
    const float a = (float)(gamma[c] * rstd), b = (float)(beta[c] - mean * gamma[c] * rstd);
    float t = x[e] * a + b;
    y[e] = use_silu ? silu(t) : t;
  }
}

/* Global size (WG * rows), local WG. */
__kernel void layer_norm(__global const uchar *xb, ulong xo, __global const uchar *gb, ulong go,
                         __global const uchar *bb, ulong bo, __global uchar *yb, ulong yo, long C, float eps,
                         __local acc_t *red) {
  const long row = get_group_id(0);
  const int l = get_local_id(0), wg = get_local_size(0);
  __global const float *x = CPTR(float, xb, xo) + row * C;
  __global float *y = PTR(float, yb, yo) + row * C;
  __global const float *gamma = CPTR(float, gb, go), *beta = CPTR(float, bb, bo);
  acc_t s = 0;
  for (long e = l; e < C; e += wg) s += x[e];
  const acc_t mean = wg_sum(s, red) / (acc_t)C;
  acc_t d = 0;
  for (long e = l; e < C; e += wg) {
    acc_t t = (acc_t)x[e] - mean;
    d += t * t;
  }
  const acc_t var = wg_sum(d, red) / (acc_t)C;
  const float rstd = (float)((acc_t)1 / sqrt(var + (acc_t)eps)), m = (float)mean;
  for (long e = l; e < C; e += wg) y[e] = (x[e] - m) * rstd * gamma[e] + beta[e];
}

/* Global size (WG * rows), local WG. */
__kernel void softmax(__global const uchar *xb, ulong xo, __global uchar *yb, ulong yo, long C, float scale,
                      __local acc_t *red, __local float *redf) {
  const long row = get_group_id(0);
  const int l = get_local_id(0), wg = get_local_size(0);
  __global const float *x = CPTR(float, xb, xo) + row * C;
  __global float *y = PTR(float, yb, yo) + row * C;
  float mx = -INFINITY;
  for (long e = l; e < C; e += wg) mx = fmax(mx, x[e] * scale);
  mx = wg_max(mx, redf);
  acc_t s = 0;
  for (long e = l; e < C; e += wg) s += exp(x[e] * scale - mx);
  const float inv = (float)(1 / wg_sum(s, red));
  for (long e = l; e < C; e += wg) y[e] = exp(x[e] * scale - mx) * inv;
}
