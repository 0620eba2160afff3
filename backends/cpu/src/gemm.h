/*
 * f32 GEMM engine shared by MATMUL, CONV2D (im2col / 1x1) and WINO_GEMM.
 *
 *   C[i, j] (+)= sum_k A[i, k] * B[k, j]      (f32 in, f32 accumulate, f32 out)
 *
 * Both operands are consumed in one "panel-packed, exact-fit" format, so the
 * Winograd stage ops can produce it directly and packed data of M x K (or
 * K x N) elements occupies exactly M*K (K*N) floats:
 *
 *   A (M x K): row panels of SDFG_MR = 6 rows. Panel p holds rows 6p .. 6p+h-1,
 *     h = min(6, M - 6p), at offset p*6*K; element (i, k) of the panel is at
 *     [k*h + i]  (k-major, the h rows of one k adjacent).
 *   B (K x N): column panels of SDFG_NR = 16 columns. Panel q holds columns
 *     16q .. 16q+w-1, w = min(16, N - 16q), at offset q*16*K; element (k, j)
 *     is at [k*w + j].
 *
 * Only the last panel of either operand can be narrow; the driver copies it
 * into a zero-padded scratch panel, so micro-kernels only ever see full
 * 6-row / 16-column panels (they still clip what they store to C).
 *
 * Micro-kernels per ISA (each register tile is a whole number of panels):
 *   AVX-512  12 x 32 (2 A panels x 2 B panels, 24 zmm accumulators), plus
 *            24 x 16 for C blocks <= 16 columns and 6 x 64 for <= 6 rows
 *   AVX2      6 x 16 (12 ymm accumulators)
 *   NEON      6 x 16 (24 q accumulators)
 *   scalar    6 x 16 (plain C; the compiler may use SSE2)
 * Precision: operands are f32 (f16 / bf16 weights are widened exactly while
 * packing), products and sums are f32 FMAs (or mul+add in the scalar path).
 */
#ifndef SDF_CPU_GEMM_H
#define SDF_CPU_GEMM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "half.h"
#include "kernel.h"
#include "quant.h"

#define SDFG_MR 6
#define SDFG_NR 16

/* One micro-kernel call: C[0:mr, 0:nr] (+)= A-panels x B-panels over kc.
 * a[0..a_panels): full 6-row panels (stride 6 per k); b[0..b_panels): full
 * 16-column panels (stride 16 per k). Panels past the edge of C are passed
 * as duplicates of a[0] / b[0]; mr / nr say what to store. */
typedef void (*sdfg_ukr_fn)(int64_t kc, const float *const *a,
                            const float *const *b, float *c, int64_t ldc,
                            int mr, int nr, int accumulate);

typedef struct sdfg_ukr {
  int a_panels; /* A panels per call (<= SDFG_MAX_PANELS) */
  int b_panels; /* B panels per call */
  sdfg_ukr_fn fn;
} sdfg_ukr;

#define SDFG_MAX_PANELS 4

/* The micro-kernels of one ISA: the main tile, and optional shapes for
 * narrow problems (fn NULL when absent). */
typedef struct sdfg_kernels {
  sdfg_ukr main;
  sdfg_ukr narrow_n; /* used when the C block is at most 16 columns wide */
  sdfg_ukr narrow_m; /* used when the C block is at most 6 rows high */
} sdfg_kernels;

extern const sdfg_kernels sdfg_kernels_scalar;
#if defined(__x86_64__) || defined(_M_X64)
extern const sdfg_kernels sdfg_kernels_avx2;
extern const sdfg_kernels sdfg_kernels_avx512;
#endif
#if defined(__aarch64__)
extern const sdfg_kernels sdfg_kernels_neon;
#endif

/* Micro-kernels of the ISA selected now (sdf_current_isa). */
const sdfg_kernels *sdfg_select(void);

/* Floats of padding scratch sdfg_gemm needs for a given kc_max. */
static inline size_t sdfg_pad_floats(int64_t kc_max) {
  return (size_t)kc_max * (size_t)(2 * SDFG_MR + 2 * SDFG_NR);
}

/* C[i0:i1, j0:j1] (+)= A @ B over all K, with A (M x K) and B (K x N) in the
 * packed format above. i0 must be a multiple of 6 (12 keeps AVX-512 tiles
 * whole), j0 a multiple of 16. K is processed in blocks of kc_max; C rows are
 * ldc floats apart and C points at element (0, 0). accumulate=0 overwrites C.
 * pad: sdfg_pad_floats(kc_max) floats of scratch. */
void sdfg_gemm(const sdfg_kernels *ks, int64_t M, int64_t N, int64_t K,
               const float *A, const float *B, float *C, int64_t ldc,
               int64_t i0, int64_t i1, int64_t j0, int64_t j1, int64_t kc_max,
               int accumulate, float *pad);

/* sdfg_gemm over the K range [a_k0, a_k0 + K) of an A packed with a_K
 * columns and [b_k0, b_k0 + K) of a B packed with b_K rows (e.g. a block of
 * A packed on its own against all of B). */
void sdfg_gemm_kb(const sdfg_kernels *ks, int64_t M, int64_t N, int64_t K,
                  const float *A, int64_t a_K, int64_t a_k0, const float *B,
                  int64_t b_K, int64_t b_k0, float *C, int64_t ldc, int64_t i0,
                  int64_t i1, int64_t j0, int64_t j1, int64_t kc_max,
                  int accumulate, float *pad);

/* Element i of a weight of dtype SDF_F32 / SDF_F16 / SDF_BF16 / SDF_Q*. */
static inline float sdfg_load(const void *p, int32_t dtype, int64_t i) {
  if (dtype == SDF_F32) return ((const float *)p)[i];
  if (dtype == SDF_F16) return sdf_f16_to_f32(((const uint16_t *)p)[i]);
  if (dtype == SDF_BF16) return sdf_bf16_to_f32(((const uint16_t *)p)[i]);
  return sdfq_load1(p, dtype, i);
}

/* f32, f16 or bf16 (biases, activations' partners). */
static inline int sdfg_is_float_dtype(int32_t dt) {
  return dt == SDF_F32 || dt == SDF_F16 || dt == SDF_BF16;
}

/* A weight dtype the GEMM packers and filter transforms widen: a float
 * dtype or a block-quantized one. */
static inline int sdfg_is_weight_dtype(int32_t dt) {
  return sdfg_is_float_dtype(dt) || sdfq_is_quant(dt);
}

/* The address of element e of a weight (e whole blocks if
 * quantized: the start of a block). */
static inline const void *sdfg_elem_ptr(const void *base, int32_t dt, int64_t e) {
  if (sdfq_is_quant(dt)) return (const char *)base + sdfq_bytes(dt, e);
  return (const char *)base + e * (dt == SDF_F32 ? 4 : 2);
}

/* ---- packing into the exact-fit format (K = kc of the block) ---- */

/* A (M x kc) from a row-major matrix: A[i, k] = src[i*ld + k0 + k]. */
void sdfg_pack_a(float *dst, const void *src, int32_t dtype, int64_t ld,
                 int64_t M, int64_t k0, int64_t kc);
/* B (kc x N) from the transpose of a row-major matrix (PyTorch Linear
 * weight W[N, K]): B[k, j] = src[j*ld + k0 + k]. */
void sdfg_pack_bt(float *dst, const void *src, int32_t dtype, int64_t ld,
                  int64_t N, int64_t k0, int64_t kc);
#if defined(__x86_64__) || defined(_M_X64)
void sdfg_pack_a_avx512(float *dst, const void *src, int32_t dtype, int64_t ld,
                        int64_t M, int64_t k0, int64_t kc);
void sdfg_pack_bt_avx512(float *dst, const void *src, int32_t dtype, int64_t ld,
                         int64_t N, int64_t k0, int64_t kc);
#endif
/* B (kc x N) from a row-major f32 matrix: B[k, j] = src[(k0 + k)*ld + j]. */
void sdfg_pack_b(float *dst, const float *src, int64_t ld, int64_t N,
                 int64_t k0, int64_t kc);

static inline int64_t sdfg_cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t sdfg_rup(int64_t a, int64_t b) { return sdfg_cdiv(a, b) * b; }
static inline int64_t sdfg_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t sdfg_max(int64_t a, int64_t b) { return a > b ? a : b; }

#endif
