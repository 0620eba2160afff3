/* CONV2D internals shared by conv.c and its per-ISA direct kernels. */
#ifndef SDF_CPU_CONV_H
#define SDF_CPU_CONV_H

#include <stdint.h>

/* Direct stride-1 convolution for few output channels (Co <= SDFC_SMALL_CO),
 * where im2col would spend its time building a matrix that each element of
 * is used only Co times. Computes output rows [oy0, oy1) of image n, all
 * channels, + bias. wt: weights converted to f32 and transposed to
 * [Ci][KH][KW][cop] with cop = SDFC_SMALL_CO (zero beyond Co). */
#define SDFC_SMALL_CO 8
#define SDFC_SMALL_KW 16

typedef struct sdfc_small {
  const float *x, *wt, *bias; /* bias may be NULL */
  float *y;
  float *dummy; /* OW floats of scratch */
  int64_t Ci, H, W, Co, KH, KW, OH, OW, ph, pw;
} sdfc_small;

#if defined(__x86_64__) || defined(_M_X64)
void sdfc_direct_small_avx512(const sdfc_small *c, int64_t n, int64_t oy0,
                              int64_t oy1);
#endif

#endif
