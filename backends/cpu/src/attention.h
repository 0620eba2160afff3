/* The AVX-512 flash-attention kernel used by ops_attention.c (x86-64 only). */
#ifndef SDF_CPU_ATTENTION_H
#define SDF_CPU_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

enum { SDF_ATT512_BQ = 64, SDF_ATT512_BK = 128 };

#if defined(__x86_64__) || defined(_M_X64)
/* Per-thread scratch (bytes) for head dim d. */
size_t sdf_attention_avx512_scratch(int64_t d);
/* One block of nq <= SDF_ATT512_BQ queries (absolute index q0) of one head:
 * q, out point at the block's first row, k, v at the head's first key; all
 * rows are ld floats apart. Keys [0, kend) are used; causal: query q0+i sees
 * keys j <= q0+i. */
void sdf_attention_avx512(const float *q, const float *k, const float *v, float *out, int64_t ld, int nq, int64_t q0,
                          int64_t kend, int d, float scale, int causal, float *scratch);
#endif

#endif
