/*
 * ggml block-quantized weights (SDF_Q4_0 .. SDF_Q8_0, see sdflow_backend.h):
 * sizes, and dequantization of any element range of a flattened tensor.
 * Kernels never expand a whole weight: the GEMM packers, the Winograd filter
 * transforms, GATHER_ROWS and COPY dequantize the rows they are packing,
 * transforming or copying, block by block, straight from the (mapped) file.
 */
#ifndef SDF_CPU_QUANT_H
#define SDF_CPU_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "../../sdflow_backend.h"

#define SDFQ_MAX_BLOCK 256 /* elements per block: 32, or 256 for the K-quants */

static inline int sdfq_is_quant(int32_t dtype) { return dtype >= SDF_Q4_0 && dtype <= SDF_Q6_K; }

/* Elements per block of a quantized dtype. */
static inline int64_t sdfq_block_elems(int32_t dtype) { return dtype >= SDF_Q2_K ? 256 : 32; }

/* Bytes per block of a quantized dtype, 0 if it is not one. */
static inline size_t sdfq_block_bytes(int32_t dtype) {
  switch (dtype) {
  case SDF_Q4_0: return 18;
  case SDF_Q4_1: return 20;
  case SDF_Q5_0: return 22;
  case SDF_Q5_1: return 24;
  case SDF_Q8_0: return 34;
  case SDF_Q2_K: return 84;
  case SDF_Q3_K: return 110;
  case SDF_Q4_K: return 144;
  case SDF_Q5_K: return 176;
  case SDF_Q6_K: return 210;
  default: return 0;
  }
}

/* Bytes of n elements of a quantized dtype (n whole blocks). */
static inline uint64_t sdfq_bytes(int32_t dtype, int64_t n) {
  return (uint64_t)(n / sdfq_block_elems(dtype)) * sdfq_block_bytes(dtype);
}

/* Elements [e0, e0 + n) of the flattened quantized tensor at base, as f32.
 * Any e0 and n: partial blocks at either end are dequantized whole and
 * clipped. */
void sdfq_to_f32(float *dst, const void *base, int32_t dtype, int64_t e0, int64_t n);

/* Element i (slow; for the direct reference paths and small tensors). */
float sdfq_load1(const void *base, int32_t dtype, int64_t i);

/* nb whole blocks at src into dst (nb * sdfq_block_elems(dtype) floats). */
void sdfq_blocks_scalar(int32_t dtype, float *dst, const uint8_t *src, int64_t nb);
#if defined(__x86_64__) || defined(_M_X64)
/* Q8_0 / Q4_0 with AVX-512 (returns 0 if dtype has no AVX-512 path). */
int sdfq_blocks_avx512(int32_t dtype, float *dst, const uint8_t *src, int64_t nb);
#endif

#endif
