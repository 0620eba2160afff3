/*
 * sdflow-ref-example: a small, portable, third-party sdflow backend.
 *
 * It implements the whole backend ABI of sdflow_backend.h (version 1) in
 * plain C11 -- no SIMD, no threads, no OS-specific calls beyond stdio -- and
 * a real subset of the ops:
 *
 *   MATMUL (f32, f16 or bf16 weights), BINARY (NumPy broadcasting), UNARY
 *   (every SDF_UNARY_* kind), SCALE, SOFTMAX, LAYER_NORM, GEGLU, COPY.
 *
 * Any other op is rejected by sdf_plan_compile with SDF_E_UNSUPPORTED and a
 * message naming the op and its index. Ops run one after another in plan
 * order (which the plan format guarantees is a valid order), so the
 * dependency lists are validated but need no scheduler.
 *
 * Everything read from the caller is validated: the plan with bounded reads,
 * every index, count, dtype and shape against the op's contract, and every
 * tensor's byte range against the buffers bound at run time. Nothing aborts.
 * Element access goes through memcpy, so tensors at any byte offset (file
 * ranges need not be aligned) are read without undefined behaviour.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* fseeko / ftello */
#endif

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sdflow_backend.h"

#define REF_NAME "sdflow-ref-example"
#define REF_ERR_LEN 1024

#if defined(_MSC_VER) && !defined(__clang__)
#define REF_THREAD_LOCAL __declspec(thread)
#else
#define REF_THREAD_LOCAL _Thread_local
#endif

#if defined(__STDC_NO_ATOMICS__)
typedef volatile uint32_t ref_atomic_u32;
#define REF_LOAD(x) (x)
#define REF_STORE(x, v) ((x) = (v))
#define REF_CLAIM(x) ((x) ? 0 : ((x) = 1, 1)) /* best effort without atomics */
#else
#include <stdatomic.h>
typedef _Atomic uint32_t ref_atomic_u32;
#define REF_LOAD(x) atomic_load(&(x))
#define REF_STORE(x, v) atomic_store(&(x), (v))
static int ref_claim(ref_atomic_u32 *x) {
  uint32_t expected = 0;
  return atomic_compare_exchange_strong(x, &expected, 1u);
}
#define REF_CLAIM(x) ref_claim(&(x))
#endif

/* ---- errors --------------------------------------------------------------- */

static REF_THREAD_LOCAL char g_error[REF_ERR_LEN];
static REF_THREAD_LOCAL int32_t g_status;

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 1, 2)))
#endif
static void set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_error, sizeof g_error, fmt, ap);
  va_end(ap);
  g_status = SDF_E_INVALID; /* the usual code; set_status after this for another */
}

static void set_status(int32_t code) { g_status = code; }

SDF_API const char *sdf_last_error(void) { return g_error; }

/* The code of the last failure of a function that returns NULL (optional ABI function). */
SDF_API int32_t sdf_last_status(void) { return g_status; }

SDF_API int32_t sdf_abi_version(void) { return SDF_ABI_VERSION; }

/* ---- ops: names and which ones this backend implements --------------------- */

static const char *const OP_NAMES[] = {"?",
                                       "conv2d",
                                       "wino_filter",
                                       "wino_input",
                                       "wino_gemm",
                                       "wino_output",
                                       "matmul",
                                       "bmm",
                                       "attention",
                                       "group_norm",
                                       "layer_norm",
                                       "unary",
                                       "geglu",
                                       "softmax",
                                       "binary",
                                       "scale",
                                       "concat",
                                       "upsample_nearest",
                                       "timestep_embedding",
                                       "permute",
                                       "gather_rows",
                                       "copy",
                                       "slice"};
#define N_OPCODES 23

static const int IMPLEMENTED[] = {SDF_OP_MATMUL,  SDF_OP_BINARY,     SDF_OP_UNARY, SDF_OP_SCALE,
                                  SDF_OP_SOFTMAX, SDF_OP_LAYER_NORM, SDF_OP_GEGLU, SDF_OP_COPY};
#define N_IMPLEMENTED ((int)(sizeof IMPLEMENTED / sizeof IMPLEMENTED[0]))

static int implemented(uint32_t opcode) {
  for (int i = 0; i < N_IMPLEMENTED; i++)
    if ((uint32_t)IMPLEMENTED[i] == opcode) return 1;
  return 0;
}

static const char *op_name(uint32_t opcode) { return opcode < N_OPCODES ? OP_NAMES[opcode] : "?"; }

/* ---- info and init ---------------------------------------------------------- */

static char g_info[1024];
static int g_initialized = 0;
static ref_atomic_u32 g_running = 0; /* a plan is running (one at a time) */

SDF_API const char *sdf_backend_info(void) {
  char ops[512];
  size_t o = 0;
  ops[0] = 0;
  for (int i = 0; i < N_IMPLEMENTED && o < sizeof ops; i++)
    o += (size_t)snprintf(ops + o, sizeof ops - o, "%s\"%s\"", i ? "," : "", OP_NAMES[IMPLEMENTED[i]]);
  snprintf(g_info, sizeof g_info,
           "{\"name\":\"" REF_NAME "\",\"abi\":%d,\"isa\":\"scalar\",\"isas\":[\"scalar\"],\"threads\":1,"
           "\"initialized\":%s,\"dtypes\":[\"f32\",\"f16\",\"bf16\"],\"ops\":[%s]}",
           SDF_ABI_VERSION, g_initialized ? "true" : "false", ops);
  return g_info;
}

/* A minimal parser for the flat config object: {"threads": n, "isa": "..."}.
 * Unknown keys are ignored (forward compatible), nested values are skipped. */
typedef struct {
  const char *s;
  size_t i;
} cfg;

static void cfg_ws(cfg *c) {
  while (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' || c->s[c->i] == '\r') c->i++;
}

static int cfg_string(cfg *c, char *out, size_t len) {
  size_t o = 0;
  if (c->s[c->i] != '"') return -1;
  c->i++;
  while (c->s[c->i] && c->s[c->i] != '"') {
    char ch = c->s[c->i++];
    if (ch == '\\') {
      ch = c->s[c->i];
      if (!ch) return -1;
      c->i++;
      if (ch == 'u') { /* \uXXXX: keep a placeholder, keys we know are ASCII */
        for (int k = 0; k < 4; k++)
          if (!c->s[c->i++]) return -1;
        ch = '?';
      }
    }
    if (out && o + 1 < len) out[o++] = ch;
  }
  if (c->s[c->i] != '"') return -1;
  c->i++;
  if (out && len) out[o] = 0;
  return 0;
}

/* Skips one JSON value of any kind; -1 if malformed. */
static int cfg_skip(cfg *c) {
  cfg_ws(c);
  char ch = c->s[c->i];
  if (ch == '"') return cfg_string(c, NULL, 0);
  if (ch == '{' || ch == '[') {
    int depth = 0;
    do {
      ch = c->s[c->i];
      if (!ch) return -1;
      if (ch == '"') {
        if (cfg_string(c, NULL, 0)) return -1;
        continue;
      }
      if (ch == '{' || ch == '[') depth++;
      if (ch == '}' || ch == ']') depth--;
      c->i++;
    } while (depth > 0);
    return 0;
  }
  size_t start = c->i;
  while (c->s[c->i] && c->s[c->i] != ',' && c->s[c->i] != '}' && c->s[c->i] != ' ' && c->s[c->i] != '\n') c->i++;
  return c->i > start ? 0 : -1;
}

SDF_API int32_t sdf_init(const char *config_json) {
  char isa[32] = "auto";
  long threads = 0;
  if (config_json && *config_json) {
    cfg c = {config_json, 0};
    cfg_ws(&c);
    if (c.s[c.i] != '{') {
      set_error("sdf_init: config must be a JSON object, got \"%.60s\"", config_json);
      return SDF_E_INVALID;
    }
    c.i++;
    cfg_ws(&c);
    int first = 1;
    while (c.s[c.i] != '}') {
      if (!first) {
        if (c.s[c.i] != ',') goto bad;
        c.i++;
        cfg_ws(&c);
      }
      first = 0;
      char key[64];
      if (cfg_string(&c, key, sizeof key)) goto bad;
      cfg_ws(&c);
      if (c.s[c.i] != ':') goto bad;
      c.i++;
      cfg_ws(&c);
      if (strcmp(key, "threads") == 0) {
        char *end;
        threads = strtol(c.s + c.i, &end, 10);
        if (end == c.s + c.i || *end == '.' || *end == 'e' || *end == 'E') {
          set_error("sdf_init: \"threads\" must be an integer");
          return SDF_E_INVALID;
        }
        c.i = (size_t)(end - c.s);
      } else if (strcmp(key, "isa") == 0) {
        if (cfg_string(&c, isa, sizeof isa)) goto bad;
      } else if (cfg_skip(&c)) {
        goto bad;
      }
      cfg_ws(&c);
    }
    c.i++;
    cfg_ws(&c);
    if (c.s[c.i]) goto bad;
  }
  if (threads < 0 || threads > 1024) {
    set_error("sdf_init: \"threads\" must be 0 to 1024, got %ld", threads);
    return SDF_E_INVALID;
  }
  if (strcmp(isa, "auto") != 0 && strcmp(isa, "scalar") != 0) {
    if (strcmp(isa, "avx512") == 0 || strcmp(isa, "avx2") == 0 || strcmp(isa, "neon") == 0) {
      set_error("sdf_init: isa \"%s\" is not supported by " REF_NAME " (it has only \"scalar\")", isa);
      return SDF_E_UNSUPPORTED;
    }
    set_error("sdf_init: unknown isa \"%s\" (auto, avx512, avx2, neon, scalar)", isa);
    return SDF_E_INVALID;
  }
  if (REF_LOAD(g_running)) {
    set_error("sdf_init: a plan is running; reconfigure after it finishes");
    return SDF_E_STATE;
  }
  /* Single-threaded: any thread count is accepted and runs on the caller's thread. */
  g_initialized = 1;
  return SDF_OK;
bad:
  set_error("sdf_init: malformed config JSON \"%.80s\"", config_json);
  return SDF_E_INVALID;
}

/* ---- buffers ------------------------------------------------------------------ */

struct sdf_buffer {
  uint8_t *data;
  uint64_t size;
  int read_only;
};

static sdf_buffer *buffer_new(uint64_t bytes, const char *what) {
  if (bytes > (uint64_t)SIZE_MAX - 1) {
    set_error("%s: %llu bytes do not fit in this address space", what, (unsigned long long)bytes);
    set_status(SDF_E_NOMEM);
    return NULL;
  }
  sdf_buffer *b = malloc(sizeof *b);
  uint8_t *data = malloc(bytes ? (size_t)bytes : 1);
  if (!b || !data) {
    free(b);
    free(data);
    set_error("%s: out of memory allocating %llu bytes", what, (unsigned long long)bytes);
    set_status(SDF_E_NOMEM);
    return NULL;
  }
  b->data = data;
  b->size = bytes;
  b->read_only = 0;
  return b;
}

SDF_API sdf_buffer *sdf_buffer_alloc(uint64_t bytes) { return buffer_new(bytes, "sdf_buffer_alloc"); }

#if defined(_WIN32)
#define ref_fseek _fseeki64
#define ref_ftell _ftelli64
typedef long long ref_off_t;
#else
#define ref_fseek fseeko
#define ref_ftell ftello
typedef off_t ref_off_t;
#endif

SDF_API sdf_buffer *sdf_buffer_from_file(const char *path, uint64_t offset, uint64_t bytes) {
  if (!path) {
    set_error("sdf_buffer_from_file: path is NULL");
    return NULL;
  }
  if (offset > (uint64_t)INT64_MAX || bytes > (uint64_t)INT64_MAX - offset) {
    set_error("sdf_buffer_from_file: %s: range [%llu, +%llu) overflows", path, (unsigned long long)offset,
              (unsigned long long)bytes);
    return NULL;
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    set_error("sdf_buffer_from_file: cannot open %s", path);
    set_status(SDF_E_IO);
    return NULL;
  }
  ref_off_t size = -1;
  if (ref_fseek(f, 0, SEEK_END) == 0) size = ref_ftell(f);
  if (size < 0) {
    fclose(f);
    set_error("sdf_buffer_from_file: cannot determine the size of %s", path);
    set_status(SDF_E_IO);
    return NULL;
  }
  if (offset + bytes > (uint64_t)size) {
    fclose(f);
    set_error("sdf_buffer_from_file: %s: bytes [%llu, %llu) are outside the file (%llu bytes)", path,
              (unsigned long long)offset, (unsigned long long)(offset + bytes), (unsigned long long)size);
    set_status(SDF_E_IO);
    return NULL;
  }
  sdf_buffer *b = buffer_new(bytes, "sdf_buffer_from_file");
  if (!b) {
    fclose(f);
    return NULL;
  }
  if (ref_fseek(f, (ref_off_t)offset, SEEK_SET) != 0 || (bytes && fread(b->data, 1, (size_t)bytes, f) != bytes)) {
    fclose(f);
    sdf_buffer_free(b);
    set_error("sdf_buffer_from_file: reading %llu bytes at %llu of %s failed", (unsigned long long)bytes,
              (unsigned long long)offset, path);
    set_status(SDF_E_IO);
    return NULL;
  }
  fclose(f);
  b->read_only = 1;
  return b;
}

SDF_API void sdf_buffer_free(sdf_buffer *buf) {
  if (!buf) return;
  free(buf->data);
  free(buf);
}

SDF_API uint64_t sdf_buffer_size(const sdf_buffer *buf) { return buf ? buf->size : 0; }

static int32_t check_range(const sdf_buffer *buf, uint64_t offset, const void *mem, uint64_t bytes, const char *what) {
  if (!buf) {
    set_error("%s: buffer is NULL", what);
    return SDF_E_INVALID;
  }
  if (!mem && bytes) {
    set_error("%s: memory pointer is NULL", what);
    return SDF_E_INVALID;
  }
  if (offset > buf->size || bytes > buf->size - offset) {
    set_error("%s: bytes [%llu, %llu) are outside the buffer (%llu bytes)", what, (unsigned long long)offset,
              (unsigned long long)offset + (unsigned long long)bytes, (unsigned long long)buf->size);
    return SDF_E_INVALID;
  }
  return SDF_OK;
}

SDF_API int32_t sdf_buffer_write(sdf_buffer *buf, uint64_t offset, const void *src, uint64_t bytes) {
  int32_t rc = check_range(buf, offset, src, bytes, "sdf_buffer_write");
  if (rc) return rc;
  if (buf->read_only) {
    set_error("sdf_buffer_write: the buffer is a read-only file buffer");
    return SDF_E_INVALID;
  }
  if (bytes) memcpy(buf->data + offset, src, (size_t)bytes);
  return SDF_OK;
}

SDF_API int32_t sdf_buffer_read(const sdf_buffer *buf, uint64_t offset, void *dst, uint64_t bytes) {
  int32_t rc = check_range(buf, offset, dst, bytes, "sdf_buffer_read");
  if (rc) return rc;
  if (bytes) memcpy(dst, buf->data + offset, (size_t)bytes);
  return SDF_OK;
}

/* ---- tensors ------------------------------------------------------------------ */

typedef struct {
  uint32_t binding, dtype, ndim;
  uint64_t offset, nbytes;
  int64_t dims[SDF_MAX_DIMS];
  int64_t numel;
  uint8_t *data; /* set at bind time */
} ref_tensor;

static size_t dtype_size(uint32_t dt) {
  switch (dt) {
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

static const char *dtype_name(uint32_t dt) {
  static const char *const names[] = {"f32", "f16", "bf16", "i32"};
  return dt < 4 ? names[dt] : "?";
}

static const char *shape_str(const ref_tensor *t, char *out, size_t len) {
  size_t o = (size_t)snprintf(out, len, "[");
  for (uint32_t d = 0; d < t->ndim && o < len; d++)
    o += (size_t)snprintf(out + o, len - o, "%s%lld", d ? ", " : "", (long long)t->dims[d]);
  if (o < len) snprintf(out + o, len - o, "]");
  return out;
}

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
  if (e == 0) {
    if (m == 0) {
      bits = sign;
    } else { /* subnormal: normalise */
      e = 127 - 15 + 1;
      while (!(m & 0x400u)) {
        m <<= 1;
        e--;
      }
      bits = sign | e << 23 | (m & 0x3ffu) << 13;
    }
  } else if (e == 31) {
    bits = sign | 0x7f800000u | m << 13;
  } else {
    bits = sign | (e + 127 - 15) << 23 | m << 13;
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* Element i of a float tensor of any float dtype, as f32 (unaligned-safe). */
static inline float load(const ref_tensor *t, int64_t i) {
  if (t->dtype == SDF_F32) {
    float v;
    memcpy(&v, t->data + (size_t)i * 4, 4);
    return v;
  }
  uint16_t h;
  memcpy(&h, t->data + (size_t)i * 2, 2);
  if (t->dtype == SDF_F16) return half_to_float(h);
  uint32_t bits = (uint32_t)h << 16; /* bf16 */
  float v;
  memcpy(&v, &bits, 4);
  return v;
}

static inline void store(const ref_tensor *t, int64_t i, float v) { memcpy(t->data + (size_t)i * 4, &v, 4); }

/* ---- plans -------------------------------------------------------------------- */

typedef struct {
  uint32_t opcode, n_in, n_out, n_p, n_f;
  ref_tensor *in[SDF_MAX_OP_TENSORS], *out[SDF_MAX_OP_TENSORS];
  int64_t p[SDF_MAX_OP_PARAMS];
  double f[SDF_MAX_OP_PARAMS];
  /* BINARY: output rank and per-dim element strides of a and b (0 = broadcast) */
  int64_t sa[SDF_MAX_DIMS], sb[SDF_MAX_DIMS];
} ref_op;

struct sdf_plan {
  uint32_t n_bindings, n_tensors, n_ops;
  ref_tensor *tensors;
  ref_op *ops;
  uint8_t *written;  /* per binding: some op writes to it */
  uint64_t *profile; /* ns per op, last run */
  float *row;        /* MATMUL output row scratch (outputs may alias inputs), allocated at run time */
  int64_t max_row;   /* longest MATMUL output row */
  ref_atomic_u32 progress;
  ref_atomic_u32 running;
  char last_error[REF_ERR_LEN];
};

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
  uint32_t lo, hi;
  if (r->len - r->pos < 8) return -1;
  rd_u32(r, &lo);
  rd_u32(r, &hi);
  *v = (uint64_t)hi << 32 | lo;
  return 0;
}

static void plan_destroy(sdf_plan *p) {
  if (!p) return;
  free(p->tensors);
  free(p->ops);
  free(p->written);
  free(p->profile);
  free(p->row);
  free(p);
}

/* Error of the op being checked (needs `op` and `idx` in scope): "plan: op 2 (matmul): <message>". */
#define OPERR(code, ...)                                                                                               \
  do {                                                                                                                 \
    char m_[768];                                                                                                      \
    snprintf(m_, sizeof m_, __VA_ARGS__);                                                                              \
    set_error("plan: op %u (%s): %s", idx, op_name(op->opcode), m_);                                                   \
    return (code);                                                                                                     \
  } while (0)

static int same_shape(const ref_tensor *a, const ref_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (uint32_t d = 0; d < a->ndim; d++)
    if (a->dims[d] != b->dims[d]) return 0;
  return 1;
}

static int32_t check_arity(const ref_op *op, uint32_t idx, uint32_t min_in, uint32_t max_in, uint32_t need_p,
                           uint32_t need_f) {
  if (op->n_in < min_in || op->n_in > max_in) {
    if (min_in == max_in) OPERR(SDF_E_INVALID, "expects %u inputs, got %u", min_in, op->n_in);
    OPERR(SDF_E_INVALID, "expects %u to %u inputs, got %u", min_in, max_in, op->n_in);
  }
  if (op->n_out != 1) OPERR(SDF_E_INVALID, "expects 1 output, got %u", op->n_out);
  if (op->n_p < need_p) OPERR(SDF_E_INVALID, "expects %u int params, got %u", need_p, op->n_p);
  if (op->n_f < need_f) OPERR(SDF_E_INVALID, "expects %u float params, got %u", need_f, op->n_f);
  return SDF_OK;
}

static int32_t check_f32(const ref_op *op, uint32_t idx, const ref_tensor *t, const char *what) {
  if (t->dtype != SDF_F32)
    OPERR(SDF_E_UNSUPPORTED, "%s must be f32, got %s (unsupported dtype)", what, dtype_name(t->dtype));
  return SDF_OK;
}

static int32_t check_io_f32_same(const ref_op *op, uint32_t idx, int same) {
  int32_t rc;
  if ((rc = check_f32(op, idx, op->in[0], "input"))) return rc;
  if ((rc = check_f32(op, idx, op->out[0], "output"))) return rc;
  if (same ? !same_shape(op->in[0], op->out[0]) : op->in[0]->numel != op->out[0]->numel) {
    char a[128], b[128];
    OPERR(SDF_E_INVALID, "input %s and output %s must have the same %s", shape_str(op->in[0], a, sizeof a),
          shape_str(op->out[0], b, sizeof b), same ? "shape" : "element count");
  }
  return SDF_OK;
}

static int32_t check_affine(const ref_op *op, uint32_t idx, int64_t c) {
  for (uint32_t k = 1; k <= 2; k++) {
    const ref_tensor *t = op->in[k];
    const char *nm = k == 1 ? "gamma" : "beta";
    int32_t rc = check_f32(op, idx, t, nm);
    if (rc) return rc;
    if (t->numel != c) {
      char s[128];
      OPERR(SDF_E_INVALID, "%s %s must have %lld elements (one per channel)", nm, shape_str(t, s, sizeof s),
            (long long)c);
    }
  }
  return SDF_OK;
}

/* Validates op idx against its contract; fills derived fields. */
static int32_t prepare_op(ref_op *op, uint32_t idx, int64_t *max_row) {
  int32_t rc;
  char a[128], b[128], c[128];
  switch (op->opcode) {
  case SDF_OP_MATMUL: {
    if ((rc = check_arity(op, idx, 2, 3, 0, 0))) return rc;
    const ref_tensor *x = op->in[0], *w = op->in[1], *y = op->out[0];
    if ((rc = check_f32(op, idx, x, "input"))) return rc;
    if ((rc = check_f32(op, idx, y, "output"))) return rc;
    if (w->dtype != SDF_F32 && w->dtype != SDF_F16 && w->dtype != SDF_BF16)
      OPERR(SDF_E_UNSUPPORTED, "weight must be f32, f16 or bf16, got %s (unsupported dtype)", dtype_name(w->dtype));
    if (x->ndim < 1 || w->ndim != 2)
      OPERR(SDF_E_INVALID, "input %s must be [..., K] and weight %s [N, K]", shape_str(x, a, sizeof a),
            shape_str(w, b, sizeof b));
    int64_t k = x->dims[x->ndim - 1], n = w->dims[0];
    if (w->dims[1] != k)
      OPERR(SDF_E_INVALID, "input %s has %lld features, weight %s expects %lld", shape_str(x, a, sizeof a),
            (long long)k, shape_str(w, b, sizeof b), (long long)w->dims[1]);
    int ok = y->ndim == x->ndim && y->dims[y->ndim - 1] == n;
    for (uint32_t d = 0; ok && d + 1 < x->ndim; d++) ok = y->dims[d] == x->dims[d];
    if (!ok)
      OPERR(SDF_E_INVALID, "output %s must be [..., %lld] for input %s", shape_str(y, a, sizeof a), (long long)n,
            shape_str(x, b, sizeof b));
    if (op->n_in == 3) {
      if ((rc = check_f32(op, idx, op->in[2], "bias"))) return rc;
      if (op->in[2]->numel != n)
        OPERR(SDF_E_INVALID, "bias %s must have %lld elements", shape_str(op->in[2], a, sizeof a), (long long)n);
    }
    if (n > *max_row) *max_row = n;
    return SDF_OK;
  }
  case SDF_OP_BINARY: {
    if ((rc = check_arity(op, idx, 2, 2, 1, 0))) return rc;
    const ref_tensor *ta = op->in[0], *tb = op->in[1], *y = op->out[0];
    if ((rc = check_f32(op, idx, ta, "input a"))) return rc;
    if ((rc = check_f32(op, idx, tb, "input b"))) return rc;
    if ((rc = check_f32(op, idx, y, "output"))) return rc;
    if (op->p[0] < SDF_BINARY_ADD || op->p[0] > SDF_BINARY_DIV)
      OPERR(SDF_E_UNSUPPORTED, "unknown binary kind %lld (unsupported)", (long long)op->p[0]);
    uint32_t r = ta->ndim > tb->ndim ? ta->ndim : tb->ndim;
    int ok = y->ndim == r;
    int64_t stride_a = 1, stride_b = 1;
    for (int d = (int)r - 1; ok && d >= 0; d--) {
      int da_i = d - (int)(r - ta->ndim), db_i = d - (int)(r - tb->ndim);
      int64_t da = da_i >= 0 ? ta->dims[da_i] : 1, db = db_i >= 0 ? tb->dims[db_i] : 1;
      int64_t want = da > db ? da : db;
      ok = (da == db || da == 1 || db == 1) && y->dims[d] == want;
      op->sa[d] = da == 1 ? 0 : stride_a;
      op->sb[d] = db == 1 ? 0 : stride_b;
      stride_a *= da;
      stride_b *= db;
    }
    if (!ok)
      OPERR(SDF_E_INVALID, "inputs %s and %s do not broadcast to output %s", shape_str(ta, a, sizeof a),
            shape_str(tb, b, sizeof b), shape_str(y, c, sizeof c));
    return SDF_OK;
  }
  case SDF_OP_UNARY:
    if ((rc = check_arity(op, idx, 1, 1, 1, 0))) return rc;
    if ((rc = check_io_f32_same(op, idx, 0))) return rc;
    if (op->p[0] < SDF_UNARY_SILU || op->p[0] > SDF_UNARY_TANH)
      OPERR(SDF_E_UNSUPPORTED, "unknown unary kind %lld (unsupported)", (long long)op->p[0]);
    return SDF_OK;
  case SDF_OP_SCALE:
    if ((rc = check_arity(op, idx, 1, 1, 0, 1))) return rc;
    if ((rc = check_io_f32_same(op, idx, 0))) return rc;
    if (!isfinite(op->f[0]) || (op->n_f > 1 && !isfinite(op->f[1])))
      OPERR(SDF_E_INVALID, "scale factors must be finite, got %g, %g", op->f[0], op->n_f > 1 ? op->f[1] : 0.0);
    return SDF_OK;
  case SDF_OP_SOFTMAX:
    if ((rc = check_arity(op, idx, 1, 1, 0, 0))) return rc;
    if ((rc = check_io_f32_same(op, idx, 1))) return rc;
    if (op->in[0]->ndim < 1) OPERR(SDF_E_INVALID, "input must have at least one dimension");
    if (op->n_f > 0 && !isfinite(op->f[0])) OPERR(SDF_E_INVALID, "scale must be finite, got %g", op->f[0]);
    return SDF_OK;
  case SDF_OP_LAYER_NORM:
    if ((rc = check_arity(op, idx, 3, 3, 0, 0))) return rc;
    if ((rc = check_io_f32_same(op, idx, 1))) return rc;
    if (op->in[0]->ndim < 1) OPERR(SDF_E_INVALID, "input must have at least one dimension");
    if (op->n_f > 0 && !(op->f[0] >= 0 && isfinite(op->f[0])))
      OPERR(SDF_E_INVALID, "eps must be finite and >= 0, got %g", op->f[0]);
    return check_affine(op, idx, op->in[0]->dims[op->in[0]->ndim - 1]);
  case SDF_OP_GEGLU: {
    if ((rc = check_arity(op, idx, 1, 1, 0, 0))) return rc;
    const ref_tensor *x = op->in[0], *y = op->out[0];
    if ((rc = check_f32(op, idx, x, "input"))) return rc;
    if ((rc = check_f32(op, idx, y, "output"))) return rc;
    int ok = x->ndim >= 1 && x->ndim == y->ndim && x->dims[x->ndim - 1] == 2 * y->dims[y->ndim - 1];
    for (uint32_t d = 0; ok && d + 1 < x->ndim; d++) ok = x->dims[d] == y->dims[d];
    if (!ok)
      OPERR(SDF_E_INVALID, "input %s must be [..., 2C] for output %s [..., C]", shape_str(x, a, sizeof a),
            shape_str(y, b, sizeof b));
    return SDF_OK;
  }
  case SDF_OP_COPY:
    if ((rc = check_arity(op, idx, 1, 1, 0, 0))) return rc;
    if (op->in[0]->dtype == SDF_I32) OPERR(SDF_E_UNSUPPORTED, "input must be a float tensor, got i32 (unsupported)");
    if ((rc = check_f32(op, idx, op->out[0], "output"))) return rc;
    if (op->in[0]->numel != op->out[0]->numel)
      OPERR(SDF_E_INVALID, "input %s and output %s must have the same element count",
            shape_str(op->in[0], a, sizeof a), shape_str(op->out[0], b, sizeof b));
    return SDF_OK;
  default:
    OPERR(SDF_E_INTERNAL, "no contract check for this op");
  }
}

/* Appends ", name" of each implemented op to out. */
static void implemented_list(char *out, size_t len) {
  size_t o = 0;
  out[0] = 0;
  for (int i = 0; i < N_IMPLEMENTED && o < len; i++)
    o += (size_t)snprintf(out + o, len - o, "%s%s", i ? ", " : "", OP_NAMES[IMPLEMENTED[i]]);
}

#define FAIL(...)                                                                                                      \
  do {                                                                                                                 \
    set_error(__VA_ARGS__);                                                                                            \
    goto fail;                                                                                                         \
  } while (0)
/* The same, with a status other than SDF_E_INVALID. */
#define FAIL_CODE(code, ...)                                                                                           \
  do {                                                                                                                 \
    set_error(__VA_ARGS__);                                                                                            \
    set_status(code);                                                                                                  \
    goto fail;                                                                                                         \
  } while (0)

SDF_API sdf_plan *sdf_plan_compile(const uint8_t *bytes, uint64_t len) {
  if (!g_initialized) {
    set_error("sdf_plan_compile: call sdf_init first");
    set_status(SDF_E_STATE);
    return NULL;
  }
  if (!bytes && len) {
    set_error("sdf_plan_compile: bytes is NULL");
    return NULL;
  }
  reader r = {bytes, len, 0};
  uint32_t magic, version;
  sdf_plan *p = calloc(1, sizeof *p);
  if (!p) {
    set_error("sdf_plan_compile: out of memory");
    set_status(SDF_E_NOMEM);
    return NULL;
  }
  if (len < 20) FAIL("plan truncated: the header needs 20 bytes, got %llu", (unsigned long long)len);
  rd_u32(&r, &magic);
  rd_u32(&r, &version);
  if (magic != SDF_PLAN_MAGIC) FAIL("plan: bad magic 0x%08x (expected 0x%08x \"SDFP\")", magic, SDF_PLAN_MAGIC);
  if (version != SDF_PLAN_VERSION)
    FAIL_CODE(SDF_E_UNSUPPORTED, "plan: version %u is not supported (" REF_NAME " reads version %d)", version, SDF_PLAN_VERSION);
  rd_u32(&r, &p->n_bindings);
  rd_u32(&r, &p->n_tensors);
  rd_u32(&r, &p->n_ops);
  /* a tensor takes at least 20 bytes and an op at least 24: reject absurd counts before allocating */
  if ((uint64_t)p->n_tensors * 20 > len - r.pos)
    FAIL("plan truncated: %u tensors cannot fit in the remaining %llu bytes", p->n_tensors,
         (unsigned long long)(len - r.pos));
  if ((uint64_t)p->n_ops * 24 > len - r.pos)
    FAIL("plan truncated: %u ops cannot fit in the remaining %llu bytes", p->n_ops, (unsigned long long)(len - r.pos));
  if (p->n_bindings > 1u << 20) FAIL("plan: %u bindings is more than this backend accepts", p->n_bindings);
  p->tensors = calloc(p->n_tensors ? p->n_tensors : 1, sizeof *p->tensors);
  p->ops = calloc(p->n_ops ? p->n_ops : 1, sizeof *p->ops);
  p->written = calloc(p->n_bindings ? p->n_bindings : 1, 1);
  p->profile = calloc(p->n_ops ? p->n_ops : 1, sizeof *p->profile);
  if (!p->tensors || !p->ops || !p->written || !p->profile) FAIL_CODE(SDF_E_NOMEM, "sdf_plan_compile: out of memory");

  for (uint32_t i = 0; i < p->n_tensors; i++) {
    ref_tensor *t = &p->tensors[i];
    if (rd_u32(&r, &t->binding) || rd_u32(&r, &t->dtype) || rd_u64(&r, &t->offset) || rd_u32(&r, &t->ndim))
      FAIL("plan truncated at byte %llu: reading tensor %u", (unsigned long long)r.pos, i);
    if (t->binding >= p->n_bindings)
      FAIL("plan: tensor %u: binding %u out of range (plan has %u bindings)", i, t->binding, p->n_bindings);
    size_t es = dtype_size(t->dtype);
    if (!es) FAIL("plan: tensor %u: unknown dtype %u", i, t->dtype);
    if (t->ndim > SDF_MAX_DIMS) FAIL("plan: tensor %u: ndim %u exceeds %d", i, t->ndim, SDF_MAX_DIMS);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < t->ndim; d++) {
      uint64_t u;
      if (rd_u64(&r, &u)) FAIL("plan truncated at byte %llu: reading dims of tensor %u", (unsigned long long)r.pos, i);
      int64_t v = (int64_t)u;
      if (v <= 0) FAIL("plan: tensor %u: dim %u is %lld (dims must be > 0)", i, d, (long long)v);
      if (u > (uint64_t)INT64_MAX / numel) FAIL("plan: tensor %u: element count overflows", i);
      numel *= u;
      t->dims[d] = v;
    }
    if (numel > (uint64_t)INT64_MAX / es || t->offset > UINT64_MAX - numel * es)
      FAIL("plan: tensor %u: byte size overflows", i);
    t->numel = (int64_t)numel;
    t->nbytes = numel * es;
  }

  int64_t max_row = 0;
  for (uint32_t i = 0; i < p->n_ops; i++) {
    ref_op *op = &p->ops[i];
    uint32_t n_dep;
    if (rd_u32(&r, &op->opcode) || rd_u32(&r, &op->n_in) || rd_u32(&r, &op->n_out) || rd_u32(&r, &op->n_p) ||
        rd_u32(&r, &op->n_f) || rd_u32(&r, &n_dep))
      FAIL("plan truncated at byte %llu: reading op %u", (unsigned long long)r.pos, i);
    const char *nm = op_name(op->opcode);
    if (op->opcode < 1 || op->opcode >= N_OPCODES)
      FAIL_CODE(SDF_E_UNSUPPORTED, "plan: op %u: unknown opcode %u (unsupported by " REF_NAME ")", i, op->opcode);
    if (!implemented(op->opcode)) {
      char list[256];
      implemented_list(list, sizeof list);
      FAIL_CODE(SDF_E_UNSUPPORTED, REF_NAME " does not implement %s (op %u): unsupported op; it implements %s", nm, i,
                list);
    }
    if (op->n_in > SDF_MAX_OP_TENSORS || op->n_out > SDF_MAX_OP_TENSORS ||
        op->n_in + op->n_out > SDF_MAX_OP_TENSORS)
      FAIL("plan: op %u (%s): %u inputs + %u outputs exceed %d tensors", i, nm, op->n_in, op->n_out,
           SDF_MAX_OP_TENSORS);
    if (op->n_p > SDF_MAX_OP_PARAMS || op->n_f > SDF_MAX_OP_PARAMS)
      FAIL("plan: op %u (%s): %u int params / %u float params exceed %d", i, nm, op->n_p, op->n_f, SDF_MAX_OP_PARAMS);
    if (n_dep > i) FAIL("plan: op %u (%s): %u dependencies but only %u earlier ops", i, nm, n_dep, i);
    for (uint32_t j = 0; j < op->n_in + op->n_out; j++) {
      uint32_t ti;
      int is_in = j < op->n_in;
      uint32_t k = is_in ? j : j - op->n_in;
      if (rd_u32(&r, &ti))
        FAIL("plan truncated at byte %llu: reading the tensors of op %u (%s)", (unsigned long long)r.pos, i, nm);
      if (ti >= p->n_tensors)
        FAIL("plan: op %u (%s): %s %u: tensor index %u out of range (plan has %u tensors)", i, nm,
             is_in ? "input" : "output", k, ti, p->n_tensors);
      if (is_in) {
        op->in[k] = &p->tensors[ti];
      } else {
        op->out[k] = &p->tensors[ti];
        p->written[p->tensors[ti].binding] = 1;
      }
    }
    for (uint32_t j = 0; j < op->n_p; j++) {
      uint64_t u;
      if (rd_u64(&r, &u))
        FAIL("plan truncated at byte %llu: reading the params of op %u (%s)", (unsigned long long)r.pos, i, nm);
      op->p[j] = (int64_t)u;
    }
    for (uint32_t j = 0; j < op->n_f; j++) {
      uint64_t u;
      if (rd_u64(&r, &u))
        FAIL("plan truncated at byte %llu: reading the float params of op %u (%s)", (unsigned long long)r.pos, i, nm);
      memcpy(&op->f[j], &u, sizeof u);
    }
    for (uint32_t j = 0; j < n_dep; j++) {
      uint32_t d;
      if (rd_u32(&r, &d))
        FAIL("plan truncated at byte %llu: reading the deps of op %u (%s)", (unsigned long long)r.pos, i, nm);
      if (d >= i) FAIL("plan: op %u (%s): dependency on op %u, which is not an earlier op", i, nm, d);
    }
    int32_t prc = prepare_op(op, i, &max_row);
    if (prc != SDF_OK) {
      set_status(prc);
      goto fail;
    }
  }
  if (r.pos != len)
    FAIL("plan: %llu unexpected trailing bytes after the last op", (unsigned long long)(len - r.pos));
  p->max_row = max_row;
  return p;
fail:
  plan_destroy(p);
  return NULL;
}

SDF_API void sdf_plan_free(sdf_plan *plan) {
  if (!plan) return;
  if (REF_LOAD(plan->running)) {
    set_error("sdf_plan_free: the plan is running; free it after sdf_plan_run returns");
    return;
  }
  plan_destroy(plan);
}

/* ---- kernels ------------------------------------------------------------------ */

static void run_matmul(const ref_op *op, float *row) {
  const ref_tensor *x = op->in[0], *w = op->in[1], *bias = op->n_in == 3 ? op->in[2] : NULL, *y = op->out[0];
  int64_t k = w->dims[1], n = w->dims[0], m = x->numel / k;
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = 0; j < n; j++) {
      double acc = bias ? load(bias, j) : 0.0;
      for (int64_t q = 0; q < k; q++) acc += (double)load(x, i * k + q) * (double)load(w, j * k + q);
      row[j] = (float)acc;
    }
    for (int64_t j = 0; j < n; j++) store(y, i * n + j, row[j]);
  }
}

static void run_binary(const ref_op *op) {
  const ref_tensor *a = op->in[0], *b = op->in[1], *y = op->out[0];
  int r = (int)y->ndim;
  int64_t idx[SDF_MAX_DIMS] = {0}, ia = 0, ib = 0;
  for (int64_t i = 0; i < y->numel; i++) {
    float va = load(a, ia), vb = load(b, ib), v;
    switch (op->p[0]) {
    case SDF_BINARY_ADD:
      v = va + vb;
      break;
    case SDF_BINARY_SUB:
      v = va - vb;
      break;
    case SDF_BINARY_MUL:
      v = va * vb;
      break;
    default:
      v = va / vb;
      break;
    }
    store(y, i, v);
    /* advance the multi-index (last dim fastest) and both input offsets */
    for (int d = r - 1; d >= 0; d--) {
      ia += op->sa[d];
      ib += op->sb[d];
      if (++idx[d] < y->dims[d]) break;
      ia -= op->sa[d] * y->dims[d];
      ib -= op->sb[d] * y->dims[d];
      idx[d] = 0;
    }
  }
}

static float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

static void run_unary(const ref_op *op) {
  const ref_tensor *x = op->in[0], *y = op->out[0];
  for (int64_t i = 0; i < x->numel; i++) {
    float v = load(x, i), o;
    switch (op->p[0]) {
    case SDF_UNARY_SILU:
      o = v / (1.0f + expf(-v));
      break;
    case SDF_UNARY_GELU:
      o = gelu_erf(v);
      break;
    case SDF_UNARY_GELU_TANH:
      o = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
      break;
    case SDF_UNARY_QUICK_GELU:
      o = v / (1.0f + expf(-1.702f * v));
      break;
    case SDF_UNARY_RELU:
      o = v > 0.0f ? v : 0.0f;
      break;
    case SDF_UNARY_LEAKY_RELU:
      o = v > 0.0f ? v : 0.2f * v;
      break;
    case SDF_UNARY_SIGMOID:
      o = 1.0f / (1.0f + expf(-v));
      break;
    default:
      o = tanhf(v);
      break;
    }
    store(y, i, o);
  }
}

static void run_scale(const ref_op *op) {
  float mul = (float)op->f[0], add = op->n_f > 1 ? (float)op->f[1] : 0.0f;
  for (int64_t i = 0; i < op->in[0]->numel; i++) store(op->out[0], i, load(op->in[0], i) * mul + add);
}

static void run_softmax(const ref_op *op) {
  const ref_tensor *x = op->in[0], *y = op->out[0];
  int64_t c = x->dims[x->ndim - 1], rows = x->numel / c;
  double scale = op->n_f > 0 ? op->f[0] : 1.0;
  for (int64_t r = 0; r < rows; r++) {
    double mx = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < c; i++) {
      double v = scale * load(x, r * c + i);
      if (v > mx) mx = v;
    }
    for (int64_t i = 0; i < c; i++) sum += exp(scale * load(x, r * c + i) - mx);
    for (int64_t i = 0; i < c; i++) store(y, r * c + i, (float)(exp(scale * load(x, r * c + i) - mx) / sum));
  }
}

static void run_layer_norm(const ref_op *op) {
  const ref_tensor *x = op->in[0], *g = op->in[1], *b = op->in[2], *y = op->out[0];
  int64_t c = x->dims[x->ndim - 1], rows = x->numel / c;
  double eps = op->n_f > 0 ? op->f[0] : 1e-5;
  for (int64_t r = 0; r < rows; r++) {
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < c; i++) mean += load(x, r * c + i);
    mean /= (double)c;
    for (int64_t i = 0; i < c; i++) {
      double d = load(x, r * c + i) - mean;
      var += d * d;
    }
    double rstd = 1.0 / sqrt(var / (double)c + eps);
    for (int64_t i = 0; i < c; i++)
      store(y, r * c + i, (float)((load(x, r * c + i) - mean) * rstd * load(g, i) + load(b, i)));
  }
}

static void run_geglu(const ref_op *op) {
  const ref_tensor *x = op->in[0], *y = op->out[0];
  int64_t c = y->dims[y->ndim - 1], rows = y->numel / c;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < c; i++)
      store(y, r * c + i, load(x, r * 2 * c + i) * gelu_erf(load(x, r * 2 * c + c + i)));
}

static void run_copy(const ref_op *op) {
  for (int64_t i = 0; i < op->in[0]->numel; i++) store(op->out[0], i, load(op->in[0], i));
}

/* ---- running ------------------------------------------------------------------ */

static uint64_t now_ns(void) {
  struct timespec ts;
  if (timespec_get(&ts, TIME_UTC) != TIME_UTC) return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int32_t bind(sdf_plan *p, sdf_buffer *const *bindings, uint32_t n_bindings) {
  if (n_bindings != p->n_bindings) {
    set_error("sdf_plan_run: the plan has %u bindings, %u buffers were given", p->n_bindings, n_bindings);
    return SDF_E_INVALID;
  }
  if (!bindings && n_bindings) {
    set_error("sdf_plan_run: bindings is NULL");
    return SDF_E_INVALID;
  }
  for (uint32_t b = 0; b < n_bindings; b++) {
    if (!bindings[b]) {
      set_error("sdf_plan_run: binding %u is NULL", b);
      return SDF_E_INVALID;
    }
    if (p->written[b] && bindings[b]->read_only) {
      set_error("sdf_plan_run: binding %u is a read-only file buffer, but the plan writes outputs to it", b);
      return SDF_E_INVALID;
    }
  }
  for (uint32_t i = 0; i < p->n_tensors; i++) {
    ref_tensor *t = &p->tensors[i];
    const sdf_buffer *buf = bindings[t->binding];
    if (t->offset > buf->size || t->nbytes > buf->size - t->offset) {
      char s[128];
      set_error("sdf_plan_run: tensor %u %s %s needs bytes [%llu, %llu) of binding %u, but that buffer has %llu bytes",
                i, dtype_name(t->dtype), shape_str(t, s, sizeof s), (unsigned long long)t->offset,
                (unsigned long long)(t->offset + t->nbytes), t->binding, (unsigned long long)buf->size);
      return SDF_E_INVALID;
    }
    t->data = buf->data + t->offset;
  }
  return SDF_OK;
}

SDF_API int32_t sdf_plan_run(sdf_plan *plan, sdf_buffer *const *bindings, uint32_t n_bindings) {
  if (!plan) {
    set_error("sdf_plan_run: plan is NULL");
    return SDF_E_INVALID;
  }
  if (!g_initialized) {
    set_error("sdf_plan_run: call sdf_init first");
    snprintf(plan->last_error, sizeof plan->last_error, "%s", g_error);
    return SDF_E_STATE;
  }
  if (!REF_CLAIM(g_running)) {
    set_error("sdf_plan_run: another plan of " REF_NAME " is running (it runs one plan at a time)");
    snprintf(plan->last_error, sizeof plan->last_error, "%s", g_error);
    return SDF_E_STATE;
  }
  REF_STORE(plan->running, 1);
  plan->last_error[0] = 0;
  REF_STORE(plan->progress, 0);
  int32_t rc = bind(plan, bindings, n_bindings);
  /* The row scratch is sized once the bound buffers have proved the tensors real. */
  if (rc == SDF_OK && plan->max_row > 0 && !plan->row) {
    plan->row = (uint64_t)plan->max_row <= SIZE_MAX / sizeof(float) ? malloc((size_t)plan->max_row * sizeof(float))
                                                                     : NULL;
    if (!plan->row) {
      set_error("sdf_plan_run: out of memory for a %lld-element matmul row", (long long)plan->max_row);
      rc = SDF_E_NOMEM;
    }
  }
  for (uint32_t i = 0; rc == SDF_OK && i < plan->n_ops; i++) {
    const ref_op *op = &plan->ops[i];
    uint64_t t0 = now_ns();
    switch (op->opcode) {
    case SDF_OP_MATMUL:
      run_matmul(op, plan->row);
      break;
    case SDF_OP_BINARY:
      run_binary(op);
      break;
    case SDF_OP_UNARY:
      run_unary(op);
      break;
    case SDF_OP_SCALE:
      run_scale(op);
      break;
    case SDF_OP_SOFTMAX:
      run_softmax(op);
      break;
    case SDF_OP_LAYER_NORM:
      run_layer_norm(op);
      break;
    case SDF_OP_GEGLU:
      run_geglu(op);
      break;
    case SDF_OP_COPY:
      run_copy(op);
      break;
    default: /* compile rejects every other opcode */
      set_error("sdf_plan_run: op %u (%s): not implemented", i, op_name(op->opcode));
      rc = SDF_E_INTERNAL;
      break;
    }
    uint64_t t1 = now_ns();
    plan->profile[i] = t1 >= t0 ? t1 - t0 : 0;
    REF_STORE(plan->progress, i + 1);
  }
  if (rc != SDF_OK) snprintf(plan->last_error, sizeof plan->last_error, "%s", g_error);
  REF_STORE(plan->running, 0);
  REF_STORE(g_running, 0);
  return rc;
}

SDF_API uint32_t sdf_plan_progress(const sdf_plan *plan) {
  return plan ? REF_LOAD(((sdf_plan *)plan)->progress) : 0;
}

SDF_API uint32_t sdf_plan_profile(const sdf_plan *plan, uint64_t *out, uint32_t n) {
  if (!plan || !out) return 0;
  uint32_t m = n < plan->n_ops ? n : plan->n_ops;
  if (m) memcpy(out, plan->profile, (size_t)m * sizeof *out);
  return m;
}

SDF_API const char *sdf_plan_last_error(const sdf_plan *plan) { return plan ? plan->last_error : ""; }
