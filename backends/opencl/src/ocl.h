/*
 * Internal interfaces of the OpenCL backend: the device context, lazily built
 * kernel programs, buffers, plans and op records.
 */
#ifndef SDF_OCL_H
#define SDF_OCL_H

#define CL_TARGET_OPENCL_VERSION 120
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../../sdflow_backend.h"

#define SDF_ERR_LEN 1024

/* ---- errors (runtime.c) ---- */
void sdf_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sdf_set_status(int32_t code);
const char *sdf_cl_err(cl_int e); /* "CL_OUT_OF_RESOURCES (-5)" */
/* SDF_E_NOMEM for the CL codes that mean "out of memory", else SDF_E_INTERNAL. */
int32_t sdf_cl_status(cl_int e);

/* ---- the device (runtime.c) ---- */
typedef struct sdf_device {
  int ready;
  cl_platform_id platform;
  cl_device_id device;
  cl_context ctx;
  cl_command_queue queue; /* plans: out of order when the device allows it */
  cl_command_queue io;    /* buffer reads and writes, in order */
  int out_of_order;
  char name[256], platform_name[256], version[128];
  cl_ulong global_mem, max_alloc, local_mem;
  size_t max_wg;
  cl_uint compute_units;
  int fp64;
  int cpu; /* a CPU device: GEMMs without local memory or barriers (gemm.cl) */
  char build_options[256];
  _Atomic uint64_t in_use; /* bytes of live buffers */
} sdf_device;

extern sdf_device sdf_dev;
extern pthread_mutex_t sdf_run_lock; /* held while a plan runs (kernel args are set under it) */

/* Kernel `name` (built on first use from its .cl program). NULL with the error
 * set (naming the kernel and program, with the compiler's log) on failure. */
cl_kernel sdf_kernel(const char *name);
/* The program file a kernel lives in ("gemm.cl"), for messages. */
const char *sdf_kernel_file(const char *name);
/* CL_KERNEL_WORK_GROUP_SIZE of a built kernel (0 if unknown). */
size_t sdf_kernel_wg(cl_kernel k);

/* ---- buffers ---- */
struct sdf_buffer {
  cl_mem mem;
  uint64_t size;
  uint64_t alloc; /* bytes counted in sdf_dev.in_use */
  int read_only;
};

/* ---- plans (plan.c, ops.c) ---- */
typedef struct otensor {
  int32_t binding, dtype;
  uint64_t offset;
  int32_t ndim;
  int64_t dims[SDF_MAX_DIMS];
  int64_t numel;
  cl_mem mem; /* bound at run time */
} otensor;

typedef struct oop {
  int32_t index, opcode;
  int32_t n_in, n_out, n_p, n_f;
  otensor *in[SDF_MAX_OP_TENSORS], *out[SDF_MAX_OP_TENSORS];
  int64_t p[SDF_MAX_OP_PARAMS];
  double f[SDF_MAX_OP_PARAMS];
  uint32_t n_deps, deps_at; /* into plan->deps */
  /* filled by prepare: op-specific values (see ops.c) */
  int64_t q[24];
  size_t scratch_bytes; /* plan scratch this op needs (fused Winograd) */
  /* run state */
  cl_event first, last;
} oop;

typedef struct sdf_plan {
  uint32_t n_bindings, n_tensors, n_ops;
  otensor *tensors;
  oop *ops;
  uint32_t *deps;
  uint8_t *binding_written;
  cl_mem scratch; /* shared by the fused Winograd ops (their launches are chained) */
  size_t scratch_bytes;
  cl_mem err;     /* 4 ints: run-time errors reported by kernels (gather_rows) */
  uint64_t *profile_ns;
  _Atomic uint32_t progress;
  _Atomic uint32_t callbacks;
  _Atomic int running;
  char last_error[SDF_ERR_LEN];
} sdf_plan;

const char *sdf_op_name(int32_t opcode);
/* Validates op (shapes, dtypes, params) and fills op->q; err gets the message. */
int32_t sdf_op_prepare(oop *op, char *err, size_t len);
/* Kernel names op needs (NULL-terminated, static). */
const char *const *sdf_op_kernels(const oop *op);

/* Enqueues an op's kernels; `wait` are the events it must wait for. */
typedef struct launch_ctx {
  sdf_plan *plan;
  oop *op;
  const cl_event *wait;
  cl_uint n_wait;
  char err[512];
} launch_ctx;
int32_t sdf_op_enqueue(launch_ctx *L);

size_t sdf_dtype_size(int32_t dtype);
const char *sdf_dtype_name(int32_t dtype);
const char *sdf_shape_str(const otensor *t, char *buf, size_t len);

#endif
