/* AVX-512 direct stride-1 convolution for few output channels (see conv.h):
 * a register tile of CB channels x PV*16 pixels of one output row; each
 * (ci, kh, kw) tap loads PV input vectors (masked at the image edges, which
 * gives the zero padding) and broadcasts CB weights. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "conv.h"
#include "gemm.h"

#define AI static inline __attribute__((always_inline))

AI __mmask16 lane_range(int64_t lo, int64_t hi) {
  lo = lo < 0 ? 0 : (lo > 16 ? 16 : lo);
  hi = hi < 0 ? 0 : (hi > 16 ? 16 : hi);
  if (hi <= lo) return 0;
  return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

#define SEG_BLOCKS 32

/* Per output row: the channels' rows start at the bias and are accumulated
 * one input channel at a time, sweeping that channel's KH input rows left to
 * right (sequential, prefetch-friendly); the output rows stay in L1. */
AI void rows_body(const int CB, const int PV, const int K3, const sdfc_small *c,
                  int64_t n, int64_t oy0, int64_t oy1) {
  const int64_t W = c->W, OW = c->OW, H = c->H;
  const int64_t KH = K3 ? 3 : c->KH, KW = K3 ? 3 : c->KW;
  const int co_n = (int)c->Co;
  const int64_t bw = 16 * PV; /* pixels per register tile */
  __mmask16 om[SEG_BLOCKS][4], lm[SEG_BLOCKS][SDFC_SMALL_KW][4];
  for (int64_t oy = oy0; oy < oy1; oy++) {
    /* Channels past Co accumulate into a dummy row, so the register tile
     * has no data-dependent branches. */
    float *yr[8];
    for (int co = 0; co < CB; co++) {
      yr[co] = co < co_n ? c->y + ((n * c->Co + co) * c->OH + oy) * OW : c->dummy;
      const float bv = c->bias && co < co_n ? c->bias[co] : 0.0f;
      for (int64_t i = 0; i < OW; i++) yr[co][i] = bv;
    }
    for (int64_t s0 = 0; s0 < OW; s0 += SEG_BLOCKS * bw) {
      const int64_t nb = sdfg_min(SEG_BLOCKS, sdfg_cdiv(OW - s0, bw));
      for (int64_t bi = 0; bi < nb; bi++)
        for (int v = 0; v < PV; v++) {
          const int64_t base = s0 + bi * bw + 16 * v;
          om[bi][v] = lane_range(0, OW - base);
          for (int64_t kw = 0; kw < KW; kw++) {
            const int64_t off = base + kw - c->pw;
            lm[bi][kw][v] = lane_range(-off, W - off) & om[bi][v];
          }
        }
      for (int64_t ci = 0; ci < c->Ci; ci++) {
        const float *xc = c->x + (n * c->Ci + ci) * H * W;
        const float *wc = c->wt + ci * KH * KW * SDFC_SMALL_CO;
        /* Each channel's rows are a new stream: fetch the next channel's
         * rows of this segment while this one is computed. */
        if (ci + 1 < c->Ci)
          for (int64_t kh = 0; kh < KH; kh++) {
            const int64_t iy = oy + kh - c->ph;
            if (iy < 0 || iy >= H) continue;
            const float *nx = xc + H * W + iy * W;
            for (int64_t i = sdfg_max(0, s0 - c->pw); i < sdfg_min(W, s0 + nb * bw + KW);
                 i += 16)
              _mm_prefetch((const char *)(nx + i), _MM_HINT_T0);
          }
        for (int64_t bi = 0; bi < nb; bi++) {
          const int64_t ox0 = s0 + bi * bw;
          __m512 acc[8][4];
#pragma GCC unroll 8
          for (int co = 0; co < CB; co++)
#pragma GCC unroll 4
            for (int v = 0; v < PV; v++)
              acc[co][v] = _mm512_maskz_loadu_ps(om[bi][v], yr[co] + ox0 + 16 * v);
          for (int64_t kh = 0; kh < KH; kh++) {
            const int64_t iy = oy + kh - c->ph;
            if (iy < 0 || iy >= H) continue;
            const float *xr = xc + iy * W + ox0 - c->pw;
            const float *wk = wc + kh * KW * SDFC_SMALL_CO;
            for (int64_t kw = 0; kw < KW; kw++) {
              __m512 xv[4];
#pragma GCC unroll 4
              for (int v = 0; v < PV; v++)
                xv[v] = _mm512_maskz_loadu_ps(lm[bi][kw][v], xr + kw + 16 * v);
#pragma GCC unroll 8
              for (int co = 0; co < CB; co++) {
                const __m512 wb = _mm512_set1_ps(wk[kw * SDFC_SMALL_CO + co]);
#pragma GCC unroll 4
                for (int v = 0; v < PV; v++)
                  acc[co][v] = _mm512_fmadd_ps(wb, xv[v], acc[co][v]);
              }
            }
          }
#pragma GCC unroll 8
          for (int co = 0; co < CB; co++)
#pragma GCC unroll 4
            for (int v = 0; v < PV; v++)
              _mm512_mask_storeu_ps(yr[co] + ox0 + 16 * v, om[bi][v], acc[co][v]);
        }
      }
    }
  }
}

void sdfc_direct_small_avx512(const sdfc_small *c, int64_t n, int64_t oy0,
                              int64_t oy1) {
  const int k3 = c->KH == 3 && c->KW == 3;
  if (c->Co <= 4) {
    if (k3) rows_body(4, 4, 1, c, n, oy0, oy1);
    else rows_body(4, 4, 0, c, n, oy0, oy1);
  } else {
    if (k3) rows_body(8, 3, 1, c, n, oy0, oy1);
    else rows_body(8, 3, 0, c, n, oy0, oy1);
  }
}
#endif
