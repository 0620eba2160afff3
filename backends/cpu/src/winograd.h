/*
 * Winograd F(m x m, 3 x 3) convolution, m in {2, 4, 6}, A = m + 2, as the
 * four stage ops of sdflow_backend.h (WINO_FILTER / INPUT / GEMM / OUTPUT).
 *
 * Layouts (private to these ops; every buffer holds exactly the element
 * count of its logical shape, so the engine allocates them by that shape).
 * k = r*A + c indexes the A x A transform positions.
 *
 *  u [A*A, Co, Ci]: per k, the Co x Ci matrix U_k in the GEMM "A operand"
 *    format of gemm.h: row panels of 6 output channels; panel p (channels
 *    6p .. 6p+h-1, h = min(6, Co - 6p)) starts at k*Co*Ci + 6p*Ci and holds
 *    element (co, ci) at [ci*h + co - 6p].
 *  v [A*A, Ci, T]: per k, the Ci x T matrix V_k in the GEMM "B operand"
 *    format: column panels of 16 tiles; panel q (tiles 16q .. 16q+w-1,
 *    w = min(16, T - 16q)) starts at k*Ci*T + 16q*Ci and holds (ci, t) at
 *    [ci*w + t - 16q].
 *  m_ [A*A, Co, T]: plain row-major (m_[k][co][t]), the GEMM's C.
 *  Tile t = (n*tiles_h + ty)*tiles_w + tx covers output rows ty*m .. ty*m+m-1
 *  and columns tx*m .. ; input rows ty*m - pad_h .. + A - 1 (zero outside).
 *  Row bands (INPUT / OUTPUT p[3] = row0, p[4] = rows): v and m_ hold only
 *  tile rows ty in [row0, row0 + rows), t = (n*rows + ty - row0)*tiles_w + tx
 *  (T = N*rows*tiles_w); tiles keep their absolute positions (padding, edge
 *  clipping and residual as for the full conv), and OUTPUT writes only
 *  output rows [row0*m, min(OH, (row0+rows)*m)) of the full y, with masked
 *  stores that touch nothing else, so bands may run concurrently. Measured
 *  (Zen 5, 1 thread, F(6,3), bands run one after another): 8 tile rows
 *  (48 output rows, v + m_ = 43 MB for the VAE's 128@512, 256@256 and
 *  512@128 convs) is within 3% of the unbanded time (128@512: 5% faster,
 *  v + m_ drops from 462 MB); 4 rows (22 MB) costs 0-14%; 1-2 rows up to
 *  65% on 512@128 (too few tiles per GEMM).
 *
 * Stage work and chunks (threads claim chunks dynamically):
 *  FILTER: G g G^T in double, rounded to f32; one chunk per 6-channel panel.
 *  INPUT:  B^T d B in f32, one SIMD lane per tile, 16 tiles (one v panel)
 *          per vector. AVX-512: each tile's patch row is one masked 8-float
 *          load (masks = zero padding / image edge), 8x8 transposes turn 16
 *          rows into vectors across tiles; non-temporal stores when v exceeds
 *          8 MiB and is 64-byte aligned. AVX2: 2 x 8 lanes, masked gathers.
 *          NEON: 4 lanes (GCC vector types), scalar patch loads.
 *          Chunk = (block of up to 32 panels ~ 8 tile rows, <= 8 channels),
 *          channel-major inside, next channel's rows prefetched.
 *  GEMM:   A*A independent Co x Ci @ Ci x T products on gemm.h micro-kernels
 *          (AVX-512 12x32, 24x16 for the last <= 16 tiles, 6x64 for Co <= 6);
 *          chunk = (k, Co block <= 288, T block <= 512).
 *          Needs sdfg_pad_floats(min(Ci, 512)) floats = 22*min(Ci,512)*4 bytes
 *          of per-thread scratch; INPUT, OUTPUT and FILTER need none.
 *  Fused GEMM (p[1] = 1, in[0] = w[Co,Ci,3,3]): chunk = (Co block, T block
 *          <= 512); per Ci block the weights are transformed (f32, lanes =
 *          consecutive pairs of a u panel, taps copied tap-major first, no
 *          gathers: AVX-512 / AVX2 / portable GCC vectors, the latter also
 *          the NEON build) into A*A planes of per-thread scratch, then the
 *          A*A products of that block run on the same micro-kernels. Blocks:
 *          Co 192 x Ci 512 (capped at 2^22 floats) when T > 128, Co 96 x
 *          Ci 256 when T <= 128 (see winograd_gemm.c); scratch is about
 *          A^2 * mb * kc floats: up to ~14 MB per thread when T > 128
 *          (F(4,3) 192 x 512, F(6,3) 192 x 256), up to 6.3 MB otherwise.
 *          Cost vs a precomputed u (Zen 5, 1 thread, SD UNet at 256^2,
 *          batch 2, best m of each): +2% .. +25% on the 32^2 / 64^2 / 640@16
 *          shapes, +15% at 1280@16, 1.5x at 1280@8 (T = 32) and 2x at
 *          1280@4 (T = 8), where reading w (DRAM) dominates; 1.2x .. 4x
 *          faster than im2col on all of them, and 1.1x .. 2.7x faster than
 *          running WINO_FILTER every step.
 *  OUTPUT: A^T M A in f32 + bias + residual; AVX-512 transposes back and
 *          writes each tile row with one masked store (edge tiles clipped);
 *          while channel co is transformed, the next channel's A*A runs of
 *          m_ (panels q0 .. q1) are prefetched in address order, A*A lines
 *          per panel (1.15-1.35x over a fixed two panels ahead; the 64
 *          strided streams cap reads at ~17-24 GB/s per core here vs 38
 *          sequential). Chunks as INPUT, over Co. In a fresh process most of
 *          the profiled WINO_OUTPUT time of the VAE's big convs is the first
 *          touch of y's arena pages (page faults + zeroing; `conv_harness
 *          output` with FRESH_Y=1: 4x slower), not this kernel.
 * Alignment: none required (64-byte alignment of v enables streaming stores).
 * Sizes: T = N * ceil(OH/m) * ceil(OW/m); v and m_ are A^2/m^2 times the
 * size of x and y per channel (1.78x for m = 6 at exact tiling). The SIMD
 * transforms index x / y with 32-bit offsets: tensors of 2^31 elements or
 * more use the scalar transforms.

 * Accuracy (f32 throughout, WINO_FILTER's filter transform in double, the
 * fused one in f32: fused vs hoisted differ by <= 1.7e-5 of max |y|). Measured by
 * backends/cpu/tests/conv_harness.c (`check`) against a float64 direct conv
 * on SD-like data (x ~ N(0,1), w ~ N(0, 1/(9 Ci)), Ci 128 .. 2560, 8..40 px,
 * pad 0/1), as max |y - y64| / max |y64|, every ISA:
 *   F(2,3) <= 9e-7,  F(4,3) <= 1.4e-5,  F(6,3) <= 2.4e-5
 *   (im2col + GEMM: 5e-7; CONV2D algo 1 accumulates in double: exact).
 * Contract bounds: 1e-5 / 1e-4 / 1e-3.
 */
#ifndef SDF_CPU_WINOGRAD_H
#define SDF_CPU_WINOGRAD_H

#include <stdint.h>

#include "kernel.h"

#define SDFW_QB_MAX 32

typedef struct sdfw_geom {
  int m, A;
  int64_t N, C;       /* C: Ci for the input stage, Co for the output stage */
  int64_t H, W;       /* input spatial size (input stage) */
  int64_t OH, OW;     /* output spatial size */
  int64_t pad_h, pad_w;
  int64_t row0;       /* first tile row of the band (0: whole image) */
  int64_t th, tw, T;  /* tile rows in the band, tiles per row, tiles (N*th*tw) */
} sdfw_geom;

/* Input transform of tile panels [q0, q1) (16 tiles each, q1 - q0 <=
 * SDFW_QB_MAX) for channels [c0, c1), channel-major. */
typedef void (*sdfw_input_fn)(const sdfw_geom *g, const float *x, float *v,
                              int64_t q0, int64_t q1, int64_t c0, int64_t c1);
/* Output transform of tile panels [q0, q1) for output channels [c0, c1).
 * bias and res may be NULL. */
typedef void (*sdfw_output_fn)(const sdfw_geom *g, const float *mm,
                               const float *bias, const float *res, float *y,
                               int64_t q0, int64_t q1, int64_t c0, int64_t c1);

void sdfw_input_scalar(const sdfw_geom *g, const float *x, float *v, int64_t q0,
                       int64_t q1, int64_t c0, int64_t c1);
void sdfw_output_scalar(const sdfw_geom *g, const float *mm, const float *bias,
                        const float *res, float *y, int64_t q0, int64_t q1,
                        int64_t c0, int64_t c1);
#if defined(__x86_64__) || defined(_M_X64)
void sdfw_input_avx512(const sdfw_geom *g, const float *x, float *v, int64_t q0,
                       int64_t q1, int64_t c0, int64_t c1);
void sdfw_output_avx512(const sdfw_geom *g, const float *mm, const float *bias,
                        const float *res, float *y, int64_t q0, int64_t q1,
                        int64_t c0, int64_t c1);
void sdfw_filter_avx512(int m, const sdf_tensor *w, float *u, int64_t Co,
                        int64_t Ci, int64_t p0, int64_t h);
void sdfw_input_avx2(const sdfw_geom *g, const float *x, float *v, int64_t q0,
                     int64_t q1, int64_t c0, int64_t c1);
void sdfw_output_avx2(const sdfw_geom *g, const float *mm, const float *bias,
                      const float *res, float *y, int64_t q0, int64_t q1,
                      int64_t c0, int64_t c1);
void sdfw_fblock_avx512(int m, const sdf_tensor *w, int64_t co0, int64_t mb,
                        int64_t ci0, int64_t kc, int64_t ps, float *dst, float *tmp);
void sdfw_fblock_avx2(int m, const sdf_tensor *w, int64_t co0, int64_t mb,
                      int64_t ci0, int64_t kc, int64_t ps, float *dst, float *tmp);
#endif

#if defined(__aarch64__)
void sdfw_input_neon(const sdfw_geom *g, const float *x, float *v, int64_t q0,
                     int64_t q1, int64_t c0, int64_t c1);
void sdfw_output_neon(const sdfw_geom *g, const float *mm, const float *bias,
                      const float *res, float *y, int64_t q0, int64_t q1,
                      int64_t c0, int64_t c1);
#endif

/* Fused WINO_GEMM filter transform (f32 arithmetic): rows [co0, co0 + mb)
 * and input channels [ci0, ci0 + kc) of w[Co,Ci,3,3] (f32 / f16 / bf16) into
 * the A*A planes dst + k*ps, each the mb x kc block in the GEMM A format
 * (6-row panels packed with K = kc); ps >= mb*kc + 16 (the last vector
 * store may run into the padding). tmp: SDFW_FBLOCK_TMP(kc) floats. */
typedef void (*sdfw_fblock_fn)(int m, const sdf_tensor *w, int64_t co0, int64_t mb,
                               int64_t ci0, int64_t kc, int64_t ps, float *dst, float *tmp);
#define SDFW_FBLOCK_TAPS(kc) (((int64_t)(kc) * 6 + 15) / 16 * 16)
#define SDFW_FBLOCK_TMP(kc) (9 * SDFW_FBLOCK_TAPS(kc) + (int64_t)(kc) * 9 * 6)
void sdfw_fblock_portable(int m, const sdf_tensor *w, int64_t co0, int64_t mb,
                          int64_t ci0, int64_t kc, int64_t ps, float *dst, float *tmp);

/* Shared prepare() checks: the m param (returns m, or -1 with err written)
 * and an f32 tensor of rank ndim (returns 0 with err written). */
int sdfw_check_m(const sdf_op *op, char *err, size_t n);
int sdfw_check_f32(const sdf_tensor *t, int ndim, const char *what, char *err,
                   size_t n);

/* The F(m,3) to use for a 3x3 stride-1 conv, or 0 where Winograd does not
 * pay (Ci < 16: im2col is memory-bound and cheaper; Co < 16: likewise, and
 * CONV2D's direct kernel handles Co <= 8). Minimises a cost model fitted on
 * Zen 5 (AVX-512): A^2 * (cols(T) * Ci * Co + 60 * T * (Ci + Co)), the GEMM
 * term counting the columns the micro-kernel tiles really compute and the
 * second the transforms' memory traffic. The planner mirrors this. */
int sdfw_choose_m(int64_t N, int64_t Ci, int64_t Co, int64_t OH, int64_t OW);

/* Tile t of the band -> (image, first output row / col in the full image;
 * the input patch starts pad_h / pad_w before). */
static inline void sdfw_tile(const sdfw_geom *g, int64_t t, int64_t *n,
                             int64_t *y0, int64_t *x0) {
  int64_t per = g->th * g->tw;
  *n = t / per;
  int64_t r = t % per;
  *y0 = (g->row0 + r / g->tw) * g->m;
  *x0 = (r % g->tw) * g->m;
}

#endif
