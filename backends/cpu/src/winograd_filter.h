/* Winograd filter transform U = G g G^T, shared by the portable and the
 * AVX-512 builds (the same C; the ci loops vectorise to the build's width).
 * Computed in double and rounded once to f32. */
#ifndef SDF_CPU_WINOGRAD_FILTER_H
#define SDF_CPU_WINOGRAD_FILTER_H

#include "gemm.h"

/* Filter transform matrices G (A x 3), matching B^T / A^T in winograd_tx.h. */
static const double G2[4][3] = {
    {1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double G4[6][3] = {{0.25, 0, 0},
                                {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                {0, 0, 1}};
static const double G6[8][3] = {{1, 0, 0},
                                {-2.0 / 9, -2.0 / 9, -2.0 / 9},
                                {-2.0 / 9, 2.0 / 9, -2.0 / 9},
                                {1.0 / 90, 1.0 / 45, 2.0 / 45},
                                {1.0 / 90, -1.0 / 45, 2.0 / 45},
                                {32.0 / 45, 16.0 / 45, 8.0 / 45},
                                {32.0 / 45, -16.0 / 45, 8.0 / 45},
                                {0, 0, 1}};

/* U = G g G^T for CB input channels at a time (the ci loops vectorise), in
 * double, written panel-sequentially into each of the A*A planes of u. */
#define FILTER_CB 8
static inline __attribute__((always_inline)) void sdfw_filter_panel(
    const int A, const double (*G)[3], const sdf_tensor *w, float *u, int64_t Co,
    int64_t Ci, int64_t p0, int64_t h) {
  float ob[64][FILTER_CB * SDFG_MR]; /* per plane: this (c0, panel) run */
  for (int64_t c0 = 0; c0 < Ci; c0 += FILTER_CB) {
    const int nc = (int)sdfg_min(FILTER_CB, Ci - c0);
    for (int64_t i = 0; i < h; i++) {
      double g[9][FILTER_CB], t[8][3][FILTER_CB], o[64][FILTER_CB];
      const int64_t e0 = ((p0 + i) * Ci + c0) * 9;
      for (int c = 0; c < FILTER_CB; c++)
        for (int a = 0; a < 9; a++) g[a][c] = 0.0;
      if (w->dtype == SDF_F32) {
        const float *src = (const float *)w->data + e0;
        for (int c = 0; c < nc; c++)
          for (int a = 0; a < 9; a++) g[a][c] = src[c * 9 + a];
      } else if (sdfq_is_quant(w->dtype)) {
        float run[FILTER_CB * 9];
        sdfq_to_f32(run, w->data, w->dtype, e0, nc * 9);
        for (int c = 0; c < nc; c++)
          for (int a = 0; a < 9; a++) g[a][c] = run[c * 9 + a];
      } else {
        for (int c = 0; c < nc; c++)
          for (int a = 0; a < 9; a++) g[a][c] = sdfg_load(w->data, w->dtype, e0 + c * 9 + a);
      }
      for (int r = 0; r < A; r++)
        for (int b = 0; b < 3; b++)
          for (int c = 0; c < FILTER_CB; c++)
            t[r][b][c] = G[r][0] * g[b][c] + G[r][1] * g[3 + b][c] + G[r][2] * g[6 + b][c];
      for (int r = 0; r < A; r++)
        for (int q = 0; q < A; q++)
          for (int c = 0; c < FILTER_CB; c++)
            o[r * A + q][c] =
                t[r][0][c] * G[q][0] + t[r][1][c] * G[q][1] + t[r][2][c] * G[q][2];
      for (int k = 0; k < A * A; k++)
        for (int c = 0; c < FILTER_CB; c++) ob[k][c * h + i] = (float)o[k][c];
    }
    for (int k = 0; k < A * A; k++)
      memcpy(u + k * Co * Ci + p0 * Ci + c0 * h, ob[k], (size_t)(nc * h) * sizeof(float));
  }
}

/* One 6-channel panel [p0, p0 + h) of u from w[Co, Ci, 3, 3]. */
static inline void sdfw_filter_panels(int m, const sdf_tensor *w, float *u, int64_t Co,
                                      int64_t Ci, int64_t p0, int64_t h) {
  if (m == 2) sdfw_filter_panel(4, G2, w, u, Co, Ci, p0, h);
  else if (m == 4) sdfw_filter_panel(6, G4, w, u, Co, Ci, p0, h);
  else sdfw_filter_panel(8, G6, w, u, Co, Ci, p0, h);
}

#endif
