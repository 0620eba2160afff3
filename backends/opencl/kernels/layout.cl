/* Data movement (any dtype of 2 or 4 bytes; T = ushort / uint): CONCAT and
 * SLICE as strided row copies, UPSAMPLE_NEAREST, PERMUTE. */

#define LAYOUT_KERNELS(T, SFX)                                                                              \
  /* dst[o*drow + doff + j] = src[o*srow + soff + j], j < len; global size (len, outer) */                  \
  __kernel void copy2d_##SFX(__global const uchar *sb, ulong so, __global uchar *db, ulong dof, long len,      \
                             long outer, long srow, long soff, long drow, long doff) {                      \
    const long j = get_global_id(0), o = get_global_id(1);                                                  \
    if (j < len && o < outer) PTR(T, db, dof)[o * drow + doff + j] = CPTR(T, sb, so)[o * srow + soff + j];  \
  }                                                                                                         \
  /* global size (OW, OH, planes) */                                                                        \
  __kernel void upsample_##SFX(__global const uchar *xb, ulong xo, __global uchar *yb, ulong yo, long H,      \
                               long W, long s, long planes) {                                               \
    const long ox = get_global_id(0), oy = get_global_id(1), p = get_global_id(2);                          \
    const long OW = W * s, OH = H * s;                                                                      \
    if (ox < OW && oy < OH && p < planes)                                                                   \
      PTR(T, yb, yo)[(p * OH + oy) * OW + ox] = CPTR(T, xb, xo)[(p * H + oy / s) * W + ox / s];             \
  }                                                                                                         \
  /* y element i (dims ydims, rank r) = x at sum(coord_d * st_d) */                                         \
  __kernel void permute_##SFX(__global const uchar *xb, ulong xo, __global uchar *yb, ulong yo, long n, int r, \
                              long8 ydims, long8 st) {                                                      \
    const long i = get_global_id(0);                                                                        \
    if (i >= n) return;                                                                                     \
    const long dd[8] = {ydims.s0, ydims.s1, ydims.s2, ydims.s3, ydims.s4, ydims.s5, ydims.s6, ydims.s7};    \
    const long ss[8] = {st.s0, st.s1, st.s2, st.s3, st.s4, st.s5, st.s6, st.s7};                            \
    long rem = i, off = 0;                                                                                  \
    for (int d = r - 1; d >= 0; d--) {                                                                      \
      off += (rem % dd[d]) * ss[d];                                                                         \
      rem /= dd[d];                                                                                         \
    }                                                                                                       \
    PTR(T, yb, yo)[i] = CPTR(T, xb, xo)[off];                                                               \
  }

LAYOUT_KERNELS(uint, u32)
LAYOUT_KERNELS(ushort, u16)
