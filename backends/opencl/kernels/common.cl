/* Shared by every sdflow OpenCL program (prepended to each program of kernels/).
 * Tensors arrive as (buffer, byte offset); weights may be f32, f16 or bf16
 * and are widened exactly, as the CPU backend does. Reductions accumulate in
 * double where the device has it (like the CPU backend), else in float. */
/* a*b+c stays two roundings unless a kernel asks for fma(): the same results as the CPU backend (C11, no contraction) */
#pragma OPENCL FP_CONTRACT OFF

#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t;
#else
typedef float acc_t;
#endif

#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2
#define DT_I32 3

#define PTR(T, base, off) ((__global T *)((base) + (off)))
#define CPTR(T, base, off) ((__global const T *)((base) + (off)))

/* IEEE half bits -> float, exact (subnormals, inf, nan). */
inline float sdf_h2f(uint h) {
  uint s = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1fu) return as_float(s | 0x7f800000u | (m << 13));
  if (e == 0u) {
    if (m == 0u) return as_float(s);
    float v = (float)m * 5.9604644775390625e-8f;
    return s ? -v : v;
  }
  return as_float(s | ((e + 112u) << 23) | (m << 13));
}

/* Element i of a float tensor of dtype dt, widened to f32. */
inline float ldw(__global const uchar *p, int dt, long i) {
  if (dt == DT_F32) return ((__global const float *)p)[i];
  if (dt == DT_F16) return sdf_h2f(((__global const ushort *)p)[i]);
  if (dt == DT_BF16) return as_float(((uint)((__global const ushort *)p)[i]) << 16);
  return (float)((__global const int *)p)[i];
}

/* Sum of v over the work-group (all work-items must call it); red holds
 * get_local_size(0) values, a power of two. */
inline acc_t wg_sum(acc_t v, __local acc_t *red) {
  const int l = get_local_id(0), n = get_local_size(0);
  red[l] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = n / 2; s > 0; s >>= 1) {
    if (l < s) red[l] += red[l + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  acc_t r = red[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}

inline float wg_max(float v, __local float *red) {
  const int l = get_local_id(0), n = get_local_size(0);
  red[l] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = n / 2; s > 0; s >>= 1) {
    if (l < s) red[l] = fmax(red[l], red[l + s]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  float r = red[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}
