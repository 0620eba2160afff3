/*
 * ABI entry points of the CPU backend: version, info, init, errors.
 */
#include <ctype.h>
#include <errno.h>
#include <time.h>

#include "internal.h"

sdf_isa sdf_current_isa = SDF_ISA_SCALAR;
sdf_bf16_unit sdf_current_bf16 = SDF_BF16_NONE;
int sdf_thread_count = 1;
int sdf_initialized = 0;

/* The configuration each thread last asked for with sdf_init. Several
 * Backends (e.g. Deno workers) may share this library with different thread
 * counts or ISAs: a plan remembers the configuration of the thread that
 * compiled it, and every run switches to it under sdf_run_lock. */
static _Thread_local int tl_configured = 0;
static _Thread_local sdf_isa tl_isa;
static _Thread_local int tl_threads;
static _Thread_local sdf_bf16_unit tl_bf16;

int32_t sdf_apply_config(sdf_isa isa, int threads, sdf_bf16_unit bf16) {
  if (threads != sdf_thread_count || !sdf_initialized) {
    int32_t rc = sdf_pool_resize(threads);
    if (rc != SDF_OK) {
      sdf_set_error("could not start %d worker threads", threads - 1);
      return rc;
    }
    sdf_thread_count = threads;
  }
  sdf_current_isa = isa;
  sdf_current_bf16 = bf16;
  sdf_initialized = 1;
  return SDF_OK;
}

void sdf_requested_config(sdf_isa *isa, int *threads, sdf_bf16_unit *bf16) {
  *isa = tl_configured ? tl_isa : sdf_current_isa;
  *threads = tl_configured ? tl_threads : sdf_thread_count;
  *bf16 = tl_configured ? tl_bf16 : sdf_current_bf16;
}
pthread_mutex_t sdf_run_lock = PTHREAD_MUTEX_INITIALIZER;

static _Thread_local char tls_error[SDF_ERR_LEN];
static _Thread_local int32_t tls_status = SDF_OK;
static char info_json[4096];

void sdf_set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tls_error, sizeof tls_error, fmt, ap);
  va_end(ap);
  tls_status = SDF_E_INVALID;
}

void sdf_set_status(int32_t code) { tls_status = code; }

SDF_API int32_t sdf_last_status(void) { return tls_status; }

uint64_t sdf_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

SDF_API int32_t sdf_abi_version(void) { return SDF_ABI_VERSION; }

SDF_API const char *sdf_last_error(void) { return tls_error; }

SDF_API const char *sdf_backend_info(void) {
  char isas[128] = "";
  size_t o = 0;
  for (int i = SDF_ISA_SCALAR; i <= SDF_ISA_NEON; i++) {
    if (!sdf_isa_available((sdf_isa)i)) continue;
    o += (size_t)snprintf(isas + o, sizeof isas - o, "%s\"%s\"", o ? "," : "", sdf_isa_name((sdf_isa)i));
  }
  char ops[2048];
  sdf_kernel_names_json(ops, sizeof ops);
  sdf_isa isa = sdf_initialized ? sdf_current_isa : sdf_isa_best();
  int threads = sdf_initialized ? sdf_thread_count : sdf_physical_cores();
  char units[64] = "";
  o = 0;
  for (int u = SDF_BF16_AMX; u >= SDF_BF16_AVX512; u--) { /* best first */
    if (!sdf_bf16_available((sdf_bf16_unit)u)) continue;
    o += (size_t)snprintf(units + o, sizeof units - o, "%s\"%s\"", o ? "," : "", sdf_bf16_unit_name((sdf_bf16_unit)u));
  }
  sdf_bf16_unit bf16 = sdf_initialized ? sdf_current_bf16 : SDF_BF16_NONE;
  snprintf(info_json, sizeof info_json,
           "{\"name\":\"cpu\",\"abi\":%d,\"isa\":\"%s\",\"isas\":[%s],\"threads\":%d,"
           "\"physical_cores\":%d,\"initialized\":%s,\"precision\":\"%s\",\"bf16_unit\":\"%s\","
           "\"bf16_units\":[%s],"
           "\"dtypes\":[\"f32\",\"f16\",\"bf16\",\"i32\",\"q4_0\",\"q4_1\",\"q5_0\",\"q5_1\",\"q8_0\",\"q2_K\",\"q3_K\",\"q4_K\",\"q5_K\",\"q6_K\"],\"ops\":%s}",
           SDF_ABI_VERSION, sdf_isa_name(isa), isas, threads, sdf_physical_cores(),
           sdf_initialized ? "true" : "false", bf16 == SDF_BF16_NONE ? "f32" : "bf16",
           sdf_bf16_unit_name(bf16), units, ops);
  return info_json;
}

/* ---- a small parser for the flat config object ------------------------- */

typedef struct {
  const char *s;
  size_t i;
} cfg_parser;

static void cfg_ws(cfg_parser *p) {
  while (p->s[p->i] && isspace((unsigned char)p->s[p->i])) p->i++;
}

/* Parses a JSON string (no escapes other than \" and \\) into out. */
static int cfg_string(cfg_parser *p, char *out, size_t len) {
  if (p->s[p->i] != '"') return -1;
  p->i++;
  size_t o = 0;
  while (p->s[p->i] && p->s[p->i] != '"') {
    char c = p->s[p->i++];
    if (c == '\\') {
      c = p->s[p->i++];
      if (c != '"' && c != '\\' && c != '/') return -1;
    }
    if (o + 1 < len) out[o++] = c;
  }
  if (p->s[p->i] != '"') return -1;
  p->i++;
  out[o] = 0;
  return 0;
}

SDF_API int32_t sdf_init(const char *config_json) {
  long threads = 0;
  char isa_name[32] = "auto";
  char precision[32] = "f32";
  char bf16_unit[32] = "auto";
  if (config_json && *config_json) {
    cfg_parser p = {config_json, 0};
    cfg_ws(&p);
    if (p.s[p.i] != '{') {
      sdf_set_error("sdf_init: config must be a JSON object, got \"%.60s\"", config_json);
      return SDF_E_INVALID;
    }
    p.i++;
    cfg_ws(&p);
    int first = 1;
    while (p.s[p.i] != '}') {
      if (!first) {
        if (p.s[p.i] != ',') goto bad;
        p.i++;
        cfg_ws(&p);
      }
      first = 0;
      char key[64];
      if (cfg_string(&p, key, sizeof key)) goto bad;
      cfg_ws(&p);
      if (p.s[p.i] != ':') goto bad;
      p.i++;
      cfg_ws(&p);
      if (strcmp(key, "threads") == 0) {
        char *end;
        errno = 0;
        threads = strtol(p.s + p.i, &end, 10);
        if (end == p.s + p.i || errno) goto bad;
        p.i = (size_t)(end - p.s);
        if (p.s[p.i] == '.' || p.s[p.i] == 'e' || p.s[p.i] == 'E') {
          sdf_set_error("sdf_init: \"threads\" must be an integer");
          return SDF_E_INVALID;
        }
      } else if (strcmp(key, "isa") == 0) {
        if (cfg_string(&p, isa_name, sizeof isa_name)) goto bad;
      } else if (strcmp(key, "precision") == 0) {
        if (cfg_string(&p, precision, sizeof precision)) goto bad;
      } else if (strcmp(key, "bf16_unit") == 0) {
        if (cfg_string(&p, bf16_unit, sizeof bf16_unit)) goto bad;
      } else if (p.s[p.i] == '"') { /* unknown keys are ignored (forward compatible) */
        char skip[256];
        if (cfg_string(&p, skip, sizeof skip)) goto bad;
      } else {
        while (p.s[p.i] && p.s[p.i] != ',' && p.s[p.i] != '}') {
          if (p.s[p.i] == '{' || p.s[p.i] == '[') {
            sdf_set_error("sdf_init: unknown key \"%s\" with a nested value", key);
            return SDF_E_INVALID;
          }
          p.i++;
        }
      }
      cfg_ws(&p);
    }
    p.i++;
    cfg_ws(&p);
    if (p.s[p.i]) goto bad;
  }
  if (threads < 0 || threads > 1024) {
    sdf_set_error("sdf_init: \"threads\" must be 0 (physical cores) to 1024, got %ld", threads);
    return SDF_E_INVALID;
  }
  const char *env = getenv("SDF_ISA");
  if (strcmp(isa_name, "auto") == 0 && env && *env) {
    snprintf(isa_name, sizeof isa_name, "%s", env);
  }
  sdf_isa isa = sdf_isa_best();
  if (strcmp(isa_name, "auto") != 0) {
    if (sdf_isa_parse(isa_name, &isa)) {
      sdf_set_error("sdf_init: unknown isa \"%s\" (auto, avx512, avx2, neon, scalar)", isa_name);
      return SDF_E_INVALID;
    }
    if (!sdf_isa_available(isa)) {
      sdf_set_error("sdf_init: isa \"%s\" is not available on this CPU (best: %s)", isa_name,
                    sdf_isa_name(sdf_isa_best()));
      return SDF_E_UNSUPPORTED;
    }
  }
  /* bf16 needs a bf16 unit and the AVX-512 kernels around it: asking for it
   * elsewhere is an error (no silent f32 fallback: the caller chose bf16 for
   * its speed, and its numbers differ from f32's). */
  sdf_bf16_unit bf16 = SDF_BF16_NONE;
  if (strcmp(precision, "bf16") == 0) {
    if (strcmp(bf16_unit, "auto") == 0) bf16 = sdf_bf16_best();
    else if (strcmp(bf16_unit, "amx") == 0) bf16 = SDF_BF16_AMX;
    else if (strcmp(bf16_unit, "avx512_bf16") == 0) bf16 = SDF_BF16_AVX512;
    else {
      sdf_set_error("sdf_init: unknown bf16_unit \"%s\" (auto, amx, avx512_bf16)", bf16_unit);
      return SDF_E_INVALID;
    }
    if (bf16 == SDF_BF16_NONE || !sdf_bf16_available(bf16)) {
      sdf_set_error("sdf_init: precision \"bf16\" needs %s, which this CPU (or OS) does not offer; use precision "
                    "\"f32\"",
                    strcmp(bf16_unit, "amx") == 0 ? "AMX-BF16" : "AVX512-BF16 (or AMX-BF16)");
      return SDF_E_UNSUPPORTED;
    }
    if (isa != SDF_ISA_AVX512) {
      sdf_set_error("sdf_init: precision \"bf16\" runs on the avx512 kernels, not isa \"%s\"", sdf_isa_name(isa));
      return SDF_E_UNSUPPORTED;
    }
  } else if (strcmp(precision, "f32") != 0) {
    sdf_set_error("sdf_init: unknown precision \"%s\" (f32, bf16)", precision);
    return SDF_E_INVALID;
  }
  int n = threads > 0 ? (int)threads : sdf_physical_cores();
  /* Waits for a running plan (another thread's) rather than failing. */
  pthread_mutex_lock(&sdf_run_lock);
  int32_t rc = sdf_apply_config(isa, n, bf16);
  pthread_mutex_unlock(&sdf_run_lock);
  if (rc != SDF_OK) {
    sdf_set_error("sdf_init: could not start %d worker threads", n - 1);
    return rc;
  }
  tl_configured = 1;
  tl_isa = isa;
  tl_threads = n;
  tl_bf16 = bf16;
  return SDF_OK;
bad:
  sdf_set_error("sdf_init: malformed config JSON \"%.80s\"", config_json);
  return SDF_E_INVALID;
}

__attribute__((destructor)) static void sdf_unload(void) { sdf_pool_shutdown(); }
