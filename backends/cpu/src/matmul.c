/* MATMUL: y[M, N] = x[M, K] @ W[N, K]^T (+ b), PyTorch Linear.
 *
 * Chunks are (M block, N block) output tiles sized so that both threads get
 * several chunks for M = 77 (CLIP) as well as M = 8192 (UNet tokens). Each
 * chunk packs its share of W (converting f16 / bf16 to f32 while packing, so
 * narrow weights cost no extra pass) and of x into per-thread scratch, then
 * runs the gemm.h driver. Nothing is cached across runs: weights may change
 * between runs (LoRA merges write them in place), so packing is per run.
 *
 * Under precision bf16 (sdf_current_bf16) the same chunks run the
 * gemm_bf16.h engine instead: W and x are rounded to bf16 while packing
 * (W's share once per chunk and K block, reused for all of the chunk's
 * rows), products are accumulated in f32 on AMX tiles or AVX512-BF16. */
#include <stdio.h>

#include "common.h"
#include "gemm.h"
#include "gemm_bf16.h"

#define MM_KC 384
#define MM_MC 240 /* rows of x packed at once (A block in L2) */

typedef struct mm_plan {
  int64_t M, N, K, kc, mch, nch, nm, nn;
} mm_plan;

static void mm_plan_make(mm_plan *p, int64_t M, int64_t N, int64_t K) {
  p->M = M;
  p->N = N;
  p->K = K;
  p->kc = sdfg_max(1, sdfg_min(K, MM_KC));
  int64_t mch = sdfg_min(sdfg_rup(M, 12), 512);
  int64_t nch = sdfg_rup(sdfg_cdiv(N, sdfg_cdiv(N, 384)), 32); /* balanced, <= 384 */
  /* Enough chunks for two threads to balance; split the side whose repacking
   * is cheaper (re-packing A costs ~1/nch per flop, B ~1/mch). */
  /* Small M: few chunks (each re-packs all of x); large M: enough that the
   * last chunks even out between threads. */
  const int64_t want = M >= 1024 ? 16 : 8;
  while (sdfg_cdiv(M, mch) * sdfg_cdiv(N, nch) < want) {
    if (nch > 64 && nch >= mch) nch = sdfg_rup(nch / 2, 32);
    else if (mch > 48) mch = sdfg_rup(mch / 2, 12);
    else if (nch > 32) nch = sdfg_rup(nch / 2, 32);
    else break;
  }
  p->mch = mch;
  p->nch = nch;
  p->nm = sdfg_cdiv(M, mch);
  p->nn = sdfg_cdiv(N, nch);
}

static size_t mm_scratch_floats(const mm_plan *p) {
  return (size_t)(p->kc * p->nch + sdfg_min(p->mch, MM_MC) * p->kc) +
         sdfg_pad_floats(p->kc) + 16;
}

#define MM_MC_BF16 256 /* rows of x packed at once in bf16 (multiple of 32: whole AMX blocks) */

/* Bytes of per-thread scratch of the bf16 path. */
static size_t mm_scratch_bf16(const mm_plan *p) {
  const int64_t kc = sdfg_min(p->K, SDFB_KC);
  return (sdfb_elems(p->nch, kc) + sdfb_elems(sdfg_min(p->mch, MM_MC_BF16), kc)) * sizeof(uint16_t) +
         (size_t)p->nch * sizeof(float) + 64;
}

static int32_t mm_prepare(sdf_op *op, char *err, size_t err_len) {
  if (op->n_in < 2 || op->n_in > 3 || op->n_out != 1) {
    snprintf(err, err_len, "MATMUL takes x, w, optional b and one output");
    return SDF_E_INVALID;
  }
  const sdf_tensor *x = op->in[0], *w = op->in[1], *y = op->out[0];
  if (x->dtype != SDF_F32 || y->dtype != SDF_F32) {
    snprintf(err, err_len, "MATMUL x and y must be f32");
    return SDF_E_INVALID;
  }
  if (!sdfg_is_weight_dtype(w->dtype)) {
    snprintf(err, err_len, "MATMUL weight dtype %d unsupported (f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0)",
             w->dtype);
    return SDF_E_UNSUPPORTED;
  }
  if (x->ndim < 1 || w->ndim != 2 || y->ndim != x->ndim) {
    snprintf(err, err_len, "MATMUL needs x[...,K], w[N,K], y[...,N] (ranks %d, %d, %d)",
             x->ndim, w->ndim, y->ndim);
    return SDF_E_INVALID;
  }
  const int64_t K = x->dims[x->ndim - 1], N = w->dims[0];
  if (sdfq_is_quant(w->dtype) && w->dims[1] % sdfq_block_elems(w->dtype) != 0) {
    snprintf(err, err_len, "MATMUL: a %s weight's rows of %lld do not split into blocks of %d",
             sdf_dtype_name(w->dtype), (long long)w->dims[1], (int)sdfq_block_elems(w->dtype));
    return SDF_E_INVALID;
  }
  if (w->dims[1] != K) {
    snprintf(err, err_len, "MATMUL: x has K=%lld but w is [%lld,%lld]", (long long)K,
             (long long)N, (long long)w->dims[1]);
    return SDF_E_INVALID;
  }
  for (int d = 0; d + 1 < x->ndim; d++)
    if (y->dims[d] != x->dims[d]) {
      snprintf(err, err_len, "MATMUL: y's leading dims must equal x's");
      return SDF_E_INVALID;
    }
  if (y->dims[y->ndim - 1] != N) {
    snprintf(err, err_len, "MATMUL: y's last dim must be N=%lld", (long long)N);
    return SDF_E_INVALID;
  }
  if (op->n_in == 3) {
    const sdf_tensor *b = op->in[2];
    if (!sdfg_is_float_dtype(b->dtype) || b->numel != N) {
      snprintf(err, err_len, "MATMUL bias must hold N=%lld float values", (long long)N);
      return SDF_E_INVALID;
    }
  }
  const int64_t M = K > 0 ? x->numel / K : (N > 0 ? y->numel / N : 0);
  mm_plan p;
  mm_plan_make(&p, M, N, K);
  op->n_chunks = (M > 0 && N > 0) ? p.nm * p.nn : 1;
  op->scratch_bytes = mm_scratch_floats(&p) * sizeof(float);
  if (sdf_current_bf16 != SDF_BF16_NONE && mm_scratch_bf16(&p) > op->scratch_bytes)
    op->scratch_bytes = mm_scratch_bf16(&p);
  return SDF_OK;
}

static void mm_run(const sdf_op *op, int64_t chunk, void *scratch) {
  const sdf_tensor *x = op->in[0], *w = op->in[1], *y = op->out[0];
  const sdf_tensor *b = op->n_in == 3 ? op->in[2] : NULL;
  const int64_t K = x->dims[x->ndim - 1], N = w->dims[0];
  const int64_t M = K > 0 ? x->numel / K : (N > 0 ? y->numel / N : 0);
  if (M <= 0 || N <= 0) return;
  mm_plan p;
  mm_plan_make(&p, M, N, K);
  const int64_t m0 = (chunk / p.nn) * p.mch, n0 = (chunk % p.nn) * p.nch;
  const int64_t m1 = sdfg_min(M, m0 + p.mch), n1 = sdfg_min(N, n0 + p.nch);
  const int64_t nc = n1 - n0;
  float *Y = (float *)y->data;
  const float *X = (const float *)x->data;
  float *bp = (float *)scratch;
  float *ap = bp + p.kc * p.nch;
  float *pad = ap + sdfg_min(p.mch, MM_MC) * p.kc;
#if defined(__x86_64__) || defined(_M_X64)
  if (sdf_current_bf16 != SDF_BF16_NONE && K > 0) {
    uint16_t *bb = (uint16_t *)scratch;
    uint16_t *ab = bb + sdfb_elems(p.nch, sdfg_min(K, SDFB_KC));
    /* The bias (as f32) starts the accumulators of the first K block. */
    float *bias = b ? (float *)(ab + sdfb_elems(sdfg_min(p.mch, MM_MC_BF16), sdfg_min(K, SDFB_KC))) : NULL;
    for (int64_t j = 0; bias && j < nc; j++) bias[j] = sdfg_load(b->data, b->dtype, n0 + j);
    for (int64_t k0 = 0; k0 < K; k0 += SDFB_KC) {
      const int64_t kc = sdfg_min(SDFB_KC, K - k0);
      sdfb_pack_bt(bb, sdfg_elem_ptr(w->data, w->dtype, n0 * K), w->dtype, K, nc, k0, kc);
      for (int64_t ms = m0; ms < m1; ms += MM_MC_BF16) {
        const int64_t mc = sdfg_min(MM_MC_BF16, m1 - ms);
        sdfb_pack_a(ab, X + ms * K, SDF_F32, K, mc, k0, kc);
        sdfb_gemm(sdf_current_bf16, mc, nc, sdfb_kp(kc), ab, bb, Y + ms * N + n0, N, k0 > 0, bias);
      }
    }
    return;
  }
#endif
  const sdfg_kernels *u = sdfg_select();
  if (K == 0) {
    for (int64_t i = m0; i < m1; i++)
      for (int64_t j = n0; j < n1; j++) Y[i * N + j] = 0.0f;
  }
  for (int64_t k0 = 0; k0 < K; k0 += p.kc) {
    const int64_t kc = sdfg_min(p.kc, K - k0);
    const void *wrows = sdfg_elem_ptr(w->data, w->dtype, n0 * K);
    sdfg_pack_bt(bp, wrows, w->dtype, K, nc, k0, kc);
    for (int64_t ms = m0; ms < m1; ms += MM_MC) {
      const int64_t mc = sdfg_min(MM_MC, m1 - ms);
      sdfg_pack_a(ap, X + ms * K, SDF_F32, K, mc, k0, kc);
      sdfg_gemm(u, mc, nc, kc, ap, bp, Y + ms * N + n0, N, 0, mc, 0, nc, kc,
                k0 > 0, pad);
    }
  }
  if (b)
    for (int64_t i = m0; i < m1; i++)
      for (int64_t j = n0; j < n1; j++) Y[i * N + j] += sdfg_load(b->data, b->dtype, j);
}

const sdf_kernel sdf_kernel_matmul = {SDF_OP_MATMUL, "matmul", mm_prepare, mm_run,
                                      NULL};
