/* Elementwise ops and dtype conversions: UNARY, GEGLU, BINARY (broadcast),
 * SCALE, COPY, GATHER_ROWS, TIMESTEP_EMBEDDING. One element per work-item. */

inline float gelu_erf(float x) { return 0.5f * x * (1.0f + erf(x * 0.70710678118654752f)); }
inline float sigm(float x) { return 1.0f / (1.0f + exp(-x)); }

__kernel void unary(__global const uchar *xb, ulong xo, __global uchar *yb, ulong yo, long n, int kind) {
  const long i = get_global_id(0);
  if (i >= n) return;
  const float x = CPTR(float, xb, xo)[i];
  float y;
  switch (kind) {
  case 0: y = x / (1.0f + exp(-x)); break;
  case 1: y = gelu_erf(x); break;
  case 2: { /* tanh saturates to +-1 in f32 beyond |u| = 9; the builtin may be an ulp short there */
    const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    y = 0.5f * x * (1.0f + (fabs(u) > 9.0f ? copysign(1.0f, u) : tanh(u)));
    break;
  }
  case 3: y = x / (1.0f + exp(-1.702f * x)); break;
  case 4: y = x > 0.0f ? x : 0.0f; break;
  case 5: y = x > 0.0f ? x : 0.2f * x; break;
  case 6: y = sigm(x); break;
  default: y = tanh(x); break;
  }
  PTR(float, yb, yo)[i] = y;
}

/* y[r, c] = x[r, c] * gelu(x[r, C + c]); global size rows * C. */
__kernel void geglu(__global const uchar *xb, ulong xo, __global uchar *yb, ulong yo, long n, long C) {
  const long i = get_global_id(0);
  if (i >= n) return;
  const long r = i / C, c = i % C;
  __global const float *x = CPTR(float, xb, xo) + r * 2 * C;
  PTR(float, yb, yo)[i] = x[c] * gelu_erf(x[C + c]);
}

/* y = a (op) b over collapsed dims (nd <= 8) with element strides sa / sb (0 = broadcast). */
__kernel void binary(__global const uchar *ab, ulong ao, __global const uchar *bb, ulong bo, __global uchar *yb,
                     ulong yo, long n, int kind, int nd, long8 dims, long8 sa, long8 sb) {
  const long i = get_global_id(0);
  if (i >= n) return;
  long rem = i, oa = 0, ob = 0;
  const long dd[8] = {dims.s0, dims.s1, dims.s2, dims.s3, dims.s4, dims.s5, dims.s6, dims.s7};
  const long da[8] = {sa.s0, sa.s1, sa.s2, sa.s3, sa.s4, sa.s5, sa.s6, sa.s7};
  const long db[8] = {sb.s0, sb.s1, sb.s2, sb.s3, sb.s4, sb.s5, sb.s6, sb.s7};
  for (int d = nd - 1; d >= 0; d--) {
    const long c = rem % dd[d];
    rem /= dd[d];
    oa += c * da[d];
    ob += c * db[d];
  }
  const float va = CPTR(float, ab, ao)[oa], vb = CPTR(float, bb, bo)[ob];
  float y;
  switch (kind) {
  case 0: y = va + vb; break;
  case 1: y = va - vb; break;
  case 2: y = va * vb; break;
  default: y = va / vb; break;
  }
  PTR(float, yb, yo)[i] = y;
}

__kernel void scale_shift(__global const uchar *xb, ulong xo, __global uchar *yb, ulong yo, long n, float s,
                          float t) {
  const long i = get_global_id(0);
  if (i < n) PTR(float, yb, yo)[i] = CPTR(float, xb, xo)[i] * s + t;
}

/* dtype -> f32 */
__kernel void to_f32(__global const uchar *xb, ulong xo, int x_dt, __global uchar *yb, ulong yo, long n) {
  const long i = get_global_id(0);
  if (i < n) PTR(float, yb, yo)[i] = ldw(xb + xo, x_dt, i);
}

/* y[r, :] = table[idx[r], :]; global size (D, rows). An out-of-range index
 * is recorded in err (err[0] = 1 + op index of the first report, err[1] the
 * position, err[2] the index) and its row is zeroed. */
__kernel void gather_rows(__global const uchar *tb, ulong to, int t_dt, __global const uchar *ib, ulong io,
                          __global uchar *yb, ulong yo, long V, long D, long rows, __global int *err, int op_index) {
  const long d = get_global_id(0), r = get_global_id(1);
  if (d >= D || r >= rows) return;
  const int row = CPTR(int, ib, io)[r];
  __global float *y = PTR(float, yb, yo);
  if (row < 0 || row >= V) {
    y[r * D + d] = 0.0f;
    if (d == 0 && atomic_cmpxchg(&err[0], 0, -1) == 0) {
      err[1] = (int)r;
      err[2] = row;
      err[3] = op_index;
      mem_fence(CLK_GLOBAL_MEM_FENCE);
      atomic_xchg(&err[0], 1);
    }
    return;
  }
  y[r * D + d] = ldw(tb + to, t_dt, (long)row * D + d);
}

/* y[n] = [cos(t f_i) | sin(t f_i)] (flip: sin first), f_i = exp(-ln(max_period) i / half);
 * global size (half, N); an odd dim's last column is 0. */
__kernel void timestep_embedding(__global const uchar *tb, ulong to, __global uchar *yb, ulong yo, long N, long dim,
                                 int flip, float lmp_hi, float lmp_lo) {
  const long i = get_global_id(0), n = get_global_id(1), hd = dim / 2;
  if (n >= N) return;
  __global float *y = PTR(float, yb, yo) + n * dim;
  if (i == 0 && dim % 2) y[dim - 1] = 0.0f;
  if (i >= hd) return;
#ifdef cl_khr_fp64
  /* ln(max_period) arrives as hi + lo (two floats: a double kernel argument needs fp64) */
  const double arg = (double)CPTR(float, tb, to)[n] * exp(-((double)lmp_hi + (double)lmp_lo) * (double)i / (double)hd);
#else
  const float arg = CPTR(float, tb, to)[n] * exp(-lmp_hi * (float)i / (float)hd);
#endif
  const float c = (float)cos(arg), s = (float)sin(arg);
  y[i] = flip ? s : c;
  y[hd + i] = flip ? c : s;
}
