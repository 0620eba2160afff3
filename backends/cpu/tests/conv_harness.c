/*
 * Development harness for the CPU GEMM / MATMUL / CONV2D / Winograd kernels
 * (not part of the library; the official tests go through the engine).
 *
 *   ./build.sh && ./conv_harness check          correctness, every ISA here
 *   ./conv_harness bench [threads] [filter]     timings (median of 5)
 *   ./conv_harness fused [threads] [filter] [wdtype]   fused vs hoisted vs im2col
 *   ./conv_harness bands [threads] [filter]     row-band sizes on the VAE convs
 *   ./conv_harness output [threads] [filter] [res]  WINO_OUTPUT alone, VAE F(6,3) shapes
 *     (FRESH_Y=1: y in never-touched pages each run; HUGE=1: those 2 MiB THP)
 *
 * It links the kernel files directly and stands in for the executor: worker
 * threads claim chunk indices from an atomic counter.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/gemm.h"
#include "../src/kernel.h"
#include "../src/winograd.h"

sdf_isa sdf_current_isa = SDF_ISA_SCALAR;
int sdf_thread_count = 1;

extern const sdf_kernel sdf_kernel_conv2d, sdf_kernel_wino_filter,
    sdf_kernel_wino_input, sdf_kernel_wino_gemm, sdf_kernel_wino_output,
    sdf_kernel_matmul;

/* ---------------- mini executor ---------------- */

typedef struct job {
  const sdf_kernel *k;
  sdf_op *op;
  atomic_llong next;
  size_t scratch;
} job;

static void *worker(void *arg) {
  job *j = arg;
  void *s = NULL;
  if (j->scratch && posix_memalign(&s, 64, j->scratch)) return NULL;
  for (;;) {
    long long c = atomic_fetch_add(&j->next, 1);
    if (c >= j->op->n_chunks) break;
    j->k->run_chunk(j->op, c, s);
  }
  free(s);
  return NULL;
}

static int nthreads = 1;

static int run_op(const sdf_kernel *k, sdf_op *op) {
  char err[256] = "";
  int32_t rc = k->prepare(op, err, sizeof err);
  if (rc != SDF_OK) {
    fprintf(stderr, "%s prepare failed (%d): %s\n", k->name, rc, err);
    return rc;
  }
  job j = {.k = k, .op = op, .scratch = op->scratch_bytes};
  atomic_init(&j.next, 0);
  pthread_t th[8];
  for (int t = 1; t < nthreads; t++) pthread_create(&th[t], NULL, worker, &j);
  worker(&j);
  for (int t = 1; t < nthreads; t++) pthread_join(th[t], NULL);
  if (k->release) k->release(op);
  return 0;
}

/* ---------------- tensors ---------------- */

static sdf_tensor *tensor(int dtype, int ndim, const int64_t *dims) {
  sdf_tensor *t = calloc(1, sizeof *t);
  t->dtype = dtype;
  t->ndim = ndim;
  t->numel = 1;
  for (int i = 0; i < ndim; i++) {
    t->dims[i] = dims[i];
    t->numel *= dims[i];
  }
  size_t bytes = (size_t)t->numel * (dtype == SDF_F32 ? 4 : 2) + 64;
  if (posix_memalign(&t->data, 64, bytes)) abort();
  memset(t->data, 0, bytes);
  return t;
}
#define T4(dt, a, b, c, d) tensor(dt, 4, (int64_t[]){a, b, c, d})
#define T3(dt, a, b, c) tensor(dt, 3, (int64_t[]){a, b, c})
#define T2(dt, a, b) tensor(dt, 2, (int64_t[]){a, b})
#define T1(dt, a) tensor(dt, 1, (int64_t[]){a})

static void tfree(sdf_tensor *t) {
  if (!t) return;
  free(t->data);
  free(t);
}

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}
static float nrand(void) {
  double u1 = urand() + 1e-12, u2 = urand();
  return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Fill with N(0,1) * scale in the tensor's dtype. */
static void fill(sdf_tensor *t, float scale) {
  for (int64_t i = 0; i < t->numel; i++) {
    float v = nrand() * scale;
    if (t->dtype == SDF_F32) ((float *)t->data)[i] = v;
    else if (t->dtype == SDF_F16) ((uint16_t *)t->data)[i] = sdf_f32_to_f16(v);
    else ((uint16_t *)t->data)[i] = sdf_f32_to_bf16(v);
  }
}

static double rel_err(const sdf_tensor *a, const sdf_tensor *ref) {
  double md = 0, mr = 0;
  const float *x = a->data, *r = ref->data;
  for (int64_t i = 0; i < a->numel; i++) {
    double d = fabs((double)x[i] - r[i]);
    if (!(d <= md)) md = d; /* catches NaN */
    if (fabs(r[i]) > mr) mr = fabs(r[i]);
  }
  return mr > 0 ? md / mr : md;
}

static sdf_op mkop(int opcode, int nin, sdf_tensor **in, int nout, sdf_tensor **out,
                   int np, const int64_t *p) {
  sdf_op op;
  memset(&op, 0, sizeof op);
  op.opcode = opcode;
  op.n_in = nin;
  op.n_out = nout;
  for (int i = 0; i < nin; i++) op.in[i] = in[i];
  for (int i = 0; i < nout; i++) op.out[i] = out[i];
  op.n_p = np;
  for (int i = 0; i < np; i++) op.p[i] = p[i];
  return op;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#include "conv_harness_cases.h"
