/* bf16 GEMM engine, AVX-512 part: the packers (f32 -> bf16 with vcvtne2ps2bf16,
 * round to nearest even), the AVX512-BF16 micro-kernel and the dispatch
 * between it and the AMX one. See gemm_bf16.h for the packed format. */
#include <immintrin.h>

#include "gemm.h"
#include "gemm_bf16.h"
#include "transpose_avx512.h"

/* 32 f32 (lo: k 0..15, hi: k 16..31) as 32 bf16 in k order. */
static inline __m512i to_bf16(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }

static inline __mmask16 mask16(int64_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n > 0 ? n : 0)) - 1); }

/* Row segment [k0, k0 + kc) of row `row` of a weight as f32 in run (kc <= SDFB_KC). */
static const float *row_f32(float *run, const void *src, int32_t dtype, int64_t ld, int64_t row, int64_t k0,
                            int64_t kc) {
  const int64_t base = row * ld + k0;
  if (dtype == SDF_F32) return (const float *)src + base;
  if (sdfq_is_quant(dtype)) {
    sdfq_to_f32(run, src, dtype, base, kc);
    return run;
  }
  const uint16_t *s = (const uint16_t *)src + base;
  int64_t k = 0;
  for (; k + 16 <= kc; k += 16) {
    __m256i h = _mm256_loadu_si256((const __m256i *)(s + k));
    __m512 v = dtype == SDF_F16 ? _mm512_cvtph_ps(h) : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    _mm512_storeu_ps(run + k, v);
  }
  for (; k < kc; k++) run[k] = sdfg_load(s, dtype, k);
  return run;
}

/* One row's kc values (f32) as bf16 k blocks of 32: block b at dst + b*stride. */
static inline void row_to_tiles(uint16_t *dst, const float *r, int64_t kc, int64_t kp, int64_t stride) {
  for (int64_t k = 0; k < kp; k += SDFB_TK) {
    const __m512 lo = _mm512_maskz_loadu_ps(mask16(kc - k), r + k);
    const __m512 hi = _mm512_maskz_loadu_ps(mask16(kc - k - 16), r + k + 16);
    _mm512_storeu_si512(dst + (k / SDFB_TK) * stride, to_bf16(lo, hi));
  }
}

/* n (<= 32) values of an f32 / f16 / bf16 row from s as 32 bf16, zero-padded. */
static inline __m512i load32_bf16(const void *s, int32_t dtype, int64_t n) {
  if (n <= 0) return _mm512_setzero_si512();
  if (dtype == SDF_BF16) return _mm512_maskz_loadu_epi16(n >= 32 ? ~(__mmask32)0 : (((__mmask32)1 << n) - 1), s);
  if (dtype == SDF_F32)
    return to_bf16(_mm512_maskz_loadu_ps(mask16(n), s), _mm512_maskz_loadu_ps(mask16(n - 16), (const float *)s + 16));
  const uint16_t *h = s;
  const __m256i lo = _mm256_maskz_loadu_epi16(mask16(n), h), hi = _mm256_maskz_loadu_epi16(mask16(n - 16), h + 16);
  return to_bf16(_mm512_cvtph_ps(lo), _mm512_cvtph_ps(hi));
}

void sdfb_pack_a(uint16_t *dst, const void *src, int32_t dtype, int64_t ld, int64_t M, int64_t k0, int64_t kc) {
  const int64_t kp = sdfb_kp(kc);
  const size_t es = dtype == SDF_F32 ? 4 : 2;
  float run[SDFB_KC];
  const int64_t mp = (M + SDFB_P - 1) / SDFB_P * SDFB_P;
  for (int64_t i = 0; i < mp; i++) {
    uint16_t *d = dst + (i / SDFB_P) * SDFB_P * kp + (i % SDFB_P) * SDFB_TK;
    if (i >= M) {
      for (int64_t k = 0; k < kp; k += SDFB_TK) _mm512_storeu_si512(d + (k / SDFB_TK) * 512, _mm512_setzero_si512());
    } else if (sdfq_is_quant(dtype)) {
      row_to_tiles(d, row_f32(run, src, dtype, ld, i, k0, kc), kc, kp, 512);
    } else {
      const char *row = (const char *)src + (i * ld + k0) * es;
      for (int64_t k = 0; k < kp; k += SDFB_TK)
        _mm512_storeu_si512(d + (k / SDFB_TK) * 512, load32_bf16(row + k * es, dtype, kc - k));
    }
  }
}

void sdfb_pack_bt(uint16_t *dst, const void *src, int32_t dtype, int64_t ld, int64_t N, int64_t k0, int64_t kc) {
  const int64_t kp = sdfb_kp(kc);
  if (!sdfq_is_quant(dtype)) {
    /* 16 rows of W (columns of B) x 32 k, rounded to bf16, are 16 x 16
     * (k, k+1) pairs: transposed, row t is pair t of the 16 columns. */
    const size_t es = dtype == SDF_F32 ? 4 : 2;
    for (int64_t q0 = 0; q0 < N; q0 += SDFB_P) {
      const int64_t w = sdfg_min(SDFB_P, N - q0);
      uint16_t *d = dst + q0 * kp;
      for (int64_t k = 0; k < kp; k += SDFB_TK) {
        __m512 r[16];
        for (int64_t j = 0; j < 16; j++)
          r[j] = j < w ? _mm512_castsi512_ps(
                             load32_bf16((const char *)src + ((q0 + j) * ld + k0 + k) * es, dtype, kc - k))
                       : _mm512_setzero_ps();
        tr16x16(r);
        for (int t = 0; t < 16; t++) _mm512_storeu_ps(d + (k / SDFB_TK) * 512 + t * 32, r[t]);
      }
    }
    return;
  }
  float run[SDFB_KC];
  /* Each column j of a panel becomes 16 (k, k+1) pairs per k block, written
   * to the pair rows of the tile: a 16 x 16 transpose of 32-bit pairs. */
  _Alignas(64) uint32_t col[SDFB_P][SDFB_KC / 2];
  for (int64_t q0 = 0; q0 < N; q0 += SDFB_P) {
    const int64_t w = sdfg_min(SDFB_P, N - q0);
    uint16_t *d = dst + q0 * kp;
    for (int64_t j = 0; j < SDFB_P; j++) {
      if (j >= w) {
        memset(col[j], 0, (size_t)kp * 2);
        continue;
      }
      row_to_tiles((uint16_t *)col[j], row_f32(run, src, dtype, ld, q0 + j, k0, kc), kc, kp, SDFB_TK);
    }
    /* Column j's pair t of block b is col[j][b*16 + t]; it goes to
     * d[b*512 + t*32 + 2j]: gather the 16 columns' pair t. */
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(SDFB_KC / 2));
    for (int64_t b = 0; b < kp / SDFB_TK; b++)
      for (int t = 0; t < 16; t++) {
        const __m512i v = _mm512_i32gather_epi32(idx, (const void *)((const uint32_t *)col + b * 16 + t), 4);
        _mm512_storeu_si512(d + b * 512 + t * 32, v);
      }
  }
}

void sdfb_pack_b(uint16_t *dst, const float *src, int64_t ld, int64_t N, int64_t k0, int64_t kc) {
  const int64_t kp = sdfb_kp(kc);
  /* cvtne2ps gives row k's 16 values then row k+1's; interleave them into pairs. */
  const __m512i inter = _mm512_setr_epi32(0x100000, 0x110001, 0x120002, 0x130003, 0x140004, 0x150005, 0x160006,
                                          0x170007, 0x180008, 0x190009, 0x1a000a, 0x1b000b, 0x1c000c, 0x1d000d,
                                          0x1e000e, 0x1f000f);
  for (int64_t q0 = 0; q0 < N; q0 += SDFB_P) {
    const __mmask16 m = mask16(N - q0);
    uint16_t *d = dst + q0 * kp;
    for (int64_t k = 0; k < kp; k += 2) {
      const __m512 r0 = k < kc ? _mm512_maskz_loadu_ps(m, src + (k0 + k) * ld + q0) : _mm512_setzero_ps();
      const __m512 r1 = k + 1 < kc ? _mm512_maskz_loadu_ps(m, src + (k0 + k + 1) * ld + q0) : _mm512_setzero_ps();
      const __m512i v = _mm512_permutexvar_epi16(inter, to_bf16(r0, r1));
      _mm512_storeu_si512(d + (k / SDFB_TK) * 512 + (k % SDFB_TK / 2) * 32, v);
    }
  }
}

/* f32 -> bf16, round to nearest even (NaN stays NaN). */
static inline uint16_t bf16_rne(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

void sdfb_pack_a_panels(uint16_t *dst, const float *src, int64_t M, int64_t K) {
  const int64_t kp = sdfb_kp(K), mp = (M + SDFB_P - 1) / SDFB_P * SDFB_P;
  for (int64_t i = 0; i < mp; i++) {
    uint16_t *d = dst + (i / SDFB_P) * SDFB_P * kp + (i % SDFB_P) * SDFB_TK;
    if (i >= M) {
      for (int64_t k = 0; k < kp; k += SDFB_TK) memset(d + (k / SDFB_TK) * 512, 0, SDFB_TK * 2);
      continue;
    }
    const int64_t p0 = i / SDFG_MR * SDFG_MR, h = sdfg_min(SDFG_MR, M - p0);
    const float *s = src + p0 * K + (i - p0);
    for (int64_t k = 0; k < kp; k++) d[(k / SDFB_TK) * 512 + k % SDFB_TK] = k < K ? bf16_rne(s[k * h]) : 0;
  }
}

void sdfb_pack_b_panels(uint16_t *dst, const float *src, int64_t K, int64_t N, int64_t k0, int64_t kc) {
  const int64_t kp = sdfb_kp(kc);
  for (int64_t q0 = 0; q0 < N; q0 += SDFB_P) {
    const int64_t w = sdfg_min(SDFB_P, N - q0);
    sdfb_pack_b(dst + q0 * kp, src + q0 * K + k0 * w, w, w, 0, kc);
  }
}

/* C rows r0..r0+7 of a 16-row A panel x up to two B panels (nb), over nkb k blocks. */
static inline __attribute__((always_inline)) void bf_block8(int nb, int64_t nkb, const uint16_t *a,
                                                           const uint16_t *b0, const uint16_t *b1, float *c,
                                                           int64_t ldc, int rows, int nr, int acc,
                                                           const float *bias) {
  __m512 c0[8], c1[8];
  const __mmask16 m0 = mask16(nr), m1 = mask16(nr - 16);
  const __m512 b0v = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 b1v = bias && nb == 2 ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
  for (int r = 0; r < 8; r++) {
    c0[r] = acc && r < rows ? _mm512_maskz_loadu_ps(m0, c + r * ldc) : b0v;
    c1[r] = acc && r < rows && nb == 2 ? _mm512_maskz_loadu_ps(m1, c + r * ldc + 16) : b1v;
  }
  for (int64_t kb = 0; kb < nkb; kb++) {
    const uint16_t *ak = a + kb * 512, *bk0 = b0 + kb * 512, *bk1 = b1 + kb * 512;
    for (int t = 0; t < 16; t++) {
      const __m512bh B0 = (__m512bh)_mm512_loadu_si512(bk0 + t * 32);
      const __m512bh B1 = nb == 2 ? (__m512bh)_mm512_loadu_si512(bk1 + t * 32) : B0;
      for (int r = 0; r < 8; r++) {
        int32_t pair;
        memcpy(&pair, ak + r * SDFB_TK + 2 * t, 4);
        const __m512bh A = (__m512bh)_mm512_set1_epi32(pair);
        c0[r] = _mm512_dpbf16_ps(c0[r], A, B0);
        if (nb == 2) c1[r] = _mm512_dpbf16_ps(c1[r], A, B1);
      }
    }
  }
  for (int r = 0; r < rows; r++) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, c0[r]);
    if (nb == 2) _mm512_mask_storeu_ps(c + r * ldc + 16, m1, c1[r]);
  }
}

void sdfb_gemm_avx512(int64_t M, int64_t N, int64_t kp, const uint16_t *A, const uint16_t *B, float *C, int64_t ldc,
                      int accumulate, const float *bias) {
  const int64_t nkb = kp / SDFB_TK;
  for (int64_t j = 0; j < N; j += 2 * SDFB_P) {
    const uint16_t *b0 = B + j * kp, *b1 = b0 + SDFB_P * kp;
    const int nr = (int)sdfg_min(2 * SDFB_P, N - j);
    for (int64_t i = 0; i < M; i += 8) {
      const uint16_t *a = A + (i / SDFB_P) * SDFB_P * kp + (i % SDFB_P) * SDFB_TK;
      const int rows = (int)sdfg_min(8, M - i);
      const float *bj = bias && !accumulate ? bias + j : NULL;
      if (nr > SDFB_P) bf_block8(2, nkb, a, b0, b1, C + i * ldc + j, ldc, rows, nr, accumulate, bj);
      else bf_block8(1, nkb, a, b0, b0, C + i * ldc + j, ldc, rows, nr, accumulate, bj);
    }
  }
}

void sdfb_gemm(sdf_bf16_unit unit, int64_t M, int64_t N, int64_t kp, const uint16_t *A, const uint16_t *B, float *C,
               int64_t ldc, int accumulate, const float *bias) {
  if (M <= 0 || N <= 0) return;
  if (kp <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C[i * ldc + j] = bias ? bias[j] : 0.0f;
    return;
  }
  if (unit == SDF_BF16_AMX) sdfb_gemm_amx(M, N, kp, A, B, C, ldc, accumulate, bias);
  else sdfb_gemm_avx512(M, N, kp, A, B, C, ldc, accumulate, bias);
}
