/*
 * ATTENTION (flash-style, fused) and BMM, built on the per-ISA qk_block /
 * pv_block / exp primitives of simd.h.
 *
 * Attention chunks are (batch, head, block of ATT_BQ queries). A chunk walks
 * the keys in blocks of ATT_BK with an online softmax (running row max m and
 * sum l; the output accumulator is rescaled when the max grows), so the
 * Nq x Nk score matrix never exists: per-thread scratch holds one
 * ATT_BQ x ATT_BK score tile and the ATT_BQ x D accumulator.
 * Causal masking is top-left aligned (PyTorch is_causal): query i sees keys
 * j <= i.
 * With AVX-512 (head dim <= ATT512_MAX_D) a chunk is a block of
 * SDF_ATT512_BQ queries run by sdf_attention_avx512 (ops_attention_avx512.c),
 * which keeps the queries in the vector lanes; the state records the choice.
 */
#include <math.h>

#include "attention.h"
#include "common.h"
#include "kernel.h"
#include "simd.h"

enum { ATT512_MAX_D = 1024, ATT_BQ = 32, ATT_BK = 128, BMM_BM = 32, BMM_BN = 256, BMM_BK = 256 };

/* ---- ATTENTION: p = heads, causal (default 0); f = scale (default 1/sqrt(D)) */

static int32_t attention_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "attention", 3, 3, 1, err, len));
  SDF_TRY(sdf_check_params(op, "attention", 1, 0, err, len));
  static const char *names[] = {"q", "k", "v"};
  for (int i = 0; i < 3; i++) SDF_TRY(sdf_check_f32(op->in[i], "attention", names[i], err, len));
  SDF_TRY(sdf_check_f32(op->out[0], "attention", "output", err, len));
  const sdf_tensor *q = op->in[0], *k = op->in[1], *v = op->in[2], *o = op->out[0];
  char a[96], b[96], c[96];
  if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3)
    return sdf_fail(err, len, SDF_E_INVALID, "attention: q %s, k %s, v %s must all be [B, N, H*D]",
                    sdf_shape_str(q, a, sizeof a), sdf_shape_str(k, b, sizeof b), sdf_shape_str(v, c, sizeof c));
  if (!sdf_same_shape(k, v) || k->dims[0] != q->dims[0] || k->dims[2] != q->dims[2])
    return sdf_fail(err, len, SDF_E_INVALID, "attention: q %s, k %s, v %s disagree (need k == v shape, same B and H*D)",
                    sdf_shape_str(q, a, sizeof a), sdf_shape_str(k, b, sizeof b), sdf_shape_str(v, c, sizeof c));
  if (!sdf_same_shape(q, o))
    return sdf_fail(err, len, SDF_E_INVALID, "attention: output %s must have the shape of q %s",
                    sdf_shape_str(o, a, sizeof a), sdf_shape_str(q, b, sizeof b));
  int64_t heads = op->p[0], hd = q->dims[2];
  if (heads < 1 || hd % heads != 0)
    return sdf_fail(err, len, SDF_E_INVALID, "attention: %lld channels not divisible by %lld heads", (long long)hd,
                    (long long)heads);
  int64_t d = hd / heads;
  if (d > 65536) return sdf_fail(err, len, SDF_E_UNSUPPORTED, "attention: head dim %lld exceeds 65536", (long long)d);
  if (op->n_p > 1 && op->p[1] != 0 && op->p[1] != 1)
    return sdf_fail(err, len, SDF_E_INVALID, "attention: causal flag must be 0 or 1, got %lld", (long long)op->p[1]);
  if (op->n_f > 0 && !isfinite(op->f[0]))
    return sdf_fail(err, len, SDF_E_INVALID, "attention: scale must be finite");
  /* state: the query block size; SDF_ATT512_BQ selects the AVX-512 kernel. */
  int bq = ATT_BQ;
  size_t scratch = sizeof(float) * ((size_t)ATT_BQ * ATT_BK + (size_t)ATT_BQ * (size_t)d + 2 * ATT_BQ);
#if defined(__x86_64__) || defined(_M_X64)
  if (sdf_current_isa == SDF_ISA_AVX512 && d <= ATT512_MAX_D) {
    bq = SDF_ATT512_BQ;
    scratch = sdf_attention_avx512_scratch(d);
  }
#endif
  int *st = op->state ? op->state : malloc(sizeof(int));
  if (!st) return sdf_fail(err, len, SDF_E_NOMEM, "attention: out of memory");
  *st = bq;
  op->state = st;
  op->n_chunks = q->dims[0] * heads * ((q->dims[1] + bq - 1) / bq);
  op->scratch_bytes = scratch;
  return SDF_OK;
}

static void attention_release(sdf_op *op) {
  free(op->state);
  op->state = NULL;
}

static void attention_run(const sdf_op *op, int64_t chunk, void *scratch) {
  const sdf_tensor *qt = op->in[0], *kt = op->in[1];
  int64_t nq_all = qt->dims[1], nk_all = kt->dims[1], hd = qt->dims[2], heads = op->p[0];
  int d = (int)(hd / heads);
  int causal = op->n_p > 1 && op->p[1];
  float scale = op->n_f > 0 ? (float)op->f[0] : (float)(1.0 / sqrt((double)d));
  int bq = *(const int *)op->state;
  int64_t nqb = (nq_all + bq - 1) / bq;
  int64_t qb = chunk % nqb, h = (chunk / nqb) % heads, b = chunk / (nqb * heads);
  int64_t q0 = qb * bq;
  int nq = (int)(nq_all - q0 < bq ? nq_all - q0 : bq);
  const float *q = (const float *)qt->data + (b * nq_all + q0) * hd + h * d;
  const float *k = (const float *)kt->data + b * nk_all * hd + h * d;
  const float *v = (const float *)op->in[2]->data + b * nk_all * hd + h * d;
  float *out = (float *)op->out[0]->data + (b * nq_all + q0) * hd + h * d;
  int64_t kend = causal ? (q0 + nq < nk_all ? q0 + nq : nk_all) : nk_all;
#if defined(__x86_64__) || defined(_M_X64)
  if (bq == SDF_ATT512_BQ) {
    sdf_attention_avx512(q, k, v, out, hd, nq, q0, kend, d, scale, causal, scratch);
    return;
  }
#endif
  float *s = scratch, *acc = s + ATT_BQ * ATT_BK, *m = acc + (size_t)ATT_BQ * d, *l = m + ATT_BQ;
  const sdf_simd_ops *vo = sdf_simd();
  memset(acc, 0, sizeof(float) * (size_t)nq * (size_t)d);
  for (int i = 0; i < nq; i++) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
  }
  for (int64_t k0 = 0; k0 < kend; k0 += ATT_BK) {
    int nk = (int)(kend - k0 < ATT_BK ? kend - k0 : ATT_BK);
    vo->qk_block(q, hd, nq, k + k0 * hd, hd, nk, d, scale, s, ATT_BK);
    for (int i = 0; i < nq; i++) {
      float *row = s + i * ATT_BK;
      int64_t valid = nk;
      if (causal) {
        int64_t lim = q0 + i - k0 + 1;
        valid = lim < nk ? lim : nk;
      }
      if (valid <= 0) {
        memset(row, 0, sizeof(float) * (size_t)nk);
        continue;
      }
      float mx = vo->max(row, valid);
      float mnew = mx > m[i] ? mx : m[i];
      float corr = expf(m[i] - mnew);
      float sum = vo->exp_sub_sum(row, valid, mnew);
      if (valid < nk) memset(row + valid, 0, sizeof(float) * (size_t)(nk - valid));
      l[i] = l[i] * corr + sum;
      if (corr != 1.0f) {
        float *ai = acc + (size_t)i * d;
        for (int c = 0; c < d; c++) ai[c] *= corr;
      }
      m[i] = mnew;
    }
    vo->pv_block(s, ATT_BK, nq, nk, v + k0 * hd, hd, d, acc, d);
  }
  for (int i = 0; i < nq; i++) {
    float inv = 1.0f / l[i];
    const float *ai = acc + (size_t)i * d;
    float *oi = out + i * hd;
    for (int c = 0; c < d; c++) oi[c] = ai[c] * inv;
  }
}

const sdf_kernel sdf_kernel_attention = {SDF_OP_ATTENTION, "attention", attention_prepare, attention_run,
                                          attention_release};

/* ---- BMM: y[b] = alpha * a[b] @ (trans_b ? b[b]^T : b[b]) ---------------- */
/* p = trans_b (default 0); f = alpha (default 1). Leading (batch) dims of a,
 * b and y must be equal; rank 2..6. Chunks are (batch, block of BMM_BM rows). */

static int32_t bmm_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "bmm", 2, 2, 1, err, len));
  const sdf_tensor *a = op->in[0], *b = op->in[1], *y = op->out[0];
  SDF_TRY(sdf_check_f32(a, "bmm", "a", err, len));
  SDF_TRY(sdf_check_f32(b, "bmm", "b", err, len));
  SDF_TRY(sdf_check_f32(y, "bmm", "output", err, len));
  if (op->n_p > 0 && op->p[0] != 0 && op->p[0] != 1)
    return sdf_fail(err, len, SDF_E_INVALID, "bmm: trans_b must be 0 or 1, got %lld", (long long)op->p[0]);
  int tb = op->n_p > 0 && op->p[0];
  char sa[96], sb[96], sy[96];
  int r = a->ndim;
  int ok = r >= 2 && b->ndim == r && y->ndim == r;
  for (int i = 0; ok && i < r - 2; i++) ok = a->dims[i] == b->dims[i] && a->dims[i] == y->dims[i];
  if (ok) {
    int64_t m = a->dims[r - 2], k = a->dims[r - 1];
    int64_t bk = tb ? b->dims[r - 1] : b->dims[r - 2], n = tb ? b->dims[r - 2] : b->dims[r - 1];
    ok = bk == k && y->dims[r - 2] == m && y->dims[r - 1] == n;
    if (ok && (k > INT32_MAX || n > INT32_MAX || m > INT32_MAX))
      return sdf_fail(err, len, SDF_E_UNSUPPORTED, "bmm: matrix dims must be < 2^31");
  }
  if (!ok)
    return sdf_fail(err, len, SDF_E_INVALID, "bmm: a %s, b %s%s and output %s do not form a batched product",
                    sdf_shape_str(a, sa, sizeof sa), sdf_shape_str(b, sb, sizeof sb), tb ? " (transposed)" : "",
                    sdf_shape_str(y, sy, sizeof sy));
  int64_t batch = sdf_dims_prod(a, 0, r - 2), m = a->dims[r - 2];
  op->n_chunks = batch * ((m + BMM_BM - 1) / BMM_BM);
  return SDF_OK;
}

static void bmm_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  const sdf_tensor *at = op->in[0], *bt = op->in[1];
  int r = at->ndim, tb = op->n_p > 0 && op->p[0];
  int64_t m = at->dims[r - 2], k = at->dims[r - 1], n = op->out[0]->dims[r - 1];
  float alpha = op->n_f > 0 ? (float)op->f[0] : 1.0f;
  int64_t mb = (m + BMM_BM - 1) / BMM_BM, bi = chunk / mb, m0 = (chunk % mb) * BMM_BM;
  int rows = (int)(m - m0 < BMM_BM ? m - m0 : BMM_BM);
  const float *a = (const float *)at->data + bi * m * k + m0 * k;
  const float *b = (const float *)bt->data + bi * k * n;
  float *y = (float *)op->out[0]->data + bi * m * n + m0 * n;
  const sdf_simd_ops *v = sdf_simd();
  if (tb) {
    for (int64_t n0 = 0; n0 < n; n0 += BMM_BN) {
      int nn = (int)(n - n0 < BMM_BN ? n - n0 : BMM_BN);
      v->qk_block(a, k, rows, b + n0 * k, k, nn, (int)k, alpha, y + n0, n);
    }
    return;
  }
  for (int i = 0; i < rows; i++) memset(y + i * n, 0, sizeof(float) * (size_t)n);
  for (int64_t k0 = 0; k0 < k; k0 += BMM_BK) {
    int kk = (int)(k - k0 < BMM_BK ? k - k0 : BMM_BK);
    for (int64_t n0 = 0; n0 < n; n0 += 4 * BMM_BN) {
      int nn = (int)(n - n0 < 4 * BMM_BN ? n - n0 : 4 * BMM_BN);
      v->pv_block(a + k0, k, rows, kk, b + k0 * n + n0, n, nn, y + n0, n);
    }
  }
  if (alpha != 1.0f)
    for (int64_t i = 0; i < (int64_t)rows * n; i++) y[i] *= alpha;
}

const sdf_kernel sdf_kernel_bmm = {SDF_OP_BMM, "bmm", bmm_prepare, bmm_run, NULL};
