/* NEON (AArch64) GEMM micro-kernel: 6 x 16 register tile, 24 q accumulators,
 * A lanes multiplied in with fmla-by-element. Compiled on aarch64 only. */
#if defined(__aarch64__)
#include <arm_neon.h>

#include "gemm.h"

static void ukr_neon_6x16(int64_t kc, const float *const *a,
                          const float *const *b, float *c, int64_t ldc,
                          int mr, int nr, int accumulate) {
  const float *a0 = a[0], *b0 = b[0];
  float32x4_t acc[6][4];
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_f32(0.0f);
  for (int64_t k = 0; k < kc; k++) {
    const float *pb = b0 + k * 16, *pa = a0 + k * 6;
    const float32x4_t bv0 = vld1q_f32(pb), bv1 = vld1q_f32(pb + 4);
    const float32x4_t bv2 = vld1q_f32(pb + 8), bv3 = vld1q_f32(pb + 12);
    const float32x4_t a03 = vld1q_f32(pa);
    const float32x2_t a45 = vld1_f32(pa + 4);
#define SDFG_NEON_ROW(i, av, lane, LANEFN)                 \
  acc[i][0] = LANEFN(acc[i][0], bv0, av, lane);            \
  acc[i][1] = LANEFN(acc[i][1], bv1, av, lane);            \
  acc[i][2] = LANEFN(acc[i][2], bv2, av, lane);            \
  acc[i][3] = LANEFN(acc[i][3], bv3, av, lane);
    SDFG_NEON_ROW(0, a03, 0, vfmaq_laneq_f32)
    SDFG_NEON_ROW(1, a03, 1, vfmaq_laneq_f32)
    SDFG_NEON_ROW(2, a03, 2, vfmaq_laneq_f32)
    SDFG_NEON_ROW(3, a03, 3, vfmaq_laneq_f32)
    SDFG_NEON_ROW(4, a45, 0, vfmaq_lane_f32)
    SDFG_NEON_ROW(5, a45, 1, vfmaq_lane_f32)
#undef SDFG_NEON_ROW
  }
  if (mr == 6 && nr == 16) {
    for (int i = 0; i < 6; i++) {
      float *ci = c + i * ldc;
      for (int j = 0; j < 4; j++) {
        float32x4_t v = acc[i][j];
        if (accumulate) v = vaddq_f32(v, vld1q_f32(ci + 4 * j));
        vst1q_f32(ci + 4 * j, v);
      }
    }
    return;
  }
  float tmp[6][16];
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < 4; j++) vst1q_f32(tmp[i] + 4 * j, acc[i][j]);
  for (int i = 0; i < mr; i++) {
    float *ci = c + i * ldc;
    if (accumulate)
      for (int j = 0; j < nr; j++) ci[j] += tmp[i][j];
    else
      for (int j = 0; j < nr; j++) ci[j] = tmp[i][j];
  }
}

const sdfg_kernels sdfg_kernels_neon = {{1, 1, ukr_neon_6x16}, {0, 0, NULL}, {0, 0, NULL}};
#endif
