/*
 * The executor: runs a compiled plan on the thread pool.
 *
 * Ops whose dependencies are complete are appended to a ready queue. Every
 * thread repeatedly takes the earliest ready op that still has unclaimed
 * chunks and claims its next chunk with an atomic increment, so several ready
 * ops are worked on at once and a fast core simply takes more chunks. The
 * thread finishing an op's last chunk records its time, bumps the progress
 * counter and releases the op's dependents. Idle threads spin briefly, then
 * sleep on a condition variable until new ops become ready.
 *
 * Kernels report run-time errors with sdf_report_error(); the first one is
 * kept, the run stops handing out chunks, and sdf_plan_run returns it.
 */
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

typedef struct run_ctx {
  sdf_plan *plan;
  _Atomic uint32_t ready_n;   /* slots reserved in plan->ready */
  _Atomic uint32_t ready_head; /* slots before this one have no chunks left */
  _Atomic uint32_t ops_done;
  _Atomic int finished;        /* all ops done, or aborted */
  _Atomic uint64_t epoch;      /* bumped whenever new work appears */
  _Atomic int waiters;
  _Atomic int failed;
  int32_t status;
  char error[SDF_ERR_LEN];
  pthread_mutex_t mu;
  pthread_cond_t cv;
} run_ctx;

static _Thread_local run_ctx *tls_run;

static void wake_all(run_ctx *r) {
  atomic_fetch_add(&r->epoch, 1);
  if (atomic_load(&r->waiters) > 0) {
    pthread_mutex_lock(&r->mu);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
  }
}

void sdf_report_error(const sdf_op *op, const char *msg) {
  run_ctx *r = tls_run;
  if (!r) { /* outside a run (e.g. from prepare): just set this thread's message */
    const sdf_kernel *k = op ? sdf_find_kernel(op->opcode) : NULL;
    sdf_set_error("op %d (%s): %s", op ? op->index : -1, k ? k->name : "?", msg ? msg : "");
    return;
  }
  int expected = 0;
  if (atomic_compare_exchange_strong(&r->failed, &expected, 1)) {
    const sdf_kernel *k = op ? sdf_find_kernel(op->opcode) : NULL;
    snprintf(r->error, sizeof r->error, "op %d (%s): %s", op ? op->index : -1, k ? k->name : "?", msg ? msg : "");
    r->status = SDF_E_INVALID;
    atomic_store(&r->finished, 1);
    wake_all(r);
  }
}

int sdf_run_failed(void) {
  run_ctx *r = tls_run;
  return r ? atomic_load_explicit(&r->failed, memory_order_relaxed) : 0;
}

static void push_ready(run_ctx *r, uint32_t op) {
  uint32_t slot = atomic_fetch_add(&r->ready_n, 1);
  atomic_store(&r->plan->ready[slot], (int32_t)op);
}

/* Drops the resident pages of op's inputs marked for release (SDF_ADVICE_STREAM): the whole pages
 * inside each tensor, so a neighbour sharing its first or last page keeps that page. Read-only file
 * pages come back from the page cache when read again, so this is a hint: failure changes nothing. */
static void release_inputs(sdf_plan *p, const sdf_op *op) {
  for (int32_t j = 0; j < op->n_in; j++) {
    const sdf_tensor *t = op->in[j];
    if (!p->release[t - p->tensors]) continue;
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t page = ps > 0 ? (uintptr_t)ps : 4096;
    uintptr_t lo = ((uintptr_t)t->data + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)t->data + sdf_dtype_bytes(t->dtype, t->numel)) & ~(page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
  }
}

static void finish_op(run_ctx *r, uint32_t op) {
  sdf_plan *p = r->plan;
  p->profile_ns[op] = sdf_now_ns() - p->run[op].start_ns;
  atomic_fetch_add(&p->progress, 1);
  int pushed = 0;
  for (uint32_t i = p->dependents_off[op]; i < p->dependents_off[op + 1]; i++) {
    uint32_t d = p->dependents[i];
    if (atomic_fetch_sub(&p->run[d].deps_left, 1) == 1) {
      push_ready(r, d);
      pushed = 1;
    }
  }
  if (pushed) wake_all(r);
  /* After the dependents are released (other threads go on meanwhile), before the run can end. */
  release_inputs(p, &p->ops[op]);
  if (atomic_fetch_add(&r->ops_done, 1) + 1 == p->n_ops) {
    atomic_store(&r->finished, 1);
    wake_all(r);
  }
}

/* Claims one (op, chunk); returns 0 when no ready op has chunks left. */
static int claim(run_ctx *r, uint32_t *op_out, int64_t *chunk_out) {
  sdf_plan *p = r->plan;
  uint32_t n = atomic_load(&r->ready_n);
  for (uint32_t i = atomic_load(&r->ready_head); i < n; i++) {
    int32_t op = atomic_load(&p->ready[i]);
    if (op < 0) continue; /* reserved, not yet published */
    sdf_op_run *st = &p->run[op];
    int64_t total = p->ops[op].n_chunks;
    if (atomic_load_explicit(&st->next_chunk, memory_order_relaxed) < total) {
      int64_t c = atomic_fetch_add(&st->next_chunk, 1);
      if (c < total) {
        if (c == 0) st->start_ns = sdf_now_ns();
        *op_out = (uint32_t)op;
        *chunk_out = c;
        return 1;
      }
    }
    /* exhausted: advance the head past a contiguous exhausted prefix */
    uint32_t expect = i;
    atomic_compare_exchange_strong(&r->ready_head, &expect, i + 1);
  }
  return 0;
}

static void worker(void *ctx, int tid) {
  run_ctx *r = ctx;
  sdf_plan *p = r->plan;
  tls_run = r;
  void *scratch = p->scratch ? p->scratch + (size_t)tid * p->scratch_stride : NULL;
  while (!atomic_load(&r->finished)) {
    uint64_t epoch = atomic_load(&r->epoch);
    uint32_t op;
    int64_t chunk;
    if (claim(r, &op, &chunk)) {
      if (!atomic_load_explicit(&r->failed, memory_order_relaxed))
        p->kernels[op]->run_chunk(&p->ops[op], chunk, scratch);
      if (atomic_fetch_add(&p->run[op].done_chunks, 1) + 1 == p->ops[op].n_chunks) finish_op(r, op);
      continue;
    }
    /* nothing to claim: spin a little, then sleep until new work appears */
    int spins = 0;
    while (atomic_load(&r->epoch) == epoch && !atomic_load(&r->finished) && spins < 4000) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      spins++;
    }
    if (atomic_load(&r->epoch) != epoch) continue;
    pthread_mutex_lock(&r->mu);
    atomic_fetch_add(&r->waiters, 1);
    while (atomic_load(&r->epoch) == epoch && !atomic_load(&r->finished)) pthread_cond_wait(&r->cv, &r->mu);
    atomic_fetch_sub(&r->waiters, 1);
    pthread_mutex_unlock(&r->mu);
  }
  tls_run = NULL;
}

int32_t sdf_execute(sdf_plan *p) {
  if (p->n_ops == 0) return SDF_OK;
  int threads = sdf_thread_count < 1 ? 1 : sdf_thread_count;
  /* per-thread scratch, 64-byte aligned and padded to whole cache lines */
  size_t stride = (p->max_scratch + SDF_ALIGN - 1) / SDF_ALIGN * SDF_ALIGN;
  if (stride && (p->scratch_stride < stride || p->scratch_threads < threads)) {
    sdf_aligned_free(p->scratch);
    p->scratch = NULL;
    p->scratch_stride = 0;
    p->scratch_threads = 0;
    if (stride > SIZE_MAX / (size_t)threads) {
      sdf_set_error("sdf_plan_run: scratch of %zu bytes x %d threads overflows", stride, threads);
      return SDF_E_NOMEM;
    }
    p->scratch = sdf_aligned_alloc(stride * (size_t)threads);
    if (!p->scratch) {
      sdf_set_error("sdf_plan_run: cannot allocate %zu bytes of scratch", stride * (size_t)threads);
      return SDF_E_NOMEM;
    }
    p->scratch_stride = stride;
    p->scratch_threads = threads;
  }
  run_ctx r;
  memset(&r, 0, sizeof r);
  r.plan = p;
  pthread_mutex_init(&r.mu, NULL);
  pthread_cond_init(&r.cv, NULL);
  atomic_store(&p->progress, 0);
  for (uint32_t i = 0; i < p->n_ops; i++) {
    atomic_store(&p->run[i].next_chunk, 0);
    atomic_store(&p->run[i].done_chunks, 0);
    atomic_store(&p->run[i].deps_left, p->n_deps[i]);
    p->run[i].start_ns = 0;
    p->profile_ns[i] = 0;
    atomic_store(&p->ready[i], -1);
  }
  for (uint32_t i = 0; i < p->n_ops; i++)
    if (p->n_deps[i] == 0) push_ready(&r, i);
  sdf_pool_run(worker, &r);
  pthread_mutex_destroy(&r.mu);
  pthread_cond_destroy(&r.cv);
  if (atomic_load(&r.failed)) {
    sdf_set_error("%s", r.error);
    return r.status;
  }
  if (atomic_load(&r.ops_done) != p->n_ops) {
    sdf_set_error("sdf_plan_run: internal error: %u of %u ops completed", atomic_load(&r.ops_done), p->n_ops);
    return SDF_E_INTERNAL;
  }
  return SDF_OK;
}
