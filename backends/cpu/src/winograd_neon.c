/* NEON (AArch64) Winograd input / output transforms: one lane per tile, 4
 * tiles per float32x4 (written with GCC vector types, so the transform
 * arithmetic of winograd_tx.h runs 4 tiles at a time). Patches are gathered
 * with scalar, bounds-checked loads; v rows are stored 4 tiles at once, y
 * per tile. Compiled on aarch64 only. */
#if defined(__aarch64__)
#include <arm_neon.h>

#include "gemm.h"
#include "winograd.h"

typedef float v4 __attribute__((vector_size(16)));
#define WT v4
#include "winograd_tx.h"
#undef WT

#define AI static inline __attribute__((always_inline))

AI void input_m(const int m, const sdfw_geom *g, const float *x, float *v,
                int64_t q0, int64_t q1, int64_t c0, int64_t c1) {
  const int A = m + 2;
  const int64_t C = g->C, T = g->T, H = g->H, W = g->W, HW = H * W;
  for (int64_t ci = c0; ci < c1; ci++) {
    for (int64_t q = q0; q < q1; q++) {
      const int64_t t0 = q * SDFG_NR, w = sdfg_min(SDFG_NR, T - t0);
      for (int64_t l0 = 0; l0 < w; l0 += 4) {
        const int64_t nl = sdfg_min(4, w - l0);
        v4 d[8][8], t[8][8], o[8][8];
        for (int r = 0; r < A; r++)
          for (int c = 0; c < A; c++) d[r][c] = (v4){0, 0, 0, 0};
        for (int64_t j = 0; j < nl; j++) {
          int64_t n, oy0, ox0;
          sdfw_tile(g, t0 + l0 + j, &n, &oy0, &ox0);
          const int64_t iy0 = oy0 - g->pad_h, ix0 = ox0 - g->pad_w;
          const float *xc = x + (n * C + ci) * HW;
          for (int r = 0; r < A; r++) {
            const int64_t iy = iy0 + r;
            if (iy < 0 || iy >= H) continue;
            for (int c = 0; c < A; c++) {
              const int64_t ix = ix0 + c;
              if (ix >= 0 && ix < W) d[r][c][j] = xc[iy * W + ix];
            }
          }
        }
        for (int r = 0; r < A; r++) sdfw_bt(m, d[r], 1, t[r], 1);
        for (int c = 0; c < A; c++) sdfw_bt(m, &t[0][c], 8, &o[0][c], 8);
        float *vp = v + t0 * C + ci * w + l0;
        if (nl == 4) {
          for (int k = 0; k < A * A; k++) vst1q_f32(vp + k * C * T, (float32x4_t)o[k / A][k % A]);
        } else {
          for (int k = 0; k < A * A; k++)
            for (int64_t j = 0; j < nl; j++) vp[k * C * T + j] = o[k / A][k % A][j];
        }
      }
    }
  }
}

void sdfw_input_neon(const sdfw_geom *g, const float *x, float *v, int64_t q0,
                     int64_t q1, int64_t c0, int64_t c1) {
  switch (g->m) {
  case 2: input_m(2, g, x, v, q0, q1, c0, c1); break;
  case 4: input_m(4, g, x, v, q0, q1, c0, c1); break;
  default: input_m(6, g, x, v, q0, q1, c0, c1); break;
  }
}

AI void output_m(const int m, const sdfw_geom *g, const float *mm,
                 const float *bias, const float *res, float *y, int64_t q0,
                 int64_t q1, int64_t c0, int64_t c1) {
  const int A = m + 2;
  const int64_t C = g->C, T = g->T, OHW = g->OH * g->OW, OW = g->OW;
  for (int64_t co = c0; co < c1; co++) {
    const float b = bias ? bias[co] : 0.0f;
    for (int64_t q = q0; q < q1; q++) {
      const int64_t t0 = q * SDFG_NR, w = sdfg_min(SDFG_NR, T - t0);
      for (int64_t l0 = 0; l0 < w; l0 += 4) {
        const int64_t nl = sdfg_min(4, w - l0);
        v4 d[8][8], t[8][6], o[6][6];
        const float *mp = mm + co * T + t0 + l0;
        for (int k = 0; k < A * A; k++) {
          if (nl == 4) {
            d[k / A][k % A] = (v4)vld1q_f32(mp + k * C * T);
          } else {
            v4 z = {0, 0, 0, 0};
            for (int64_t j = 0; j < nl; j++) z[j] = mp[k * C * T + j];
            d[k / A][k % A] = z;
          }
        }
        for (int r = 0; r < A; r++) sdfw_at(m, d[r], 1, t[r], 1);
        for (int c = 0; c < m; c++) sdfw_at(m, &t[0][c], 6, &o[0][c], 6);
        for (int64_t j = 0; j < nl; j++) {
          int64_t n, oy0, ox0;
          sdfw_tile(g, t0 + l0 + j, &n, &oy0, &ox0);
          const int64_t plane = (n * C + co) * OHW;
          for (int r = 0; r < m && oy0 + r < g->OH; r++)
            for (int c = 0; c < m && ox0 + c < OW; c++) {
              const int64_t idx = plane + (oy0 + r) * OW + ox0 + c;
              y[idx] = o[r][c][j] + b + (res ? res[idx] : 0.0f);
            }
        }
      }
    }
  }
}

void sdfw_output_neon(const sdfw_geom *g, const float *mm, const float *bias,
                      const float *res, float *y, int64_t q0, int64_t q1,
                      int64_t c0, int64_t c1) {
  switch (g->m) {
  case 2: output_m(2, g, mm, bias, res, y, q0, q1, c0, c1); break;
  case 4: output_m(4, g, mm, bias, res, y, q0, q1, c0, c1); break;
  default: output_m(6, g, mm, bias, res, y, q0, q1, c0, c1); break;
  }
}
#endif
