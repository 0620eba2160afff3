/*
 * sdflow backend ABI, version 1.
 *
 * Every sdflow backend is a shared library that exports exactly these C
 * functions. The engine (TypeScript) loads it with Deno.dlopen, so the ABI
 * uses only fixed-width integers, doubles and opaque pointers.
 *
 * Conventions
 *  - Functions returning int32_t return SDF_OK (0) or a negative SDF_E_* code.
 *    Functions returning a pointer return NULL on failure.
 *    After any failure, sdf_last_error() returns a human-readable message
 *    (thread-local, valid until the next call on the same thread) and, for
 *    functions returning a pointer, sdf_last_status() the SDF_E_* code.
 *  - Nothing ever aborts the process: bad input is reported, not trusted.
 *  - All multi-byte values in a plan are little-endian.
 *
 * Data model
 *  - A buffer is a block of bytes owned by the backend (device memory on a
 *    GPU backend, plain or memory-mapped host memory on the CPU backend).
 *  - A plan is a flat list of ops over tensors. A tensor is a dense,
 *    row-major (contiguous) view into one of the buffers *bound at run time*:
 *    (binding slot, byte offset, dtype, shape). The engine decides every
 *    offset (its arena planner); backends never allocate activations.
 *  - Each op lists the ops it depends on. A backend may run any op whose
 *    dependencies are complete, in any order, concurrently with others.
 */
#ifndef SDFLOW_BACKEND_H
#define SDFLOW_BACKEND_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SDF_API __declspec(dllexport)
#else
#define SDF_API __attribute__((visibility("default")))
#endif

#define SDF_ABI_VERSION 1
#define SDF_PLAN_MAGIC 0x50464453u /* "SDFP" little-endian */
#define SDF_PLAN_VERSION 1
#define SDF_MAX_DIMS 6
#define SDF_MAX_OP_TENSORS 8 /* inputs + outputs of one op */
#define SDF_MAX_OP_PARAMS 16

/* Status codes. */
enum {
  SDF_OK = 0,
  SDF_E_INVALID = -1,     /* malformed argument or plan */
  SDF_E_UNSUPPORTED = -2, /* op or dtype this backend does not implement */
  SDF_E_NOMEM = -3,       /* allocation failed */
  SDF_E_IO = -4,          /* file could not be opened, read or mapped */
  SDF_E_STATE = -5,       /* call out of order (e.g. before sdf_init) */
  SDF_E_INTERNAL = -6
};

/* Element types of tensors. Activations are always F32; weights may be any.
 *
 * SDF_Q* are ggml's block-quantized weight formats, byte for byte as in a
 * GGUF file: the tensor's elements, flattened row-major, form consecutive
 * blocks of 32 (256 for the K-quants; little-endian, no padding), so a tensor
 * of n elements takes n / 32 blocks (n must be whole blocks) and the weight
 * stays a plain file range. Per block (d, m: IEEE f16 scale and minimum):
 *   Q4_0 (18 B): d, qs[16]: x[j] = ((qs[j] & 15) - 8) * d, x[j+16] from qs[j] >> 4
 *   Q4_1 (20 B): d, m, qs[16]: x[j] = (qs[j] & 15) * d + m (x[j+16]: high nibble)
 *   Q5_0 (22 B): d, qh[4] (u32), qs[16]: 5-bit q = nibble | bit j (j+16 for the
 *                high half) of qh << 4; x = (q - 16) * d
 *   Q5_1 (24 B): d, m, qh[4], qs[16]: x = q * d + m
 *   Q8_0 (34 B): d, qs[32] (int8): x[j] = qs[j] * d
 * K-quants: blocks of 256 ("super-blocks" of 16 or 8 sub-blocks with 4-8
 * bit sub-scales), laid out as ggml's block_q2_K (84 B), block_q3_K (110 B),
 * block_q4_K (144 B), block_q5_K (176 B), block_q6_K (210 B), dequantized
 * with ggml's dequantize_row_q*_K arithmetic.
 * Each product and sum is one f32 operation (no fused multiply-add), so
 * dequantized values are bit-exact. Ops that take "any float dtype" weights
 * (CONV2D, WINO_FILTER, fused WINO_GEMM, MATMUL, GATHER_ROWS, COPY) take
 * these too; for CONV2D and MATMUL rows of the weight (Ci*KH*KW, K
 * elements) must be whole blocks. */
enum {
  SDF_F32 = 0,
  SDF_F16 = 1,
  SDF_BF16 = 2,
  SDF_I32 = 3,
  SDF_Q4_0 = 4,
  SDF_Q4_1 = 5,
  SDF_Q5_0 = 6,
  SDF_Q5_1 = 7,
  SDF_Q8_0 = 8,
  SDF_Q2_K = 9,
  SDF_Q3_K = 10,
  SDF_Q4_K = 11,
  SDF_Q5_K = 12,
  SDF_Q6_K = 13
};

/*
 * Op codes and their contracts. Shapes are listed outermost first.
 * "in" / "out" are the op's tensor lists in order; "p" its int64 params;
 * "f" its double params (both encoded in the plan, see below).
 *
 * CONV2D (generic; backends choose direct or im2col internally)
 *   in: x[N,Ci,H,W] f32, w[Co,Ci,KH,KW] f32|f16|bf16, (optional) b[Co] f32
 *   out: y[N,Co,OH,OW] f32
 *   p: stride_h, stride_w, pad_h, pad_w, algo (0 auto, 1 direct, 2 im2col)
 *   scratch: p[5] = per-thread scratch bytes the engine reserved (may be 0)
 * WINO_FILTER: Winograd F(m,3) filter transform (a constant stage)
 *   in: w[Co,Ci,3,3] any float dtype   out: u[A*A,Co,Ci] f32, A = m + 2
 *   p: m (2, 4 or 6)
 * WINO_INPUT: Winograd input transform
 *   in: x[N,Ci,H,W]   out: v[A*A,Ci,T] f32, T = N * tiles_h * tiles_w,
 *   tiles_h = ceil(OH/m), OH = H + 2*pad - 2 (same for w)
 *   p: m, pad_h, pad_w, (optional) row0, rows: a band of tile rows
 *   [row0, row0+rows) (rows absent or 0: all, row0 then 0); v then holds
 *   only those tiles, T = N * rows * tiles_w (zero padding as for the full
 *   conv; row0 + rows <= tiles_h)
 * WINO_GEMM: the A*A independent products  m_[k] = u[k] (Co x Ci) @ v[k] (Ci x T)
 *   in: u[A*A,Co,Ci], v[A*A,Ci,T]   out: m_[A*A,Co,T]
 *   p: m, (optional) fused (default 0). fused = 1: in[0] is the raw weight
 *   w[Co,Ci,3,3] f32|f16|bf16 instead of u; the filter transform is done
 *   inside the op (per-thread scratch, no u tensor)
 * WINO_OUTPUT: Winograd output transform (+ bias, + optional residual)
 *   in: m_[A*A,Co,T], (optional) b[Co], (optional) residual[N,Co,OH,OW]
 *   out: y[N,Co,OH,OW]
 *   p: m, has_bias, has_residual, (optional) row0, rows: as WINO_INPUT; m_
 *   has the band's T, and only output rows [row0*m, min(OH, (row0+rows)*m))
 *   of the full y are written (residual read at the same rows), so bands of
 *   one conv may run concurrently into one y
 * MATMUL: y = x @ W^T + b   (PyTorch Linear)
 *   in: x[..., K] f32, w[N,K] f32|f16|bf16, (optional) b[N] f32
 *   out: y[..., N] f32
 * BMM: batched activation product y[b] = a[b] @ (trans_b ? b[b]^T : b[b])
 *   in: a[B,M,K], b[B,K,N] or [B,N,K]   out: y[B,M,N]   p: trans_b  f: alpha
 * ATTENTION: softmax(scale * q k^T [+ causal mask]) v, per head, fused so the
 *   Nq x Nk score matrix is never materialised.
 *   in: q[B,Nq,H*D], k[B,Nk,H*D], v[B,Nk,H*D]   out: o[B,Nq,H*D]
 *   p: heads, causal   f: scale
 * GROUP_NORM: in: x[N,C,...], gamma[C], beta[C]   out: y   p: groups, silu
 *   f: eps
 * LAYER_NORM: over the last dim. in: x[...,C], gamma[C], beta[C]   out: y
 *   f: eps
 * UNARY: in: x  out: y (same shape)  p: kind (SDF_UNARY_*)
 * GEGLU: in: x[...,2C]  out: y[...,C] = x[...,:C] * gelu(x[...,C:])
 * SOFTMAX: over the last dim. in: x  out: y  f: scale (applied before)
 * BINARY: y = a (op) b with NumPy broadcasting (shapes right-aligned);
 *   out has the broadcast shape.  p: kind (SDF_BINARY_*)
 * SCALE: y = x * f0 + f1
 * CONCAT: in: a, b (same shape except axis)   out: y   p: axis
 * UPSAMPLE_NEAREST: in: x[N,C,H,W]  out: y[N,C,H*s,W*s]  p: s
 * TIMESTEP_EMBEDDING: in: t[N] f32   out: y[N,dim]
 *   y = [cos(t*f_i) | sin(t*f_i)], f_i = exp(-ln(max_period)*i/half)
 *   p: dim, flip (1: sin first)   f: max_period
 * PERMUTE: in: x (rank r)  out: y  p: r entries, y dim i = x dim p[i]
 * GATHER_ROWS: in: table[V,D] any float dtype, idx[N] i32   out: y[N,D] f32
 *   (out-of-range indices are an error)
 * COPY: in: x out: y (same element count); converts dtype to f32
 * SLICE: in: x  out: y   p: axis, start (y is x restricted along axis)
 * MERGE_LOW_RANK: a weight with a low-rank delta added (LoRA merge)
 *   in: w[R,I] f32|f16|bf16, up[R,K] f32, down[K,I] f32, (optional) dense[R,I]
 *   f32   out: y[R,I] of w's dtype, y = w + (up @ down + dense), the delta
 *   summed in f32 and the sum rounded once to nearest even
 */
enum {
  SDF_OP_CONV2D = 1,
  SDF_OP_WINO_FILTER = 2,
  SDF_OP_WINO_INPUT = 3,
  SDF_OP_WINO_GEMM = 4,
  SDF_OP_WINO_OUTPUT = 5,
  SDF_OP_MATMUL = 6,
  SDF_OP_BMM = 7,
  SDF_OP_ATTENTION = 8,
  SDF_OP_GROUP_NORM = 9,
  SDF_OP_LAYER_NORM = 10,
  SDF_OP_UNARY = 11,
  SDF_OP_GEGLU = 12,
  SDF_OP_SOFTMAX = 13,
  SDF_OP_BINARY = 14,
  SDF_OP_SCALE = 15,
  SDF_OP_CONCAT = 16,
  SDF_OP_UPSAMPLE_NEAREST = 17,
  SDF_OP_TIMESTEP_EMBEDDING = 18,
  SDF_OP_PERMUTE = 19,
  SDF_OP_GATHER_ROWS = 20,
  SDF_OP_COPY = 21,
  SDF_OP_SLICE = 22,
  SDF_OP_MERGE_LOW_RANK = 23
};

enum {
  SDF_UNARY_SILU = 0,
  SDF_UNARY_GELU = 1,       /* exact, erf-based (PyTorch default) */
  SDF_UNARY_GELU_TANH = 2,
  SDF_UNARY_QUICK_GELU = 3, /* x * sigmoid(1.702 x), OpenAI CLIP */
  SDF_UNARY_RELU = 4,
  SDF_UNARY_LEAKY_RELU = 5, /* slope 0.2 (ESRGAN) */
  SDF_UNARY_SIGMOID = 6,
  SDF_UNARY_TANH = 7
};

enum {
  SDF_BINARY_ADD = 0,
  SDF_BINARY_SUB = 1,
  SDF_BINARY_MUL = 2,
  SDF_BINARY_DIV = 3
};

/*
 * Plan binary layout (all fields little-endian, no padding between fields):
 *
 *   u32 magic (SDF_PLAN_MAGIC), u32 version (SDF_PLAN_VERSION)
 *   u32 n_bindings, u32 n_tensors, u32 n_ops
 *   tensors[n_tensors]:
 *     u32 binding, u32 dtype, u64 offset (bytes into the bound buffer),
 *     u32 ndim, i64 dims[ndim]
 *   ops[n_ops]:
 *     u32 opcode, u32 n_in, u32 n_out, u32 n_p, u32 n_f, u32 n_deps,
 *     u32 in[n_in], u32 out[n_out]   (tensor indices; optional inputs that
 *                                     are absent are simply not listed)
 *     i64 p[n_p], f64 f[n_f], u32 deps[n_deps] (indices of earlier ops)
 *
 * Deps must point to earlier ops, so the list is already in a valid order.
 * A backend must validate everything (indices, shapes against op contracts,
 * byte ranges against the bound buffer sizes at run time) and report
 * SDF_E_INVALID / SDF_E_UNSUPPORTED with a message naming the op index and
 * the problem.
 */

typedef struct sdf_buffer sdf_buffer;
typedef struct sdf_plan sdf_plan;

/* Always SDF_ABI_VERSION of the header the library was built with. */
SDF_API int32_t sdf_abi_version(void);

/* JSON: {"name", "abi", "isa", "isas":[...], "threads", "dtypes":[...],
 *        "ops":[names...]}; the CPU backend adds "precision", "bf16_unit"
 *        and "bf16_units":[...]. Owned by the library; valid until unload. */
SDF_API const char *sdf_backend_info(void);

/* config_json may be NULL or "{}". Keys: "threads" (0 = physical cores),
 * "isa" ("auto", "avx512", "avx2", "neon", "scalar"); the CPU backend also
 * takes "precision" ("f32", "bf16": GEMM operands rounded to bf16, f32
 * accumulation; SDF_E_UNSUPPORTED without AVX512-BF16 / AMX-BF16) and
 * "bf16_unit" ("auto", "amx", "avx512_bf16"). Unknown keys are ignored.
 * May be called again to reconfigure when no plan is running. */
SDF_API int32_t sdf_init(const char *config_json);

SDF_API const char *sdf_last_error(void);
/* Optional (loaders must tolerate its absence): the SDF_E_* code of the last
 * failure on this thread, for the functions that return NULL rather than a
 * code (sdf_buffer_alloc, sdf_buffer_from_file, sdf_plan_compile), e.g.
 * SDF_E_UNSUPPORTED for a plan with an op the backend does not implement,
 * SDF_E_IO for a file that cannot be mapped. Same lifetime as sdf_last_error. */
SDF_API int32_t sdf_last_status(void);

/* Buffers. */
SDF_API sdf_buffer *sdf_buffer_alloc(uint64_t bytes);
/* A read-only buffer holding bytes [offset, offset+bytes) of a file. The CPU
 * backend memory-maps it (no copy); others may read it into device memory. */
SDF_API sdf_buffer *sdf_buffer_from_file(const char *path, uint64_t offset,
                                         uint64_t bytes);
SDF_API void sdf_buffer_free(sdf_buffer *buf);
SDF_API uint64_t sdf_buffer_size(const sdf_buffer *buf);
SDF_API int32_t sdf_buffer_write(sdf_buffer *buf, uint64_t offset,
                                 const void *src, uint64_t bytes);
SDF_API int32_t sdf_buffer_read(const sdf_buffer *buf, uint64_t offset,
                                void *dst, uint64_t bytes);

/* Plans. */
SDF_API sdf_plan *sdf_plan_compile(const uint8_t *bytes, uint64_t len);
SDF_API void sdf_plan_free(sdf_plan *plan);
/* bindings: n_bindings buffer pointers, in binding-slot order. Blocks until
 * the plan has run (call it as a nonblocking FFI symbol to keep JS free). */
SDF_API int32_t sdf_plan_run(sdf_plan *plan, sdf_buffer *const *bindings,
                             uint32_t n_bindings);
/* Number of ops completed by the run in progress (for progress reports). */
SDF_API uint32_t sdf_plan_progress(const sdf_plan *plan);
/* Per-op wall times of the last run, in nanoseconds: writes min(n, n_ops)
 * values to out (for --profile). Returns the number written. */
SDF_API uint32_t sdf_plan_profile(const sdf_plan *plan, uint64_t *out,
                                  uint32_t n);
/* Optional (loaders must tolerate its absence): the message of the plan's
 * last failed sdf_plan_run, "" if it succeeded. sdf_last_error is
 * thread-local, so it cannot carry the error of a run made on another thread
 * (a nonblocking FFI call); this can. Valid until the next run or free. */
SDF_API const char *sdf_plan_last_error(const sdf_plan *plan);
/* Optional: a hint that `buf` will not be read for a while. A backend may drop
 * its resident copy (the CPU backend returns a file mapping's pages to the
 * page cache, shrinking the process's RSS; they fault back in when next read).
 * Contents are unchanged as far as the caller can tell. */
SDF_API int32_t sdf_buffer_evict(sdf_buffer *buf);
/* Optional: a usage hint for a buffer. SDF_ADVICE_HUGE_PAGES (a buffer from sdf_buffer_alloc): it is
 * large and about to be written through once; a backend may back it with huge pages.
 * SDF_ADVICE_STREAM (a buffer from sdf_buffer_from_file): each of its tensors is read by one op per
 * run; a backend may drop a tensor's resident copy once that op has run (the CPU backend returns the
 * pages to the page cache, so the process holds one op's weights of this buffer at a time, not all;
 * they fault back in on the next run). Contents unchanged; SDF_OK when the hint cannot be followed,
 * SDF_E_INVALID for an unknown advice. */
enum { SDF_ADVICE_HUGE_PAGES = 1, SDF_ADVICE_STREAM = 2 };
SDF_API int32_t sdf_buffer_advise(sdf_buffer *buf, int32_t advice);

#ifdef __cplusplus
}
#endif
#endif /* SDFLOW_BACKEND_H */
