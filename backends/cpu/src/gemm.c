/* GEMM engine: ISA dispatch, the cache-blocked driver and operand packing.
 * See gemm.h for the packed format and the micro-kernel contract. */
#include "gemm.h"

const sdfg_kernels *sdfg_select(void) {
  switch (sdf_current_isa) {
#if defined(__x86_64__) || defined(_M_X64)
  case SDF_ISA_AVX512:
    return &sdfg_kernels_avx512;
  case SDF_ISA_AVX2:
    return &sdfg_kernels_avx2;
#endif
#if defined(__aarch64__)
  case SDF_ISA_NEON:
    return &sdfg_kernels_neon;
#endif
  default:
    return &sdfg_kernels_scalar;
  }
}

/* Pointer to panel p of packed A (rows 6p.., packed with K columns) at k
 * offset k0, or a zero-padded copy in pad when the panel is narrow. */
static const float *a_panel(const float *A, int64_t M, int64_t K, int64_t p,
                            int64_t k0, int64_t kc, float *pad) {
  int64_t h = sdfg_min(SDFG_MR, M - p * SDFG_MR);
  const float *src = A + p * SDFG_MR * K + k0 * h;
  if (h == SDFG_MR) return src;
  for (int64_t k = 0; k < kc; k++) {
    int64_t i = 0;
    for (; i < h; i++) pad[k * SDFG_MR + i] = src[k * h + i];
    for (; i < SDFG_MR; i++) pad[k * SDFG_MR + i] = 0.0f;
  }
  return pad;
}

static const float *b_panel(const float *B, int64_t N, int64_t K, int64_t q,
                            int64_t k0, int64_t kc, float *pad) {
  int64_t w = sdfg_min(SDFG_NR, N - q * SDFG_NR);
  const float *src = B + q * SDFG_NR * K + k0 * w;
  if (w == SDFG_NR) return src;
  for (int64_t k = 0; k < kc; k++) {
    int64_t j = 0;
    for (; j < w; j++) pad[k * SDFG_NR + j] = src[k * w + j];
    for (; j < SDFG_NR; j++) pad[k * SDFG_NR + j] = 0.0f;
  }
  return pad;
}

void sdfg_gemm(const sdfg_kernels *ks, int64_t M, int64_t N, int64_t K,
               const float *A, const float *B, float *C, int64_t ldc,
               int64_t i0, int64_t i1, int64_t j0, int64_t j1, int64_t kc_max,
               int accumulate, float *pad) {
  sdfg_gemm_kb(ks, M, N, K, A, K, 0, B, K, 0, C, ldc, i0, i1, j0, j1, kc_max,
               accumulate, pad);
}

void sdfg_gemm_kb(const sdfg_kernels *ks, int64_t M, int64_t N, int64_t K,
                  const float *A, int64_t a_K, int64_t a_k0, const float *B,
                  int64_t b_K, int64_t b_k0, float *C, int64_t ldc, int64_t i0,
                  int64_t i1, int64_t j0, int64_t j1, int64_t kc_max,
                  int accumulate, float *pad) {
  if (i1 > M) i1 = M;
  if (j1 > N) j1 = N;
  if (i0 >= i1 || j0 >= j1) return;
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = i0; i < i1; i++)
        memset(C + i * ldc + j0, 0, (size_t)(j1 - j0) * sizeof(float));
    return;
  }
  /* Tile shape: the main one; 6 x 64 for blocks of at most 6 rows; and for
   * the last column group, when at most 16 columns remain, 24 x 16. */
  const sdfg_ukr *u0 = &ks->main;
  if (i1 - i0 <= SDFG_MR && ks->narrow_m.fn) u0 = &ks->narrow_m;
  const sdfg_ukr *un = (ks->narrow_n.fn && u0 == &ks->main) ? &ks->narrow_n : u0;
  if (kc_max <= 0) kc_max = K;
  float *pad_a = pad;                    /* 6 * kc_max */
  float *pad_b = pad + SDFG_MR * kc_max; /* 16 * kc_max */
  const int64_t last_ap = (M - 1) / SDFG_MR, last_bp = (N - 1) / SDFG_NR;
  const int a_tail = (M % SDFG_MR) != 0, b_tail = (N % SDFG_NR) != 0;
  const float *a[SDFG_MAX_PANELS], *b[SDFG_MAX_PANELS];
  for (int64_t k0 = 0; k0 < K; k0 += kc_max) {
    const int64_t kc = sdfg_min(kc_max, K - k0);
    const int acc = accumulate || k0 > 0;
    /* The narrow last panels, if in range, are zero-padded once per K block
     * (B's lazily, when its column group comes up). */
    const float *a_last = NULL;
    if (a_tail && i1 > last_ap * SDFG_MR) a_last = a_panel(A, M, a_K, last_ap, a_k0 + k0, kc, pad_a);
    for (int64_t j = j0; j < j1;) {
      const sdfg_ukr *u = j1 - j <= SDFG_NR ? un : u0;
      const int ap = u->a_panels, bp = u->b_panels;
      const int64_t mstep = (int64_t)ap * SDFG_MR, nstep = (int64_t)bp * SDFG_NR;
      for (int q = 0; q < bp; q++) {
        const int64_t pq = j / SDFG_NR + q;
        if (q > 0 && pq * SDFG_NR >= j1) b[q] = b[0];
        else if (b_tail && pq == last_bp) b[q] = b_panel(B, N, b_K, pq, b_k0 + k0, kc, pad_b);
        else b[q] = B + pq * SDFG_NR * b_K + (b_k0 + k0) * SDFG_NR;
      }
      const int nr = (int)sdfg_min(nstep, j1 - j);
      for (int64_t i = i0; i < i1; i += mstep) {
        for (int p = 0; p < ap; p++) {
          const int64_t pp = i / SDFG_MR + p;
          if (p > 0 && pp * SDFG_MR >= i1) a[p] = a[0];
          else if (a_tail && pp == last_ap) a[p] = a_last;
          else a[p] = A + pp * SDFG_MR * a_K + (a_k0 + k0) * SDFG_MR;
        }
        const int mr = (int)sdfg_min(mstep, i1 - i);
        u->fn(kc, a, b, C + i * ldc + j, ldc, mr, nr, acc);
      }
      j += nstep;
    }
  }
}

/* ---- packing ---- */

/* Quantized rows: each row's [k0, k0 + kc) is dequantized in runs of
 * QRUN elements (the blocks are read once, in order) and scattered into the
 * panel like the f32 path. */
#define QRUN 256

static void pack_a_quant(float *dst, const void *src, int32_t dtype, int64_t ld,
                         int64_t M, int64_t k0, int64_t kc) {
  float run[QRUN];
  for (int64_t p0 = 0; p0 < M; p0 += SDFG_MR) {
    const int64_t h = sdfg_min(SDFG_MR, M - p0);
    float *d = dst + p0 * kc;
    for (int64_t i = 0; i < h; i++)
      for (int64_t kb = 0; kb < kc; kb += QRUN) {
        const int64_t n = sdfg_min(QRUN, kc - kb);
        sdfq_to_f32(run, src, dtype, (p0 + i) * ld + k0 + kb, n);
        for (int64_t k = 0; k < n; k++) d[(kb + k) * h + i] = run[k];
      }
  }
}

static void pack_bt_quant(float *dst, const void *src, int32_t dtype, int64_t ld,
                          int64_t N, int64_t k0, int64_t kc) {
  float run[QRUN];
  for (int64_t q0 = 0; q0 < N; q0 += SDFG_NR) {
    const int64_t w = sdfg_min(SDFG_NR, N - q0);
    float *d = dst + q0 * kc;
    for (int64_t j = 0; j < w; j++)
      for (int64_t kb = 0; kb < kc; kb += QRUN) {
        const int64_t n = sdfg_min(QRUN, kc - kb);
        sdfq_to_f32(run, src, dtype, (q0 + j) * ld + k0 + kb, n);
        for (int64_t k = 0; k < n; k++) d[(kb + k) * w + j] = run[k];
      }
  }
}

void sdfg_pack_a(float *dst, const void *src, int32_t dtype, int64_t ld,
                 int64_t M, int64_t k0, int64_t kc) {
  if (sdfq_is_quant(dtype)) {
    pack_a_quant(dst, src, dtype, ld, M, k0, kc);
    return;
  }
#if defined(__x86_64__) || defined(_M_X64)
  if (sdf_current_isa == SDF_ISA_AVX512) {
    sdfg_pack_a_avx512(dst, src, dtype, ld, M, k0, kc);
    return;
  }
#endif
  for (int64_t p0 = 0; p0 < M; p0 += SDFG_MR) {
    const int64_t h = sdfg_min(SDFG_MR, M - p0);
    float *d = dst + p0 * kc;
    for (int64_t i = 0; i < h; i++) {
      const int64_t base = (p0 + i) * ld + k0;
      if (dtype == SDF_F32) {
        const float *s = (const float *)src + base;
        for (int64_t k = 0; k < kc; k++) d[k * h + i] = s[k];
      } else if (dtype == SDF_F16) {
        const uint16_t *s = (const uint16_t *)src + base;
        for (int64_t k = 0; k < kc; k++) d[k * h + i] = sdf_f16_to_f32(s[k]);
      } else {
        const uint16_t *s = (const uint16_t *)src + base;
        for (int64_t k = 0; k < kc; k++) d[k * h + i] = sdf_bf16_to_f32(s[k]);
      }
    }
  }
}

void sdfg_pack_bt(float *dst, const void *src, int32_t dtype, int64_t ld,
                  int64_t N, int64_t k0, int64_t kc) {
  if (sdfq_is_quant(dtype)) {
    pack_bt_quant(dst, src, dtype, ld, N, k0, kc);
    return;
  }
#if defined(__x86_64__) || defined(_M_X64)
  if (sdf_current_isa == SDF_ISA_AVX512) {
    sdfg_pack_bt_avx512(dst, src, dtype, ld, N, k0, kc);
    return;
  }
#endif
  for (int64_t q0 = 0; q0 < N; q0 += SDFG_NR) {
    const int64_t w = sdfg_min(SDFG_NR, N - q0);
    float *d = dst + q0 * kc;
    /* Blocks of 64 k keep the w destination lines and source runs hot. */
    for (int64_t kb = 0; kb < kc; kb += 64) {
      const int64_t ke = sdfg_min(kc, kb + 64);
      for (int64_t j = 0; j < w; j++) {
        const int64_t base = (q0 + j) * ld + k0;
        if (dtype == SDF_F32) {
          const float *s = (const float *)src + base;
          for (int64_t k = kb; k < ke; k++) d[k * w + j] = s[k];
        } else if (dtype == SDF_F16) {
          const uint16_t *s = (const uint16_t *)src + base;
          for (int64_t k = kb; k < ke; k++) d[k * w + j] = sdf_f16_to_f32(s[k]);
        } else {
          const uint16_t *s = (const uint16_t *)src + base;
          for (int64_t k = kb; k < ke; k++) d[k * w + j] = sdf_bf16_to_f32(s[k]);
        }
      }
    }
  }
}

void sdfg_pack_b(float *dst, const float *src, int64_t ld, int64_t N,
                 int64_t k0, int64_t kc) {
  for (int64_t q0 = 0; q0 < N; q0 += SDFG_NR) {
    const int64_t w = sdfg_min(SDFG_NR, N - q0);
    float *d = dst + q0 * kc;
    for (int64_t k = 0; k < kc; k++)
      memcpy(d + k * w, src + (k0 + k) * ld + q0, (size_t)w * sizeof(float));
  }
}
