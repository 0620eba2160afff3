/* Winograd F(m x m, 3 x 3), m in {2, 4, 6}, A = m + 2: the stage ops of
 * sdflow_backend.h with this backend's own (plain row-major) layouts:
 *   u [A*A, Co, Ci]   v [A*A, Ci, T]   m_ [A*A, Co, T]
 * Tile t = (n*rows + ty - row0)*tiles_w + tx of a band of tile rows
 * [row0, row0 + rows); interpolation points as the CPU backend
 * (F(2,3) {0, 1, -1, inf}; F(4,3) {0, +-1, +-2, inf}; F(6,3) {0, +-1, +-2, +-1/2, inf}). */

/* o = B^T d, A values (stride is / os). */
inline void wino_bt(int m, const float *d, int is, float *o, int os) {
#define D(i) d[(i) * is]
#define O(i) o[(i) * os]
  if (m == 2) {
    float d0 = D(0), d1 = D(1), d2 = D(2), d3 = D(3);
    O(0) = d0 - d2;
    O(1) = d1 + d2;
    O(2) = d2 - d1;
    O(3) = d1 - d3;
  } else if (m == 4) {
    float d0 = D(0), d1 = D(1), d2 = D(2), d3 = D(3), d4 = D(4), d5 = D(5);
    float t1 = d4 - d2 * 4.0f, t2 = d3 - d1 * 4.0f, t3 = d4 - d2, t4 = (d3 - d1) * 2.0f;
    O(0) = d0 * 4.0f - d2 * 5.0f + d4;
    O(1) = t1 + t2;
    O(2) = t1 - t2;
    O(3) = t3 + t4;
    O(4) = t3 - t4;
    O(5) = d1 * 4.0f - d3 * 5.0f + d5;
  } else {
    float d0 = D(0), d1 = D(1), d2 = D(2), d3 = D(3), d4 = D(4), d5 = D(5), d6 = D(6), d7 = D(7);
    O(0) = d0 - d6 + (d4 - d2) * 5.25f;
    O(7) = d7 - d1 + (d3 - d5) * 5.25f;
    float a12 = d2 + d6 - d4 * 4.25f, b12 = d1 + d5 - d3 * 4.25f;
    O(1) = a12 + b12;
    O(2) = a12 - b12;
    float a34 = d6 + d2 * 0.25f - d4 * 1.25f, b34 = d1 * 0.5f - d3 * 2.5f + d5 * 2.0f;
    O(3) = a34 + b34;
    O(4) = a34 - b34;
    float a56 = d6 + (d2 - d4 * 1.25f) * 4.0f, b56 = d1 * 2.0f - d3 * 2.5f + d5 * 0.5f;
    O(5) = a56 + b56;
    O(6) = a56 - b56;
  }
#undef D
#undef O
}

/* o = A^T r, A values in, m out. */
inline void wino_at(int m, const float *r, int is, float *o, int os) {
#define R(i) r[(i) * is]
#define O(i) o[(i) * os]
  if (m == 2) {
    float r1 = R(1), r2 = R(2);
    O(0) = R(0) + r1 + r2;
    O(1) = r1 - r2 - R(3);
  } else if (m == 4) {
    float a = R(1) + R(2), b = R(1) - R(2), c = R(3) + R(4), e = R(3) - R(4);
    O(0) = R(0) + a + c;
    O(1) = b + e * 2.0f;
    O(2) = a + c * 4.0f;
    O(3) = b + e * 8.0f + R(5);
  } else {
    float a1 = R(1) + R(2), b1 = R(1) - R(2), a2 = R(3) + R(4), b2 = R(3) - R(4), a3 = R(5) + R(6),
          b3 = R(5) - R(6);
    O(0) = R(0) + a1 + a2 + a3;
    O(1) = b1 + b2 * 2.0f + b3 * 0.5f;
    O(2) = a1 + a2 * 4.0f + a3 * 0.25f;
    O(3) = b1 + b2 * 8.0f + b3 * 0.125f;
    O(4) = a1 + a2 * 16.0f + a3 * 0.0625f;
    O(5) = b1 + b2 * 32.0f + b3 * 0.03125f + R(7);
  }
#undef R
#undef O
}

/* G (A x 3) of each F(m,3), matching wino_bt / wino_at. */
__constant float WG2[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
__constant float WG4[6][3] = {{0.25f, 0, 0},
                              {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                              {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                              {1.0f / 24, 1.0f / 12, 1.0f / 6},
                              {1.0f / 24, -1.0f / 12, 1.0f / 6},
                              {0, 0, 1}};
__constant float WG6[8][3] = {{1, 0, 0},
                              {-2.0f / 9, -2.0f / 9, -2.0f / 9},
                              {-2.0f / 9, 2.0f / 9, -2.0f / 9},
                              {1.0f / 90, 1.0f / 45, 2.0f / 45},
                              {1.0f / 90, -1.0f / 45, 2.0f / 45},
                              {32.0f / 45, 16.0f / 45, 8.0f / 45},
                              {32.0f / 45, -16.0f / 45, 8.0f / 45},
                              {0, 0, 1}};

inline float wino_gval(int m, int r, int c) {
  return m == 2 ? WG2[r][c] : m == 4 ? WG4[r][c] : WG6[r][c];
}

/* U = G g G^T of one filter (9 taps at w[e0..e0+8]) into u[k*plane + at], in type T. */
#define WINO_FILTER_TX(T, MM)                                                                                \
  {                                                                                                        \
    const int A = MM + 2, m = MM; /* constants: the loops unroll and the zeros of G fold away */          \
    T g[9], t[8][3];                                                                                       \
    for (int i = 0; i < 9; i++) g[i] = (T)ldw(w, w_dt, e0 + i);                                           \
    for (int r = 0; r < A; r++)                                                                            \
      for (int b = 0; b < 3; b++)                                                                          \
        t[r][b] = (T)wino_gval(m, r, 0) * g[b] + (T)wino_gval(m, r, 1) * g[3 + b] +                       \
                  (T)wino_gval(m, r, 2) * g[6 + b];                                                        \
    for (int r = 0; r < A; r++)                                                                            \
      for (int q = 0; q < A; q++)                                                                          \
        u[(r * A + q) * plane + at] = (float)(t[r][0] * (T)wino_gval(m, q, 0) +                            \
                                              t[r][1] * (T)wino_gval(m, q, 1) + t[r][2] * (T)wino_gval(m, q, 2)); \
  }

/* U = G g G^T for output channels [co0, co0 + cb) into u[k*plane + (co-co0)*Ci + ci],
 * plane = cb*Ci; in acc_t (double where available, like the CPU's WINO_FILTER) when
 * precise, else in float (the fused path, redone every run, as the CPU's fused one).
 * Global size (Ci, cb). */
__kernel void wino_filter(__global const uchar *wb, ulong wo, int w_dt, __global uchar *ub, ulong uo, int m, long Ci,
                          long co0, long cb, int precise) {
  const long ci = get_global_id(0), cl = get_global_id(1);
  if (ci >= Ci || cl >= cb) return;
  __global const uchar *w = wb + wo;
  __global float *u = PTR(float, ub, uo);
  const long plane = cb * Ci, at = cl * Ci + ci, e0 = ((co0 + cl) * Ci + ci) * 9;
  if (precise) {
    if (m == 2) WINO_FILTER_TX(acc_t, 2)
    else if (m == 4) WINO_FILTER_TX(acc_t, 4)
    else WINO_FILTER_TX(acc_t, 6)
  } else {
    if (m == 2) WINO_FILTER_TX(float, 2)
    else if (m == 4) WINO_FILTER_TX(float, 4)
    else WINO_FILTER_TX(float, 6)
  }
}

/* Global size (T, Ci): one tile of one channel per work-item. */
__kernel void wino_input(__global const uchar *xb, ulong xo, __global uchar *vb, ulong vo, int m, long N, long Ci,
                         long H, long W, long pad_h, long pad_w, long row0, long rows, long tw) {
  const long t = get_global_id(0), ci = get_global_id(1);
  const long T = N * rows * tw;
  if (t >= T || ci >= Ci) return;
  const int A = m + 2;
  const long per = rows * tw, n = t / per, r = t % per;
  const long iy0 = (row0 + r / tw) * m - pad_h, ix0 = (r % tw) * m - pad_w;
  __global const float *xc = CPTR(float, xb, xo) + (n * Ci + ci) * H * W;
  float d[8][8], s[8][8], o[8][8];
  for (int i = 0; i < A; i++) {
    const long iy = iy0 + i;
    for (int j = 0; j < A; j++) {
      const long ix = ix0 + j;
      d[i][j] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? xc[iy * W + ix] : 0.0f;
    }
  }
  for (int i = 0; i < A; i++) wino_bt(m, d[i], 1, s[i], 1);
  for (int j = 0; j < A; j++) wino_bt(m, &s[0][j], 8, &o[0][j], 8);
  __global float *v = PTR(float, vb, vo) + ci * T + t;
  for (int k = 0; k < A * A; k++) v[k * Ci * T] = o[k / A][k % A];
}

/* Global size (T, Co): y rows [row0*m, min(OH, (row0+rows)*m)) only. */
__kernel void wino_output(__global const uchar *mb, ulong mo, __global const uchar *bb, ulong bo, int has_bias,
                          __global const uchar *rb, ulong ro, int has_res, __global uchar *yb, ulong yo, int m,
                          long N, long Co, long OH, long OW, long row0, long rows, long tw) {
  const long t = get_global_id(0), co = get_global_id(1);
  const long T = N * rows * tw;
  if (t >= T || co >= Co) return;
  const int A = m + 2;
  const long per = rows * tw, n = t / per, r = t % per;
  const long oy0 = (row0 + r / tw) * m, ox0 = (r % tw) * m;
  __global const float *mp = CPTR(float, mb, mo) + co * T + t;
  float d[8][8], s[8][6], o[6][6];
  for (int k = 0; k < A * A; k++) d[k / A][k % A] = mp[k * Co * T];
  for (int i = 0; i < A; i++) wino_at(m, d[i], 1, s[i], 1);
  for (int j = 0; j < m; j++) wino_at(m, &s[0][j], 6, &o[0][j], 6);
  const float b = has_bias ? CPTR(float, bb, bo)[co] : 0.0f;
  __global const float *res = CPTR(float, rb, ro);
  __global float *y = PTR(float, yb, yo);
  const long plane = (n * Co + co) * OH * OW;
  for (int i = 0; i < m && oy0 + i < OH; i++)
    for (int j = 0; j < m && ox0 + j < OW; j++) {
      const long idx = plane + (oy0 + i) * OW + ox0 + j;
      float val = o[i][j] + b;
      if (has_res) val += res[idx];
      y[idx] = val;
    }
}
