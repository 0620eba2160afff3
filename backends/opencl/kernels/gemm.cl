/* Tiled GEMM with local memory: C[z] = alpha * A[z] @ B[z] (+ bias).
 * A(m, k) = a[z*a_bs + m*a_rs + k*a_cs], B(k, n) = b[z*b_bs + k*b_rs + n*b_cs]
 * (any float dtype each), C(m, n) = c[z*c_bs + m*ldc + n] (f32).
 * An 8 x 8 work-group computes a 64 x 64 tile, 8 x 8 values per work-item in
 * float8 accumulators (explicit vectors: CPU devices such as POCL do not have
 * to vectorise across work-items), over K in steps of 16 staged in local memory. bias_mode: 0 none, 1 per
 * column (Linear), 2 per row (conv output channel).
 * conv_igemm is the same product with B the implicit im2col matrix of x
 * (never materialised): B(k, p) = x[z, ci, oy*sh - ph + kh, ox*sw - pw + kw]. */
#define TS 64 /* output tile: TS x TS */
#define TK 32 /* K step staged in local memory */
#define RTS 8 /* work-group RTS x RTS; each work-item computes 8 rows x 8 columns (float8 accumulators) */

#define GEMM_BODY(LOAD_A, LOAD_B, A_KFAST, B_KFAST)                                                  \
  const int tx = get_local_id(0), ty = get_local_id(1), lid = ty * RTS + tx;                         \
  const long n0 = (long)get_group_id(0) * TS, m0 = (long)get_group_id(1) * TS;                       \
  const long z = get_group_id(2);                                                                    \
  __local float As[TK * TS];                                                                         \
  __local float Bs[TK * TS];                                                                         \
  float8 acc[8];                                                                                     \
  for (int i = 0; i < 8; i++) acc[i] = (float8)(0.0f);                                               \
  for (long k0 = 0; k0 < K; k0 += TK) {                                                              \
    for (int e = lid; e < TS * TK; e += RTS * RTS) {                                                 \
      int mm, kk;                                                                                    \
      if (A_KFAST) { mm = e / TK; kk = e % TK; } else { kk = e / TS; mm = e % TS; }                  \
      const long m = m0 + mm, k = k0 + kk;                                                           \
      As[kk * TS + mm] = (m < M && k < K) ? (LOAD_A) : 0.0f;                                         \
    }                                                                                                \
    for (int e = lid; e < TS * TK; e += RTS * RTS) {                                                 \
      int nn, kk;                                                                                    \
      if (B_KFAST) { nn = e / TK; kk = e % TK; } else { kk = e / TS; nn = e % TS; }                  \
      const long n = n0 + nn, k = k0 + kk;                                                           \
      Bs[kk * TS + nn] = (n < N && k < K) ? (LOAD_B) : 0.0f;                                         \
    }                                                                                                \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                    \
    {                                                                                                \
      /* plain locals, not the array: kept in registers through the kk loop */                       \
      float8 c0 = acc[0], c1 = acc[1], c2 = acc[2], c3 = acc[3];                                      \
      float8 c4 = acc[4], c5 = acc[5], c6 = acc[6], c7 = acc[7];                                      \
      __local const float *ap = As + 8 * ty, *bp = Bs + 8 * tx;                                      \
      for (int kk = 0; kk < TK; kk++) {                                                              \
        const float8 av = vload8(0, ap + kk * TS), bv = vload8(0, bp + kk * TS);                    \
        c0 = fma((float8)(av.s0), bv, c0);                                                           \
        c1 = fma((float8)(av.s1), bv, c1);                                                           \
        c2 = fma((float8)(av.s2), bv, c2);                                                           \
        c3 = fma((float8)(av.s3), bv, c3);                                                           \
        c4 = fma((float8)(av.s4), bv, c4);                                                           \
        c5 = fma((float8)(av.s5), bv, c5);                                                           \
        c6 = fma((float8)(av.s6), bv, c6);                                                           \
        c7 = fma((float8)(av.s7), bv, c7);                                                           \
      }                                                                                              \
      acc[0] = c0, acc[1] = c1, acc[2] = c2, acc[3] = c3;                                            \
      acc[4] = c4, acc[5] = c5, acc[6] = c6, acc[7] = c7;                                            \
    }                                                                                                \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                    \
  }

/* acc[i] lane j is C(m0 + 8*ty + i, n0 + 8*tx + j). */
inline float lane8(float8 v, int j) {
  switch (j) {
  case 0: return v.s0;
  case 1: return v.s1;
  case 2: return v.s2;
  case 3: return v.s3;
  case 4: return v.s4;
  case 5: return v.s5;
  case 6: return v.s6;
  default: return v.s7;
  }
}

__kernel __attribute__((reqd_work_group_size(RTS, RTS, 1))) void gemm(
    __global const uchar *ab, ulong ao, int a_dt, long a_bs, long a_rs, long a_cs,
    __global const uchar *bb, ulong bo, int b_dt, long b_bs, long b_rs, long b_cs,
    __global uchar *cb, ulong co, long c_bs, long ldc,
    __global const uchar *biasb, ulong biaso, int bias_dt, int bias_mode,
    long M, long N, long K, float alpha) {
  __global const uchar *a = ab + ao, *b = bb + bo;
  const int a_kfast = a_cs == 1, b_kfast = b_rs == 1;
  GEMM_BODY(ldw(a, a_dt, z * a_bs + m * a_rs + k * a_cs), ldw(b, b_dt, z * b_bs + k * b_rs + n * b_cs), a_kfast,
            b_kfast)
  __global float *c = PTR(float, cb, co) + z * c_bs;
  __global const uchar *bias = biasb + biaso;
  for (int i = 0; i < 8; i++) {
    const long m = m0 + 8 * ty + i;
    if (m >= M) continue;
    for (int j = 0; j < 8; j++) {
      const long n = n0 + 8 * tx + j;
      if (n >= N) continue;
      float v = alpha * lane8(acc[i], j);
      if (bias_mode == 1) v += ldw(bias, bias_dt, n);
      else if (bias_mode == 2) v += ldw(bias, bias_dt, m);
      c[m * ldc + n] = v;
    }
  }
}

/* Element (k, p) of the im2col matrix of image `base` (0 outside the image). */
inline float conv_tap(__global const float *x, long base, long k, long p, long KK, long KW, long OW, long sh, long sw,
                      long ph, long pw, long H, long W) {
  const long ci = k / KK, r = k % KK, kh = r / KW, kw = r % KW;
  const long oy = p / OW, ox = p % OW;
  const long iy = oy * sh - ph + kh, ix = ox * sw - pw + kw;
  return (iy >= 0 && iy < H && ix >= 0 && ix < W) ? x[base + (ci * H + iy) * W + ix] : 0.0f;
}

/* y[z] (Co x OH*OW) = W (Co x Ci*KH*KW) @ im2col(x[z]) + b. */
__kernel __attribute__((reqd_work_group_size(RTS, RTS, 1))) void conv_igemm(
    __global const uchar *xb, ulong xo, __global const uchar *wb, ulong wo, int w_dt,
    __global const uchar *biasb, ulong biaso, int bias_dt, int has_bias, __global uchar *yb, ulong yo,
    long Ci, long H, long W, long KH, long KW, long OW, long sh, long sw, long ph, long pw,
    long M, long N, long K) {
  __global const float *x = CPTR(float, xb, xo);
  __global const uchar *w = wb + wo;
  const long KK = KH * KW, HW = H * W;
  GEMM_BODY(ldw(w, w_dt, m * K + k), conv_tap(x, z * Ci * HW, k, n, KK, KW, OW, sh, sw, ph, pw, H, W), 1, 0)
  __global float *y = PTR(float, yb, yo) + z * M * N;
  __global const uchar *bias = biasb + biaso;
  for (int i = 0; i < 8; i++) {
    const long m = m0 + 8 * ty + i;
    if (m >= M) continue;
    const float bv = has_bias ? ldw(bias, bias_dt, m) : 0.0f;
    for (int j = 0; j < 8; j++) {
      const long n = n0 + 8 * tx + j;
      if (n < N) y[m * N + n] = lane8(acc[i], j) + bv;
    }
  }
}

/* Direct convolution (CONV2D algo 1): one output value per work-item,
 * accumulated in acc_t (double where available, as the CPU reference path).
 * Global size (OH*OW, Co, N). */
__kernel void conv_direct(__global const uchar *xb, ulong xo, __global const uchar *wb, ulong wo, int w_dt,
                          __global const uchar *biasb, ulong biaso, int bias_dt, int has_bias, __global uchar *yb,
                          ulong yo, long Ci, long H, long W, long Co, long KH, long KW, long OH, long OW, long sh,
                          long sw, long ph, long pw) {
  const long p = get_global_id(0), co = get_global_id(1), n = get_global_id(2);
  if (p >= OH * OW) return;
  __global const float *x = CPTR(float, xb, xo);
  __global const uchar *w = wb + wo;
  const long oy = p / OW, ox = p % OW;
  acc_t acc = has_bias ? (acc_t)ldw(biasb + biaso, bias_dt, co) : (acc_t)0;
  for (long ci = 0; ci < Ci; ci++) {
    __global const float *xp = x + (n * Ci + ci) * H * W;
    for (long kh = 0; kh < KH; kh++) {
      const long iy = oy * sh - ph + kh;
      if (iy < 0 || iy >= H) continue;
      for (long kw = 0; kw < KW; kw++) {
        const long ix = ox * sw - pw + kw;
        if (ix < 0 || ix >= W) continue;
        acc += (acc_t)ldw(w, w_dt, ((co * Ci + ci) * KH + kh) * KW + kw) * (acc_t)xp[iy * W + ix];
      }
    }
  }
  PTR(float, yb, yo)[(n * Co + co) * OH * OW + p] = (float)acc;
}

/* ---- CPU devices -------------------------------------------------------------------------
 * CPU OpenCL drivers (POCL) run a work-group's work-items as loops and pay dearly for
 * barriers; these two GEMMs use neither local memory nor barriers: each work-item computes
 * a register block straight from global memory (the caches do the tiling). Same arguments
 * and results as gemm. */

/* B contiguous along n (b_cs == 1): 8 rows x 8 columns per work-item, float8 accumulators.
 * Global size (ceil(N/8), ceil(M/8), batch). */
__kernel void gemm_rb(__global const uchar *ab, ulong ao, int a_dt, long a_bs, long a_rs, long a_cs,
                      __global const uchar *bb, ulong bo, int b_dt, long b_bs, long b_rs, long b_cs,
                      __global uchar *cb, ulong co, long c_bs, long ldc, __global const uchar *biasb, ulong biaso,
                      int bias_dt, int bias_mode, long M, long N, long K, float alpha) {
  const long n0 = get_global_id(0) * 8, m0 = get_global_id(1) * 8, z = get_global_id(2);
  if (n0 >= N || m0 >= M) return;
  __global const uchar *a = ab + ao, *b = bb + bo;
  long ai[8];
  for (int i = 0; i < 8; i++) ai[i] = z * a_bs + min(m0 + i, M - 1) * a_rs; /* rows past M: computed, not stored */
  float8 c0 = 0, c1 = 0, c2 = 0, c3 = 0, c4 = 0, c5 = 0, c6 = 0, c7 = 0;
  const long bz = z * b_bs + n0;
  if (a_dt == DT_F32 && b_dt == DT_F32 && n0 + 8 <= N) {
    __global const float *af = (__global const float *)a, *bf = (__global const float *)b + bz;
    for (long k = 0; k < K; k++) {
      const float8 bv = vload8(0, bf + k * b_rs);
      const long ka = k * a_cs;
      c0 = fma((float8)(af[ai[0] + ka]), bv, c0);
      c1 = fma((float8)(af[ai[1] + ka]), bv, c1);
      c2 = fma((float8)(af[ai[2] + ka]), bv, c2);
      c3 = fma((float8)(af[ai[3] + ka]), bv, c3);
      c4 = fma((float8)(af[ai[4] + ka]), bv, c4);
      c5 = fma((float8)(af[ai[5] + ka]), bv, c5);
      c6 = fma((float8)(af[ai[6] + ka]), bv, c6);
      c7 = fma((float8)(af[ai[7] + ka]), bv, c7);
    }
  } else {
    for (long k = 0; k < K; k++) {
      float bl[8];
      for (int j = 0; j < 8; j++) bl[j] = n0 + j < N ? ldw(b, b_dt, bz + k * b_rs + j) : 0.0f;
      const float8 bv = vload8(0, bl);
      const long ka = k * a_cs;
      c0 = fma((float8)(ldw(a, a_dt, ai[0] + ka)), bv, c0);
      c1 = fma((float8)(ldw(a, a_dt, ai[1] + ka)), bv, c1);
      c2 = fma((float8)(ldw(a, a_dt, ai[2] + ka)), bv, c2);
      c3 = fma((float8)(ldw(a, a_dt, ai[3] + ka)), bv, c3);
      c4 = fma((float8)(ldw(a, a_dt, ai[4] + ka)), bv, c4);
      c5 = fma((float8)(ldw(a, a_dt, ai[5] + ka)), bv, c5);
      c6 = fma((float8)(ldw(a, a_dt, ai[6] + ka)), bv, c6);
      c7 = fma((float8)(ldw(a, a_dt, ai[7] + ka)), bv, c7);
    }
  }
  const float8 acc[8] = {c0, c1, c2, c3, c4, c5, c6, c7};
  __global float *c = PTR(float, cb, co) + z * c_bs;
  __global const uchar *bias = biasb + biaso;
  for (int i = 0; i < 8 && m0 + i < M; i++) {
    const long m = m0 + i;
    for (int j = 0; j < 8 && n0 + j < N; j++) {
      const long n = n0 + j;
      float v = alpha * lane8(acc[i], j);
      if (bias_mode == 1) v += ldw(bias, bias_dt, n);
      else if (bias_mode == 2) v += ldw(bias, bias_dt, m);
      c[m * ldc + n] = v;
    }
  }
}

/* 8 consecutive elements of a float tensor of dtype dt from element i, as f32. */
inline float8 ldw8(__global const uchar *p, int dt, long i) {
  if (dt == DT_F32) return vload8(0, (__global const float *)p + i);
  if (dt == DT_F16) return vload_half8(0, (__global const half *)p + i);
  return as_float8(convert_uint8(vload8(0, (__global const ushort *)p + i)) << 16);
}

/* A and B both contiguous along k (a_cs == 1, b_rs == 1: Linear's x W^T, bmm with trans_b), A f32:
 * 4 rows x 4 columns per work-item, float8 partial sums over k. Global size (ceil(N/4), ceil(M/4), batch). */
__kernel void gemm_nt_rb(__global const uchar *ab, ulong ao, int a_dt, long a_bs, long a_rs, long a_cs,
                         __global const uchar *bb, ulong bo, int b_dt, long b_bs, long b_rs, long b_cs,
                         __global uchar *cb, ulong co, long c_bs, long ldc, __global const uchar *biasb, ulong biaso,
                         int bias_dt, int bias_mode, long M, long N, long K, float alpha) {
  const long n0 = get_global_id(0) * 4, m0 = get_global_id(1) * 4, z = get_global_id(2);
  if (n0 >= N || m0 >= M) return;
  __global const float *a = CPTR(float, ab, ao) + z * a_bs;
  __global const uchar *b = bb + bo;
  long ar[4], br[4];
  for (int i = 0; i < 4; i++) {
    ar[i] = min(m0 + i, M - 1) * a_rs;
    br[i] = z * b_bs + min(n0 + i, N - 1) * b_cs;
  }
  float8 s[16];
  for (int i = 0; i < 16; i++) s[i] = 0;
  const long K8 = K / 8 * 8;
  for (long k = 0; k < K8; k += 8) {
    const float8 x0 = vload8(0, a + ar[0] + k), x1 = vload8(0, a + ar[1] + k), x2 = vload8(0, a + ar[2] + k),
                 x3 = vload8(0, a + ar[3] + k);
    for (int j = 0; j < 4; j++) {
      const float8 w = ldw8(b, b_dt, br[j] + k);
      s[j] = fma(x0, w, s[j]);
      s[4 + j] = fma(x1, w, s[4 + j]);
      s[8 + j] = fma(x2, w, s[8 + j]);
      s[12 + j] = fma(x3, w, s[12 + j]);
    }
  }
  __global float *c = PTR(float, cb, co) + z * c_bs;
  __global const uchar *bias = biasb + biaso;
  for (int i = 0; i < 4 && m0 + i < M; i++) {
    for (int j = 0; j < 4 && n0 + j < N; j++) {
      const float8 v8 = s[i * 4 + j];
      float acc = ((v8.s0 + v8.s1) + (v8.s2 + v8.s3)) + ((v8.s4 + v8.s5) + (v8.s6 + v8.s7));
      for (long k = K8; k < K; k++) acc = fma(a[ar[i] + k], ldw(b, b_dt, br[j] + k), acc);
      float v = alpha * acc;
      if (bias_mode == 1) v += ldw(bias, bias_dt, n0 + j);
      else if (bias_mode == 2) v += ldw(bias, bias_dt, m0 + i);
      c[(m0 + i) * ldc + n0 + j] = v;
    }
  }
}
