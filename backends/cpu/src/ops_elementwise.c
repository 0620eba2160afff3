/*
 * Elementwise kernels: UNARY, GEGLU, BINARY (NumPy broadcasting), SCALE.
 * All chunk over element (or row) ranges of about SDF_ELEMS_PER_CHUNK.
 */
#include <math.h>

#include "common.h"
#include "simd.h"

/* ---- UNARY ------------------------------------------------------------- */

static int32_t unary_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "unary", 1, 1, 1, err, len));
  SDF_TRY(sdf_check_params(op, "unary", 1, 0, err, len));
  SDF_TRY(sdf_check_f32(op->in[0], "unary", "input", err, len));
  SDF_TRY(sdf_check_f32(op->out[0], "unary", "output", err, len));
  if (op->p[0] < SDF_UNARY_SILU || op->p[0] > SDF_UNARY_TANH)
    return sdf_fail(err, len, SDF_E_UNSUPPORTED, "unary: unknown kind %lld", (long long)op->p[0]);
  if (op->in[0]->numel != op->out[0]->numel) {
    char a[96], b[96];
    return sdf_fail(err, len, SDF_E_INVALID, "unary: input %s and output %s differ in size",
                    sdf_shape_str(op->in[0], a, sizeof a), sdf_shape_str(op->out[0], b, sizeof b));
  }
  op->n_chunks = sdf_chunks_for(op->out[0]->numel, 1, SDF_ELEMS_PER_CHUNK);
  return SDF_OK;
}

static inline float gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
}

static void unary_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  int64_t b, e;
  sdf_chunk_range(op->out[0]->numel, op->n_chunks, chunk, &b, &e);
  const float *x = (const float *)op->in[0]->data + b;
  float *y = (float *)op->out[0]->data + b;
  int64_t n = e - b;
  switch (op->p[0]) {
  case SDF_UNARY_SILU:
    sdf_simd()->x_sigmoid(y, x, n, 1.0f);
    break;
  case SDF_UNARY_QUICK_GELU:
    sdf_simd()->x_sigmoid(y, x, n, 1.702f);
    break;
  case SDF_UNARY_GELU:
    sdf_simd()->gelu_mul(y, NULL, x, n);
    break;
  case SDF_UNARY_GELU_TANH:
    for (int64_t i = 0; i < n; i++) y[i] = gelu_tanh(x[i]);
    break;
  case SDF_UNARY_RELU:
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
    break;
  case SDF_UNARY_LEAKY_RELU:
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.2f * x[i];
    break;
  case SDF_UNARY_SIGMOID:
    for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
    break;
  default: /* SDF_UNARY_TANH */
    for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
    break;
  }
}

const sdf_kernel sdf_kernel_unary = {SDF_OP_UNARY, "unary", unary_prepare, unary_run, NULL};

/* ---- GEGLU ------------------------------------------------------------- */

static int32_t geglu_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "geglu", 1, 1, 1, err, len));
  const sdf_tensor *x = op->in[0], *y = op->out[0];
  SDF_TRY(sdf_check_f32(x, "geglu", "input", err, len));
  SDF_TRY(sdf_check_f32(y, "geglu", "output", err, len));
  char a[96], b[96];
  int ok = x->ndim >= 1 && x->ndim == y->ndim && x->dims[x->ndim - 1] == 2 * y->dims[y->ndim - 1];
  for (int i = 0; ok && i < x->ndim - 1; i++) ok = x->dims[i] == y->dims[i];
  if (!ok)
    return sdf_fail(err, len, SDF_E_INVALID, "geglu: input %s must be [..., 2C] for output %s [..., C]",
                    sdf_shape_str(x, a, sizeof a), sdf_shape_str(y, b, sizeof b));
  int64_t c = y->dims[y->ndim - 1];
  op->n_chunks = sdf_chunks_for(y->numel / c, c, SDF_ELEMS_PER_CHUNK);
  return SDF_OK;
}

static void geglu_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  int64_t c = op->out[0]->dims[op->out[0]->ndim - 1], b, e;
  sdf_chunk_range(op->out[0]->numel / c, op->n_chunks, chunk, &b, &e);
  const float *x = op->in[0]->data;
  float *y = op->out[0]->data;
  void (*gelu_mul)(float *, const float *, const float *, int64_t) = sdf_simd()->gelu_mul;
  for (int64_t r = b; r < e; r++) gelu_mul(y + r * c, x + r * 2 * c, x + r * 2 * c + c, c);
}

const sdf_kernel sdf_kernel_geglu = {SDF_OP_GEGLU, "geglu", geglu_prepare, geglu_run, NULL};

/* ---- BINARY ------------------------------------------------------------ */

typedef struct {
  int nd;                     /* collapsed rank, >= 1 */
  int64_t dims[SDF_MAX_DIMS]; /* collapsed output dims */
  int64_t sa[SDF_MAX_DIMS], sb[SDF_MAX_DIMS]; /* element strides (0 = broadcast) */
  int64_t rows;               /* product of dims[0 .. nd-1) */
} binary_state;

static int32_t binary_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "binary", 2, 2, 1, err, len));
  SDF_TRY(sdf_check_params(op, "binary", 1, 0, err, len));
  const sdf_tensor *a = op->in[0], *b = op->in[1], *y = op->out[0];
  SDF_TRY(sdf_check_f32(a, "binary", "input a", err, len));
  SDF_TRY(sdf_check_f32(b, "binary", "input b", err, len));
  SDF_TRY(sdf_check_f32(y, "binary", "output", err, len));
  if (op->p[0] < SDF_BINARY_ADD || op->p[0] > SDF_BINARY_DIV)
    return sdf_fail(err, len, SDF_E_UNSUPPORTED, "binary: unknown kind %lld", (long long)op->p[0]);
  char sa_[96], sb_[96], sy_[96];
  int r = y->ndim;
  int ok = r == (a->ndim > b->ndim ? a->ndim : b->ndim);
  int64_t dims[SDF_MAX_DIMS], sa[SDF_MAX_DIMS], sb[SDF_MAX_DIMS];
  int64_t stra = 1, strb = 1;
  for (int i = r - 1; ok && i >= 0; i--) {
    int ia = i - (r - a->ndim), ib = i - (r - b->ndim);
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1, dy = y->dims[i];
    if ((da != dy && da != 1) || (db != dy && db != 1) || dy != (da > db ? da : db)) ok = 0;
    dims[i] = dy;
    sa[i] = da == 1 ? 0 : stra;
    sb[i] = db == 1 ? 0 : strb;
    stra *= da;
    strb *= db;
  }
  if (!ok)
    return sdf_fail(err, len, SDF_E_INVALID, "binary: shapes %s and %s do not broadcast to output %s",
                    sdf_shape_str(a, sa_, sizeof sa_), sdf_shape_str(b, sb_, sizeof sb_),
                    sdf_shape_str(y, sy_, sizeof sy_));
  binary_state *st = calloc(1, sizeof *st);
  if (!st) return sdf_fail(err, len, SDF_E_INVALID, "binary: out of memory");
  /* drop size-1 dims, then merge adjacent dims that stay contiguous for both inputs */
  int nd = 0;
  for (int i = 0; i < r; i++) {
    if (dims[i] == 1) continue;
    if (nd > 0 && st->sa[nd - 1] == sa[i] * dims[i] && st->sb[nd - 1] == sb[i] * dims[i]) {
      st->dims[nd - 1] *= dims[i];
      st->sa[nd - 1] = sa[i];
      st->sb[nd - 1] = sb[i];
      continue;
    }
    st->dims[nd] = dims[i];
    st->sa[nd] = sa[i];
    st->sb[nd] = sb[i];
    nd++;
  }
  if (nd == 0) {
    st->dims[0] = 1;
    st->sa[0] = st->sb[0] = 0;
    nd = 1;
  }
  st->nd = nd;
  st->rows = 1;
  for (int i = 0; i < nd - 1; i++) st->rows *= st->dims[i];
  op->state = st;
  op->n_chunks = sdf_chunks_for(st->rows, st->dims[nd - 1], SDF_ELEMS_PER_CHUNK);
  return SDF_OK;
}

#define BINARY_LOOP(EXPR)                                                                                              \
  do {                                                                                                                 \
    if (ia == 1 && ib == 1)                                                                                            \
      for (int64_t i = 0; i < n; i++) {                                                                                \
        float va = pa[i], vb = pb[i];                                                                                  \
        py[i] = EXPR;                                                                                                  \
      }                                                                                                                \
    else if (ia == 1 && ib == 0) {                                                                                     \
      float vb = pb[0];                                                                                                \
      for (int64_t i = 0; i < n; i++) {                                                                                \
        float va = pa[i];                                                                                              \
        py[i] = EXPR;                                                                                                  \
      }                                                                                                                \
    } else if (ia == 0 && ib == 1) {                                                                                   \
      float va = pa[0];                                                                                                \
      for (int64_t i = 0; i < n; i++) {                                                                                \
        float vb = pb[i];                                                                                              \
        py[i] = EXPR;                                                                                                  \
      }                                                                                                                \
    } else {                                                                                                           \
      float va = pa[0], vb = pb[0], v = EXPR;                                                                          \
      for (int64_t i = 0; i < n; i++) py[i] = v;                                                                       \
    }                                                                                                                  \
  } while (0)

static void binary_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  const binary_state *st = op->state;
  int nd = st->nd;
  int64_t n = st->dims[nd - 1], ia = st->sa[nd - 1], ib = st->sb[nd - 1];
  int64_t r0, r1;
  sdf_chunk_range(st->rows, op->n_chunks, chunk, &r0, &r1);
  const float *a = op->in[0]->data, *b = op->in[1]->data;
  float *y = op->out[0]->data;
  int kind = (int)op->p[0];
  for (int64_t row = r0; row < r1; row++) {
    int64_t oa = 0, ob = 0, rem = row;
    for (int d = nd - 2; d >= 0; d--) {
      int64_t c = rem % st->dims[d];
      rem /= st->dims[d];
      oa += c * st->sa[d];
      ob += c * st->sb[d];
    }
    const float *pa = a + oa, *pb = b + ob;
    float *py = y + row * n;
    switch (kind) {
    case SDF_BINARY_ADD:
      BINARY_LOOP(va + vb);
      break;
    case SDF_BINARY_SUB:
      BINARY_LOOP(va - vb);
      break;
    case SDF_BINARY_MUL:
      BINARY_LOOP(va * vb);
      break;
    default:
      BINARY_LOOP(va / vb);
      break;
    }
  }
}

static void free_state(sdf_op *op) {
  free(op->state);
  op->state = NULL;
}

const sdf_kernel sdf_kernel_binary = {SDF_OP_BINARY, "binary", binary_prepare, binary_run, free_state};

/* ---- SCALE ------------------------------------------------------------- */

static int32_t scale_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "scale", 1, 1, 1, err, len));
  SDF_TRY(sdf_check_params(op, "scale", 0, 1, err, len));
  SDF_TRY(sdf_check_f32(op->in[0], "scale", "input", err, len));
  SDF_TRY(sdf_check_f32(op->out[0], "scale", "output", err, len));
  if (op->in[0]->numel != op->out[0]->numel) {
    char a[96], b[96];
    return sdf_fail(err, len, SDF_E_INVALID, "scale: input %s and output %s differ in size",
                    sdf_shape_str(op->in[0], a, sizeof a), sdf_shape_str(op->out[0], b, sizeof b));
  }
  op->n_chunks = sdf_chunks_for(op->out[0]->numel, 1, SDF_ELEMS_PER_CHUNK);
  return SDF_OK;
}

static void scale_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  int64_t b, e;
  sdf_chunk_range(op->out[0]->numel, op->n_chunks, chunk, &b, &e);
  const float *x = op->in[0]->data;
  float *y = op->out[0]->data;
  float s = (float)op->f[0], t = op->n_f > 1 ? (float)op->f[1] : 0.0f;
  for (int64_t i = b; i < e; i++) y[i] = x[i] * s + t;
}

const sdf_kernel sdf_kernel_scale = {SDF_OP_SCALE, "scale", scale_prepare, scale_run, NULL};
