/*
 * Normalisation kernels: GROUP_NORM (+ fused SiLU), LAYER_NORM, SOFTMAX.
 * Statistics are two-pass (mean, then squared deviations) accumulated in
 * double, so large groups (VAE: 16 channels x 128x128) stay accurate.
 */
#include <math.h>

#include "common.h"
#include "simd.h"

static int32_t check_affine(const sdf_op *op, const char *name, int64_t c, char *err, size_t len) {
  for (int i = 1; i <= 2; i++) {
    const sdf_tensor *t = op->in[i];
    SDF_TRY(sdf_check_f32(t, name, i == 1 ? "gamma" : "beta", err, len));
    if (t->numel != c) {
      char s[96];
      return sdf_fail(err, len, SDF_E_INVALID, "%s: %s %s must have %lld elements (one per channel)", name,
                      i == 1 ? "gamma" : "beta", sdf_shape_str(t, s, sizeof s), (long long)c);
    }
  }
  return SDF_OK;
}

static int32_t check_same(const sdf_op *op, const char *name, char *err, size_t len) {
  SDF_TRY(sdf_check_f32(op->in[0], name, "input", err, len));
  SDF_TRY(sdf_check_f32(op->out[0], name, "output", err, len));
  if (!sdf_same_shape(op->in[0], op->out[0])) {
    char a[96], b[96];
    return sdf_fail(err, len, SDF_E_INVALID, "%s: input %s and output %s must have the same shape", name,
                    sdf_shape_str(op->in[0], a, sizeof a), sdf_shape_str(op->out[0], b, sizeof b));
  }
  return SDF_OK;
}

/* ---- GROUP_NORM: p = groups, silu (default 0); f = eps (default 1e-5) --- */

static int32_t group_norm_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "group_norm", 3, 3, 1, err, len));
  SDF_TRY(sdf_check_params(op, "group_norm", 1, 0, err, len));
  SDF_TRY(check_same(op, "group_norm", err, len));
  const sdf_tensor *x = op->in[0];
  if (x->ndim < 2) {
    char s[96];
    return sdf_fail(err, len, SDF_E_INVALID, "group_norm: input %s must be [N, C, ...]", sdf_shape_str(x, s, sizeof s));
  }
  int64_t c = x->dims[1], g = op->p[0];
  if (g < 1 || g > c || c % g != 0)
    return sdf_fail(err, len, SDF_E_INVALID, "group_norm: %lld channels not divisible by %lld groups", (long long)c,
                    (long long)g);
  if (op->n_p > 1 && op->p[1] != 0 && op->p[1] != 1)
    return sdf_fail(err, len, SDF_E_INVALID, "group_norm: silu flag must be 0 or 1, got %lld", (long long)op->p[1]);
  if (op->n_f > 0 && !(op->f[0] >= 0))
    return sdf_fail(err, len, SDF_E_INVALID, "group_norm: eps must be >= 0, got %g", op->f[0]);
  SDF_TRY(check_affine(op, "group_norm", c, err, len));
  op->n_chunks = x->dims[0] * g;
  return SDF_OK;
}

static void group_norm_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  const sdf_tensor *x = op->in[0];
  int64_t c = x->dims[1], g = op->p[0], cpg = c / g, spatial = sdf_dims_prod(x, 2, x->ndim);
  int64_t n = chunk / g, grp = chunk % g;
  int64_t count = cpg * spatial, base = (n * c + grp * cpg) * spatial;
  const float *xs = (const float *)x->data + base;
  float *ys = (float *)op->out[0]->data + base;
  const float *gamma = op->in[1]->data, *beta = op->in[2]->data;
  double eps = op->n_f > 0 ? op->f[0] : 1e-5;
  int silu = op->n_p > 1 && op->p[1];
  const sdf_simd_ops *v = sdf_simd();
  double mean = v->sum_f64(xs, count) / (double)count;
  double var = v->sqdev_f64(xs, count, mean) / (double)count;
  double rstd = 1.0 / sqrt(var + eps);
  for (int64_t ch = 0; ch < cpg; ch++) {
    int64_t cc = grp * cpg + ch;
    float a = (float)(gamma[cc] * rstd), b = (float)(beta[cc] - mean * gamma[cc] * rstd);
    const float *xr = xs + ch * spatial;
    float *yr = ys + ch * spatial;
    for (int64_t i = 0; i < spatial; i++) yr[i] = xr[i] * a + b;
    if (silu) v->x_sigmoid(yr, yr, spatial, 1.0f);
  }
}

const sdf_kernel sdf_kernel_group_norm = {SDF_OP_GROUP_NORM, "group_norm", group_norm_prepare, group_norm_run, NULL};

/* ---- LAYER_NORM over the last dim: f = eps (default 1e-5) --------------- */

static int32_t layer_norm_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "layer_norm", 3, 3, 1, err, len));
  SDF_TRY(check_same(op, "layer_norm", err, len));
  const sdf_tensor *x = op->in[0];
  if (x->ndim < 1) return sdf_fail(err, len, SDF_E_INVALID, "layer_norm: input must have at least one dim");
  if (op->n_f > 0 && !(op->f[0] >= 0))
    return sdf_fail(err, len, SDF_E_INVALID, "layer_norm: eps must be >= 0, got %g", op->f[0]);
  int64_t c = x->dims[x->ndim - 1];
  SDF_TRY(check_affine(op, "layer_norm", c, err, len));
  op->n_chunks = sdf_chunks_for(x->numel / c, c, SDF_ELEMS_PER_CHUNK / 4);
  return SDF_OK;
}

static void layer_norm_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  const sdf_tensor *x = op->in[0];
  int64_t c = x->dims[x->ndim - 1], r0, r1;
  sdf_chunk_range(x->numel / c, op->n_chunks, chunk, &r0, &r1);
  const float *gamma = op->in[1]->data, *beta = op->in[2]->data;
  double eps = op->n_f > 0 ? op->f[0] : 1e-5;
  const sdf_simd_ops *v = sdf_simd();
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = (const float *)x->data + r * c;
    float *yr = (float *)op->out[0]->data + r * c;
    double mean = v->sum_f64(xr, c) / (double)c;
    double var = v->sqdev_f64(xr, c, mean) / (double)c;
    float rstd = (float)(1.0 / sqrt(var + eps)), m = (float)mean;
    for (int64_t i = 0; i < c; i++) yr[i] = (xr[i] - m) * rstd * gamma[i] + beta[i];
  }
}

const sdf_kernel sdf_kernel_layer_norm = {SDF_OP_LAYER_NORM, "layer_norm", layer_norm_prepare, layer_norm_run, NULL};

/* ---- SOFTMAX over the last dim: f = scale (default 1) ------------------- */

static int32_t softmax_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "softmax", 1, 1, 1, err, len));
  SDF_TRY(check_same(op, "softmax", err, len));
  const sdf_tensor *x = op->in[0];
  if (x->ndim < 1) return sdf_fail(err, len, SDF_E_INVALID, "softmax: input must have at least one dim");
  int64_t c = x->dims[x->ndim - 1];
  op->n_chunks = sdf_chunks_for(x->numel / c, c, SDF_ELEMS_PER_CHUNK / 4);
  return SDF_OK;
}

static void softmax_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  const sdf_tensor *x = op->in[0];
  int64_t c = x->dims[x->ndim - 1], r0, r1;
  sdf_chunk_range(x->numel / c, op->n_chunks, chunk, &r0, &r1);
  float scale = op->n_f > 0 ? (float)op->f[0] : 1.0f;
  const sdf_simd_ops *v = sdf_simd();
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = (const float *)x->data + r * c;
    float *yr = (float *)op->out[0]->data + r * c;
    for (int64_t i = 0; i < c; i++) yr[i] = xr[i] * scale;
    float m = v->max(yr, c);
    float inv = 1.0f / v->exp_sub_sum(yr, c, m);
    for (int64_t i = 0; i < c; i++) yr[i] *= inv;
  }
}

const sdf_kernel sdf_kernel_softmax = {SDF_OP_SOFTMAX, "softmax", softmax_prepare, softmax_run, NULL};
