/*
 * COPY (dtype -> f32), GATHER_ROWS (embedding lookup) and
 * TIMESTEP_EMBEDDING.
 */
#include <math.h>

#include "common.h"
#include "simd.h"

/* Converts n elements of src (dtype) starting at element i0 into dst (f32). */
static void to_f32(float *dst, const void *src, int32_t dtype, int64_t i0, int64_t n) {
  const sdf_simd_ops *v = sdf_simd();
  switch (dtype) {
  case SDF_F16:
    v->f16_to_f32(dst, (const uint16_t *)src + i0, n);
    break;
  case SDF_BF16:
    v->bf16_to_f32(dst, (const uint16_t *)src + i0, n);
    break;
  case SDF_I32:
    for (int64_t i = 0; i < n; i++) dst[i] = (float)((const int32_t *)src)[i0 + i];
    break;
  case SDF_Q4_0:
  case SDF_Q4_1:
  case SDF_Q5_0:
  case SDF_Q5_1:
  case SDF_Q8_0:
  case SDF_Q2_K:
  case SDF_Q3_K:
  case SDF_Q4_K:
  case SDF_Q5_K:
  case SDF_Q6_K:
    sdfq_to_f32(dst, src, dtype, i0, n);
    break;
  default:
    memcpy(dst, (const float *)src + i0, (size_t)n * sizeof(float));
    break;
  }
}

/* ---- COPY ------------------------------------------------------------------ */

static int32_t copy_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "copy", 1, 1, 1, err, len));
  SDF_TRY(sdf_check_f32(op->out[0], "copy", "output", err, len));
  if (op->in[0]->numel != op->out[0]->numel) {
    char a[96], b[96];
    return sdf_fail(err, len, SDF_E_INVALID, "copy: input %s and output %s have different element counts",
                    sdf_shape_str(op->in[0], a, sizeof a), sdf_shape_str(op->out[0], b, sizeof b));
  }
  op->n_chunks = sdf_chunks_for(op->out[0]->numel, 1, SDF_ELEMS_PER_CHUNK);
  return SDF_OK;
}

static void copy_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  int64_t b, e;
  sdf_chunk_range(op->out[0]->numel, op->n_chunks, chunk, &b, &e);
  to_f32((float *)op->out[0]->data + b, op->in[0]->data, op->in[0]->dtype, b, e - b);
}

const sdf_kernel sdf_kernel_copy = {SDF_OP_COPY, "copy", copy_prepare, copy_run, NULL};

/* ---- GATHER_ROWS: table[V,D], idx[...] i32 -> y[..., D] f32 ---------------- */

static int32_t gather_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "gather_rows", 2, 2, 1, err, len));
  const sdf_tensor *tab = op->in[0], *idx = op->in[1], *y = op->out[0];
  if (!sdfq_is_quant(tab->dtype)) SDF_TRY(sdf_check_float(tab, "gather_rows", "table", err, len));
  SDF_TRY(sdf_check_f32(y, "gather_rows", "output", err, len));
  if (idx->dtype != SDF_I32)
    return sdf_fail(err, len, SDF_E_INVALID, "gather_rows: indices must be i32, got %s", sdf_dtype_name(idx->dtype));
  char a[96], b[96], c[96];
  int ok = tab->ndim == 2 && idx->ndim >= 1 && y->ndim == idx->ndim + 1 && y->dims[y->ndim - 1] == tab->dims[1];
  for (int i = 0; ok && i < idx->ndim; i++) ok = y->dims[i] == idx->dims[i];
  if (!ok)
    return sdf_fail(err, len, SDF_E_INVALID, "gather_rows: table %s [V, D] and indices %s need output [..., D], got %s",
                    sdf_shape_str(tab, a, sizeof a), sdf_shape_str(idx, b, sizeof b), sdf_shape_str(y, c, sizeof c));
  op->n_chunks = sdf_chunks_for(idx->numel, tab->dims[1], SDF_ELEMS_PER_CHUNK);
  return SDF_OK;
}

static void gather_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  const sdf_tensor *tab = op->in[0], *idx = op->in[1];
  int64_t v = tab->dims[0], d = tab->dims[1], r0, r1;
  sdf_chunk_range(idx->numel, op->n_chunks, chunk, &r0, &r1);
  const int32_t *ix = idx->data;
  float *y = op->out[0]->data;
  for (int64_t r = r0; r < r1; r++) {
    int64_t row = ix[r];
    if (row < 0 || row >= v) {
      char msg[160];
      snprintf(msg, sizeof msg, "gather_rows: index %lld at position %lld is out of range [0, %lld)", (long long)row,
               (long long)r, (long long)v);
      sdf_report_error(op, msg);
      return;
    }
    to_f32(y + r * d, tab->data, tab->dtype, row * d, d);
  }
}

const sdf_kernel sdf_kernel_gather_rows = {SDF_OP_GATHER_ROWS, "gather_rows", gather_prepare, gather_run, NULL};

/* ---- TIMESTEP_EMBEDDING: p = dim, flip (default 0); f = max_period (10000) -- */
/* y[n] = [cos(t f_i) | sin(t f_i)] (flip: [sin | cos]), f_i = exp(-ln(max_period)
 * i / half), half = dim / 2, computed in double; an odd dim gets a zero last
 * column (as ldm / diffusers pad). */

static int32_t tsemb_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "timestep_embedding", 1, 1, 1, err, len));
  SDF_TRY(sdf_check_params(op, "timestep_embedding", 1, 0, err, len));
  const sdf_tensor *t = op->in[0], *y = op->out[0];
  SDF_TRY(sdf_check_f32(t, "timestep_embedding", "input", err, len));
  SDF_TRY(sdf_check_f32(y, "timestep_embedding", "output", err, len));
  char a[96], b[96];
  if (t->ndim != 1 || y->ndim != 2 || y->dims[0] != t->dims[0] || y->dims[1] != op->p[0])
    return sdf_fail(err, len, SDF_E_INVALID, "timestep_embedding: t %s and dim %lld need output [N, dim], got %s",
                    sdf_shape_str(t, a, sizeof a), (long long)op->p[0], sdf_shape_str(y, b, sizeof b));
  if (op->n_p > 1 && op->p[1] != 0 && op->p[1] != 1)
    return sdf_fail(err, len, SDF_E_INVALID, "timestep_embedding: flip must be 0 or 1, got %lld", (long long)op->p[1]);
  if (op->n_f > 0 && !(op->f[0] > 0 && isfinite(op->f[0])))
    return sdf_fail(err, len, SDF_E_INVALID, "timestep_embedding: max_period must be > 0, got %g", op->f[0]);
  op->n_chunks = sdf_chunks_for(t->dims[0], y->dims[1], SDF_ELEMS_PER_CHUNK / 8);
  return SDF_OK;
}

static void tsemb_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  int64_t dim = op->p[0], half = dim / 2, r0, r1;
  int flip = op->n_p > 1 && op->p[1];
  double lmp = log(op->n_f > 0 ? op->f[0] : 10000.0);
  sdf_chunk_range(op->in[0]->dims[0], op->n_chunks, chunk, &r0, &r1);
  const float *t = op->in[0]->data;
  float *y = op->out[0]->data;
  for (int64_t n = r0; n < r1; n++) {
    float *yr = y + n * dim;
    for (int64_t i = 0; i < half; i++) {
      double arg = (double)t[n] * exp(-lmp * (double)i / (double)half);
      double c = cos(arg), s = sin(arg);
      yr[i] = (float)(flip ? s : c);
      yr[half + i] = (float)(flip ? c : s);
    }
    if (dim % 2) yr[dim - 1] = 0.0f;
  }
}

const sdf_kernel sdf_kernel_timestep_embedding = {SDF_OP_TIMESTEP_EMBEDDING, "timestep_embedding", tsemb_prepare,
                                                  tsemb_run, NULL};
