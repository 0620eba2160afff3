/*
 * A persistent pool of worker threads. sdf_pool_run hands one function to
 * every thread (the caller included, as tid 0) and returns when all are done;
 * the executor builds its dynamic chunk scheduling on top of that.
 */
#include "internal.h"

typedef struct {
  pthread_t thread;
  int tid;
  uint64_t seen; /* last generation this worker ran (set before it starts) */
} worker;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_go = PTHREAD_COND_INITIALIZER;
static pthread_cond_t pool_done = PTHREAD_COND_INITIALIZER;
static worker *workers;
static int n_workers;      /* threads besides the caller */
static uint64_t generation; /* bumped for every job */
static int active;          /* workers still in the current job */
static int quitting;
static void (*job_fn)(void *, int);
static void *job_ctx;

static void *worker_main(void *arg) {
  worker *w = arg;
  pthread_mutex_lock(&pool_mu);
  /* w->seen was set under pool_mu before this thread was created, so a job
   * published before this thread first takes the lock is not missed. */
  uint64_t seen = w->seen;
  for (;;) {
    while (generation == seen && !quitting) pthread_cond_wait(&pool_go, &pool_mu);
    if (quitting) break;
    seen = generation;
    void (*fn)(void *, int) = job_fn;
    void *ctx = job_ctx;
    pthread_mutex_unlock(&pool_mu);
    fn(ctx, w->tid);
    pthread_mutex_lock(&pool_mu);
    if (--active == 0) pthread_cond_signal(&pool_done);
  }
  pthread_mutex_unlock(&pool_mu);
  return NULL;
}

static void stop_workers(void) {
  pthread_mutex_lock(&pool_mu);
  quitting = 1;
  pthread_cond_broadcast(&pool_go);
  pthread_mutex_unlock(&pool_mu);
  for (int i = 0; i < n_workers; i++) pthread_join(workers[i].thread, NULL);
  free(workers);
  workers = NULL;
  n_workers = 0;
  quitting = 0;
}

int sdf_pool_resize(int n_threads) {
  if (n_threads < 1) n_threads = 1;
  if (n_threads - 1 == n_workers && (n_workers == 0 || workers)) return SDF_OK;
  stop_workers();
  int want = n_threads - 1;
  if (want == 0) return SDF_OK;
  workers = calloc((size_t)want, sizeof *workers);
  if (!workers) return SDF_E_NOMEM;
  pthread_mutex_lock(&pool_mu);
  for (int i = 0; i < want; i++) {
    workers[i].tid = i + 1;
    workers[i].seen = generation;
    if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
      pthread_mutex_unlock(&pool_mu);
      n_workers = i;
      stop_workers();
      return SDF_E_NOMEM;
    }
    n_workers = i + 1;
  }
  pthread_mutex_unlock(&pool_mu);
  return SDF_OK;
}

void sdf_pool_run(void (*fn)(void *ctx, int tid), void *ctx) {
  pthread_mutex_lock(&pool_mu);
  job_fn = fn;
  job_ctx = ctx;
  active = n_workers;
  generation++;
  pthread_cond_broadcast(&pool_go);
  pthread_mutex_unlock(&pool_mu);
  fn(ctx, 0);
  pthread_mutex_lock(&pool_mu);
  while (active > 0) pthread_cond_wait(&pool_done, &pool_mu);
  pthread_mutex_unlock(&pool_mu);
}

void sdf_pool_shutdown(void) { stop_workers(); }
