/* Portable 6 x 16 GEMM micro-kernel (no ISA extensions assumed). */
#include "gemm.h"

static void ukr_scalar_6x16(int64_t kc, const float *const *a,
                            const float *const *b, float *c, int64_t ldc,
                            int mr, int nr, int accumulate) {
  const float *a0 = a[0], *b0 = b[0];
  float acc[SDFG_MR][SDFG_NR];
  memset(acc, 0, sizeof(acc));
  for (int64_t k = 0; k < kc; k++) {
    const float *a = a0 + k * SDFG_MR, *b = b0 + k * SDFG_NR;
    for (int i = 0; i < SDFG_MR; i++) {
      const float ai = a[i];
      for (int j = 0; j < SDFG_NR; j++) acc[i][j] += ai * b[j];
    }
  }
  for (int i = 0; i < mr; i++) {
    float *ci = c + i * ldc;
    if (accumulate)
      for (int j = 0; j < nr; j++) ci[j] += acc[i][j];
    else
      for (int j = 0; j < nr; j++) ci[j] = acc[i][j];
  }
}

const sdfg_kernels sdfg_kernels_scalar = {{1, 1, ukr_scalar_6x16}, {0, 0, NULL}, {0, 0, NULL}};
