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

#define SDFQ_BLOCK 32 /* elements per block of every supported format */

static inline int sdfq_is_quant(int32_t dtype) { return dtype >= SDF_Q4_0 && dtype <= SDF_Q8_0; }

/* Bytes per block of a quantized dtype, 0 if it is not one. */
static inline size_t sdfq_block_bytes(int32_t dtype) {
  switch (dtype) {
  case SDF_Q4_0: return 18;
  case SDF_Q4_1: return 20;
  case SDF_Q5_0: return 22;
  case SDF_Q5_1: return 24;
  case SDF_Q8_0: return 34;
  default: return 0;
  }
}

/* Bytes of n elements of a quantized dtype (n a multiple of SDFQ_BLOCK). */
static inline uint64_t sdfq_bytes(int32_t dtype, int64_t n) {
  return (uint64_t)(n / SDFQ_BLOCK) * sdfq_block_bytes(dtype);
}

/* Elements [e0, e0 + n) of the flattened quantized tensor at base, as f32.
 * Any e0 and n: partial blocks at either end are dequantized whole and
 * clipped. */
void sdfq_to_f32(float *dst, const void *base, int32_t dtype, int64_t e0, int64_t n);

/* Element i (slow; for the direct reference paths and small tensors). */
float sdfq_load1(const void *base, int32_t dtype, int64_t i);

/* nb whole blocks at src into dst (nb * SDFQ_BLOCK floats). */
void sdfq_blocks_scalar(int32_t dtype, float *dst, const uint8_t *src, int64_t nb);
#if defined(__x86_64__) || defined(_M_X64)
/* Q8_0 / Q4_0 with AVX-512 (returns 0 if dtype has no AVX-512 path). */
int sdfq_blocks_avx512(int32_t dtype, float *dst, const uint8_t *src, int64_t nb);
#endif

#endif
