/*
 * The contract between the CPU backend's executor and its op kernels.
 *
 * The executor (executor.c) parses a plan into sdf_op records, asks each
 * op's kernel to validate it and to say how many independent chunks its work
 * splits into, then runs ready ops: worker threads claim chunk indices from
 * an atomic counter per op (never a fixed equal split), so a fast core simply
 * takes more chunks. When an op's last chunk finishes, the ops that depend on
 * it have their dependency counts decremented and become ready.
 *
 * A kernel file registers one sdf_kernel per opcode it implements
 * (see kernels.c for the table).
 */
#ifndef SDF_CPU_KERNEL_H
#define SDF_CPU_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "../../sdflow_backend.h"

typedef struct sdf_tensor {
  void *data; /* resolved at run time: bound buffer base + offset */
  int32_t binding;
  int32_t dtype;
  uint64_t offset;
  int32_t ndim;
  int64_t dims[SDF_MAX_DIMS];
  int64_t numel;
} sdf_tensor;

typedef struct sdf_op {
  int32_t index; /* position in the plan, for error messages */
  int32_t opcode;
  int32_t n_in, n_out;
  sdf_tensor *in[SDF_MAX_OP_TENSORS];
  sdf_tensor *out[SDF_MAX_OP_TENSORS];
  int32_t n_p, n_f;
  int64_t p[SDF_MAX_OP_PARAMS];
  double f[SDF_MAX_OP_PARAMS];
  /* Filled by the kernel's prepare(): */
  int64_t n_chunks;       /* >= 1 */
  size_t scratch_bytes;   /* per-thread scratch needed by run_chunk, 0 if none */
  void *state;            /* kernel-private, freed by release() if set */
} sdf_op;

typedef struct sdf_kernel {
  int32_t opcode;
  const char *name;
  /* Validate shapes/dtypes/params and fill n_chunks, scratch_bytes, state.
   * On error write a message (without the op index; the executor adds it)
   * into err (err_len bytes) and return SDF_E_INVALID or SDF_E_UNSUPPORTED. */
  int32_t (*prepare)(sdf_op *op, char *err, size_t err_len);
  /* Run chunk `chunk` (0 <= chunk < n_chunks). Called concurrently for
   * different chunks of the same op; must not write outside its share.
   * scratch: this thread's scratch area of at least op->scratch_bytes,
   * 64-byte aligned. */
  void (*run_chunk)(const sdf_op *op, int64_t chunk, void *scratch);
  void (*release)(sdf_op *op); /* may be NULL */
} sdf_kernel;

/* ISA selected by sdf_init, for kernels with per-ISA variants. */
typedef enum sdf_isa {
  SDF_ISA_SCALAR = 0,
  SDF_ISA_AVX2 = 1,
  SDF_ISA_AVX512 = 2,
  SDF_ISA_NEON = 3
} sdf_isa;

extern sdf_isa sdf_current_isa;

/* Precision of the GEMM-based ops (MATMUL, CONV2D's im2col / 1x1 path):
 * f32 (the default), or bf16 operands with f32 accumulation on one of the
 * bf16 units (gemm_bf16.h). Selected by sdf_init's "precision". */
typedef enum sdf_bf16_unit {
  SDF_BF16_NONE = 0,   /* f32 GEMMs */
  SDF_BF16_AVX512 = 1, /* AVX512-BF16 dot products (vdpbf16ps) */
  SDF_BF16_AMX = 2     /* AMX-BF16 tiles (tdpbf16ps) */
} sdf_bf16_unit;

extern sdf_bf16_unit sdf_current_bf16;
extern int sdf_thread_count;

/* Looks up the kernel for an opcode; NULL if unsupported. */
const sdf_kernel *sdf_find_kernel(int32_t opcode);

/* Run-time errors (e.g. an out-of-range gather index). run_chunk returns
 * void, so a kernel that finds bad data calls this: the first report of a run
 * is kept ("op <index> (<name>): <msg>"), no further chunks are started, and
 * sdf_plan_run returns SDF_E_INVALID with that message. The kernel should
 * return from run_chunk promptly after reporting. Thread-safe. */
void sdf_report_error(const sdf_op *op, const char *msg);
/* Nonzero once the current run has failed (kernels with long chunks may poll
 * it to stop early). */
int sdf_run_failed(void);

#endif
