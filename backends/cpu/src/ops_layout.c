/*
 * Data-movement kernels: CONCAT (any axis, 2+ inputs), UPSAMPLE_NEAREST,
 * PERMUTE, SLICE. They move bytes, so any dtype works (inputs and output
 * must share it).
 */
#include "common.h"

static int32_t check_same_dtype(const sdf_op *op, const char *name, char *err, size_t len) {
  /* Block-quantized tensors have no per-element bytes to move. */
  for (int i = 0; i < op->n_in; i++)
    if (sdfq_is_quant(op->in[i]->dtype))
      return sdf_fail(err, len, SDF_E_UNSUPPORTED, "%s: input %d is %s; layout ops take element dtypes only", name, i,
                      sdf_dtype_name(op->in[i]->dtype));
  for (int i = 0; i < op->n_in; i++)
    if (op->in[i]->dtype != op->out[0]->dtype)
      return sdf_fail(err, len, SDF_E_INVALID, "%s: input %d is %s but the output is %s", name, i,
                      sdf_dtype_name(op->in[i]->dtype), sdf_dtype_name(op->out[0]->dtype));
  return SDF_OK;
}

/* Normalises a possibly negative axis; -1 if out of range. */
static int norm_axis(int64_t axis, int rank) {
  if (axis < 0) axis += rank;
  return axis >= 0 && axis < rank ? (int)axis : -1;
}

/* ---- CONCAT: p = axis ---------------------------------------------------- */

static int32_t concat_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "concat", 2, SDF_MAX_OP_TENSORS - 1, 1, err, len));
  SDF_TRY(sdf_check_params(op, "concat", 1, 0, err, len));
  SDF_TRY(check_same_dtype(op, "concat", err, len));
  const sdf_tensor *y = op->out[0];
  int axis = norm_axis(op->p[0], y->ndim);
  if (axis < 0)
    return sdf_fail(err, len, SDF_E_INVALID, "concat: axis %lld out of range for rank %d", (long long)op->p[0],
                    y->ndim);
  int64_t sum = 0;
  char a[96], b[96];
  for (int i = 0; i < op->n_in; i++) {
    const sdf_tensor *x = op->in[i];
    int ok = x->ndim == y->ndim;
    for (int d = 0; ok && d < y->ndim; d++) ok = d == axis || x->dims[d] == y->dims[d];
    if (!ok)
      return sdf_fail(err, len, SDF_E_INVALID, "concat: input %d %s does not match output %s except on axis %d", i,
                      sdf_shape_str(x, a, sizeof a), sdf_shape_str(y, b, sizeof b), axis);
    sum += x->dims[axis];
  }
  if (sum != y->dims[axis])
    return sdf_fail(err, len, SDF_E_INVALID, "concat: inputs sum to %lld along axis %d, output %s has %lld",
                    (long long)sum, axis, sdf_shape_str(y, b, sizeof b), (long long)y->dims[axis]);
  int64_t outer = sdf_dims_prod(y, 0, axis);
  op->n_chunks = sdf_chunks_for(outer, y->numel / outer, SDF_ELEMS_PER_CHUNK);
  op->p[0] = axis; /* normalised */
  return SDF_OK;
}

static void concat_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  const sdf_tensor *y = op->out[0];
  int axis = (int)op->p[0];
  size_t es = sdf_dtype_size(y->dtype);
  int64_t outer = sdf_dims_prod(y, 0, axis), inner = sdf_dims_prod(y, axis + 1, y->ndim), r0, r1;
  sdf_chunk_range(outer, op->n_chunks, chunk, &r0, &r1);
  int64_t row = y->dims[axis] * inner;
  for (int64_t o = r0; o < r1; o++) {
    uint8_t *dst = (uint8_t *)y->data + (size_t)(o * row) * es;
    for (int i = 0; i < op->n_in; i++) {
      int64_t part = op->in[i]->dims[axis] * inner;
      memcpy(dst, (const uint8_t *)op->in[i]->data + (size_t)(o * part) * es, (size_t)part * es);
      dst += (size_t)part * es;
    }
  }
}

const sdf_kernel sdf_kernel_concat = {SDF_OP_CONCAT, "concat", concat_prepare, concat_run, NULL};

/* ---- UPSAMPLE_NEAREST: p = s ----------------------------------------------- */

static int32_t upsample_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "upsample_nearest", 1, 1, 1, err, len));
  SDF_TRY(sdf_check_params(op, "upsample_nearest", 1, 0, err, len));
  SDF_TRY(check_same_dtype(op, "upsample_nearest", err, len));
  const sdf_tensor *x = op->in[0], *y = op->out[0];
  int64_t s = op->p[0];
  char a[96], b[96];
  if (s < 1 || s > 1024)
    return sdf_fail(err, len, SDF_E_INVALID, "upsample_nearest: scale %lld must be 1..1024", (long long)s);
  if (x->ndim != 4 || y->ndim != 4 || y->dims[0] != x->dims[0] || y->dims[1] != x->dims[1] ||
      y->dims[2] != x->dims[2] * s || y->dims[3] != x->dims[3] * s)
    return sdf_fail(err, len, SDF_E_INVALID, "upsample_nearest: input %s x%lld must give output [N, C, H*s, W*s], got %s",
                    sdf_shape_str(x, a, sizeof a), (long long)s, sdf_shape_str(y, b, sizeof b));
  op->n_chunks = sdf_chunks_for(x->dims[0] * x->dims[1], y->dims[2] * y->dims[3], SDF_ELEMS_PER_CHUNK);
  return SDF_OK;
}

static void upsample_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  const sdf_tensor *x = op->in[0], *y = op->out[0];
  int64_t s = op->p[0], h = x->dims[2], w = x->dims[3], ow = w * s, p0, p1;
  sdf_chunk_range(x->dims[0] * x->dims[1], op->n_chunks, chunk, &p0, &p1);
  size_t es = sdf_dtype_size(x->dtype);
  for (int64_t p = p0; p < p1; p++) {
    for (int64_t r = 0; r < h; r++) {
      uint8_t *dst = (uint8_t *)y->data + (size_t)((p * h * s + r * s) * ow) * es;
      const uint8_t *src = (const uint8_t *)x->data + (size_t)((p * h + r) * w) * es;
      if (es == 4) {
        const uint32_t *sx = (const uint32_t *)src;
        uint32_t *dx = (uint32_t *)dst;
        for (int64_t c = 0; c < w; c++)
          for (int64_t k = 0; k < s; k++) dx[c * s + k] = sx[c];
      } else {
        const uint16_t *sx = (const uint16_t *)src;
        uint16_t *dx = (uint16_t *)dst;
        for (int64_t c = 0; c < w; c++)
          for (int64_t k = 0; k < s; k++) dx[c * s + k] = sx[c];
      }
      for (int64_t k = 1; k < s; k++) memcpy(dst + (size_t)(k * ow) * es, dst, (size_t)ow * es);
    }
  }
}

const sdf_kernel sdf_kernel_upsample_nearest = {SDF_OP_UPSAMPLE_NEAREST, "upsample_nearest", upsample_prepare,
                                                upsample_run, NULL};

/* ---- PERMUTE: p = r entries, y dim i = x dim p[i] ------------------------ */

static int32_t permute_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "permute", 1, 1, 1, err, len));
  SDF_TRY(check_same_dtype(op, "permute", err, len));
  const sdf_tensor *x = op->in[0], *y = op->out[0];
  int r = x->ndim;
  char a[96], b[96];
  if (op->n_p != r || y->ndim != r)
    return sdf_fail(err, len, SDF_E_INVALID, "permute: input %s has rank %d, output %s rank %d, %d axes given",
                    sdf_shape_str(x, a, sizeof a), r, sdf_shape_str(y, b, sizeof b), y->ndim, op->n_p);
  int seen[SDF_MAX_DIMS] = {0};
  for (int i = 0; i < r; i++) {
    if (op->p[i] < 0 || op->p[i] >= r || seen[op->p[i]])
      return sdf_fail(err, len, SDF_E_INVALID, "permute: axes are not a permutation of 0..%d", r - 1);
    seen[op->p[i]] = 1;
    if (y->dims[i] != x->dims[op->p[i]])
      return sdf_fail(err, len, SDF_E_INVALID, "permute: output %s does not match input %s permuted",
                      sdf_shape_str(y, b, sizeof b), sdf_shape_str(x, a, sizeof a));
  }
  int64_t last = r ? y->dims[r - 1] : 1;
  op->n_chunks = sdf_chunks_for(y->numel / last, last, SDF_ELEMS_PER_CHUNK);
  return SDF_OK;
}

static void permute_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  const sdf_tensor *x = op->in[0], *y = op->out[0];
  int r = x->ndim;
  if (r == 0) {
    memcpy(y->data, x->data, sdf_dtype_size(x->dtype));
    return;
  }
  int64_t xstr[SDF_MAX_DIMS], st[SDF_MAX_DIMS];
  int64_t acc = 1;
  for (int i = r - 1; i >= 0; i--) {
    xstr[i] = acc;
    acc *= x->dims[i];
  }
  for (int i = 0; i < r; i++) st[i] = xstr[op->p[i]]; /* x stride of y's dim i */
  int64_t last = y->dims[r - 1], inner_stride = st[r - 1], r0, r1;
  sdf_chunk_range(y->numel / last, op->n_chunks, chunk, &r0, &r1);
  size_t es = sdf_dtype_size(x->dtype);
  for (int64_t row = r0; row < r1; row++) {
    int64_t off = 0, rem = row;
    for (int d = r - 2; d >= 0; d--) {
      off += (rem % y->dims[d]) * st[d];
      rem /= y->dims[d];
    }
    if (inner_stride == 1) {
      memcpy((uint8_t *)y->data + (size_t)(row * last) * es, (const uint8_t *)x->data + (size_t)off * es,
             (size_t)last * es);
    } else if (es == 4) {
      const uint32_t *src = (const uint32_t *)x->data + off;
      uint32_t *dst = (uint32_t *)y->data + row * last;
      for (int64_t i = 0; i < last; i++) dst[i] = src[i * inner_stride];
    } else {
      const uint16_t *src = (const uint16_t *)x->data + off;
      uint16_t *dst = (uint16_t *)y->data + row * last;
      for (int64_t i = 0; i < last; i++) dst[i] = src[i * inner_stride];
    }
  }
}

const sdf_kernel sdf_kernel_permute = {SDF_OP_PERMUTE, "permute", permute_prepare, permute_run, NULL};

/* ---- SLICE: p = axis, start ------------------------------------------------ */

static int32_t slice_prepare(sdf_op *op, char *err, size_t len) {
  SDF_TRY(sdf_check_arity(op, "slice", 1, 1, 1, err, len));
  SDF_TRY(sdf_check_params(op, "slice", 2, 0, err, len));
  SDF_TRY(check_same_dtype(op, "slice", err, len));
  const sdf_tensor *x = op->in[0], *y = op->out[0];
  char a[96], b[96];
  int axis = norm_axis(op->p[0], x->ndim);
  if (axis < 0 || y->ndim != x->ndim)
    return sdf_fail(err, len, SDF_E_INVALID, "slice: axis %lld invalid for input %s / output %s", (long long)op->p[0],
                    sdf_shape_str(x, a, sizeof a), sdf_shape_str(y, b, sizeof b));
  for (int d = 0; d < x->ndim; d++)
    if (d != axis && x->dims[d] != y->dims[d])
      return sdf_fail(err, len, SDF_E_INVALID, "slice: output %s differs from input %s outside axis %d",
                      sdf_shape_str(y, b, sizeof b), sdf_shape_str(x, a, sizeof a), axis);
  int64_t start = op->p[1];
  if (start < 0 || start > x->dims[axis] - y->dims[axis])
    return sdf_fail(err, len, SDF_E_INVALID, "slice: [%lld, %lld) is outside axis %d of input %s (size %lld)",
                    (long long)start, (long long)(start + y->dims[axis]), axis, sdf_shape_str(x, a, sizeof a),
                    (long long)x->dims[axis]);
  op->p[0] = axis;
  int64_t outer = sdf_dims_prod(y, 0, axis);
  op->n_chunks = sdf_chunks_for(outer, y->numel / outer, SDF_ELEMS_PER_CHUNK);
  return SDF_OK;
}

static void slice_run(const sdf_op *op, int64_t chunk, void *scratch) {
  (void)scratch;
  const sdf_tensor *x = op->in[0], *y = op->out[0];
  int axis = (int)op->p[0];
  size_t es = sdf_dtype_size(x->dtype);
  int64_t outer = sdf_dims_prod(y, 0, axis), inner = sdf_dims_prod(y, axis + 1, y->ndim), r0, r1;
  sdf_chunk_range(outer, op->n_chunks, chunk, &r0, &r1);
  int64_t yrow = y->dims[axis] * inner, xrow = x->dims[axis] * inner, off = op->p[1] * inner;
  for (int64_t o = r0; o < r1; o++)
    memcpy((uint8_t *)y->data + (size_t)(o * yrow) * es, (const uint8_t *)x->data + (size_t)(o * xrow + off) * es,
           (size_t)yrow * es);
}

const sdf_kernel sdf_kernel_slice = {SDF_OP_SLICE, "slice", slice_prepare, slice_run, NULL};
