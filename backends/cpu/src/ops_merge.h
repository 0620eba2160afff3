/*
 * The rounding step of MERGE_LOW_RANK (ops_merge.c), per ISA:
 *   y[j] = round_dtype(w[j] + (c[j] + d[j]))   (d may be NULL: + c[j] only)
 * w and y of dtype SDF_F32 / SDF_F16 / SDF_BF16, c and d float32; the sum in
 * float32, rounded to nearest even as sdf_f32_to_f16 / sdf_f32_to_bf16 do.
 */
#ifndef SDF_CPU_OPS_MERGE_H
#define SDF_CPU_OPS_MERGE_H

#include <stdint.h>

void sdf_merge_round_scalar(int32_t dtype, const void *w, const float *c, const float *d, void *y, int64_t n);
#if defined(__x86_64__) || defined(_M_X64)
void sdf_merge_round_avx2(int32_t dtype, const void *w, const float *c, const float *d, void *y, int64_t n);
#endif

#endif
