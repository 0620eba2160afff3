/*
 * Winograd F(m,3) 1-D transforms, written once for any value type WT that
 * supports + - and * by a float constant: float (scalar path) or a GCC vector
 * type (one lane per tile in the SIMD paths). The including file defines WT.
 *
 * Interpolation points: F(2,3) {0, 1, -1, inf}; F(4,3) {0, +-1, +-2, inf};
 * F(6,3) {0, +-1, +-2, +-1/2, inf} (the NNPACK / ncnn choice). The matrices
 * (B^T, G, A^T) are listed in winograd.c next to the filter transform.
 *
 * in / out are arrays of A (input transform) or A -> m (output transform)
 * values addressed with element strides is / os.
 */
#ifndef WT
#error "define WT before including winograd_tx.h"
#endif

/* o = B^T d   (A = m + 2 values in, A out) */
static inline void sdfw_bt(int m, const WT *d, int is, WT *o, int os) {
#define D(i) d[(i) * is]
#define O(i) o[(i) * os]
  if (m == 2) {
    WT d0 = D(0), d1 = D(1), d2 = D(2), d3 = D(3);
    O(0) = d0 - d2;
    O(1) = d1 + d2;
    O(2) = d2 - d1;
    O(3) = d1 - d3;
  } else if (m == 4) {
    WT d0 = D(0), d1 = D(1), d2 = D(2), d3 = D(3), d4 = D(4), d5 = D(5);
    WT t1 = d4 - d2 * 4.0f, t2 = d3 - d1 * 4.0f;
    WT t3 = d4 - d2, t4 = (d3 - d1) * 2.0f;
    O(0) = d0 * 4.0f - d2 * 5.0f + d4;
    O(1) = t1 + t2;
    O(2) = t1 - t2;
    O(3) = t3 + t4;
    O(4) = t3 - t4;
    O(5) = d1 * 4.0f - d3 * 5.0f + d5;
  } else {
    WT d0 = D(0), d1 = D(1), d2 = D(2), d3 = D(3);
    WT d4 = D(4), d5 = D(5), d6 = D(6), d7 = D(7);
    O(0) = d0 - d6 + (d4 - d2) * 5.25f;
    O(7) = d7 - d1 + (d3 - d5) * 5.25f;
    WT a12 = d2 + d6 - d4 * 4.25f, b12 = d1 + d5 - d3 * 4.25f;
    O(1) = a12 + b12;
    O(2) = a12 - b12;
    WT a34 = d6 + d2 * 0.25f - d4 * 1.25f;
    WT b34 = d1 * 0.5f - d3 * 2.5f + d5 * 2.0f;
    O(3) = a34 + b34;
    O(4) = a34 - b34;
    WT a56 = d6 + (d2 - d4 * 1.25f) * 4.0f;
    WT b56 = d1 * 2.0f - d3 * 2.5f + d5 * 0.5f;
    O(5) = a56 + b56;
    O(6) = a56 - b56;
  }
#undef D
#undef O
}

/* o = A^T r   (A values in, m out) */
static inline void sdfw_at(int m, const WT *r, int is, WT *o, int os) {
#define R(i) r[(i) * is]
#define O(i) o[(i) * os]
  if (m == 2) {
    WT r1 = R(1), r2 = R(2);
    O(0) = R(0) + r1 + r2;
    O(1) = r1 - r2 - R(3);
  } else if (m == 4) {
    WT a = R(1) + R(2), b = R(1) - R(2), c = R(3) + R(4), e = R(3) - R(4);
    O(0) = R(0) + a + c;
    O(1) = b + e * 2.0f;
    O(2) = a + c * 4.0f;
    O(3) = b + e * 8.0f + R(5);
  } else {
    WT a1 = R(1) + R(2), b1 = R(1) - R(2);
    WT a2 = R(3) + R(4), b2 = R(3) - R(4);
    WT a3 = R(5) + R(6), b3 = R(5) - R(6);
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

/* o = G g   (3 values in, A out): the filter transform, in WT arithmetic
 * (the fused WINO_GEMM path; WINO_FILTER uses the double version in
 * winograd_filter.h). */
static inline void sdfw_g(int m, const WT *g, int is, WT *o, int os) {
#define G(i) g[(i) * is]
#define O(i) o[(i) * os]
  const WT g0 = G(0), g1 = G(1), g2 = G(2);
  if (m == 2) {
    const WT s = (g0 + g2) * 0.5f, h = g1 * 0.5f;
    O(0) = g0;
    O(1) = s + h;
    O(2) = s - h;
    O(3) = g2;
  } else if (m == 4) {
    const WT s = (g0 + g2) * (-1.0f / 6), h = g1 * (-1.0f / 6);
    const WT a = g0 * (1.0f / 24) + g2 * (1.0f / 6), b = g1 * (1.0f / 12);
    O(0) = g0 * 0.25f;
    O(1) = s + h;
    O(2) = s - h;
    O(3) = a + b;
    O(4) = a - b;
    O(5) = g2;
  } else {
    const WT s = (g0 + g2) * (-2.0f / 9), h = g1 * (-2.0f / 9);
    const WT a = g0 * (1.0f / 90) + g2 * (2.0f / 45), b = g1 * (1.0f / 45);
    const WT c = g0 * (32.0f / 45) + g2 * (8.0f / 45), d = g1 * (16.0f / 45);
    O(0) = g0;
    O(1) = s + h;
    O(2) = s - h;
    O(3) = a + b;
    O(4) = a - b;
    O(5) = c + d;
    O(6) = c - d;
    O(7) = g2;
  }
#undef G
#undef O
}

/* U = G g G^T of one 3x3 filter g[kh*3 + kw] into o[r*A + c]. */
static inline void sdfw_filter_tx(int m, const WT *g, WT *o) {
  const int A = m + 2;
  WT t[8][3];
  for (int l = 0; l < 3; l++) sdfw_g(m, &g[l], 3, &t[0][l], 3);
  for (int r = 0; r < A; r++) sdfw_g(m, t[r], 1, &o[r * A], 1);
}
