/*
 * bf16 GEMM engine: the reduced-precision counterpart of gemm.h, used by
 * MATMUL and CONV2D (im2col / 1x1) when the run asks for precision "bf16".
 *
 *   C[i, j] (+)= sum_k bf16(A[i, k]) * bf16(B[k, j])   (f32 accumulate, f32 out)
 *
 * Operands are rounded to bf16 (round to nearest even) while packing; each
 * product of two bf16 values is exact in f32 and the sums are f32, so
 * against exact arithmetic an element's error is at most
 *   (2 * 2^-8 + 2^-16 + K * 2^-24) * sum_k |A[i, k]| * |B[k, j]|     (K terms)
 * (backends/gemm_bf16_test.ts checks this bound).
 *
 * Packed format: the tile layout of AMX (16 rows x 64 bytes), which the
 * AVX512-BF16 kernel reads as well. K is padded with zeros to Kp, a multiple
 * of 32, and both operands are split into panels of 16, padded with zeros:
 *   A (M x K): row panel p (rows 16p .. 16p+15) at p*16*Kp; k block b (k in
 *     32b .. 32b+31) of it at b*512; element (i, k) at [(i%16)*32 + k%32]
 *     (a tile of 16 rows of 32 k).
 *   B (K x N): column panel q (columns 16q .. 16q+15) at q*16*Kp; k block b
 *     at b*512; element (k, j) at [((k%32)/2)*32 + (j%16)*2 + k%2]: the
 *     "VNNI" pair layout, 16 rows of 16 (k, k+1) pairs, as tdpbf16ps and
 *     vdpbf16ps expect.
 *
 * Kernels: AMX computes 32 x 32 blocks of C in four 16 x 16 f32 tiles (tmm0-3;
 * A in tmm4-5, B in tmm6-7, K in steps of 32); AVX512-BF16 computes 8 x 32
 * blocks in 16 zmm accumulators. Both clip what they store to M x N.
 */
#ifndef SDF_CPU_GEMM_BF16_H
#define SDF_CPU_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "kernel.h"

#define SDFB_P 16    /* rows of an A panel, columns of a B panel */
#define SDFB_TK 32   /* k of one tile block */
#define SDFB_KC 512  /* k per packed block the ops use (a B panel pair of it fits in L1) */

static inline int64_t sdfb_kp(int64_t k) { return (k + SDFB_TK - 1) / SDFB_TK * SDFB_TK; }

/* bf16 elements of a packed A of M rows (or B of M columns) over kc. */
static inline size_t sdfb_elems(int64_t m, int64_t kc) {
  return (size_t)((m + SDFB_P - 1) / SDFB_P) * SDFB_P * (size_t)sdfb_kp(kc);
}

#if defined(__x86_64__) || defined(_M_X64)
/* A (M x kc) from a row-major matrix of a weight dtype (f32, f16, bf16,
 * block-quantized): A[i, k] = src[i*ld + k0 + k]. k0 must be a multiple of
 * the quantization block for quantized dtypes. */
void sdfb_pack_a(uint16_t *dst, const void *src, int32_t dtype, int64_t ld, int64_t M, int64_t k0, int64_t kc);
/* B (kc x N) from the transpose of a row-major matrix (a Linear weight
 * W[N, K]): B[k, j] = src[j*ld + k0 + k]. */
void sdfb_pack_bt(uint16_t *dst, const void *src, int32_t dtype, int64_t ld, int64_t N, int64_t k0, int64_t kc);
/* B (kc x N) from a row-major f32 matrix: B[k, j] = src[(k0 + k)*ld + j]. */
void sdfb_pack_b(uint16_t *dst, const float *src, int64_t ld, int64_t N, int64_t k0, int64_t kc);
/* A (M x K) from gemm.h's f32 A format (6-row panels, packed with K
 * columns), e.g. Winograd's transformed filters. */
void sdfb_pack_a_panels(uint16_t *dst, const float *src, int64_t M, int64_t K);
/* B (kc x N) from columns [0, N) and rows [k0, k0 + kc) of gemm.h's f32 B
 * format packed with K rows (16-column panels), e.g. Winograd's v. The
 * first column must start a panel. */
void sdfb_pack_b_panels(uint16_t *dst, const float *src, int64_t K, int64_t N, int64_t k0, int64_t kc);

/* C[0:M, 0:N] (+)= A @ B over kp (a multiple of 32) with A, B packed as
 * above; C rows ldc floats apart. accumulate=0 overwrites C, with
 * C[i, j] = bias[j] + ... when bias is not NULL (N floats; ignored when
 * accumulating): the bias is where the accumulators start, not a pass. */
void sdfb_gemm(sdf_bf16_unit unit, int64_t M, int64_t N, int64_t kp, const uint16_t *A, const uint16_t *B, float *C,
               int64_t ldc, int accumulate, const float *bias);
void sdfb_gemm_avx512(int64_t M, int64_t N, int64_t kp, const uint16_t *A, const uint16_t *B, float *C, int64_t ldc,
                      int accumulate, const float *bias);
void sdfb_gemm_amx(int64_t M, int64_t N, int64_t kp, const uint16_t *A, const uint16_t *B, float *C, int64_t ldc,
                   int accumulate, const float *bias);
#endif

#endif
