/* Cases of conv_harness.c: correctness checks and timings. */

static int conv(sdf_tensor *x, sdf_tensor *w, sdf_tensor *b, sdf_tensor *y, int64_t s,
                int64_t pad, int64_t algo) {
  sdf_tensor *in[3] = {x, w, b};
  int64_t p[6] = {s, s, pad, pad, algo, 0};
  sdf_op op = mkop(SDF_OP_CONV2D, b ? 3 : 2, in, 1, &y, 6, p);
  return run_op(&sdf_kernel_conv2d, &op);
}

typedef struct wino_bufs {
  sdf_tensor *u, *v, *mm;
} wino_bufs;

static void wino_alloc(wino_bufs *wb, int m, int64_t N, int64_t Ci, int64_t Co,
                       int64_t OH, int64_t OW) {
  int64_t A = m + 2, T = N * ((OH + m - 1) / m) * ((OW + m - 1) / m);
  wb->u = T3(SDF_F32, A * A, Co, Ci);
  wb->v = T3(SDF_F32, A * A, Ci, T);
  wb->mm = T3(SDF_F32, A * A, Co, T);
}
static void wino_free(wino_bufs *wb) {
  tfree(wb->u);
  tfree(wb->v);
  tfree(wb->mm);
}

static int wino_filter(wino_bufs *wb, sdf_tensor *w, int m) {
  int64_t p[1] = {m};
  sdf_op op = mkop(SDF_OP_WINO_FILTER, 1, &w, 1, &wb->u, 1, p);
  return run_op(&sdf_kernel_wino_filter, &op);
}

/* INPUT + GEMM + OUTPUT; stage times added to t[3] when t != NULL. */
static int wino_run(wino_bufs *wb, sdf_tensor *x, sdf_tensor *b, sdf_tensor *res,
                    sdf_tensor *y, int m, int64_t pad, double *t) {
  int64_t p3[3] = {m, pad, pad};
  double t0 = now();
  sdf_op op = mkop(SDF_OP_WINO_INPUT, 1, &x, 1, &wb->v, 3, p3);
  if (run_op(&sdf_kernel_wino_input, &op)) return 1;
  double t1 = now();
  sdf_tensor *gin[2] = {wb->u, wb->v};
  op = mkop(SDF_OP_WINO_GEMM, 2, gin, 1, &wb->mm, 1, p3);
  if (run_op(&sdf_kernel_wino_gemm, &op)) return 1;
  double t2 = now();
  sdf_tensor *oin[3] = {wb->mm, NULL, NULL};
  int n = 1;
  if (b) oin[n++] = b;
  if (res) oin[n++] = res;
  int64_t po[3] = {m, b != NULL, res != NULL};
  op = mkop(SDF_OP_WINO_OUTPUT, n, oin, 1, &y, 3, po);
  if (run_op(&sdf_kernel_wino_output, &op)) return 1;
  double t3 = now();
  if (t) {
    t[0] += t1 - t0;
    t[1] += t2 - t1;
    t[2] += t3 - t2;
  }
  return 0;
}

static const char *isa_name[] = {"scalar", "avx2", "avx512", "neon"};
static int failures = 0;

static void report(const char *what, double err, double bound) {
  int bad = !(err <= bound);
  failures += bad;
  if (bad) printf("  FAIL %-60s err %.3g > %.1g\n", what, err, bound);
}

static void check_conv_isa(void) {
  double worst_w[7] = {0}, worst_i = 0;
  for (int iter = 0; iter < 40; iter++) {
    int64_t N = 1 + iter % 3, Ci = 1 + (int64_t)(urand() * 70), Co = 1 + (int64_t)(urand() * 40);
    int64_t H = 1 + (int64_t)(urand() * 23), W = 1 + (int64_t)(urand() * 23);
    if (iter == 0) Ci = 640, Co = 20, H = 9, W = 11;
    if (iter == 1) Ci = 33, Co = 130, H = 17, W = 16;
    int64_t pad = urand() < 0.7 ? 1 : 0;
    if (H + 2 * pad < 3 || W + 2 * pad < 3) pad = 1;
    int wdt = iter % 3 == 2 ? SDF_F16 : (iter % 5 == 4 ? SDF_BF16 : SDF_F32);
    int64_t OH = H + 2 * pad - 2, OW = W + 2 * pad - 2;
    sdf_tensor *x = T4(SDF_F32, N, Ci, H, W), *w = T4(wdt, Co, Ci, 3, 3);
    sdf_tensor *b = T1(SDF_F32, Co), *res = T4(SDF_F32, N, Co, OH, OW);
    sdf_tensor *ref = T4(SDF_F32, N, Co, OH, OW), *y = T4(SDF_F32, N, Co, OH, OW);
    fill(x, 1.0f);
    fill(w, 1.0f / sqrtf(9.0f * Ci));
    fill(b, 0.1f);
    fill(res, 1.0f);
    conv(x, w, b, ref, 1, pad, 1);
    char what[160];
    snprintf(what, sizeof what, "im2col N%lld Ci%lld Co%lld %lldx%lld pad%lld wdt%d",
             (long long)N, (long long)Ci, (long long)Co, (long long)H, (long long)W,
             (long long)pad, wdt);
    conv(x, w, b, y, 1, pad, 2);
    double e = rel_err(y, ref);
    if (e > worst_i) worst_i = e;
    report(what, e, 1e-5);
    /* reference with the residual added */
    for (int64_t i = 0; i < ref->numel; i++)
      ((float *)ref->data)[i] += ((float *)res->data)[i];
    for (int m = 2; m <= 6; m += 2) {
      wino_bufs wb;
      wino_alloc(&wb, m, N, Ci, Co, OH, OW);
      memset(y->data, 0xff, (size_t)y->numel * 4); /* NaN: unwritten shows */
      if (wino_filter(&wb, w, m) || wino_run(&wb, x, b, res, y, m, pad, NULL)) {
        failures++;
      } else {
        e = rel_err(y, ref);
        if (e > worst_w[m]) worst_w[m] = e;
        snprintf(what, sizeof what, "wino F(%d,3) N%lld Ci%lld Co%lld %lldx%lld pad%lld", m,
                 (long long)N, (long long)Ci, (long long)Co, (long long)H, (long long)W,
                 (long long)pad);
        report(what, e, m == 2 ? 1e-5 : (m == 4 ? 1e-4 : 1e-3));
      }
      wino_free(&wb);
    }
    tfree(x), tfree(w), tfree(b), tfree(res), tfree(ref), tfree(y);
  }
  /* strided / non-3x3 convs: im2col vs direct */
  double worst_g = 0, worst_a = 0;
  for (int iter = 0; iter < 40; iter++) {
    int64_t N = 1 + iter % 2, Ci = 1 + (int64_t)(urand() * 40);
    int64_t Co = 1 + (int64_t)(urand() * (iter % 3 ? 10 : 40));
    int64_t K = 1 + iter % 4, s = 1 + (iter / 4) % 2, pad = (iter / 8) % 2;
    int64_t H = K + (int64_t)(urand() * 20), W = K + (int64_t)(urand() * 20);
    int64_t OH = (H + 2 * pad - K) / s + 1, OW = (W + 2 * pad - K) / s + 1;
    int wdt = iter % 3;
    sdf_tensor *x = T4(SDF_F32, N, Ci, H, W), *w = T4(wdt, Co, Ci, K, K);
    sdf_tensor *b = T1(SDF_F32, Co);
    sdf_tensor *ref = T4(SDF_F32, N, Co, OH, OW), *y = T4(SDF_F32, N, Co, OH, OW);
    fill(x, 1.0f);
    fill(w, 1.0f / sqrtf((float)(K * K * Ci)));
    fill(b, 0.1f);
    conv(x, w, b, ref, s, pad, 1);
    conv(x, w, iter % 2 ? b : NULL, y, s, pad, 2);
    if (iter % 2 == 0)
      for (int64_t i = 0; i < y->numel; i++)
        ((float *)y->data)[i] += ((float *)b->data)[(i / (OH * OW)) % Co];
    double e = rel_err(y, ref);
    if (e > worst_g) worst_g = e;
    /* auto: the small-Co direct kernel where it applies, else im2col */
    memset(y->data, 0xff, (size_t)y->numel * 4);
    conv(x, w, b, y, s, pad, 0);
    double ea = rel_err(y, ref);
    if (ea > worst_a) worst_a = ea;
    report("conv auto", ea, 1e-5);
    char what[160];
    snprintf(what, sizeof what, "im2col k%lld s%lld pad%lld Ci%lld Co%lld %lldx%lld",
             (long long)K, (long long)s, (long long)pad, (long long)Ci, (long long)Co,
             (long long)H, (long long)W);
    report(what, e, 1e-5);
    tfree(x), tfree(w), tfree(b), tfree(ref), tfree(y);
  }
  printf("  conv: im2col 3x3 %.2e, im2col general %.2e, auto %.2e, F(2,3) %.2e, "
         "F(4,3) %.2e, F(6,3) %.2e\n",
         worst_i, worst_g, worst_a, worst_w[2], worst_w[4], worst_w[6]);
}

static void check_matmul_isa(void) {
  static const int64_t shapes[][3] = {{77, 768, 768},  {1, 1, 1},     {5, 17, 3},
                                      {13, 33, 700},   {150, 70, 45}, {300, 40, 1000},
                                      {2, 1100, 64},   {1000, 13, 7}, {64, 320, 0}};
  double worst[3] = {0};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int dt = 0; dt < 3; dt++) {
      int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
      sdf_tensor *x = T3(SDF_F32, 1, M, K), *w = T2(dt, N, K), *b = T1(SDF_F32, N);
      sdf_tensor *y = T3(SDF_F32, 1, M, N), *ref = T3(SDF_F32, 1, M, N);
      fill(x, 1.0f);
      fill(w, 1.0f / sqrtf((float)(K > 0 ? K : 1)));
      fill(b, 0.5f);
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
          double acc = ((float *)b->data)[j];
          for (int64_t k = 0; k < K; k++)
            acc += (double)((float *)x->data)[i * K + k] * sdfg_load(w->data, dt, j * K + k);
          ((float *)ref->data)[i * N + j] = (float)acc;
        }
      sdf_tensor *in[3] = {x, w, b};
      memset(y->data, 0xff, (size_t)y->numel * 4);
      sdf_op op = mkop(SDF_OP_MATMUL, 3, in, 1, &y, 0, NULL);
      if (run_op(&sdf_kernel_matmul, &op)) failures++;
      double e = rel_err(y, ref);
      if (e > worst[dt]) worst[dt] = e;
      char what[128];
      snprintf(what, sizeof what, "matmul M%lld N%lld K%lld dtype%d", (long long)M,
               (long long)N, (long long)K, dt);
      report(what, e, 1e-5);
      tfree(x), tfree(w), tfree(b), tfree(y), tfree(ref);
    }
  printf("  matmul: f32 %.2e, f16 %.2e, bf16 %.2e\n", worst[0], worst[1], worst[2]);
}

static int isa_available(int isa) {
  if (isa == SDF_ISA_SCALAR) return 1;
#if defined(__aarch64__)
  if (isa == SDF_ISA_NEON) return 1;
#endif
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (isa == SDF_ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == SDF_ISA_AVX512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
  return 0;
}

static int bad_input_checks(void) {
  /* prepare() must reject malformed ops with a message, never crash. */
  sdf_tensor *x = T4(SDF_F32, 1, 8, 6, 6), *w = T4(SDF_F32, 4, 7, 3, 3);
  sdf_tensor *y = T4(SDF_F32, 1, 4, 6, 6), *u = T3(SDF_F32, 16, 4, 8);
  char err[256];
  int bad = 0;
  sdf_tensor *in[2] = {x, w};
  int64_t p[5] = {1, 1, 1, 1, 0};
  sdf_op op = mkop(SDF_OP_CONV2D, 2, in, 1, &y, 5, p);
  bad += sdf_kernel_conv2d.prepare(&op, err, sizeof err) == SDF_OK;
  int64_t pm[1] = {3};
  op = mkop(SDF_OP_WINO_FILTER, 1, &w, 1, &u, 1, pm);
  bad += sdf_kernel_wino_filter.prepare(&op, err, sizeof err) == SDF_OK;
  pm[0] = 2;
  op = mkop(SDF_OP_WINO_FILTER, 1, &w, 1, &u, 1, pm);
  bad += sdf_kernel_wino_filter.prepare(&op, err, sizeof err) == SDF_OK;
  printf("  bad-input rejections: %s (last: %s)\n", bad ? "FAIL" : "ok", err);
  tfree(x), tfree(w), tfree(y), tfree(u);
  return bad;
}

/* Error against a float64 direct convolution on SD-like data: x ~ N(0,1)
 * (post-GroupNorm activations), w ~ N(0, 1/(9 Ci)), bias ~ N(0, 0.1^2). */
static void accuracy(void) {
  static const int64_t shapes[][5] = {
      {1, 320, 32, 24, 1}, {1, 640, 32, 16, 1}, {1, 1280, 16, 8, 1},
      {1, 128, 16, 40, 1}, {2, 2560, 16, 8, 0}, {1, 960, 16, 16, 1}};
  double worst[7] = {0};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int64_t N = shapes[s][0], Ci = shapes[s][1], Co = shapes[s][2], H = shapes[s][3];
    int64_t pad = shapes[s][4], OH = H + 2 * pad - 2;
    sdf_tensor *x = T4(SDF_F32, N, Ci, H, H), *w = T4(SDF_F32, Co, Ci, 3, 3);
    sdf_tensor *b = T1(SDF_F32, Co), *ref = T4(SDF_F32, N, Co, OH, OH);
    sdf_tensor *y = T4(SDF_F32, N, Co, OH, OH);
    fill(x, 1.0f);
    fill(w, 1.0f / sqrtf(9.0f * Ci));
    fill(b, 0.1f);
    const float *X = x->data, *Wt = w->data;
    for (int64_t n = 0; n < N; n++)
      for (int64_t co = 0; co < Co; co++)
        for (int64_t oy = 0; oy < OH; oy++)
          for (int64_t ox = 0; ox < OH; ox++) {
            double acc = ((float *)b->data)[co];
            for (int64_t ci = 0; ci < Ci; ci++)
              for (int64_t kh = 0; kh < 3; kh++) {
                int64_t iy = oy + kh - pad;
                if (iy < 0 || iy >= H) continue;
                for (int64_t kw = 0; kw < 3; kw++) {
                  int64_t ix = ox + kw - pad;
                  if (ix < 0 || ix >= H) continue;
                  acc += (double)X[((n * Ci + ci) * H + iy) * H + ix] *
                         Wt[((co * Ci + ci) * 3 + kh) * 3 + kw];
                }
              }
            ((float *)ref->data)[((n * Co + co) * OH + oy) * OH + ox] = (float)acc;
          }
    conv(x, w, b, y, 1, pad, 2);
    double e = rel_err(y, ref);
    if (e > worst[0]) worst[0] = e;
    conv(x, w, b, y, 1, pad, 1);
    e = rel_err(y, ref);
    if (e > worst[1]) worst[1] = e;
    for (int m = 2; m <= 6; m += 2) {
      wino_bufs wb;
      wino_alloc(&wb, m, N, Ci, Co, OH, OH);
      if (wino_filter(&wb, w, m) || wino_run(&wb, x, b, NULL, y, m, pad, NULL)) failures++;
      e = rel_err(y, ref);
      if (e > worst[m]) worst[m] = e;
      report("accuracy vs float64", e, m == 2 ? 1e-5 : (m == 4 ? 1e-4 : 1e-3));
      wino_free(&wb);
    }
    tfree(x), tfree(w), tfree(b), tfree(ref), tfree(y);
  }
  printf("  max |y - y64| / max |y64|: im2col %.2e, direct %.2e, F(2,3) %.2e, "
         "F(4,3) %.2e, F(6,3) %.2e\n",
         worst[0], worst[1], worst[2], worst[4], worst[6]);
}

/* conv_harness_fused.h */
static void check_fused_isa(void);
static void check_bands_isa(void);
static int fused_band_bad_input(void);

static int check(void) {
  for (int isa = 0; isa < 4; isa++) {
    if (!isa_available(isa)) continue;
    sdf_current_isa = (sdf_isa)isa;
    for (nthreads = 1; nthreads <= 2; nthreads++) {
      printf("[%s, %d thread%s]\n", isa_name[isa], nthreads, nthreads > 1 ? "s" : "");
      check_conv_isa();
      check_fused_isa();
      check_bands_isa();
      check_matmul_isa();
      if (nthreads == 2) accuracy();
    }
  }
  failures += bad_input_checks();
  failures += fused_band_bad_input();
  printf(failures ? "%d FAILURES\n" : "all checks passed\n", failures);
  return failures != 0;
}

#include "conv_harness_bench.h"
#include "conv_harness_fused.h"

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "bench")) return bench(argc - 2, argv + 2);
  if (argc >= 2 && !strcmp(argv[1], "fused")) return bench_fused(argc - 2, argv + 2);
  if (argc >= 2 && !strcmp(argv[1], "bands")) return bench_bands(argc - 2, argv + 2);
  if (argc >= 2 && !strcmp(argv[1], "output")) return bench_output(argc - 2, argv + 2);
  return check();
}
