/* bf16 GEMM engine, AMX micro-kernel: 32 x 32 blocks of C in four f32 tiles
 * (tmm0-3), A panels in tmm4-5, B panels in tmm6-7, K in steps of 32. See
 * gemm_bf16.h for the packed format. The tile configuration is loaded at
 * every call (the calling thread may not have one) and released at the end,
 * so threads that are switched out carry no tile state between calls. */
#include <immintrin.h>

#include "gemm.h"
#include "gemm_bf16.h"

typedef struct amx_cfg {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((packed)) amx_cfg;

/* A 16 x 16 f32 tile t into C (rows, cols clipped), added to C when acc,
 * else to the bias row when there is one. */
static void merge(float *c, int64_t ldc, const float *t, int64_t rows, int64_t cols, int acc, const float *bias) {
  const __mmask16 m = cols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cols > 0 ? cols : 0)) - 1);
  const __m512 b = bias && !acc ? _mm512_maskz_loadu_ps(m, bias) : _mm512_setzero_ps();
  for (int64_t r = 0; r < rows; r++) {
    __m512 v = _mm512_add_ps(_mm512_loadu_ps(t + r * 16), b);
    if (acc) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, c + r * ldc));
    _mm512_mask_storeu_ps(c + r * ldc, m, v);
  }
}

/* na x nb panels (each 1 or 2): C[0:mr, 0:nr] (+)= A panels x B panels. */
static inline __attribute__((always_inline)) void amx_block(int na, int nb, int64_t nkb, const uint16_t *a0,
                                                           const uint16_t *a1, const uint16_t *b0,
                                                           const uint16_t *b1, float *c, int64_t ldc, int mr,
                                                           int nr, int acc, float *tmp, const float *bias) {
  const int full = mr == 16 * na && nr == 16 * nb;
  const size_t ld = (size_t)ldc * sizeof(float);
  if (acc && full) {
    _tile_loadd(0, c, ld);
    if (nb == 2) _tile_loadd(1, c + 16, ld);
    if (na == 2) _tile_loadd(2, c + 16 * ldc, ld);
    if (na == 2 && nb == 2) _tile_loadd(3, c + 16 * ldc + 16, ld);
  } else if (bias && full) { /* stride 0: the bias row in all 16 rows */
    _tile_loadd(0, bias, 0);
    if (nb == 2) _tile_loadd(1, bias + 16, 0);
    if (na == 2) _tile_loadd(2, bias, 0);
    if (na == 2 && nb == 2) _tile_loadd(3, bias + 16, 0);
  } else {
    _tile_zero(0);
    if (nb == 2) _tile_zero(1);
    if (na == 2) _tile_zero(2);
    if (na == 2 && nb == 2) _tile_zero(3);
  }
  for (int64_t kb = 0; kb < nkb; kb++) {
    _tile_loadd(4, a0 + kb * 512, 64);
    if (na == 2) _tile_loadd(5, a1 + kb * 512, 64);
    _tile_loadd(6, b0 + kb * 512, 64);
    if (nb == 2) _tile_loadd(7, b1 + kb * 512, 64);
    _tile_dpbf16ps(0, 4, 6);
    if (nb == 2) _tile_dpbf16ps(1, 4, 7);
    if (na == 2) _tile_dpbf16ps(2, 5, 6);
    if (na == 2 && nb == 2) _tile_dpbf16ps(3, 5, 7);
  }
  if (full) {
    _tile_stored(0, c, ld);
    if (nb == 2) _tile_stored(1, c + 16, ld);
    if (na == 2) _tile_stored(2, c + 16 * ldc, ld);
    if (na == 2 && nb == 2) _tile_stored(3, c + 16 * ldc + 16, ld);
    return;
  }
  _tile_stored(0, tmp, 64);
  merge(c, ldc, tmp, sdfg_min(16, mr), sdfg_min(16, nr), acc, bias);
  if (nb == 2) {
    _tile_stored(1, tmp, 64);
    merge(c + 16, ldc, tmp, sdfg_min(16, mr), nr - 16, acc, bias ? bias + 16 : NULL);
  }
  if (na == 2) {
    _tile_stored(2, tmp, 64);
    merge(c + 16 * ldc, ldc, tmp, mr - 16, sdfg_min(16, nr), acc, bias);
  }
  if (na == 2 && nb == 2) {
    _tile_stored(3, tmp, 64);
    merge(c + 16 * ldc + 16, ldc, tmp, mr - 16, nr - 16, acc, bias ? bias + 16 : NULL);
  }
}

void sdfb_gemm_amx(int64_t M, int64_t N, int64_t kp, const uint16_t *A, const uint16_t *B, float *C, int64_t ldc,
                   int accumulate, const float *bias) {
  amx_cfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; t++) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  _Alignas(64) float tmp[16 * 16];
  const int64_t nkb = kp / SDFB_TK, pstride = SDFB_P * kp;
  for (int64_t j = 0; j < N; j += 2 * SDFB_P) {
    const uint16_t *b0 = B + j * kp, *b1 = b0 + pstride;
    const int nr = (int)sdfg_min(2 * SDFB_P, N - j);
    const int nb = nr > SDFB_P ? 2 : 1;
    for (int64_t i = 0; i < M; i += 2 * SDFB_P) {
      const uint16_t *a0 = A + i * kp, *a1 = a0 + pstride;
      const int mr = (int)sdfg_min(2 * SDFB_P, M - i);
      float *c = C + i * ldc + j;
      const float *bj = bias && !accumulate ? bias + j : NULL;
      if (mr > SDFB_P) {
        if (nb == 2) amx_block(2, 2, nkb, a0, a1, b0, b1, c, ldc, mr, nr, accumulate, tmp, bj);
        else amx_block(2, 1, nkb, a0, a1, b0, b0, c, ldc, mr, nr, accumulate, tmp, bj);
      } else {
        if (nb == 2) amx_block(1, 2, nkb, a0, a0, b0, b1, c, ldc, mr, nr, accumulate, tmp, bj);
        else amx_block(1, 1, nkb, a0, a0, b0, b0, c, ldc, mr, nr, accumulate, tmp, bj);
      }
    }
  }
  _tile_release();
}
