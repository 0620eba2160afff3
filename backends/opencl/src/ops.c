/*
 * The ops: contract checks (the same as the CPU backend's, so a plan fails
 * alike on both) and the kernel launches of each op (kernels: the .cl files of kernels/).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ocl.h"

static const char *OP_NAMES[] = {"?",          "conv2d",      "wino_filter",      "wino_input",
                                  "wino_gemm",  "wino_output", "matmul",           "bmm",
                                  "attention",  "group_norm",  "layer_norm",       "unary",
                                  "geglu",      "softmax",     "binary",           "scale",
                                  "concat",     "upsample_nearest", "timestep_embedding", "permute",
                                  "gather_rows", "copy",       "slice"};

const char *sdf_op_name(int32_t opcode) { return opcode >= 1 && opcode <= 22 ? OP_NAMES[opcode] : "?"; }

#define GEMM_TS 64
#define GEMM_WG 8
#define ATT_WG 64
#define ATT_MAX_BK 32
#define WINO_SCRATCH_CAP (64u << 20) /* bytes of transformed filter per fused block */

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static size_t ru(int64_t n, int64_t m) { return (size_t)(cdiv(n, m) * m); }

/* ---- validation helpers (messages as the CPU backend's) ---- */

#define FAILC(code, ...)                                                                                               \
  do {                                                                                                                 \
    snprintf(err, len, __VA_ARGS__);                                                                                   \
    return code;                                                                                                       \
  } while (0)
#define FAIL(...) FAILC(SDF_E_INVALID, __VA_ARGS__)
#define TRY(x)                                                                                                         \
  do {                                                                                                                 \
    int32_t rc_ = (x);                                                                                                 \
    if (rc_ != SDF_OK) return rc_;                                                                                     \
  } while (0)

static int32_t arity(const oop *op, const char *name, int min_in, int max_in, int n_out, char *err, size_t len) {
  if (op->n_in < min_in || op->n_in > max_in) {
    if (min_in == max_in) FAIL("%s: expects %d inputs, got %d", name, min_in, op->n_in);
    FAIL("%s: expects %d to %d inputs, got %d", name, min_in, max_in, op->n_in);
  }
  if (op->n_out != n_out) FAIL("%s: expects %d output%s, got %d", name, n_out, n_out == 1 ? "" : "s", op->n_out);
  return SDF_OK;
}

static int32_t params(const oop *op, const char *name, int np, int nf, char *err, size_t len) {
  if (op->n_p < np) FAIL("%s: expects %d int params, got %d", name, np, op->n_p);
  if (op->n_f < nf) FAIL("%s: expects %d float params, got %d", name, nf, op->n_f);
  return SDF_OK;
}

static int32_t is_f32(const otensor *t, const char *name, const char *what, char *err, size_t len) {
  if (t->dtype != SDF_F32) FAILC(SDF_E_UNSUPPORTED, "%s: %s must be f32, got %s", name, what, sdf_dtype_name(t->dtype));
  return SDF_OK;
}

static int32_t is_float(const otensor *t, const char *name, const char *what, char *err, size_t len) {
  if (t->dtype != SDF_F32 && t->dtype != SDF_F16 && t->dtype != SDF_BF16)
    FAILC(SDF_E_UNSUPPORTED, "%s: %s must be f32, f16 or bf16, got %s", name, what, sdf_dtype_name(t->dtype));
  return SDF_OK;
}

static int same_shape(const otensor *a, const otensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

static int64_t prod(const otensor *t, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++) p *= t->dims[i];
  return p;
}

static int norm_axis(int64_t axis, int rank) {
  if (axis < 0) axis += rank;
  return axis >= 0 && axis < rank ? (int)axis : -1;
}

static int32_t same_dtype(const oop *op, const char *name, char *err, size_t len) {
  for (int i = 0; i < op->n_in; i++)
    if (op->in[i]->dtype != op->out[0]->dtype)
      FAIL("%s: input %d is %s but the output is %s", name, i, sdf_dtype_name(op->in[i]->dtype),
           sdf_dtype_name(op->out[0]->dtype));
  return SDF_OK;
}

static int32_t check_affine(const oop *op, const char *name, int64_t c, char *err, size_t len) {
  for (int i = 1; i <= 2; i++) {
    const otensor *t = op->in[i];
    TRY(is_f32(t, name, i == 1 ? "gamma" : "beta", err, len));
    if (t->numel != c) {
      char s[96];
      FAIL("%s: %s %s must have %lld elements (one per channel)", name, i == 1 ? "gamma" : "beta",
           sdf_shape_str(t, s, 96), (long long)c);
    }
  }
  return SDF_OK;
}

static int32_t same_f32(const oop *op, const char *name, char *err, size_t len) {
  TRY(is_f32(op->in[0], name, "input", err, len));
  TRY(is_f32(op->out[0], name, "output", err, len));
  if (!same_shape(op->in[0], op->out[0])) {
    char a[96], b[96];
    FAIL("%s: input %s and output %s must have the same shape", name, sdf_shape_str(op->in[0], a, 96),
         sdf_shape_str(op->out[0], b, 96));
  }
  return SDF_OK;
}

static int32_t wino_m(const oop *op, const char *name, char *err, size_t len) {
  if (op->n_p < 1) FAIL("%s: missing param m", name);
  if (op->p[0] != 2 && op->p[0] != 4 && op->p[0] != 6)
    FAIL("%s: Winograd m must be 2, 4 or 6, got %lld", name, (long long)op->p[0]);
  return SDF_OK;
}

static int32_t band(const oop *op, int64_t tiles_h, int64_t *row0, int64_t *rows, const char *name, char *err,
                    size_t len) {
  *row0 = op->n_p >= 4 ? op->p[3] : 0;
  *rows = op->n_p >= 5 ? op->p[4] : 0;
  if (*rows == 0 && *row0 == 0) *rows = tiles_h;
  if (*rows == 0)
    FAIL("%s: row0 (p[3]) = %lld needs rows (p[4]) >= 1 (rows 0 means all %lld tile rows from row 0)", name,
         (long long)*row0, (long long)tiles_h);
  if (*row0 < 0 || *rows < 0 || *row0 + *rows > tiles_h)
    FAIL("%s: band rows [%lld, %lld) outside the %lld tile rows", name, (long long)*row0,
         (long long)(*row0 + *rows), (long long)tiles_h);
  return SDF_OK;
}

/* ---- prepare ------------------------------------------------------------------ */

int32_t sdf_op_prepare(oop *op, char *err, size_t len) {
  const otensor *x = op->in[0], *y = op->out[0];
  char a[96], b[96], c[96];
  switch (op->opcode) {
  case SDF_OP_CONV2D: {
    if (op->n_in < 2 || op->n_in > 3 || op->n_out != 1) FAIL("CONV2D takes x, w, optional b and one output");
    if (op->n_p < 4) FAIL("CONV2D needs params stride_h, stride_w, pad_h, pad_w");
    const otensor *w = op->in[1];
    if (x->dtype != SDF_F32 || y->dtype != SDF_F32) FAIL("CONV2D x and y must be f32");
    TRY(is_float(w, "conv2d", "weight", err, len));
    if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4) FAIL("CONV2D tensors must be rank 4");
    if (w->dims[1] != x->dims[1])
      FAIL("CONV2D: x has %lld channels, w expects %lld (groups unsupported)", (long long)x->dims[1],
           (long long)w->dims[1]);
    int64_t sh = op->p[0], sw = op->p[1], ph = op->p[2], pw = op->p[3];
    if (sh < 1 || sw < 1 || ph < 0 || pw < 0) FAIL("CONV2D: bad stride or padding");
    int64_t algo = op->n_p > 4 ? op->p[4] : 0;
    if (algo < 0 || algo > 2) FAIL("CONV2D algo must be 0, 1 or 2");
    int64_t KH = w->dims[2], KW = w->dims[3];
    if (x->dims[2] + 2 * ph < KH || x->dims[3] + 2 * pw < KW) FAIL("CONV2D: kernel larger than padded input");
    int64_t OH = (x->dims[2] + 2 * ph - KH) / sh + 1, OW = (x->dims[3] + 2 * pw - KW) / sw + 1;
    if (y->dims[0] != x->dims[0] || y->dims[1] != w->dims[0] || y->dims[2] != OH || y->dims[3] != OW)
      FAIL("CONV2D output must be [%lld,%lld,%lld,%lld]", (long long)x->dims[0], (long long)w->dims[0],
           (long long)OH, (long long)OW);
    if (op->n_in == 3 && ((op->in[2]->dtype != SDF_F32 && op->in[2]->dtype != SDF_F16 &&
                           op->in[2]->dtype != SDF_BF16) ||
                          op->in[2]->numel != w->dims[0]))
      FAIL("CONV2D bias must hold Co float values");
    op->q[0] = algo == 1 ? 1 : 2;
    return SDF_OK;
  }
  case SDF_OP_WINO_FILTER: {
    TRY(wino_m(op, "WINO_FILTER", err, len));
    if (op->n_in != 1 || op->n_out != 1) FAIL("WINO_FILTER takes 1 input and 1 output");
    TRY(is_float(x, "WINO_FILTER", "weight", err, len));
    if (x->ndim != 4 || x->dims[2] != 3 || x->dims[3] != 3) FAIL("WINO_FILTER weight must be [Co,Ci,3,3]");
    if (y->dtype != SDF_F32 || y->ndim != 3) FAIL("WINO_FILTER output u must be f32 of rank 3");
    int64_t A = op->p[0] + 2;
    if (y->dims[0] != A * A || y->dims[1] != x->dims[0] || y->dims[2] != x->dims[1])
      FAIL("WINO_FILTER u must be [%lld,%lld,%lld]", (long long)(A * A), (long long)x->dims[0],
           (long long)x->dims[1]);
    return SDF_OK;
  }
  case SDF_OP_WINO_INPUT: {
    TRY(wino_m(op, "WINO_INPUT", err, len));
    if (op->n_p < 3) FAIL("WINO_INPUT needs params m, pad_h, pad_w (optional row0, rows)");
    if (op->n_in != 1 || op->n_out != 1) FAIL("WINO_INPUT takes 1 input and 1 output");
    if (x->dtype != SDF_F32 || x->ndim != 4) FAIL("WINO_INPUT input x must be f32 of rank 4");
    if (y->dtype != SDF_F32 || y->ndim != 3) FAIL("WINO_INPUT output v must be f32 of rank 3");
    int64_t m = op->p[0], ph = op->p[1], pw = op->p[2];
    if (ph < 0 || pw < 0 || ph > 64 || pw > 64) FAIL("WINO_INPUT padding must be 0..64");
    int64_t N = x->dims[0], Ci = x->dims[1], OH = x->dims[2] + 2 * ph - 2, OW = x->dims[3] + 2 * pw - 2;
    if (OH < 1 || OW < 1) FAIL("WINO_INPUT: empty input or output");
    int64_t row0, rows;
    TRY(band(op, cdiv(OH, m), &row0, &rows, "WINO_INPUT", err, len));
    int64_t tw = cdiv(OW, m), T = N * rows * tw, A = m + 2;
    if (y->dims[0] != A * A || y->dims[1] != Ci || y->dims[2] != T)
      FAIL("WINO_INPUT v must be [%lld,%lld,%lld] (T = N %lld * rows %lld * tiles_w %lld), got [%lld,%lld,%lld]",
           (long long)(A * A), (long long)Ci, (long long)T, (long long)N, (long long)rows, (long long)tw,
           (long long)y->dims[0], (long long)y->dims[1], (long long)y->dims[2]);
    op->q[0] = row0, op->q[1] = rows, op->q[2] = tw, op->q[3] = T;
    return SDF_OK;
  }
  case SDF_OP_WINO_GEMM: {
    TRY(wino_m(op, "WINO_GEMM", err, len));
    const int64_t fused = op->n_p >= 2 ? op->p[1] : 0;
    if (fused != 0 && fused != 1) FAIL("WINO_GEMM fused (p[1]) must be 0 or 1, got %lld", (long long)fused);
    if (op->n_in != 2 || op->n_out != 1) FAIL("WINO_GEMM takes 2 inputs (%s, v) and 1 output", fused ? "w" : "u");
    const otensor *u = op->in[0], *v = op->in[1];
    int64_t A = op->p[0] + 2, AA = A * A, Co, Ci;
    if (fused) {
      TRY(is_float(u, "fused WINO_GEMM", "weight", err, len));
      if (u->ndim != 4 || u->dims[2] != 3 || u->dims[3] != 3) FAIL("fused WINO_GEMM: in[0] must be the weight w[Co,Ci,3,3]");
      Co = u->dims[0], Ci = u->dims[1];
    } else {
      if (u->dtype != SDF_F32 || u->ndim != 3)
        FAIL("WINO_GEMM u must be [A*A,Co,Ci] f32 (a rank-4 weight needs fused, p[1] = 1)");
      if (u->dims[0] != AA) FAIL("WINO_GEMM u: leading dim must be A*A = %lld", (long long)AA);
      Co = u->dims[1], Ci = u->dims[2];
    }
    if (v->dtype != SDF_F32 || v->ndim != 3 || y->dtype != SDF_F32 || y->ndim != 3)
      FAIL("WINO_GEMM v and the output must be f32 of rank 3");
    int64_t T = v->dims[2];
    if (v->dims[0] != AA || v->dims[1] != Ci)
      FAIL("WINO_GEMM v must be [%lld,%lld,T] (Ci = %lld from %s), got [%lld,%lld,%lld]", (long long)AA,
           (long long)Ci, (long long)Ci, fused ? "w" : "u", (long long)v->dims[0], (long long)v->dims[1],
           (long long)v->dims[2]);
    if (y->dims[0] != AA || y->dims[1] != Co || y->dims[2] != T)
      FAIL("WINO_GEMM output must be [%lld,%lld,%lld]", (long long)AA, (long long)Co, (long long)T);
    op->q[0] = fused, op->q[1] = Co, op->q[2] = Ci, op->q[3] = T;
    if (fused) {
      /* the filter transform of a block of output channels goes to the plan's scratch, then its products run */
      int64_t cb = (int64_t)(WINO_SCRATCH_CAP / (uint64_t)(AA * Ci * 4));
      if (cb >= GEMM_TS) cb = cb / GEMM_TS * GEMM_TS;
      if (cb < 1) cb = 1;
      if (cb > Co) cb = Co;
      op->q[4] = cb;
      op->scratch_bytes = (size_t)(AA * cb * Ci * 4);
    }
    return SDF_OK;
  }
  case SDF_OP_WINO_OUTPUT: {
    TRY(wino_m(op, "WINO_OUTPUT", err, len));
    if (op->n_p < 3) FAIL("WINO_OUTPUT needs params m, has_bias, has_residual (optional row0, rows)");
    int hb = op->p[1] != 0, hr = op->p[2] != 0;
    if (op->n_in != 1 + hb + hr || op->n_out != 1)
      FAIL("WINO_OUTPUT takes %d inputs (m_%s%s) and 1 output", 1 + hb + hr, hb ? ", b" : "", hr ? ", residual" : "");
    if (x->dtype != SDF_F32 || x->ndim != 3) FAIL("WINO_OUTPUT m_ must be f32 of rank 3");
    if (y->dtype != SDF_F32 || y->ndim != 4) FAIL("WINO_OUTPUT output y must be f32 of rank 4");
    int64_t m = op->p[0], N = y->dims[0], Co = y->dims[1], OH = y->dims[2], OW = y->dims[3], row0, rows;
    TRY(band(op, cdiv(OH, m), &row0, &rows, "WINO_OUTPUT", err, len));
    int64_t A = m + 2, tw = cdiv(OW, m), T = N * rows * tw;
    if (x->dims[0] != A * A || x->dims[1] != Co || x->dims[2] != T)
      FAIL("WINO_OUTPUT m_ must be [%lld,%lld,%lld] (T = N %lld * rows %lld * tiles_w %lld), got [%lld,%lld,%lld]",
           (long long)(A * A), (long long)Co, (long long)T, (long long)N, (long long)rows, (long long)tw,
           (long long)x->dims[0], (long long)x->dims[1], (long long)x->dims[2]);
    if (hb && (op->in[1]->dtype != SDF_F32 || op->in[1]->ndim != 1 || op->in[1]->dims[0] != Co))
      FAIL("WINO_OUTPUT bias must be [%lld] f32", (long long)Co);
    if (hr && (op->in[1 + hb]->dtype != SDF_F32 || !same_shape(op->in[1 + hb], y)))
      FAIL("WINO_OUTPUT residual shape must equal y's (f32)");
    op->q[0] = row0, op->q[1] = rows, op->q[2] = tw, op->q[3] = T;
    return SDF_OK;
  }
  case SDF_OP_MATMUL: {
    if (op->n_in < 2 || op->n_in > 3 || op->n_out != 1) FAIL("MATMUL takes x, w, optional b and one output");
    const otensor *w = op->in[1];
    if (x->dtype != SDF_F32 || y->dtype != SDF_F32) FAIL("MATMUL x and y must be f32");
    TRY(is_float(w, "matmul", "weight", err, len));
    if (x->ndim < 1 || w->ndim != 2 || y->ndim != x->ndim)
      FAIL("MATMUL needs x[...,K], w[N,K], y[...,N] (ranks %d, %d, %d)", x->ndim, w->ndim, y->ndim);
    int64_t K = x->dims[x->ndim - 1], N = w->dims[0];
    if (w->dims[1] != K) FAIL("MATMUL: x has K=%lld but w is [%lld,%lld]", (long long)K, (long long)N, (long long)w->dims[1]);
    for (int d = 0; d + 1 < x->ndim; d++)
      if (y->dims[d] != x->dims[d]) FAIL("MATMUL: y's leading dims must equal x's");
    if (y->dims[y->ndim - 1] != N) FAIL("MATMUL: y's last dim must be N=%lld", (long long)N);
    if (op->n_in == 3 && ((op->in[2]->dtype != SDF_F32 && op->in[2]->dtype != SDF_F16 &&
                           op->in[2]->dtype != SDF_BF16) ||
                          op->in[2]->numel != N))
      FAIL("MATMUL bias must hold N=%lld float values", (long long)N);
    op->q[0] = x->numel / K, op->q[1] = N, op->q[2] = K;
    return SDF_OK;
  }
  case SDF_OP_BMM: {
    TRY(arity(op, "bmm", 2, 2, 1, err, len));
    const otensor *bt = op->in[1];
    TRY(is_f32(x, "bmm", "a", err, len));
    TRY(is_f32(bt, "bmm", "b", err, len));
    TRY(is_f32(y, "bmm", "output", err, len));
    if (op->n_p > 0 && op->p[0] != 0 && op->p[0] != 1) FAIL("bmm: trans_b must be 0 or 1, got %lld", (long long)op->p[0]);
    int tb = op->n_p > 0 && op->p[0];
    int r = x->ndim, ok = r >= 2 && bt->ndim == r && y->ndim == r;
    for (int i = 0; ok && i < r - 2; i++) ok = x->dims[i] == bt->dims[i] && x->dims[i] == y->dims[i];
    int64_t m = 0, k = 0, n = 0;
    if (ok) {
      m = x->dims[r - 2], k = x->dims[r - 1];
      int64_t bk = tb ? bt->dims[r - 1] : bt->dims[r - 2];
      n = tb ? bt->dims[r - 2] : bt->dims[r - 1];
      ok = bk == k && y->dims[r - 2] == m && y->dims[r - 1] == n;
    }
    if (!ok)
      FAIL("bmm: a %s, b %s%s and output %s do not form a batched product", sdf_shape_str(x, a, 96),
           sdf_shape_str(bt, b, 96), tb ? " (transposed)" : "", sdf_shape_str(y, c, 96));
    op->q[0] = prod(x, 0, r - 2), op->q[1] = m, op->q[2] = n, op->q[3] = k, op->q[4] = tb;
    return SDF_OK;
  }
  case SDF_OP_ATTENTION: {
    TRY(arity(op, "attention", 3, 3, 1, err, len));
    TRY(params(op, "attention", 1, 0, err, len));
    static const char *names[] = {"q", "k", "v"};
    for (int i = 0; i < 3; i++) TRY(is_f32(op->in[i], "attention", names[i], err, len));
    TRY(is_f32(y, "attention", "output", err, len));
    const otensor *q = op->in[0], *k = op->in[1], *v = op->in[2];
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3)
      FAIL("attention: q %s, k %s, v %s must all be [B, N, H*D]", sdf_shape_str(q, a, 96), sdf_shape_str(k, b, 96),
           sdf_shape_str(v, c, 96));
    if (!same_shape(k, v) || k->dims[0] != q->dims[0] || k->dims[2] != q->dims[2])
      FAIL("attention: q %s, k %s, v %s disagree (need k == v shape, same B and H*D)", sdf_shape_str(q, a, 96),
           sdf_shape_str(k, b, 96), sdf_shape_str(v, c, 96));
    if (!same_shape(q, y))
      FAIL("attention: output %s must have the shape of q %s", sdf_shape_str(y, a, 96), sdf_shape_str(q, b, 96));
    int64_t heads = op->p[0], hd = q->dims[2];
    if (heads < 1 || hd % heads != 0)
      FAIL("attention: %lld channels not divisible by %lld heads", (long long)hd, (long long)heads);
    int64_t d = hd / heads;
    if (op->n_p > 1 && op->p[1] != 0 && op->p[1] != 1)
      FAIL("attention: causal flag must be 0 or 1, got %lld", (long long)op->p[1]);
    if (op->n_f > 0 && !isfinite(op->f[0])) FAIL("attention: scale must be finite");
    /* keys and values are staged in local memory, BK rows of D floats each */
    int64_t budget = (int64_t)sdf_dev.local_mem - 4096;
    int64_t bk = budget > 0 ? budget / (8 * d) : 0;
    if (bk > ATT_MAX_BK) bk = ATT_MAX_BK;
    if (bk < 1)
      FAILC(SDF_E_UNSUPPORTED, "attention: head dim %lld needs %lld bytes of local memory, \"%s\" has %llu",
            (long long)d, (long long)(8 * d + 4096), sdf_dev.name, (unsigned long long)sdf_dev.local_mem);
    op->q[0] = d, op->q[1] = bk;
    return SDF_OK;
  }
  case SDF_OP_GROUP_NORM: {
    TRY(arity(op, "group_norm", 3, 3, 1, err, len));
    TRY(params(op, "group_norm", 1, 0, err, len));
    TRY(same_f32(op, "group_norm", err, len));
    if (x->ndim < 2) FAIL("group_norm: input %s must be [N, C, ...]", sdf_shape_str(x, a, 96));
    int64_t C = x->dims[1], g = op->p[0];
    if (g < 1 || g > C || C % g != 0) FAIL("group_norm: %lld channels not divisible by %lld groups", (long long)C, (long long)g);
    if (op->n_p > 1 && op->p[1] != 0 && op->p[1] != 1) FAIL("group_norm: silu flag must be 0 or 1, got %lld", (long long)op->p[1]);
    if (op->n_f > 0 && !(op->f[0] >= 0)) FAIL("group_norm: eps must be >= 0, got %g", op->f[0]);
    TRY(check_affine(op, "group_norm", C, err, len));
    return SDF_OK;
  }
  case SDF_OP_LAYER_NORM: {
    TRY(arity(op, "layer_norm", 3, 3, 1, err, len));
    TRY(same_f32(op, "layer_norm", err, len));
    if (x->ndim < 1) FAIL("layer_norm: input must have at least one dim");
    if (op->n_f > 0 && !(op->f[0] >= 0)) FAIL("layer_norm: eps must be >= 0, got %g", op->f[0]);
    TRY(check_affine(op, "layer_norm", x->dims[x->ndim - 1], err, len));
    return SDF_OK;
  }
  case SDF_OP_SOFTMAX:
    TRY(arity(op, "softmax", 1, 1, 1, err, len));
    TRY(same_f32(op, "softmax", err, len));
    if (x->ndim < 1) FAIL("softmax: input must have at least one dim");
    return SDF_OK;
  case SDF_OP_UNARY:
    TRY(arity(op, "unary", 1, 1, 1, err, len));
    TRY(params(op, "unary", 1, 0, err, len));
    TRY(is_f32(x, "unary", "input", err, len));
    TRY(is_f32(y, "unary", "output", err, len));
    if (op->p[0] < SDF_UNARY_SILU || op->p[0] > SDF_UNARY_TANH) FAILC(SDF_E_UNSUPPORTED, "unary: unknown kind %lld", (long long)op->p[0]);
    if (x->numel != y->numel)
      FAIL("unary: input %s and output %s differ in size", sdf_shape_str(x, a, 96), sdf_shape_str(y, b, 96));
    return SDF_OK;
  case SDF_OP_GEGLU: {
    TRY(arity(op, "geglu", 1, 1, 1, err, len));
    TRY(is_f32(x, "geglu", "input", err, len));
    TRY(is_f32(y, "geglu", "output", err, len));
    int ok = x->ndim >= 1 && x->ndim == y->ndim && x->dims[x->ndim - 1] == 2 * y->dims[y->ndim - 1];
    for (int i = 0; ok && i < x->ndim - 1; i++) ok = x->dims[i] == y->dims[i];
    if (!ok) FAIL("geglu: input %s must be [..., 2C] for output %s [..., C]", sdf_shape_str(x, a, 96), sdf_shape_str(y, b, 96));
    return SDF_OK;
  }
  case SDF_OP_BINARY: {
    TRY(arity(op, "binary", 2, 2, 1, err, len));
    TRY(params(op, "binary", 1, 0, err, len));
    const otensor *bt = op->in[1];
    TRY(is_f32(x, "binary", "input a", err, len));
    TRY(is_f32(bt, "binary", "input b", err, len));
    TRY(is_f32(y, "binary", "output", err, len));
    if (op->p[0] < SDF_BINARY_ADD || op->p[0] > SDF_BINARY_DIV) FAILC(SDF_E_UNSUPPORTED, "binary: unknown kind %lld", (long long)op->p[0]);
    int r = y->ndim, ok = r == (x->ndim > bt->ndim ? x->ndim : bt->ndim);
    int64_t dims[SDF_MAX_DIMS], sa[SDF_MAX_DIMS], sb[SDF_MAX_DIMS], stra = 1, strb = 1;
    for (int i = r - 1; ok && i >= 0; i--) {
      int ia = i - (r - x->ndim), ib = i - (r - bt->ndim);
      int64_t da = ia >= 0 ? x->dims[ia] : 1, db = ib >= 0 ? bt->dims[ib] : 1, dy = y->dims[i];
      if ((da != dy && da != 1) || (db != dy && db != 1) || dy != (da > db ? da : db)) ok = 0;
      dims[i] = dy;
      sa[i] = da == 1 ? 0 : stra;
      sb[i] = db == 1 ? 0 : strb;
      stra *= da;
      strb *= db;
    }
    if (!ok)
      FAIL("binary: shapes %s and %s do not broadcast to output %s", sdf_shape_str(x, a, 96), sdf_shape_str(bt, b, 96),
           sdf_shape_str(y, c, 96));
    /* drop size-1 dims and merge dims that stay contiguous for both inputs: q = nd, dims[6], sa[6], sb[6] */
    int nd = 0;
    int64_t *qd = &op->q[1], *qa = &op->q[7], *qb = &op->q[13];
    for (int i = 0; i < r; i++) {
      if (dims[i] == 1) continue;
      if (nd > 0 && qa[nd - 1] == sa[i] * dims[i] && qb[nd - 1] == sb[i] * dims[i]) {
        qd[nd - 1] *= dims[i];
        qa[nd - 1] = sa[i];
        qb[nd - 1] = sb[i];
        continue;
      }
      qd[nd] = dims[i], qa[nd] = sa[i], qb[nd] = sb[i];
      nd++;
    }
    if (nd == 0) qd[0] = 1, qa[0] = qb[0] = 0, nd = 1;
    op->q[0] = nd;
    return SDF_OK;
  }
  case SDF_OP_SCALE:
    TRY(arity(op, "scale", 1, 1, 1, err, len));
    TRY(params(op, "scale", 0, 1, err, len));
    TRY(is_f32(x, "scale", "input", err, len));
    TRY(is_f32(y, "scale", "output", err, len));
    if (x->numel != y->numel)
      FAIL("scale: input %s and output %s differ in size", sdf_shape_str(x, a, 96), sdf_shape_str(y, b, 96));
    return SDF_OK;
  case SDF_OP_CONCAT: {
    TRY(arity(op, "concat", 2, SDF_MAX_OP_TENSORS - 1, 1, err, len));
    TRY(params(op, "concat", 1, 0, err, len));
    TRY(same_dtype(op, "concat", err, len));
    int axis = norm_axis(op->p[0], y->ndim);
    if (axis < 0) FAIL("concat: axis %lld out of range for rank %d", (long long)op->p[0], y->ndim);
    int64_t sum = 0;
    for (int i = 0; i < op->n_in; i++) {
      const otensor *t = op->in[i];
      int ok = t->ndim == y->ndim;
      for (int d = 0; ok && d < y->ndim; d++) ok = d == axis || t->dims[d] == y->dims[d];
      if (!ok)
        FAIL("concat: input %d %s does not match output %s except on axis %d", i, sdf_shape_str(t, a, 96),
             sdf_shape_str(y, b, 96), axis);
      sum += t->dims[axis];
    }
    if (sum != y->dims[axis])
      FAIL("concat: inputs sum to %lld along axis %d, output %s has %lld", (long long)sum, axis, sdf_shape_str(y, b, 96),
           (long long)y->dims[axis]);
    op->q[0] = axis;
    return SDF_OK;
  }
  case SDF_OP_UPSAMPLE_NEAREST: {
    TRY(arity(op, "upsample_nearest", 1, 1, 1, err, len));
    TRY(params(op, "upsample_nearest", 1, 0, err, len));
    TRY(same_dtype(op, "upsample_nearest", err, len));
    int64_t s = op->p[0];
    if (s < 1 || s > 1024) FAIL("upsample_nearest: scale %lld must be 1..1024", (long long)s);
    if (x->ndim != 4 || y->ndim != 4 || y->dims[0] != x->dims[0] || y->dims[1] != x->dims[1] ||
        y->dims[2] != x->dims[2] * s || y->dims[3] != x->dims[3] * s)
      FAIL("upsample_nearest: input %s x%lld must give output [N, C, H*s, W*s], got %s", sdf_shape_str(x, a, 96),
           (long long)s, sdf_shape_str(y, b, 96));
    return SDF_OK;
  }
  case SDF_OP_TIMESTEP_EMBEDDING:
    TRY(arity(op, "timestep_embedding", 1, 1, 1, err, len));
    TRY(params(op, "timestep_embedding", 1, 0, err, len));
    TRY(is_f32(x, "timestep_embedding", "input", err, len));
    TRY(is_f32(y, "timestep_embedding", "output", err, len));
    if (x->ndim != 1 || y->ndim != 2 || y->dims[0] != x->dims[0] || y->dims[1] != op->p[0])
      FAIL("timestep_embedding: t %s and dim %lld need output [N, dim], got %s", sdf_shape_str(x, a, 96),
           (long long)op->p[0], sdf_shape_str(y, b, 96));
    if (op->n_p > 1 && op->p[1] != 0 && op->p[1] != 1)
      FAIL("timestep_embedding: flip must be 0 or 1, got %lld", (long long)op->p[1]);
    if (op->n_f > 0 && !(op->f[0] > 0 && isfinite(op->f[0])))
      FAIL("timestep_embedding: max_period must be > 0, got %g", op->f[0]);
    return SDF_OK;
  case SDF_OP_PERMUTE: {
    TRY(arity(op, "permute", 1, 1, 1, err, len));
    TRY(same_dtype(op, "permute", err, len));
    int r = x->ndim;
    if (op->n_p != r || y->ndim != r)
      FAIL("permute: input %s has rank %d, output %s rank %d, %d axes given", sdf_shape_str(x, a, 96), r,
           sdf_shape_str(y, b, 96), y->ndim, op->n_p);
    int seen[SDF_MAX_DIMS] = {0};
    for (int i = 0; i < r; i++) {
      if (op->p[i] < 0 || op->p[i] >= r || seen[op->p[i]]) FAIL("permute: axes are not a permutation of 0..%d", r - 1);
      seen[op->p[i]] = 1;
      if (y->dims[i] != x->dims[op->p[i]])
        FAIL("permute: output %s does not match input %s permuted", sdf_shape_str(y, b, 96), sdf_shape_str(x, a, 96));
    }
    return SDF_OK;
  }
  case SDF_OP_GATHER_ROWS: {
    TRY(arity(op, "gather_rows", 2, 2, 1, err, len));
    const otensor *tab = x, *idx = op->in[1];
    TRY(is_float(tab, "gather_rows", "table", err, len));
    TRY(is_f32(y, "gather_rows", "output", err, len));
    if (idx->dtype != SDF_I32) FAIL("gather_rows: indices must be i32, got %s", sdf_dtype_name(idx->dtype));
    int ok = tab->ndim == 2 && idx->ndim >= 1 && y->ndim == idx->ndim + 1 && y->dims[y->ndim - 1] == tab->dims[1];
    for (int i = 0; ok && i < idx->ndim; i++) ok = y->dims[i] == idx->dims[i];
    if (!ok)
      FAIL("gather_rows: table %s [V, D] and indices %s need output [..., D], got %s", sdf_shape_str(tab, a, 96),
           sdf_shape_str(idx, b, 96), sdf_shape_str(y, c, 96));
    return SDF_OK;
  }
  case SDF_OP_COPY:
    TRY(arity(op, "copy", 1, 1, 1, err, len));
    TRY(is_f32(y, "copy", "output", err, len));
    if (x->numel != y->numel)
      FAIL("copy: input %s and output %s have different element counts", sdf_shape_str(x, a, 96), sdf_shape_str(y, b, 96));
    return SDF_OK;
  case SDF_OP_SLICE: {
    TRY(arity(op, "slice", 1, 1, 1, err, len));
    TRY(params(op, "slice", 2, 0, err, len));
    TRY(same_dtype(op, "slice", err, len));
    int axis = norm_axis(op->p[0], x->ndim);
    if (axis < 0 || y->ndim != x->ndim)
      FAIL("slice: axis %lld invalid for input %s / output %s", (long long)op->p[0], sdf_shape_str(x, a, 96),
           sdf_shape_str(y, b, 96));
    for (int d = 0; d < x->ndim; d++)
      if (d != axis && x->dims[d] != y->dims[d])
        FAIL("slice: output %s differs from input %s outside axis %d", sdf_shape_str(y, b, 96), sdf_shape_str(x, a, 96), axis);
    int64_t start = op->p[1];
    if (start < 0 || start > x->dims[axis] - y->dims[axis])
      FAIL("slice: [%lld, %lld) is outside axis %d of input %s (size %lld)", (long long)start,
           (long long)(start + y->dims[axis]), axis, sdf_shape_str(x, a, 96), (long long)x->dims[axis]);
    op->q[0] = axis;
    return SDF_OK;
  }
  default:
    FAILC(SDF_E_UNSUPPORTED, "opcode %d is not implemented by this backend", op->opcode);
  }
}

const char *const *sdf_op_kernels(const oop *op) {
  static const char *const conv_d[] = {"conv_direct", NULL}, *const conv_g[] = {"conv_igemm", "gemm", "gemm_rb", NULL},
                           *const gemm[] = {"gemm", "gemm_rb", "gemm_nt_rb", NULL}, *const wfilter[] = {"wino_filter", NULL},
                           *const winput[] = {"wino_input", NULL}, *const wgemm_f[] = {"wino_filter", "gemm", "gemm_rb", NULL},
                           *const woutput[] = {"wino_output", NULL}, *const att[] = {"attention", "attention_direct", NULL},
                           *const gn[] = {"group_norm", NULL}, *const ln[] = {"layer_norm", NULL},
                           *const sm[] = {"softmax", NULL}, *const un[] = {"unary", NULL},
                           *const gg[] = {"geglu", NULL}, *const bi[] = {"binary", NULL},
                           *const sc[] = {"scale_shift", NULL}, *const c32[] = {"copy2d_u32", NULL},
                           *const c16[] = {"copy2d_u16", NULL}, *const u32[] = {"upsample_u32", NULL},
                           *const u16[] = {"upsample_u16", NULL}, *const p32[] = {"permute_u32", NULL},
                           *const p16[] = {"permute_u16", NULL}, *const ts[] = {"timestep_embedding", NULL},
                           *const ga[] = {"gather_rows", NULL}, *const cp[] = {"to_f32", NULL},
                           *const none[] = {NULL};
  int wide = sdf_dtype_size(op->out[0]->dtype) == 4;
  switch (op->opcode) {
  case SDF_OP_CONV2D:
    return op->q[0] == 1 ? conv_d : conv_g;
  case SDF_OP_WINO_FILTER:
    return wfilter;
  case SDF_OP_WINO_INPUT:
    return winput;
  case SDF_OP_WINO_GEMM:
    return op->q[0] ? wgemm_f : gemm;
  case SDF_OP_WINO_OUTPUT:
    return woutput;
  case SDF_OP_MATMUL:
  case SDF_OP_BMM:
    return gemm;
  case SDF_OP_ATTENTION:
    return att;
  case SDF_OP_GROUP_NORM:
    return gn;
  case SDF_OP_LAYER_NORM:
    return ln;
  case SDF_OP_SOFTMAX:
    return sm;
  case SDF_OP_UNARY:
    return un;
  case SDF_OP_GEGLU:
    return gg;
  case SDF_OP_BINARY:
    return bi;
  case SDF_OP_SCALE:
    return sc;
  case SDF_OP_CONCAT:
  case SDF_OP_SLICE:
    return wide ? c32 : c16;
  case SDF_OP_UPSAMPLE_NEAREST:
    return wide ? u32 : u16;
  case SDF_OP_PERMUTE:
    return wide ? p32 : p16;
  case SDF_OP_TIMESTEP_EMBEDDING:
    return ts;
  case SDF_OP_GATHER_ROWS:
    return ga;
  case SDF_OP_COPY:
    return cp;
  default:
    return none;
  }
}

/* ---- launching ------------------------------------------------------------------- */

typedef struct {
  cl_kernel k;
  const char *name;
  cl_uint i;
  cl_int e;
  cl_uint bad;
} argb;

static void arg(argb *a, size_t size, const void *v) {
  if (a->e == CL_SUCCESS) {
    a->e = clSetKernelArg(a->k, a->i, size, v);
    if (a->e != CL_SUCCESS) a->bad = a->i;
  }
  a->i++;
}
static void A_mem(argb *a, cl_mem m) { arg(a, sizeof m, &m); }
static void A_ul(argb *a, uint64_t v) {
  cl_ulong x = v;
  arg(a, sizeof x, &x);
}
static void A_l(argb *a, int64_t v) {
  cl_long x = v;
  arg(a, sizeof x, &x);
}
static void A_i(argb *a, int32_t v) {
  cl_int x = v;
  arg(a, sizeof x, &x);
}
static void A_f(argb *a, double v) {
  cl_float x = (cl_float)v;
  arg(a, sizeof x, &x);
}
static void A_l8(argb *a, const int64_t *v, int n) {
  cl_long8 x;
  memset(&x, 0, sizeof x);
  for (int i = 0; i < n && i < 8; i++) x.s[i] = v[i];
  for (int i = n; i < 8; i++) x.s[i] = 1;
  arg(a, sizeof x, &x);
}
static void A_loc(argb *a, size_t bytes) { arg(a, bytes, NULL); }
/* a tensor: its buffer and byte offset */
static void A_t(argb *a, const otensor *t) {
  A_mem(a, t->mem);
  A_ul(a, t->offset);
}

static argb begin(const char *name) {
  argb a = {sdf_kernel(name), name, 0, CL_SUCCESS, 0};
  if (!a.k) a.e = CL_INVALID_KERNEL;
  return a;
}

/* Enqueues a's kernel after the op's previous launch (or, for its first, after its dependencies). */
static int32_t go(launch_ctx *L, argb *a, cl_uint dims, const size_t *gws, const size_t *lws) {
  oop *op = L->op;
  if (a->e != CL_SUCCESS) {
    snprintf(L->err, sizeof L->err, "kernel %s: %s%s", a->name, a->k ? "setting an argument: " : "",
             a->k ? sdf_cl_err(a->e) : sdf_last_error());
    if (a->k) snprintf(L->err + strlen(L->err), sizeof L->err - strlen(L->err), " (argument %u)", a->bad);
    return SDF_E_INTERNAL;
  }
  for (cl_uint d = 0; d < dims; d++)
    if (gws[d] == 0) return SDF_OK; /* nothing to do */
  /* No local size given: up to 64 work-items along dim 0 (the kernels bound-check it), not
   * whatever the driver picks (POCL may run millions of one-item groups). */
  size_t g2[3], l2[3];
  if (!lws) {
    size_t cap = sdf_kernel_wg(a->k), l = 1;
    if (cap == 0 || cap > 64) cap = 64;
    while (l * 2 <= cap && l < gws[0]) l *= 2;
    for (cl_uint d = 0; d < dims; d++) {
      l2[d] = d == 0 ? l : 1;
      g2[d] = d == 0 ? (gws[0] + l - 1) / l * l : gws[d];
    }
    gws = g2;
    lws = l2;
  }
  const cl_event *w = op->last ? &op->last : L->wait;
  cl_uint nw = op->last ? 1 : L->n_wait;
  cl_event ev = NULL;
  cl_int e = clEnqueueNDRangeKernel(sdf_dev.queue, a->k, dims, NULL, gws, lws, nw, nw ? w : NULL, &ev);
  if (e != CL_SUCCESS) {
    snprintf(L->err, sizeof L->err, "kernel %s (%s): %s%s", a->name, sdf_kernel_file(a->name), sdf_cl_err(e),
             sdf_cl_status(e) == SDF_E_NOMEM ? " (out of device memory)" : "");
    return sdf_cl_status(e) == SDF_E_NOMEM ? SDF_E_NOMEM : SDF_E_INTERNAL;
  }
  if (!op->first) op->first = ev;
  else if (op->last != op->first) clReleaseEvent(op->last);
  op->last = ev;
  return SDF_OK;
}

static int32_t go1(launch_ctx *L, argb *a, int64_t n) {
  size_t g = ru(n, 64), l = 64;
  return go(L, a, 1, &g, &l);
}

/* GEMM: C[z] = alpha * A[z] B[z] (+ bias). */
typedef struct {
  const otensor *a, *b, *c, *bias;
  cl_mem a_mem, c_mem;       /* overrides (scratch) when set */
  uint64_t a_off, c_off;
  int a_dt;
  int64_t a_bs, a_rs, a_cs, b_bs, b_rs, b_cs, c_bs, ldc, M, N, K, batch;
  int bias_mode;
  double alpha;
} gemm_args;

static int32_t gemm(launch_ctx *L, const gemm_args *g) {
  /* CPU devices: the register-blocked kernels without barriers when the layout suits them */
  const int a_f32 = (g->a_mem ? g->a_dt : g->a->dtype) == SDF_F32;
  const char *kname = !sdf_dev.cpu                         ? "gemm"
                      : g->b_cs == 1                       ? "gemm_rb"
                      : g->b_rs == 1 && g->a_cs == 1 && a_f32 ? "gemm_nt_rb"
                                                           : "gemm";
  argb a = begin(kname);
  if (g->a_mem) {
    A_mem(&a, g->a_mem);
    A_ul(&a, g->a_off);
  } else A_t(&a, g->a);
  A_i(&a, g->a_mem ? g->a_dt : g->a->dtype);
  A_l(&a, g->a_bs), A_l(&a, g->a_rs), A_l(&a, g->a_cs);
  A_t(&a, g->b);
  A_i(&a, g->b->dtype);
  A_l(&a, g->b_bs), A_l(&a, g->b_rs), A_l(&a, g->b_cs);
  if (g->c_mem) {
    A_mem(&a, g->c_mem);
    A_ul(&a, g->c_off);
  } else A_t(&a, g->c);
  A_l(&a, g->c_bs), A_l(&a, g->ldc);
  const otensor *bias = g->bias ? g->bias : g->b;
  A_t(&a, bias);
  A_i(&a, bias->dtype);
  A_i(&a, g->bias ? g->bias_mode : 0);
  A_l(&a, g->M), A_l(&a, g->N), A_l(&a, g->K);
  A_f(&a, g->alpha);
  if (kname[4] == '_') {
    const int64_t bs = kname[5] == 'r' ? 8 : 4;
    size_t gws[3] = {(size_t)cdiv(g->N, bs), (size_t)cdiv(g->M, bs), (size_t)g->batch};
    return go(L, &a, 3, gws, NULL);
  }
  size_t gws[3] = {(size_t)cdiv(g->N, GEMM_TS) * GEMM_WG, (size_t)cdiv(g->M, GEMM_TS) * GEMM_WG, (size_t)g->batch};
  size_t lws[3] = {GEMM_WG, GEMM_WG, 1};
  return go(L, &a, 3, gws, lws);
}

static size_t pow2_wg(cl_kernel k, int64_t want) {
  size_t cap = sdf_kernel_wg(k);
  if (cap == 0 || cap > sdf_dev.max_wg) cap = sdf_dev.max_wg;
  if (cap > 256) cap = 256;
  size_t w = 1;
  while (w * 2 <= cap && (int64_t)w < want) w *= 2;
  return w;
}

int32_t sdf_op_enqueue(launch_ctx *L) {
  oop *op = L->op;
  const otensor *x = op->in[0], *y = op->out[0];
  switch (op->opcode) {
  case SDF_OP_CONV2D: {
    const otensor *w = op->in[1], *b = op->n_in == 3 ? op->in[2] : NULL;
    int64_t N = x->dims[0], Ci = x->dims[1], H = x->dims[2], W = x->dims[3], Co = w->dims[0], KH = w->dims[2],
            KW = w->dims[3], OH = y->dims[2], OW = y->dims[3];
    int direct = op->q[0] == 1;
    if (!direct && KH == 1 && KW == 1 && op->p[0] == 1 && op->p[1] == 1 && op->p[2] == 0 && op->p[3] == 0) {
      /* pointwise: y[n] = W (Co x Ci) @ x[n] (Ci x H*W), no im2col at all */
      gemm_args g = {0};
      int64_t P = H * W;
      g.a = w, g.a_bs = 0, g.a_rs = Ci, g.a_cs = 1;
      g.b = x, g.b_bs = Ci * P, g.b_rs = P, g.b_cs = 1;
      g.c = y, g.c_bs = Co * P, g.ldc = P;
      g.bias = b, g.bias_mode = 2;
      g.M = Co, g.N = P, g.K = Ci, g.batch = N, g.alpha = 1.0;
      return gemm(L, &g);
    }
    argb a = begin(direct ? "conv_direct" : "conv_igemm");
    A_t(&a, x);
    A_t(&a, w);
    A_i(&a, w->dtype);
    A_t(&a, b ? b : w);
    A_i(&a, b ? b->dtype : w->dtype);
    A_i(&a, b != NULL);
    A_t(&a, y);
    if (direct) {
      A_l(&a, Ci), A_l(&a, H), A_l(&a, W), A_l(&a, Co), A_l(&a, KH), A_l(&a, KW), A_l(&a, OH), A_l(&a, OW);
      A_l(&a, op->p[0]), A_l(&a, op->p[1]), A_l(&a, op->p[2]), A_l(&a, op->p[3]);
      size_t gws[3] = {ru(OH * OW, 64), (size_t)Co, (size_t)N}, lws[3] = {64, 1, 1};
      return go(L, &a, 3, gws, lws);
    }
    A_l(&a, Ci), A_l(&a, H), A_l(&a, W), A_l(&a, KH), A_l(&a, KW), A_l(&a, OW);
    A_l(&a, op->p[0]), A_l(&a, op->p[1]), A_l(&a, op->p[2]), A_l(&a, op->p[3]);
    int64_t M = Co, NN = OH * OW, K = Ci * KH * KW;
    A_l(&a, M), A_l(&a, NN), A_l(&a, K);
    size_t gws[3] = {(size_t)cdiv(NN, GEMM_TS) * GEMM_WG, (size_t)cdiv(M, GEMM_TS) * GEMM_WG, (size_t)N};
    size_t lws[3] = {GEMM_WG, GEMM_WG, 1};
    return go(L, &a, 3, gws, lws);
  }
  case SDF_OP_WINO_FILTER: {
    int64_t Co = x->dims[0], Ci = x->dims[1];
    argb a = begin("wino_filter");
    A_t(&a, x);
    A_i(&a, x->dtype);
    A_t(&a, y);
    A_i(&a, (int32_t)op->p[0]);
    A_l(&a, Ci), A_l(&a, 0), A_l(&a, Co);
    A_i(&a, 1);
    size_t gws[2] = {(size_t)Ci, (size_t)Co};
    return go(L, &a, 2, gws, NULL);
  }
  case SDF_OP_WINO_INPUT: {
    argb a = begin("wino_input");
    A_t(&a, x);
    A_t(&a, y);
    A_i(&a, (int32_t)op->p[0]);
    A_l(&a, x->dims[0]), A_l(&a, x->dims[1]), A_l(&a, x->dims[2]), A_l(&a, x->dims[3]);
    A_l(&a, op->p[1]), A_l(&a, op->p[2]), A_l(&a, op->q[0]), A_l(&a, op->q[1]), A_l(&a, op->q[2]);
    size_t gws[2] = {ru(op->q[3], 64), (size_t)x->dims[1]}, lws[2] = {64, 1};
    return go(L, &a, 2, gws, lws);
  }
  case SDF_OP_WINO_GEMM: {
    const otensor *v = op->in[1];
    int64_t A = op->p[0] + 2, AA = A * A, Co = op->q[1], Ci = op->q[2], T = op->q[3];
    gemm_args g = {0};
    g.b = v, g.c = y;
    g.b_bs = Ci * T, g.b_rs = T, g.b_cs = 1;
    g.c_bs = Co * T, g.ldc = T, g.N = T, g.K = Ci, g.batch = AA, g.alpha = 1.0;
    g.a_rs = Ci, g.a_cs = 1;
    if (!op->q[0]) {
      g.a = x;
      g.a_bs = Co * Ci, g.M = Co;
      return gemm(L, &g);
    }
    /* fused: per block of cb output channels, transform its filters into the scratch, then multiply */
    int64_t cb = op->q[4];
    for (int64_t co0 = 0; co0 < Co; co0 += cb) {
      int64_t n = Co - co0 < cb ? Co - co0 : cb;
      argb a = begin("wino_filter");
      A_t(&a, x);
      A_i(&a, x->dtype);
      A_mem(&a, L->plan->scratch);
      A_ul(&a, 0);
      A_i(&a, (int32_t)op->p[0]);
      A_l(&a, Ci), A_l(&a, co0), A_l(&a, n);
      A_i(&a, 0);
      size_t gws[2] = {(size_t)Ci, (size_t)n};
      TRY(go(L, &a, 2, gws, NULL));
      g.a_mem = L->plan->scratch, g.a_off = 0, g.a_dt = SDF_F32;
      g.a_bs = n * Ci, g.M = n;
      g.c_mem = y->mem, g.c_off = y->offset + (uint64_t)(co0 * T) * 4;
      TRY(gemm(L, &g));
    }
    return SDF_OK;
  }
  case SDF_OP_WINO_OUTPUT: {
    int hb = op->p[1] != 0, hr = op->p[2] != 0;
    argb a = begin("wino_output");
    A_t(&a, x);
    A_t(&a, hb ? op->in[1] : x);
    A_i(&a, hb);
    A_t(&a, hr ? op->in[1 + hb] : x);
    A_i(&a, hr);
    A_t(&a, y);
    A_i(&a, (int32_t)op->p[0]);
    A_l(&a, y->dims[0]), A_l(&a, y->dims[1]), A_l(&a, y->dims[2]), A_l(&a, y->dims[3]);
    A_l(&a, op->q[0]), A_l(&a, op->q[1]), A_l(&a, op->q[2]);
    size_t gws[2] = {ru(op->q[3], 64), (size_t)y->dims[1]}, lws[2] = {64, 1};
    return go(L, &a, 2, gws, lws);
  }
  case SDF_OP_MATMUL: {
    gemm_args g = {0};
    int64_t M = op->q[0], N = op->q[1], K = op->q[2];
    g.a = x, g.a_rs = K, g.a_cs = 1;
    g.b = op->in[1], g.b_rs = 1, g.b_cs = K;
    g.c = y, g.ldc = N;
    g.bias = op->n_in == 3 ? op->in[2] : NULL, g.bias_mode = 1;
    g.M = M, g.N = N, g.K = K, g.batch = 1, g.alpha = 1.0;
    return gemm(L, &g);
  }
  case SDF_OP_BMM: {
    gemm_args g = {0};
    int64_t B = op->q[0], M = op->q[1], N = op->q[2], K = op->q[3];
    g.a = x, g.a_bs = M * K, g.a_rs = K, g.a_cs = 1;
    g.b = op->in[1], g.b_bs = K * N;
    if (op->q[4]) g.b_rs = 1, g.b_cs = K;
    else g.b_rs = N, g.b_cs = 1;
    g.c = y, g.c_bs = M * N, g.ldc = N;
    g.M = M, g.N = N, g.K = K, g.batch = B, g.alpha = op->n_f > 0 ? op->f[0] : 1.0;
    return gemm(L, &g);
  }
  case SDF_OP_ATTENTION: {
    const otensor *k = op->in[1];
    int64_t B = x->dims[0], Nq = x->dims[1], Nk = k->dims[1], heads = op->p[0], D = op->q[0], bk = op->q[1];
    if (sdf_dev.cpu) {
      argb a = begin("attention_direct");
      A_t(&a, x), A_t(&a, k), A_t(&a, op->in[2]), A_t(&a, y);
      A_l(&a, Nq), A_l(&a, Nk);
      A_i(&a, (int32_t)D), A_i(&a, (int32_t)heads);
      A_f(&a, op->n_f > 0 ? op->f[0] : 1.0 / sqrt((double)D));
      A_i(&a, op->n_p > 1 && op->p[1]);
      size_t gws[3] = {(size_t)Nq, (size_t)heads, (size_t)B};
      return go(L, &a, 3, gws, NULL);
    }
    argb a = begin("attention");
    size_t wg = pow2_wg(a.k, ATT_WG);
    A_t(&a, x);
    A_t(&a, k);
    A_t(&a, op->in[2]);
    A_t(&a, y);
    A_l(&a, Nq), A_l(&a, Nk);
    A_i(&a, (int32_t)D), A_i(&a, (int32_t)heads);
    A_f(&a, op->n_f > 0 ? op->f[0] : 1.0 / sqrt((double)D));
    A_i(&a, op->n_p > 1 && op->p[1]);
    A_i(&a, (int32_t)bk);
    A_loc(&a, (size_t)(bk * D * 4));
    A_loc(&a, (size_t)(bk * D * 4));
    size_t gws[3] = {ru(Nq, (int64_t)wg), (size_t)heads, (size_t)B}, lws[3] = {wg, 1, 1};
    return go(L, &a, 3, gws, lws);
  }
  case SDF_OP_GROUP_NORM: {
    int64_t N = x->dims[0], C = x->dims[1], G = op->p[0], S = prod(x, 2, x->ndim);
    argb a = begin("group_norm");
    size_t wg = pow2_wg(a.k, 256);
    A_t(&a, x), A_t(&a, op->in[1]), A_t(&a, op->in[2]), A_t(&a, y);
    A_l(&a, C), A_l(&a, G), A_l(&a, S);
    A_f(&a, op->n_f > 0 ? op->f[0] : 1e-5);
    A_i(&a, op->n_p > 1 && op->p[1]);
    A_loc(&a, wg * (sdf_dev.fp64 ? 8 : 4));
    size_t gws = wg * (size_t)(N * G);
    return go(L, &a, 1, &gws, &wg);
  }
  case SDF_OP_LAYER_NORM: {
    int64_t C = x->dims[x->ndim - 1], rows = x->numel / C;
    argb a = begin("layer_norm");
    size_t wg = pow2_wg(a.k, C);
    A_t(&a, x), A_t(&a, op->in[1]), A_t(&a, op->in[2]), A_t(&a, y);
    A_l(&a, C);
    A_f(&a, op->n_f > 0 ? op->f[0] : 1e-5);
    A_loc(&a, wg * (sdf_dev.fp64 ? 8 : 4));
    size_t gws = wg * (size_t)rows;
    return go(L, &a, 1, &gws, &wg);
  }
  case SDF_OP_SOFTMAX: {
    int64_t C = x->dims[x->ndim - 1], rows = x->numel / C;
    argb a = begin("softmax");
    size_t wg = pow2_wg(a.k, C);
    A_t(&a, x), A_t(&a, y);
    A_l(&a, C);
    A_f(&a, op->n_f > 0 ? op->f[0] : 1.0);
    A_loc(&a, wg * (sdf_dev.fp64 ? 8 : 4));
    A_loc(&a, wg * 4);
    size_t gws = wg * (size_t)rows;
    return go(L, &a, 1, &gws, &wg);
  }
  case SDF_OP_UNARY: {
    argb a = begin("unary");
    A_t(&a, x), A_t(&a, y);
    A_l(&a, y->numel);
    A_i(&a, (int32_t)op->p[0]);
    return go1(L, &a, y->numel);
  }
  case SDF_OP_GEGLU: {
    argb a = begin("geglu");
    A_t(&a, x), A_t(&a, y);
    A_l(&a, y->numel);
    A_l(&a, y->dims[y->ndim - 1]);
    return go1(L, &a, y->numel);
  }
  case SDF_OP_BINARY: {
    argb a = begin("binary");
    A_t(&a, x), A_t(&a, op->in[1]), A_t(&a, y);
    A_l(&a, y->numel);
    A_i(&a, (int32_t)op->p[0]);
    A_i(&a, (int32_t)op->q[0]);
    A_l8(&a, &op->q[1], (int)op->q[0]);
    A_l8(&a, &op->q[7], (int)op->q[0]);
    A_l8(&a, &op->q[13], (int)op->q[0]);
    return go1(L, &a, y->numel);
  }
  case SDF_OP_SCALE: {
    argb a = begin("scale_shift");
    A_t(&a, x), A_t(&a, y);
    A_l(&a, y->numel);
    A_f(&a, op->f[0]);
    A_f(&a, op->n_f > 1 ? op->f[1] : 0.0);
    return go1(L, &a, y->numel);
  }
  case SDF_OP_CONCAT:
  case SDF_OP_SLICE: {
    int axis = (int)op->q[0];
    size_t es = sdf_dtype_size(y->dtype);
    const char *k = es == 4 ? "copy2d_u32" : "copy2d_u16";
    int64_t outer = prod(y, 0, axis), inner = prod(y, axis + 1, y->ndim);
    if (op->opcode == SDF_OP_SLICE) {
      int64_t len = y->dims[axis] * inner;
      argb a = begin(k);
      A_t(&a, x), A_t(&a, y);
      A_l(&a, len), A_l(&a, outer), A_l(&a, x->dims[axis] * inner), A_l(&a, op->p[1] * inner), A_l(&a, len), A_l(&a, 0);
      size_t gws[2] = {(size_t)len, (size_t)outer};
      return go(L, &a, 2, gws, NULL);
    }
    int64_t row = y->dims[axis] * inner, at = 0;
    for (int i = 0; i < op->n_in; i++) {
      int64_t part = op->in[i]->dims[axis] * inner;
      argb a = begin(k);
      A_t(&a, op->in[i]), A_t(&a, y);
      A_l(&a, part), A_l(&a, outer), A_l(&a, part), A_l(&a, 0), A_l(&a, row), A_l(&a, at);
      size_t gws[2] = {(size_t)part, (size_t)outer};
      TRY(go(L, &a, 2, gws, NULL));
      at += part;
    }
    return SDF_OK;
  }
  case SDF_OP_UPSAMPLE_NEAREST: {
    int64_t s = op->p[0], planes = x->dims[0] * x->dims[1], H = x->dims[2], W = x->dims[3];
    argb a = begin(sdf_dtype_size(y->dtype) == 4 ? "upsample_u32" : "upsample_u16");
    A_t(&a, x), A_t(&a, y);
    A_l(&a, H), A_l(&a, W), A_l(&a, s), A_l(&a, planes);
    size_t gws[3] = {(size_t)(W * s), (size_t)(H * s), (size_t)planes};
    return go(L, &a, 3, gws, NULL);
  }
  case SDF_OP_TIMESTEP_EMBEDDING: {
    int64_t N = x->dims[0], dim = op->p[0], half = dim / 2;
    double lmp = log(op->n_f > 0 ? op->f[0] : 10000.0);
    float hi = (float)lmp, lo = (float)(lmp - (double)hi);
    argb a = begin("timestep_embedding");
    A_t(&a, x), A_t(&a, y);
    A_l(&a, N), A_l(&a, dim);
    A_i(&a, op->n_p > 1 && op->p[1]);
    A_f(&a, hi), A_f(&a, lo);
    size_t gws[2] = {(size_t)(half > 0 ? half : 1), (size_t)N};
    return go(L, &a, 2, gws, NULL);
  }
  case SDF_OP_PERMUTE: {
    int r = x->ndim;
    int64_t xs[SDF_MAX_DIMS], st[SDF_MAX_DIMS], acc = 1;
    for (int i = r - 1; i >= 0; i--) {
      xs[i] = acc;
      acc *= x->dims[i];
    }
    for (int i = 0; i < r; i++) st[i] = xs[op->p[i]];
    argb a = begin(sdf_dtype_size(y->dtype) == 4 ? "permute_u32" : "permute_u16");
    A_t(&a, x), A_t(&a, y);
    A_l(&a, y->numel);
    A_i(&a, r);
    A_l8(&a, y->dims, r);
    A_l8(&a, st, r);
    return go1(L, &a, y->numel);
  }
  case SDF_OP_GATHER_ROWS: {
    const otensor *idx = op->in[1];
    int64_t V = x->dims[0], D = x->dims[1], rows = idx->numel;
    argb a = begin("gather_rows");
    A_t(&a, x);
    A_i(&a, x->dtype);
    A_t(&a, idx), A_t(&a, y);
    A_l(&a, V), A_l(&a, D), A_l(&a, rows);
    A_mem(&a, L->plan->err);
    A_i(&a, op->index);
    size_t gws[2] = {(size_t)D, (size_t)rows};
    return go(L, &a, 2, gws, NULL);
  }
  case SDF_OP_COPY: {
    argb a = begin("to_f32");
    A_t(&a, x);
    A_i(&a, x->dtype);
    A_t(&a, y);
    A_l(&a, y->numel);
    return go1(L, &a, y->numel);
  }
  default:
    snprintf(L->err, sizeof L->err, "opcode %d is not implemented", op->opcode);
    return SDF_E_UNSUPPORTED;
  }
}
