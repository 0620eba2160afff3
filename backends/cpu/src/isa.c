/*
 * Instruction-set detection (cpuid + xgetbv for OS state support) and the
 * machine's physical core count.
 */
#include <dirent.h>
#include <sched.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void) {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

static int detect(sdf_isa isa) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
  if (!osxsave || !avx) return 0;
  uint64_t xcr0 = xgetbv0();
  if ((xcr0 & 0x6) != 0x6) return 0; /* SSE + AVX state */
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  int avx2 = (b >> 5) & 1;
  if (isa == SDF_ISA_AVX2) return avx2 && fma && f16c;
  if (isa == SDF_ISA_AVX512) {
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    if ((xcr0 & 0xe0) != 0xe0) return 0; /* opmask + ZMM state */
    return avx2 && fma && f16c && f && dq && bw && vl;
  }
  return 0;
}

/* AVX512-BF16 (cpuid 7.1 eax bit 5) on top of the AVX-512 set. */
static int detect_avx512_bf16(void) {
  unsigned a, b, c, d;
  if (!detect(SDF_ISA_AVX512)) return 0;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
  return (a >> 5) & 1;
}

/* AMX-TILE (cpuid 7.0 edx bit 24) and AMX-BF16 (bit 22), tile state enabled
 * by the OS (XCR0 bits 17 XTILECFG, 18 XTILEDATA), and Linux's permission
 * for this process to use tile data (arch_prctl ARCH_REQ_XCOMP_PERM, asked
 * once: the permission covers every thread of the process). */
static int detect_amx_bf16(void) {
  unsigned a, b, c, d;
  if (!detect_avx512_bf16()) return 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  if (!((d >> 24) & 1) || !((d >> 22) & 1)) return 0;
  if ((xgetbv0() & (3u << 17)) != (3u << 17)) return 0;
#if defined(__linux__)
  enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
  return 0;
#endif
}
#endif

int sdf_bf16_available(sdf_bf16_unit unit) {
  static int cache[3] = {-1, -1, -1};
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  if ((int)unit < SDF_BF16_AVX512 || (int)unit > SDF_BF16_AMX) return 0;
  pthread_mutex_lock(&mu);
  if (cache[unit] < 0) {
    int ok = 0;
#if defined(__x86_64__)
    ok = unit == SDF_BF16_AMX ? detect_amx_bf16() : detect_avx512_bf16();
#endif
    cache[unit] = ok;
  }
  int ok = cache[unit];
  pthread_mutex_unlock(&mu);
  return ok;
}

sdf_bf16_unit sdf_bf16_best(void) {
  if (sdf_bf16_available(SDF_BF16_AMX)) return SDF_BF16_AMX;
  if (sdf_bf16_available(SDF_BF16_AVX512)) return SDF_BF16_AVX512;
  return SDF_BF16_NONE;
}

const char *sdf_bf16_unit_name(sdf_bf16_unit unit) {
  switch (unit) {
  case SDF_BF16_AMX:
    return "amx";
  case SDF_BF16_AVX512:
    return "avx512_bf16";
  default:
    return "none";
  }
}

int sdf_isa_available(sdf_isa isa) {
  static int cache[4] = {-1, -1, -1, -1};
  if ((int)isa < 0 || (int)isa > 3) return 0;
  if (cache[isa] >= 0) return cache[isa];
  int ok = 0;
  switch (isa) {
  case SDF_ISA_SCALAR:
    ok = 1;
    break;
  case SDF_ISA_NEON:
#if defined(__aarch64__)
    ok = 1;
#endif
    break;
  default:
#if defined(__x86_64__)
    ok = detect(isa);
#endif
    break;
  }
  cache[isa] = ok;
  return ok;
}

sdf_isa sdf_isa_best(void) {
  if (sdf_isa_available(SDF_ISA_AVX512)) return SDF_ISA_AVX512;
  if (sdf_isa_available(SDF_ISA_AVX2)) return SDF_ISA_AVX2;
  if (sdf_isa_available(SDF_ISA_NEON)) return SDF_ISA_NEON;
  return SDF_ISA_SCALAR;
}

const char *sdf_isa_name(sdf_isa isa) {
  switch (isa) {
  case SDF_ISA_AVX512:
    return "avx512";
  case SDF_ISA_AVX2:
    return "avx2";
  case SDF_ISA_NEON:
    return "neon";
  default:
    return "scalar";
  }
}

int sdf_isa_parse(const char *name, sdf_isa *out) {
  static const char *names[] = {"scalar", "avx2", "avx512", "neon"};
  for (int i = 0; i < 4; i++)
    if (strcmp(name, names[i]) == 0) {
      *out = (sdf_isa)i;
      return 0;
    }
  return -1;
}

static long read_long(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long v = -1;
  if (fscanf(f, "%ld", &v) != 1) v = -1;
  fclose(f);
  return v;
}

/* Distinct (package, core) pairs among the CPUs this process may run on. */
int sdf_physical_cores(void) {
  static int cached = 0;
  if (cached > 0) return cached;
  int n = 0;
#if defined(__linux__)
  cpu_set_t set;
  int have_set = sched_getaffinity(0, sizeof set, &set) == 0;
  enum { MAX_PAIRS = 1024 };
  static long pairs[MAX_PAIRS][2];
  int n_pairs = 0, ok = 1;
  for (int cpu = 0; cpu < CPU_SETSIZE && ok; cpu++) {
    if (have_set && !CPU_ISSET(cpu, &set)) continue;
    char path[128];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
    long core = read_long(path);
    if (core < 0) {
      if (have_set) ok = 0; /* a CPU we may use but cannot classify */
      continue;
    }
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
    long pkg = read_long(path);
    int seen = 0;
    for (int i = 0; i < n_pairs; i++)
      if (pairs[i][0] == pkg && pairs[i][1] == core) seen = 1;
    if (!seen && n_pairs < MAX_PAIRS) {
      pairs[n_pairs][0] = pkg;
      pairs[n_pairs][1] = core;
      n_pairs++;
    }
  }
  if (ok) n = n_pairs;
#endif
  if (n <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    n = c > 0 ? (int)c : 1;
  }
  cached = n;
  return n;
}
