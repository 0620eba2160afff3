/*
 * Plans: parse and validate the binary plan (bounded reads, every index,
 * shape and size checked), let each op validate its contract, and run it.
 *
 * A run enqueues every op in plan order on the device queue. When the device
 * has out-of-order queues (POCL and most GPUs do), an op's first kernel waits
 * on the events of the ops it depends on (the plan's dependency edges) and
 * its further kernels on its own previous one, so independent ops may run
 * concurrently; otherwise the in-order queue runs them one after another.
 * Completion callbacks on each op's last event drive sdf_plan_progress;
 * profiling events give per-op device times.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ocl.h"

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

size_t sdf_dtype_size(int32_t dtype) {
  switch (dtype) {
  case SDF_F32:
  case SDF_I32:
    return 4;
  case SDF_F16:
  case SDF_BF16:
    return 2;
  default:
    return 0;
  }
}

const char *sdf_dtype_name(int32_t dtype) {
  switch (dtype) {
  case SDF_F32:
    return "f32";
  case SDF_F16:
    return "f16";
  case SDF_BF16:
    return "bf16";
  case SDF_I32:
    return "i32";
  default:
    return "?";
  }
}

const char *sdf_shape_str(const otensor *t, char *buf, size_t len) {
  size_t o = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < t->ndim && o < len; i++)
    o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
  if (o < len) snprintf(buf + o, len - o, "]");
  return buf;
}

static void plan_destroy(sdf_plan *p) {
  if (!p) return;
  if (p->scratch) clReleaseMemObject(p->scratch);
  if (p->err) clReleaseMemObject(p->err);
  free(p->tensors);
  free(p->ops);
  free(p->deps);
  free(p->binding_written);
  free(p->profile_ns);
  free(p);
}

#define FAIL(code, ...)                                                                                                \
  do {                                                                                                                 \
    sdf_set_error(__VA_ARGS__);                                                                                        \
    rc = (code);                                                                                                       \
    goto fail;                                                                                                         \
  } while (0)

SDF_API sdf_plan *sdf_plan_compile(const uint8_t *bytes, uint64_t len) {
  int32_t rc = SDF_OK;
  if (!sdf_dev.ready) {
    sdf_set_error("opencl: sdf_plan_compile: call sdf_init first");
    sdf_set_status(SDF_E_STATE);
    return NULL;
  }
  if (!bytes && len) {
    sdf_set_error("opencl: sdf_plan_compile: bytes is NULL");
    sdf_set_status(SDF_E_INVALID);
    return NULL;
  }
  reader r = {bytes, len, 0};
  sdf_plan *p = calloc(1, sizeof *p);
  if (!p) {
    sdf_set_error("opencl: sdf_plan_compile: out of memory");
    sdf_set_status(SDF_E_NOMEM);
    return NULL;
  }
  uint32_t magic, version;
  if (len < 20) FAIL(SDF_E_INVALID, "plan truncated: the header needs 20 bytes, got %llu", (unsigned long long)len);
  rd_u32(&r, &magic);
  rd_u32(&r, &version);
  if (magic != SDF_PLAN_MAGIC)
    FAIL(SDF_E_INVALID, "plan: bad magic 0x%08x (expected 0x%08x \"SDFP\")", magic, SDF_PLAN_MAGIC);
  if (version != SDF_PLAN_VERSION)
    FAIL(SDF_E_UNSUPPORTED, "plan: version %u is not supported (this backend reads version %d)", version,
         SDF_PLAN_VERSION);
  rd_u32(&r, &p->n_bindings);
  rd_u32(&r, &p->n_tensors);
  rd_u32(&r, &p->n_ops);
  if ((uint64_t)p->n_tensors * 20 > len - r.pos)
    FAIL(SDF_E_INVALID, "plan truncated: %u tensors cannot fit in the remaining %llu bytes", p->n_tensors,
         (unsigned long long)(len - r.pos));
  if ((uint64_t)p->n_ops * 24 > len - r.pos)
    FAIL(SDF_E_INVALID, "plan truncated: %u ops cannot fit in the remaining %llu bytes", p->n_ops,
         (unsigned long long)(len - r.pos));
  size_t nt = p->n_tensors ? p->n_tensors : 1, no = p->n_ops ? p->n_ops : 1;
  p->tensors = calloc(nt, sizeof *p->tensors);
  p->ops = calloc(no, sizeof *p->ops);
  p->binding_written = calloc(p->n_bindings ? p->n_bindings : 1, 1);
  p->profile_ns = calloc(no, sizeof *p->profile_ns);
  /* dependencies take 4 bytes each: bounded by the plan's size */
  p->deps = calloc(len / 4 + 1, sizeof *p->deps);
  if (!p->tensors || !p->ops || !p->binding_written || !p->profile_ns || !p->deps)
    FAIL(SDF_E_NOMEM, "sdf_plan_compile: out of memory");

  for (uint32_t i = 0; i < p->n_tensors; i++) {
    otensor *t = &p->tensors[i];
    uint32_t binding, dtype, ndim;
    uint64_t offset;
    if (rd_u32(&r, &binding) || rd_u32(&r, &dtype) || rd_u64(&r, &offset) || rd_u32(&r, &ndim))
      FAIL(SDF_E_INVALID, "plan truncated at byte %llu: reading tensor %u", (unsigned long long)r.pos, i);
    if (binding >= p->n_bindings)
      FAIL(SDF_E_INVALID, "plan: tensor %u: binding %u out of range (plan has %u bindings)", i, binding,
           p->n_bindings);
    size_t es = sdf_dtype_size((int32_t)dtype);
    if (!es) FAIL(SDF_E_INVALID, "plan: tensor %u: unknown dtype %u", i, dtype);
    if (ndim > SDF_MAX_DIMS) FAIL(SDF_E_INVALID, "plan: tensor %u: ndim %u exceeds %d", i, ndim, SDF_MAX_DIMS);
    if (offset % es != 0)
      FAIL(SDF_E_UNSUPPORTED, "plan: tensor %u (%s) at byte offset %llu is not %zu-byte aligned", i,
           sdf_dtype_name((int32_t)dtype), (unsigned long long)offset, es);
    t->binding = (int32_t)binding;
    t->dtype = (int32_t)dtype;
    t->offset = offset;
    t->ndim = (int32_t)ndim;
    int64_t numel = 1;
    for (uint32_t d = 0; d < ndim; d++) {
      uint64_t u;
      if (rd_u64(&r, &u)) FAIL(SDF_E_INVALID, "plan truncated at byte %llu: reading dims of tensor %u",
                               (unsigned long long)r.pos, i);
      int64_t v = (int64_t)u;
      if (v <= 0) FAIL(SDF_E_INVALID, "plan: tensor %u: dim %u is %lld (dims must be > 0)", i, d, (long long)v);
      if (__builtin_mul_overflow(numel, v, &numel)) FAIL(SDF_E_INVALID, "plan: tensor %u: element count overflows", i);
      t->dims[d] = v;
    }
    int64_t nbytes;
    uint64_t end;
    if (__builtin_mul_overflow(numel, (int64_t)es, &nbytes) || __builtin_add_overflow(offset, (uint64_t)nbytes, &end))
      FAIL(SDF_E_INVALID, "plan: tensor %u: byte size overflows", i);
    t->numel = numel;
  }

  uint32_t n_deps_total = 0;
  for (uint32_t i = 0; i < p->n_ops; i++) {
    oop *op = &p->ops[i];
    uint32_t opcode, n_in, n_out, n_p, n_f, n_dep;
    if (rd_u32(&r, &opcode) || rd_u32(&r, &n_in) || rd_u32(&r, &n_out) || rd_u32(&r, &n_p) || rd_u32(&r, &n_f) ||
        rd_u32(&r, &n_dep))
      FAIL(SDF_E_INVALID, "plan truncated at byte %llu: reading op %u", (unsigned long long)r.pos, i);
#define OPFAIL(code, ...)                                                                                              \
  do {                                                                                                                 \
    char m_[768];                                                                                                      \
    snprintf(m_, sizeof m_, __VA_ARGS__);                                                                              \
    FAIL(code, "plan: op %u (%s): %s", i, sdf_op_name((int32_t)opcode), m_);                                          \
  } while (0)
    op->index = (int32_t)i;
    op->opcode = (int32_t)opcode;
    if (opcode < 1 || opcode > 22) OPFAIL(SDF_E_UNSUPPORTED, "unknown opcode %u", opcode);
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
      if (rd_u32(&r, &ti))
        OPFAIL(SDF_E_INVALID, "plan truncated at byte %llu: reading tensor list", (unsigned long long)r.pos);
      if (ti >= p->n_tensors)
        OPFAIL(SDF_E_INVALID, "%s %u: tensor index %u out of range (plan has %u tensors)",
               j < n_in ? "input" : "output", j < n_in ? j : j - n_in, ti, p->n_tensors);
      if (j < n_in) op->in[j] = &p->tensors[ti];
      else {
        op->out[j - n_in] = &p->tensors[ti];
        p->binding_written[p->tensors[ti].binding] = 1;
      }
    }
    for (uint32_t j = 0; j < n_p; j++) {
      uint64_t u;
      if (rd_u64(&r, &u)) OPFAIL(SDF_E_INVALID, "plan truncated at byte %llu: reading params", (unsigned long long)r.pos);
      op->p[j] = (int64_t)u;
    }
    for (uint32_t j = 0; j < n_f; j++) {
      uint64_t u;
      if (rd_u64(&r, &u))
        OPFAIL(SDF_E_INVALID, "plan truncated at byte %llu: reading float params", (unsigned long long)r.pos);
      memcpy(&op->f[j], &u, sizeof u);
    }
    op->deps_at = n_deps_total;
    op->n_deps = n_dep;
    for (uint32_t j = 0; j < n_dep; j++) {
      uint32_t d;
      if (rd_u32(&r, &d)) OPFAIL(SDF_E_INVALID, "plan truncated at byte %llu: reading deps", (unsigned long long)r.pos);
      if (d >= i) OPFAIL(SDF_E_INVALID, "dependency on op %u, which is not an earlier op", d);
      p->deps[n_deps_total++] = d;
    }
    char err[512] = "";
    int32_t krc = sdf_op_prepare(op, err, sizeof err);
    if (krc != SDF_OK) OPFAIL(krc, "%s", err[0] ? err : "invalid");
    /* build the op's kernels now: a kernel that does not compile fails the plan, naming the op */
    for (const char *const *k = sdf_op_kernels(op); *k; k++) {
      if (!sdf_kernel(*k)) {
        char m_[SDF_ERR_LEN];
        snprintf(m_, sizeof m_, "%s", sdf_last_error());
        int32_t st = sdf_last_status();
        FAIL(st < 0 ? st : SDF_E_UNSUPPORTED, "opencl: plan: op %u (%s): %s", i, sdf_op_name((int32_t)opcode),
             strncmp(m_, "opencl: ", 8) == 0 ? m_ + 8 : m_);
      }
    }
    if (op->scratch_bytes > p->scratch_bytes) p->scratch_bytes = op->scratch_bytes;
#undef OPFAIL
  }
  if (r.pos != len)
    FAIL(SDF_E_INVALID, "plan: %llu unexpected trailing bytes after op %u", (unsigned long long)(len - r.pos),
         p->n_ops ? p->n_ops - 1 : 0);
  cl_int e;
  p->err = clCreateBuffer(sdf_dev.ctx, CL_MEM_READ_WRITE, 4 * sizeof(cl_int), NULL, &e);
  if (!p->err) FAIL(sdf_cl_status(e), "sdf_plan_compile: %s", sdf_cl_err(e));
  if (p->scratch_bytes) {
    p->scratch = clCreateBuffer(sdf_dev.ctx, CL_MEM_READ_WRITE, p->scratch_bytes, NULL, &e);
    if (!p->scratch)
      FAIL(sdf_cl_status(e), "sdf_plan_compile: out of device memory for %zu bytes of Winograd scratch: %s",
           p->scratch_bytes, sdf_cl_err(e));
  }
  return p;
fail:
  sdf_set_status(rc);
  plan_destroy(p);
  return NULL;
}

SDF_API void sdf_plan_free(sdf_plan *plan) {
  if (!plan) return;
  if (atomic_load(&plan->running)) {
    sdf_set_error("opencl: sdf_plan_free: the plan is running; free it after sdf_plan_run returns");
    return;
  }
  plan_destroy(plan);
}

static int32_t bind(sdf_plan *p, sdf_buffer *const *bindings, uint32_t n_bindings) {
  if (n_bindings != p->n_bindings) {
    sdf_set_error("opencl: sdf_plan_run: the plan has %u bindings, %u buffers were given", p->n_bindings, n_bindings);
    return SDF_E_INVALID;
  }
  if (!bindings && n_bindings) {
    sdf_set_error("opencl: sdf_plan_run: bindings is NULL");
    return SDF_E_INVALID;
  }
  for (uint32_t b = 0; b < n_bindings; b++) {
    if (!bindings[b]) {
      sdf_set_error("opencl: sdf_plan_run: binding %u is NULL", b);
      return SDF_E_INVALID;
    }
    if (p->binding_written[b] && bindings[b]->read_only) {
      sdf_set_error("opencl: sdf_plan_run: binding %u is a read-only file buffer, but the plan writes outputs to it",
                    b);
      return SDF_E_INVALID;
    }
  }
  for (uint32_t i = 0; i < p->n_tensors; i++) {
    otensor *t = &p->tensors[i];
    const sdf_buffer *buf = bindings[t->binding];
    uint64_t bytes = (uint64_t)t->numel * sdf_dtype_size(t->dtype);
    if (t->offset > buf->size || bytes > buf->size - t->offset) {
      char shape[128];
      sdf_set_error("opencl: sdf_plan_run: tensor %u %s %s needs bytes [%llu, %llu) of binding %d, but that buffer "
                    "has %llu bytes",
                    i, sdf_dtype_name(t->dtype), sdf_shape_str(t, shape, sizeof shape),
                    (unsigned long long)t->offset, (unsigned long long)(t->offset + bytes), t->binding,
                    (unsigned long long)buf->size);
      return SDF_E_INVALID;
    }
    t->mem = buf->mem;
  }
  return SDF_OK;
}

static void CL_CALLBACK on_op_done(cl_event ev, cl_int status, void *user) {
  (void)ev;
  sdf_plan *p = user;
  if (status == CL_COMPLETE) atomic_fetch_add(&p->progress, 1);
  atomic_fetch_add(&p->callbacks, 1);
}

static void release_events(sdf_plan *p, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    oop *op = &p->ops[i];
    if (op->last && op->last != op->first) clReleaseEvent(op->last);
    if (op->first) clReleaseEvent(op->first);
    op->first = op->last = NULL;
  }
}

static int32_t run(sdf_plan *p) {
  cl_command_queue q = sdf_dev.queue;
  cl_int zero[4] = {0, 0, 0, 0};
  cl_int e = clEnqueueWriteBuffer(q, p->err, CL_TRUE, 0, sizeof zero, zero, 0, NULL, NULL);
  if (e != CL_SUCCESS) {
    sdf_set_error("opencl: sdf_plan_run: %s", sdf_cl_err(e));
    return sdf_cl_status(e);
  }
  atomic_store(&p->progress, 0);
  atomic_store(&p->callbacks, 0);
  uint32_t enqueued = 0, registered = 0;
  int32_t rc = SDF_OK;
  cl_event *wait = malloc(sizeof(cl_event) * (p->n_ops + 2));
  if (!wait && p->n_ops) {
    sdf_set_error("opencl: sdf_plan_run: out of memory");
    return SDF_E_NOMEM;
  }
  cl_event scratch_tail = NULL; /* last event of the previous op using the shared scratch */
  for (uint32_t i = 0; i < p->n_ops; i++) {
    oop *op = &p->ops[i];
    cl_uint nw = 0;
    for (uint32_t j = 0; j < op->n_deps; j++) {
      cl_event ev = p->ops[p->deps[op->deps_at + j]].last;
      if (ev) wait[nw++] = ev;
    }
    if (op->scratch_bytes && scratch_tail) wait[nw++] = scratch_tail;
    launch_ctx L = {p, op, wait, nw, ""};
    rc = sdf_op_enqueue(&L);
    if (op->first) enqueued = i + 1;
    if (rc != SDF_OK) {
      sdf_set_error("opencl: op %u (%s): %s", i, sdf_op_name(op->opcode), L.err);
      break;
    }
    if (op->scratch_bytes) scratch_tail = op->last;
    if (clSetEventCallback(op->last, CL_COMPLETE, on_op_done, p) == CL_SUCCESS) registered++;
  }
  free(wait);
  e = clFinish(q);
  if (rc == SDF_OK && e != CL_SUCCESS) {
    sdf_set_error("opencl: sdf_plan_run: waiting for the device: %s", sdf_cl_err(e));
    rc = sdf_cl_status(e);
  }
  /* an op whose kernels failed on the device */
  for (uint32_t i = 0; rc == SDF_OK && i < enqueued; i++) {
    cl_int st = CL_COMPLETE;
    clGetEventInfo(p->ops[i].last, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL);
    if (st < 0) {
      sdf_set_error("opencl: op %u (%s): the device failed to run it: %s%s", i, sdf_op_name(p->ops[i].opcode),
                    sdf_cl_err(st), sdf_cl_status(st) == SDF_E_NOMEM ? " (out of device memory)" : "");
      rc = sdf_cl_status(st);
    }
  }
  if (rc == SDF_OK) {
    cl_int err[4];
    e = clEnqueueReadBuffer(q, p->err, CL_TRUE, 0, sizeof err, err, 0, NULL, NULL);
    if (e == CL_SUCCESS && err[0] != 0) {
      sdf_set_error("opencl: op %d (gather_rows): gather_rows: index %d at position %d is out of range", err[3],
                    err[2], err[1]);
      rc = SDF_E_INVALID;
    }
  }
  for (uint32_t i = 0; i < enqueued; i++) {
    oop *op = &p->ops[i];
    cl_ulong t0 = 0, t1 = 0;
    if (clGetEventProfilingInfo(op->first, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL) == CL_SUCCESS &&
        clGetEventProfilingInfo(op->last, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) == CL_SUCCESS && t1 >= t0)
      p->profile_ns[i] = t1 - t0;
    else p->profile_ns[i] = 0;
  }
  /* completion callbacks may trail clFinish: wait for them (bounded) before releasing the events */
  for (int spin = 0; atomic_load(&p->callbacks) < registered && spin < 20000; spin++) {
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
  }
  release_events(p, p->n_ops);
  if (rc == SDF_OK) atomic_store(&p->progress, p->n_ops);
  return rc;
}

SDF_API int32_t sdf_plan_run(sdf_plan *plan, sdf_buffer *const *bindings, uint32_t n_bindings) {
  if (!plan) {
    sdf_set_error("opencl: sdf_plan_run: plan is NULL");
    return SDF_E_INVALID;
  }
  pthread_mutex_lock(&sdf_run_lock);
  atomic_store(&plan->running, 1);
  plan->last_error[0] = 0;
  int32_t rc = bind(plan, bindings, n_bindings);
  if (rc == SDF_OK) rc = run(plan);
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
