/* WINO_GEMM: the A*A products m_[k] = U_k @ V_k, with U_k either read from a
 * precomputed u (WINO_FILTER's output, "hoisted") or, with p[1] = fused = 1,
 * transformed from the raw weight w[Co,Ci,3,3] block by block into per-thread
 * scratch just before use (no u tensor). See winograd.h for layouts.
 *
 * Under precision bf16 the fused products of F(2,3) tiles (T >= 256) run on the bf16
 * engine (gemm_bf16.h): each transformed filter plane and V block is rounded
 * to bf16 just before its product. F(4,3) and F(6,3) stay f32: their
 * transforms multiply operand rounding by their larger coefficients, and in
 * bf16 the SD 1.5 reference (tests/sd15_reference_test.ts, 256x256) fell from
 * 44.4 dB (F(2,3) in bf16) to 37.6 dB (up to F(4,3)) and 35.0 dB (all) vs
 * sd.cpp. The hoisted (non-fused) products stay f32. */
#include <stdio.h>

#include "gemm.h"
#include "gemm_bf16.h"
#include "winograd.h"

typedef float pv8 __attribute__((vector_size(32)));
#define WT pv8
#include "winograd_tx.h"
#undef WT

#define FAIL(...)                        \
  do {                                   \
    snprintf(err, err_len, __VA_ARGS__); \
    return SDF_E_INVALID;                \
  } while (0)

/* Hoisted: chunk = (k, Co block <= 288, T block <= 512), K blocks of 512. */
#define HOIST_KC 512

/* Fused: chunk = (Co block, T block <= 512); inside it, per Ci block, the
 * filter block is transformed for all A*A k into scratch, then the A*A
 * products of that block run. The transform is done once per (Co block,
 * Ci block, T block); its share of the work is ~3 / (A^2 * T_blk) in flops
 * but it is bound by reading w (DRAM) and writing the block, so:
 *  - T > 128 (one transform serves many columns): big blocks, as the
 *    hoisted GEMM (Co 192 x Ci 512, the block capped at 16 MiB), so v is
 *    read few times and m_ accumulates over few Ci blocks;
 *  - T <= 128: Co 96 x Ci 256, the block closer to L2, since its write and
 *    re-read are not amortised over many columns. */
#define FUSED_NB 512
#define FUSED_MIN_CHUNKS 4
#define FUSED_BLOCK_MAX ((int64_t)1 << 22) /* floats */

/* Which fused products run in bf16 under precision bf16: F(2,3) with at
 * least 256 tiles. With fewer, rounding each transformed plane to bf16
 * costs more than the faster product saves (measured at 256x256: the
 * UNet's F(2,3) products, T = 32..128, went from 5.9 s to 12.2 s). */
#define SDFW_BF16_MAX_M 2
#define SDFW_BF16_MIN_T 256
static int wino_bf16(int m, int64_t T) {
  return sdf_current_bf16 != SDF_BF16_NONE && m <= SDFW_BF16_MAX_M && T >= SDFW_BF16_MIN_T;
}

typedef struct gemm_plan {
  int64_t nco, mb, ntb, nb, kc;
} gemm_plan;

static void hoisted_plan(gemm_plan *gp, int64_t Co, int64_t Ci, int64_t T) {
  gp->nco = sdfg_cdiv(Co, 288);
  gp->mb = sdfg_rup(sdfg_cdiv(Co, gp->nco), 12);
  gp->nco = sdfg_cdiv(Co, gp->mb);
  gp->ntb = sdfg_cdiv(T, 512);
  gp->nb = sdfg_rup(sdfg_cdiv(T, gp->ntb), 32);
  gp->ntb = sdfg_cdiv(T, gp->nb);
  gp->kc = sdfg_min(Ci, HOIST_KC);
}

static void fused_plan(gemm_plan *gp, int64_t AA, int64_t Co, int64_t Ci, int64_t T) {
  const int small_t = T <= 128;
  int64_t mb = small_t ? 96 : 192, nb = FUSED_NB, kc_max = small_t ? 256 : 512;
  while (kc_max > 64 && AA * mb * kc_max > FUSED_BLOCK_MAX) kc_max /= 2;
  /* Enough chunks for the threads to balance: split T (while blocks stay
   * >= 128 tiles), then Co (down to 24 channels). */
  while (sdfg_cdiv(Co, mb) * sdfg_cdiv(T, nb) < FUSED_MIN_CHUNKS) {
    if (nb >= 256 && sdfg_cdiv(T, nb / 2) > sdfg_cdiv(T, nb)) nb /= 2;
    else if (mb >= 48) mb /= 2;
    else break;
  }
  gp->nco = sdfg_cdiv(Co, mb);
  gp->mb = sdfg_rup(sdfg_cdiv(Co, gp->nco), 12);
  gp->nco = sdfg_cdiv(Co, gp->mb);
  gp->ntb = sdfg_cdiv(T, nb);
  gp->nb = sdfg_rup(sdfg_cdiv(T, gp->ntb), 32);
  gp->ntb = sdfg_cdiv(T, gp->nb);
  gp->kc = sdfg_cdiv(Ci, sdfg_cdiv(Ci, kc_max));
}

/* Floats between the transformed block's planes: >= mb*kc, and 64 bytes
 * past a multiple of 4 KiB, so the A*A store streams of the transform fall
 * in different cache sets (a multiple of 4 KiB thrashes L1 and L2). */
static int64_t plane_stride(const gemm_plan *gp) {
  return sdfg_rup(gp->mb * gp->kc, 1024) + 16;
}

/* Fused scratch, in floats: the transformed block (A*A planes), the 16-bit
 * weight conversion rows, the GEMM's edge-panel padding. */
static size_t fused_scratch_floats(int64_t AA, const gemm_plan *gp) {
  return (size_t)(AA * plane_stride(gp)) +
         (size_t)sdfg_rup(SDFW_FBLOCK_TMP(gp->kc), 16) + sdfg_pad_floats(gp->kc);
}

/* Extra bytes of the fused bf16 path: one plane of U and the chunk's V block
 * in bf16 tiles. */
static size_t fused_scratch_bf16(const gemm_plan *gp) {
  return (sdfb_elems(gp->mb, gp->kc) + sdfb_elems(gp->nb, gp->kc)) * sizeof(uint16_t) + 64;
}

static int32_t wgemm_prepare(sdf_op *op, char *err, size_t err_len) {
  const int m = sdfw_check_m(op, err, err_len);
  if (m < 0) return SDF_E_INVALID;
  const int64_t fused = op->n_p >= 2 ? op->p[1] : 0;
  if (fused != 0 && fused != 1) FAIL("WINO_GEMM fused (p[1]) must be 0 or 1, got %lld", (long long)fused);
  if (op->n_in != 2 || op->n_out != 1)
    FAIL("WINO_GEMM takes 2 inputs (%s, v) and 1 output", fused ? "w" : "u");
  const sdf_tensor *a = op->in[0], *v = op->in[1], *mm = op->out[0];
  if (!sdfw_check_f32(v, 3, "WINO_GEMM v", err, err_len) ||
      !sdfw_check_f32(mm, 3, "WINO_GEMM output m_", err, err_len))
    return SDF_E_INVALID;
  const int64_t AA = (int64_t)(m + 2) * (m + 2);
  int64_t Co, Ci;
  if (fused) {
    if (!sdfg_is_weight_dtype(a->dtype)) {
      snprintf(err, err_len, "fused WINO_GEMM weight dtype %d unsupported (f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0)",
               a->dtype);
      return SDF_E_UNSUPPORTED;
    }
    if (a->ndim != 4 || a->dims[2] != 3 || a->dims[3] != 3)
      FAIL("fused WINO_GEMM: in[0] must be the weight w[Co,Ci,3,3]");
    Co = a->dims[0];
    Ci = a->dims[1];
  } else {
    if (a->ndim == 4) FAIL("WINO_GEMM u must be [A*A,Co,Ci] (a rank-4 weight needs fused, p[1] = 1)");
    if (!sdfw_check_f32(a, 3, "WINO_GEMM u", err, err_len)) return SDF_E_INVALID;
    if (a->dims[0] != AA) FAIL("WINO_GEMM u: leading dim must be A*A = %lld", (long long)AA);
    Co = a->dims[1];
    Ci = a->dims[2];
  }
  const int64_t T = v->dims[2];
  if (Co < 1 || Ci < 1 || T < 1) FAIL("WINO_GEMM: empty dimension");
  if (v->dims[0] != AA || v->dims[1] != Ci)
    FAIL("WINO_GEMM v must be [%lld,%lld,T] (Ci = %lld from %s), got [%lld,%lld,%lld]",
         (long long)AA, (long long)Ci, (long long)Ci, fused ? "w" : "u", (long long)v->dims[0],
         (long long)v->dims[1], (long long)T);
  if (mm->dims[0] != AA || mm->dims[1] != Co || mm->dims[2] != T)
    FAIL("WINO_GEMM output must be [%lld,%lld,%lld]", (long long)AA, (long long)Co, (long long)T);
  gemm_plan gp;
  if (fused) {
    fused_plan(&gp, AA, Co, Ci, T);
    op->n_chunks = gp.nco * gp.ntb;
    op->scratch_bytes = fused_scratch_floats(AA, &gp) * sizeof(float);
    if (wino_bf16(m, T)) op->scratch_bytes += fused_scratch_bf16(&gp);
  } else {
    hoisted_plan(&gp, Co, Ci, T);
    op->n_chunks = AA * gp.nco * gp.ntb;
    op->scratch_bytes = sdfg_pad_floats(gp.kc) * sizeof(float);
  }
  return SDF_OK;
}

static void hoisted_run(const sdf_op *op, int64_t chunk, void *scratch) {
  const sdf_tensor *u = op->in[0], *v = op->in[1];
  const int64_t Co = u->dims[1], Ci = u->dims[2], T = v->dims[2];
  gemm_plan gp;
  hoisted_plan(&gp, Co, Ci, T);
  const int64_t k = chunk / (gp.nco * gp.ntb), rest = chunk % (gp.nco * gp.ntb);
  const int64_t i0 = (rest / gp.ntb) * gp.mb, j0 = (rest % gp.ntb) * gp.nb;
  const float *U = (const float *)u->data + k * Co * Ci;
  const float *V = (const float *)v->data + k * Ci * T;
  float *M = (float *)op->out[0]->data + k * Co * T;
  sdfg_gemm(sdfg_select(), Co, T, Ci, U, V, M, T, i0, i0 + gp.mb, j0, j0 + gp.nb, gp.kc, 0,
            scratch);
}

static sdfw_fblock_fn fblock_select(void) {
#if defined(__x86_64__) || defined(_M_X64)
  if (sdf_current_isa == SDF_ISA_AVX512) return sdfw_fblock_avx512;
  if (sdf_current_isa == SDF_ISA_AVX2) return sdfw_fblock_avx2;
#endif
  return sdfw_fblock_portable;
}

static void fused_run(const sdf_op *op, int64_t chunk, void *scratch) {
  const sdf_tensor *w = op->in[0], *v = op->in[1];
  const int m = (int)op->p[0];
  const int64_t AA = (int64_t)(m + 2) * (m + 2);
  const int64_t Co = w->dims[0], Ci = w->dims[1], T = v->dims[2];
  gemm_plan gp;
  fused_plan(&gp, AA, Co, Ci, T);
  const int64_t co0 = (chunk / gp.ntb) * gp.mb, j0 = (chunk % gp.ntb) * gp.nb;
  const int64_t mb = sdfg_min(gp.mb, Co - co0), j1 = sdfg_min(T, j0 + gp.nb);
  float *U = scratch;
  const int64_t ps = plane_stride(&gp);
  float *tmp = U + AA * ps;
  float *pad = tmp + sdfg_rup(SDFW_FBLOCK_TMP(gp.kc), 16);
  const sdfg_kernels *ks = sdfg_select();
  const sdfw_fblock_fn fblock = fblock_select();
  const float *V = v->data;
  float *M = (float *)op->out[0]->data + co0 * T;
#if defined(__x86_64__) || defined(_M_X64)
  if (wino_bf16(m, T)) {
    /* bf16: each transformed plane and the chunk's V block are rounded to
     * bf16 tiles just before their product (f32 accumulation). */
    uint16_t *ub = (uint16_t *)(pad + sdfg_pad_floats(gp.kc));
    ub = (uint16_t *)(((uintptr_t)ub + 63) & ~(uintptr_t)63);
    uint16_t *vb = ub + sdfb_elems(gp.mb, gp.kc);
    for (int64_t ci0 = 0; ci0 < Ci; ci0 += gp.kc) {
      const int64_t kc = sdfg_min(gp.kc, Ci - ci0);
      fblock(m, w, co0, mb, ci0, kc, ps, U, tmp);
      for (int64_t k = 0; k < AA; k++) {
        sdfb_pack_a_panels(ub, U + k * ps, mb, kc);
        sdfb_pack_b_panels(vb, V + k * Ci * T + j0 * Ci, Ci, j1 - j0, ci0, kc);
        sdfb_gemm(sdf_current_bf16, mb, j1 - j0, sdfb_kp(kc), ub, vb, M + k * Co * T + j0, T, ci0 > 0, NULL);
      }
    }
    return;
  }
#endif
  for (int64_t ci0 = 0; ci0 < Ci; ci0 += gp.kc) {
    const int64_t kc = sdfg_min(gp.kc, Ci - ci0);
    fblock(m, w, co0, mb, ci0, kc, ps, U, tmp);
    for (int64_t k = 0; k < AA; k++)
      sdfg_gemm_kb(ks, mb, T, kc, U + k * ps, kc, 0, V + k * Ci * T, Ci, ci0,
                   M + k * Co * T, T, 0, mb, j0, j1, kc, ci0 > 0, pad);
  }
}

static void wgemm_run(const sdf_op *op, int64_t chunk, void *scratch) {
  if (op->n_p >= 2 && op->p[1] == 1) fused_run(op, chunk, scratch);
  else hoisted_run(op, chunk, scratch);
}

const sdf_kernel sdf_kernel_wino_gemm = {SDF_OP_WINO_GEMM, "wino_gemm", wgemm_prepare,
                                         wgemm_run, NULL};

/* ---------------- portable fused filter transform ---------------- */

static void widen16(float *dst, const uint16_t *src, int32_t dtype, int64_t n) {
  for (int64_t e = 0; e < n; e++) dst[e] = sdfg_load(src, dtype, e);
}

#define FB_VL 8
#define FB_WIDEN widen16
#define WT pv8
#include "winograd_fblock.h"
#undef WT

void sdfw_fblock_portable(int m, const sdf_tensor *w, int64_t co0, int64_t mb, int64_t ci0,
                          int64_t kc, int64_t ps, float *dst, float *tmp) {
  fblock_dispatch(m, w, co0, mb, ci0, kc, ps, dst, tmp);
}
