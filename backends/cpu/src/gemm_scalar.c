/* Portable 6 x 16 GEMM micro-kernel (no ISA extensions assumed). The panel
 * is done as two 6 x 8 halves so that, with 128-bit SIMD (SSE2 / plain
 * AArch64), the 12 accumulator vectors fit the 16 registers. */
#include "gemm.h"

static void ukr_scalar_6x16(int64_t kc, const float *const *a,
                            const float *const *b, float *c, int64_t ldc,
                            int mr, int nr, int accumulate) {
  const float *a0 = a[0], *b0 = b[0];
  for (int h = 0; h < 2; h++) {
    const int j0 = 8 * h;
    if (j0 >= nr) break;
    float acc[SDFG_MR][8];
    memset(acc, 0, sizeof(acc));
    for (int64_t k = 0; k < kc; k++) {
      const float *pa = a0 + k * SDFG_MR, *pb = b0 + k * SDFG_NR + j0;
      for (int i = 0; i < SDFG_MR; i++) {
        const float ai = pa[i];
        for (int j = 0; j < 8; j++) acc[i][j] += ai * pb[j];
      }
    }
    const int nj = nr - j0 < 8 ? nr - j0 : 8;
    for (int i = 0; i < mr; i++) {
      float *ci = c + i * ldc + j0;
      if (accumulate)
        for (int j = 0; j < nj; j++) ci[j] += acc[i][j];
      else
        for (int j = 0; j < nj; j++) ci[j] = acc[i][j];
    }
  }
}

const sdfg_kernels sdfg_kernels_scalar = {{1, 1, ukr_scalar_6x16}, {0, 0, NULL}, {0, 0, NULL}};
