/*
 * Internal interfaces of the CPU backend core (not seen by kernels):
 * buffers, plans, the thread pool, ISA detection and the executor.
 */
#ifndef SDF_CPU_INTERNAL_H
#define SDF_CPU_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common.h"

#define SDF_ERR_LEN 1024

struct stat;
typedef struct sdf_file_guard sdf_file_guard;

struct sdf_buffer {
  uint8_t *data;         /* first byte of the buffer */
  uint64_t size;         /* bytes */
  int read_only;         /* file mappings are read-only */
  void *map_base;        /* page-aligned mapping start (file buffers), else NULL */
  size_t map_len;        /* mapping length */
  sdf_file_guard *guard; /* the mapping's entry in the file guard (file buffers), else NULL */
  int stream;            /* SDF_ADVICE_STREAM: release a tensor's pages after the op that reads it */
};

/* Per-op state of one run (reset at the start of every run). */
typedef struct sdf_op_run {
  _Atomic int64_t next_chunk;  /* next chunk index to claim */
  _Atomic int64_t done_chunks; /* chunks finished */
  _Atomic uint32_t deps_left;  /* unfinished dependencies */
  uint64_t start_ns;           /* first chunk start */
} sdf_op_run;

struct sdf_plan {
  uint32_t n_bindings, n_tensors, n_ops;
  sdf_tensor *tensors;
  sdf_op *ops;
  const sdf_kernel **kernels;
  uint32_t *n_deps;         /* dependency count per op */
  uint32_t *dependents_off; /* CSR: dependents of op i are */
  uint32_t *dependents;     /*   dependents[off[i] .. off[i+1]) */
  uint8_t *binding_written; /* binding slot is an output of some op */
  uint32_t *readers;        /* ops that read each tensor */
  uint8_t *release;         /* per tensor, set by bind: drop its pages after its one reader ran */
  size_t max_scratch;       /* largest per-thread scratch of any op */
  /* run state */
  sdf_op_run *run;
  _Atomic int32_t *ready;   /* ready queue (op indices, -1 = not yet published) */
  uint64_t *profile_ns;     /* per-op wall time of the last run */
  _Atomic uint32_t progress;
  _Atomic int running;
  uint8_t *scratch;         /* per-thread scratch, scratch_stride bytes each */
  size_t scratch_stride;
  int scratch_threads;
  char last_error[SDF_ERR_LEN]; /* message of the last failed run */
  sdf_isa isa;                  /* configuration of the thread that compiled it */
  int threads;
  sdf_bf16_unit bf16;
};

/* backend.c */
extern int sdf_initialized;
extern pthread_mutex_t sdf_run_lock; /* held while a plan compiles or runs */
/* Switches the pool, ISA and GEMM precision (caller holds sdf_run_lock). */
int32_t sdf_apply_config(sdf_isa isa, int threads, sdf_bf16_unit bf16);
/* The configuration the calling thread asked for with sdf_init. */
void sdf_requested_config(sdf_isa *isa, int *threads, sdf_bf16_unit *bf16);
uint64_t sdf_now_ns(void);

/* isa.c */
int sdf_isa_available(sdf_isa isa);
sdf_isa sdf_isa_best(void);
const char *sdf_isa_name(sdf_isa isa);
int sdf_isa_parse(const char *name, sdf_isa *out); /* 0 ok, -1 unknown */
int sdf_physical_cores(void);
/* Whether a bf16 unit is usable (for AMX: also asks Linux for tile-data
 * permission, once per process). */
int sdf_bf16_available(sdf_bf16_unit unit);
sdf_bf16_unit sdf_bf16_best(void); /* SDF_BF16_NONE if neither */
const char *sdf_bf16_unit_name(sdf_bf16_unit unit);

/* threadpool.c: n_threads - 1 persistent workers plus the calling thread. */
int sdf_pool_resize(int n_threads); /* SDF_OK or SDF_E_NOMEM */
/* Runs fn(ctx, tid) on every thread (tid 0 = caller) and waits for all. */
void sdf_pool_run(void (*fn)(void *ctx, int tid), void *ctx);
void sdf_pool_shutdown(void);

/* file_guard.c: file mappings, checked for changes at every run and guarded
 * by a SIGBUS handler that names the file (see file_guard.c). */
/* Registers a mapping of `path` (st: its stat when mapped). NULL: out of memory. */
sdf_file_guard *sdf_file_guard_add(const char *path, const struct stat *st, void *base, size_t len);
void sdf_file_guard_remove(sdf_file_guard *g);
/* SDF_OK, or SDF_E_IO (with the error set) if the file changed since it was
 * mapped. `when` ends the message, e.g. "before the run". */
int32_t sdf_file_guard_check(const sdf_file_guard *g, const char *when);
/* Whether the SIGBUS handler is installed (for tests). */
int sdf_file_guard_installed(void);

/* executor.c */
int32_t sdf_execute(sdf_plan *plan);

/* kernels.c */
/* Writes the JSON array of registered op names into buf. */
void sdf_kernel_names_json(char *buf, size_t len);

#endif
