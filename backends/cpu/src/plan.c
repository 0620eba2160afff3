/*
 * Plans: parse and fully validate the binary plan (bounded reads, every
 * index, shape and size checked, overflow-safe), let each op's kernel
 * validate its contract, and bind buffers at run time.
 */
#include "internal.h"

typedef struct {
  const uint8_t *p;
  uint64_t len, pos;
} reader;

static int rd_u32(reader *r, uint32_t *v) {
  if (r->len - r->pos < 4) return -1;
  const uint8_t *b = r->p + r->pos;
  *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
  r->pos += 4;
  return 0;
}

static int rd_u64(reader *r, uint64_t *v) {
  if (r->len - r->pos < 8) return -1;
  const uint8_t *b = r->p + r->pos;
  uint64_t x = 0;
  for (int i = 7; i >= 0; i--) x = x << 8 | b[i];
  *v = x;
  r->pos += 8;
  return 0;
}

static int rd_f64(reader *r, double *v) {
  uint64_t u;
  if (rd_u64(r, &u)) return -1;
  memcpy(v, &u, sizeof *v);
  return 0;
}

static void plan_destroy(sdf_plan *p) {
  if (!p) return;
  if (p->ops && p->kernels) {
    for (uint32_t i = 0; i < p->n_ops; i++)
      if (p->kernels[i] && p->kernels[i]->release && p->ops[i].state) p->kernels[i]->release(&p->ops[i]);
  }
  free(p->tensors);
  free(p->ops);
  free(p->kernels);
  free(p->n_deps);
  free(p->dependents_off);
  free(p->dependents);
  free(p->binding_written);
  free(p->readers);
  free(p->release);
  free(p->run);
  free((void *)p->ready);
  free(p->profile_ns);
  sdf_aligned_free(p->scratch);
  free(p);
}

#define FAIL(code, ...)                                                                                                \
  do {                                                                                                                 \
    sdf_set_error(__VA_ARGS__);                                                                                        \
    rc = (code);                                                                                                       \
    goto fail;                                                                                                         \
  } while (0)

#define NEED(expr, what, ...)                                                                                          \
  do {                                                                                                                 \
    if (expr)                                                                                                          \
      FAIL(SDF_E_INVALID, "plan truncated at byte %llu: reading " what, (unsigned long long)r.pos, ##__VA_ARGS__);     \
  } while (0)

static const char *opcode_names[] = {
    "?",         "conv2d",  "wino_filter", "wino_input", "wino_gemm",        "wino_output",      "matmul",
    "bmm",       "attention", "group_norm", "layer_norm", "unary",          "geglu",            "softmax",
    "binary",    "scale",   "concat",      "upsample_nearest", "timestep_embedding", "permute", "gather_rows",
    "copy",      "slice"};

static sdf_plan *plan_compile(const uint8_t *bytes, uint64_t len);

SDF_API sdf_plan *sdf_plan_compile(const uint8_t *bytes, uint64_t len) {
  if (!sdf_initialized) {
    sdf_set_error("sdf_plan_compile: call sdf_init first");
    sdf_set_status(SDF_E_STATE);
    return NULL;
  }
  /* Kernels choose code paths in prepare() by ISA: compile under the calling
   * thread's configuration, and remember it for the plan's runs. */
  sdf_isa isa;
  int threads;
  sdf_bf16_unit bf16;
  sdf_requested_config(&isa, &threads, &bf16);
  pthread_mutex_lock(&sdf_run_lock);
  sdf_plan *p = NULL;
  int32_t crc = sdf_apply_config(isa, threads, bf16);
  if (crc == SDF_OK) p = plan_compile(bytes, len);
  else sdf_set_status(crc);
  pthread_mutex_unlock(&sdf_run_lock);
  if (p) {
    p->isa = isa;
    p->threads = threads;
    p->bf16 = bf16;
  }
  return p;
}

static sdf_plan *plan_compile(const uint8_t *bytes, uint64_t len) {
  int32_t rc = SDF_OK;
  if (!bytes && len) {
    sdf_set_error("sdf_plan_compile: bytes is NULL");
    return NULL;
  }
  reader r = {bytes, len, 0};
  sdf_plan *p = calloc(1, sizeof *p);
  if (!p) {
    sdf_set_error("sdf_plan_compile: out of memory");
    sdf_set_status(SDF_E_NOMEM);
    return NULL;
  }
  uint32_t magic, version;
  if (len < 20)
    FAIL(SDF_E_INVALID, "plan truncated: the header needs 20 bytes, got %llu", (unsigned long long)len);
  rd_u32(&r, &magic);
  rd_u32(&r, &version);
  if (magic != SDF_PLAN_MAGIC) FAIL(SDF_E_INVALID, "plan: bad magic 0x%08x (expected 0x%08x \"SDFP\")", magic, SDF_PLAN_MAGIC);
  if (version != SDF_PLAN_VERSION)
    FAIL(SDF_E_UNSUPPORTED, "plan: version %u is not supported (this backend reads version %d)", version,
         SDF_PLAN_VERSION);
  rd_u32(&r, &p->n_bindings);
  rd_u32(&r, &p->n_tensors);
  rd_u32(&r, &p->n_ops);
  /* a tensor takes >= 20 bytes and an op >= 24: reject absurd counts before allocating */
  if ((uint64_t)p->n_tensors * 20 > len - r.pos)
    FAIL(SDF_E_INVALID, "plan truncated: %u tensors cannot fit in the remaining %llu bytes", p->n_tensors,
         (unsigned long long)(len - r.pos));
  if ((uint64_t)p->n_ops * 24 > len - r.pos)
    FAIL(SDF_E_INVALID, "plan truncated: %u ops cannot fit in the remaining %llu bytes", p->n_ops,
         (unsigned long long)(len - r.pos));
  if (p->n_ops > INT32_MAX || p->n_tensors > INT32_MAX) FAIL(SDF_E_INVALID, "plan: too many ops or tensors");
  size_t nt = p->n_tensors ? p->n_tensors : 1, no = p->n_ops ? p->n_ops : 1;
  p->tensors = calloc(nt, sizeof *p->tensors);
  p->ops = calloc(no, sizeof *p->ops);
  p->kernels = calloc(no, sizeof *p->kernels);
  p->n_deps = calloc(no, sizeof *p->n_deps);
  p->dependents_off = calloc(no + 1, sizeof *p->dependents_off);
  p->binding_written = calloc(p->n_bindings ? p->n_bindings : 1, 1);
  p->readers = calloc(nt, sizeof *p->readers);
  p->release = calloc(nt, 1);
  p->run = calloc(no, sizeof *p->run);
  p->ready = calloc(no, sizeof *p->ready);
  p->profile_ns = calloc(no, sizeof *p->profile_ns);
  if (!p->tensors || !p->ops || !p->kernels || !p->n_deps || !p->dependents_off || !p->binding_written ||
      !p->readers || !p->release || !p->run || !p->ready || !p->profile_ns)
    FAIL(SDF_E_NOMEM, "sdf_plan_compile: out of memory");

  for (uint32_t i = 0; i < p->n_tensors; i++) {
    sdf_tensor *t = &p->tensors[i];
    uint32_t binding, dtype, ndim;
    uint64_t offset;
    NEED(rd_u32(&r, &binding) || rd_u32(&r, &dtype) || rd_u64(&r, &offset) || rd_u32(&r, &ndim), "tensor %u", i);
    if (binding >= p->n_bindings)
      FAIL(SDF_E_INVALID, "plan: tensor %u: binding %u out of range (plan has %u bindings)", i, binding,
           p->n_bindings);
    if (!sdf_dtype_known((int32_t)dtype)) FAIL(SDF_E_INVALID, "plan: tensor %u: unknown dtype %u", i, dtype);
    if (ndim > SDF_MAX_DIMS) FAIL(SDF_E_INVALID, "plan: tensor %u: ndim %u exceeds %d", i, ndim, SDF_MAX_DIMS);
    t->binding = (int32_t)binding;
    t->dtype = (int32_t)dtype;
    t->offset = offset;
    t->ndim = (int32_t)ndim;
    int64_t numel = 1;
    for (uint32_t d = 0; d < ndim; d++) {
      uint64_t u;
      NEED(rd_u64(&r, &u), "dims of tensor %u", i);
      int64_t v = (int64_t)u;
      if (v <= 0) FAIL(SDF_E_INVALID, "plan: tensor %u: dim %u is %lld (dims must be > 0)", i, d, (long long)v);
      if (__builtin_mul_overflow(numel, v, &numel))
        FAIL(SDF_E_INVALID, "plan: tensor %u: element count overflows", i);
      t->dims[d] = v;
    }
    if (sdfq_is_quant((int32_t)dtype) && numel % sdfq_block_elems((int32_t)dtype) != 0)
      FAIL(SDF_E_INVALID, "plan: tensor %u: %lld %s elements do not fill whole blocks of %d", i, (long long)numel,
           sdf_dtype_name((int32_t)dtype), (int)sdfq_block_elems((int32_t)dtype));
    int64_t nbytes;
    uint64_t end;
    if (__builtin_mul_overflow(numel, (int64_t)(sdfq_is_quant((int32_t)dtype) ? 1 : sdf_dtype_size((int32_t)dtype)),
                               &nbytes) ||
        __builtin_add_overflow(offset, (uint64_t)nbytes, &end))
      FAIL(SDF_E_INVALID, "plan: tensor %u: byte size overflows", i);
    t->numel = numel;
  }

  uint64_t total_deps = 0;
  /* dependency lists are kept in a temporary array to build the CSR later */
  uint32_t *deps_flat = NULL;
  uint64_t deps_cap = 0;
  uint64_t *deps_start = calloc(no + 1, sizeof *deps_start);
  if (!deps_start) FAIL(SDF_E_NOMEM, "sdf_plan_compile: out of memory");

  for (uint32_t i = 0; i < p->n_ops; i++) {
    sdf_op *op = &p->ops[i];
    uint32_t opcode, n_in, n_out, n_p, n_f, n_dep;
    if (rd_u32(&r, &opcode) || rd_u32(&r, &n_in) || rd_u32(&r, &n_out) || rd_u32(&r, &n_p) || rd_u32(&r, &n_f) ||
        rd_u32(&r, &n_dep)) {
      free(deps_start);
      free(deps_flat);
      FAIL(SDF_E_INVALID, "plan truncated at byte %llu: reading op %u", (unsigned long long)r.pos, i);
    }
#define OPFAIL(code, ...)                                                                                              \
  do {                                                                                                                 \
    free(deps_start);                                                                                                  \
    free(deps_flat);                                                                                                   \
    char m_[768];                                                                                                      \
    snprintf(m_, sizeof m_, __VA_ARGS__);                                                                              \
    FAIL(code, "plan: op %u (%s): %s", i, opcode < 23 ? opcode_names[opcode] : "?", m_);                               \
  } while (0)
    op->index = (int32_t)i;
    op->opcode = (int32_t)opcode;
    const sdf_kernel *k = sdf_find_kernel((int32_t)opcode);
    if (!k) {
      if (opcode >= 1 && opcode <= 22)
        OPFAIL(SDF_E_UNSUPPORTED, "opcode %u is not implemented by this backend", opcode);
      OPFAIL(SDF_E_UNSUPPORTED, "unknown opcode %u", opcode);
    }
    if (n_in > SDF_MAX_OP_TENSORS || n_out > SDF_MAX_OP_TENSORS || n_in + n_out > SDF_MAX_OP_TENSORS)
      OPFAIL(SDF_E_INVALID, "%u inputs + %u outputs exceed %d tensors", n_in, n_out, SDF_MAX_OP_TENSORS);
    if (n_out < 1) OPFAIL(SDF_E_INVALID, "op has no output");
    if (n_p > SDF_MAX_OP_PARAMS || n_f > SDF_MAX_OP_PARAMS)
      OPFAIL(SDF_E_INVALID, "%u int params / %u float params exceed %d", n_p, n_f, SDF_MAX_OP_PARAMS);
    if (n_dep > i) OPFAIL(SDF_E_INVALID, "%u dependencies but only %u earlier ops", n_dep, i);
    op->n_in = (int32_t)n_in;
    op->n_out = (int32_t)n_out;
    op->n_p = (int32_t)n_p;
    op->n_f = (int32_t)n_f;
    for (uint32_t j = 0; j < n_in + n_out; j++) {
      uint32_t ti;
      if (rd_u32(&r, &ti)) OPFAIL(SDF_E_INVALID, "plan truncated at byte %llu: reading tensor list", (unsigned long long)r.pos);
      if (ti >= p->n_tensors)
        OPFAIL(SDF_E_INVALID, "%s %u: tensor index %u out of range (plan has %u tensors)", j < n_in ? "input" : "output",
               j < n_in ? j : j - n_in, ti, p->n_tensors);
      if (j < n_in) {
        op->in[j] = &p->tensors[ti];
        p->readers[ti]++;
      } else {
        op->out[j - n_in] = &p->tensors[ti];
        p->binding_written[p->tensors[ti].binding] = 1;
      }
    }
    for (uint32_t j = 0; j < n_p; j++) {
      uint64_t u;
      if (rd_u64(&r, &u)) OPFAIL(SDF_E_INVALID, "plan truncated at byte %llu: reading params", (unsigned long long)r.pos);
      op->p[j] = (int64_t)u;
    }
    for (uint32_t j = 0; j < n_f; j++)
      if (rd_f64(&r, &op->f[j]))
        OPFAIL(SDF_E_INVALID, "plan truncated at byte %llu: reading float params", (unsigned long long)r.pos);
    deps_start[i] = total_deps;
    for (uint32_t j = 0; j < n_dep; j++) {
      uint32_t d;
      if (rd_u32(&r, &d)) OPFAIL(SDF_E_INVALID, "plan truncated at byte %llu: reading deps", (unsigned long long)r.pos);
      if (d >= i) OPFAIL(SDF_E_INVALID, "dependency on op %u, which is not an earlier op", d);
      if (total_deps == deps_cap) {
        uint64_t cap = deps_cap ? deps_cap * 2 : 256;
        uint32_t *nd = realloc(deps_flat, cap * sizeof *nd);
        if (!nd) OPFAIL(SDF_E_NOMEM, "out of memory");
        deps_flat = nd;
        deps_cap = cap;
      }
      deps_flat[total_deps++] = d;
    }
    p->n_deps[i] = n_dep;
    char err[512] = "";
    int32_t krc = k->prepare(op, err, sizeof err);
    if (krc != SDF_OK) OPFAIL(krc == SDF_E_UNSUPPORTED ? SDF_E_UNSUPPORTED : SDF_E_INVALID, "%s", err[0] ? err : "invalid");
    p->kernels[i] = k;
    if (op->n_chunks < 1) OPFAIL(SDF_E_INTERNAL, "kernel reported %lld chunks", (long long)op->n_chunks);
    if (op->scratch_bytes > p->max_scratch) p->max_scratch = op->scratch_bytes;
#undef OPFAIL
  }
  deps_start[p->n_ops] = total_deps;
  if (r.pos != len) {
    free(deps_start);
    free(deps_flat);
    FAIL(SDF_E_INVALID, "plan: %llu unexpected trailing bytes after op %u", (unsigned long long)(len - r.pos),
         p->n_ops ? p->n_ops - 1 : 0);
  }
  /* CSR of dependents */
  p->dependents = calloc(total_deps ? total_deps : 1, sizeof *p->dependents);
  if (!p->dependents) {
    free(deps_start);
    free(deps_flat);
    FAIL(SDF_E_NOMEM, "sdf_plan_compile: out of memory");
  }
  for (uint64_t j = 0; j < total_deps; j++) p->dependents_off[deps_flat[j] + 1]++;
  for (uint32_t i = 0; i < p->n_ops; i++) p->dependents_off[i + 1] += p->dependents_off[i];
  uint32_t *fill = calloc(no, sizeof *fill);
  if (!fill) {
    free(deps_start);
    free(deps_flat);
    FAIL(SDF_E_NOMEM, "sdf_plan_compile: out of memory");
  }
  for (uint32_t i = 0; i < p->n_ops; i++)
    for (uint64_t j = deps_start[i]; j < deps_start[i + 1]; j++) {
      uint32_t d = deps_flat[j];
      p->dependents[p->dependents_off[d] + fill[d]++] = i;
    }
  free(fill);
  free(deps_start);
  free(deps_flat);
  return p;
fail:
  sdf_set_status(rc);
  plan_destroy(p);
  return NULL;
}

SDF_API void sdf_plan_free(sdf_plan *plan) {
  if (!plan) return;
  if (atomic_load(&plan->running)) {
    sdf_set_error("sdf_plan_free: the plan is running; free it after sdf_plan_run returns");
    return;
  }
  plan_destroy(plan);
}

static int32_t bind(sdf_plan *p, sdf_buffer *const *bindings, uint32_t n_bindings) {
  if (n_bindings != p->n_bindings) {
    sdf_set_error("sdf_plan_run: the plan has %u bindings, %u buffers were given", p->n_bindings, n_bindings);
    return SDF_E_INVALID;
  }
  if (!bindings && n_bindings) {
    sdf_set_error("sdf_plan_run: bindings is NULL");
    return SDF_E_INVALID;
  }
  for (uint32_t b = 0; b < n_bindings; b++) {
    if (!bindings[b]) {
      sdf_set_error("sdf_plan_run: binding %u is NULL", b);
      return SDF_E_INVALID;
    }
    if (p->binding_written[b] && bindings[b]->read_only) {
      sdf_set_error("sdf_plan_run: binding %u is a read-only file buffer, but the plan writes outputs to it", b);
      return SDF_E_INVALID;
    }
  }
  for (uint32_t i = 0; i < p->n_tensors; i++) {
    sdf_tensor *t = &p->tensors[i];
    const sdf_buffer *buf = bindings[t->binding];
    uint64_t bytes = sdf_dtype_bytes(t->dtype, t->numel);
    if (t->offset > buf->size || bytes > buf->size - t->offset) {
      char shape[128];
      sdf_set_error("sdf_plan_run: tensor %u %s %s needs bytes [%llu, %llu) of binding %d, but that buffer has %llu "
                    "bytes",
                    i, sdf_dtype_name(t->dtype), sdf_shape_str(t, shape, sizeof shape), (unsigned long long)t->offset,
                    (unsigned long long)(t->offset + bytes), t->binding, (unsigned long long)buf->size);
      return SDF_E_INVALID;
    }
    t->data = buf->data + t->offset;
    /* A streamed file buffer's tensor read by one op only: its pages go once that op has run. */
    p->release[i] = buf->stream && p->readers[i] == 1;
  }
  return SDF_OK;
}

SDF_API int32_t sdf_plan_run(sdf_plan *plan, sdf_buffer *const *bindings, uint32_t n_bindings) {
  if (!plan) {
    sdf_set_error("sdf_plan_run: plan is NULL");
    return SDF_E_INVALID;
  }
  if (!sdf_initialized) {
    sdf_set_error("sdf_plan_run: call sdf_init first");
    snprintf(plan->last_error, sizeof plan->last_error, "%s", sdf_last_error());
    return SDF_E_STATE;
  }
  pthread_mutex_lock(&sdf_run_lock);
  atomic_store(&plan->running, 1);
  plan->last_error[0] = 0;
  int32_t rc = sdf_apply_config(plan->isa, plan->threads, plan->bf16);
  if (rc == SDF_OK) rc = bind(plan, bindings, n_bindings);
  /* Mapped weight files must be as they were mapped, before the run (else
   * the run would read changed weights or fault) and after it (else its
   * outputs may mix old and new weights). */
  for (uint32_t b = 0; rc == SDF_OK && b < n_bindings; b++) rc = sdf_file_guard_check(bindings[b]->guard, "before the run");
  if (rc == SDF_OK) rc = sdf_execute(plan);
  for (uint32_t b = 0; rc == SDF_OK && b < n_bindings; b++) rc = sdf_file_guard_check(bindings[b]->guard, "during the run");
  if (rc != SDF_OK) snprintf(plan->last_error, sizeof plan->last_error, "%s", sdf_last_error());
  atomic_store(&plan->running, 0);
  pthread_mutex_unlock(&sdf_run_lock);
  return rc;
}

SDF_API uint32_t sdf_plan_progress(const sdf_plan *plan) {
  return plan ? atomic_load(&((sdf_plan *)plan)->progress) : 0;
}

SDF_API uint32_t sdf_plan_profile(const sdf_plan *plan, uint64_t *out, uint32_t n) {
  if (!plan || !out) return 0;
  uint32_t m = n < plan->n_ops ? n : plan->n_ops;
  memcpy(out, plan->profile_ns, (size_t)m * sizeof *out);
  return m;
}

SDF_API const char *sdf_plan_last_error(const sdf_plan *plan) { return plan ? plan->last_error : ""; }
