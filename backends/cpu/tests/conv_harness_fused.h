/* Cases of conv_harness.c for the fused filter transform (WINO_GEMM p[1] = 1)
 * and the row bands of WINO_INPUT / WINO_OUTPUT (p[3] = row0, p[4] = rows). */

/* INPUT -> GEMM -> OUTPUT for tile rows [row0, row0 + rows) (rows 0: all),
 * with wu = u (fused 0) or w (fused 1); v / mm sized for the band. Stage
 * times are added to t[3] when t != NULL. */
static int wino_band(sdf_tensor *wu, int fused, sdf_tensor *v, sdf_tensor *mm, sdf_tensor *x,
                     sdf_tensor *b, sdf_tensor *res, sdf_tensor *y, int m, int64_t pad,
                     int64_t row0, int64_t rows, double *t) {
  int64_t pi[5] = {m, pad, pad, row0, rows};
  double t0 = now();
  sdf_op op = mkop(SDF_OP_WINO_INPUT, 1, &x, 1, &v, 5, pi);
  if (run_op(&sdf_kernel_wino_input, &op)) return 1;
  double t1 = now();
  sdf_tensor *gin[2] = {wu, v};
  int64_t pg[2] = {m, fused};
  op = mkop(SDF_OP_WINO_GEMM, 2, gin, 1, &mm, 2, pg);
  if (run_op(&sdf_kernel_wino_gemm, &op)) return 1;
  double t2 = now();
  sdf_tensor *oin[3] = {mm, NULL, NULL};
  int n = 1;
  if (b) oin[n++] = b;
  if (res) oin[n++] = res;
  int64_t po[5] = {m, b != NULL, res != NULL, row0, rows};
  op = mkop(SDF_OP_WINO_OUTPUT, n, oin, 1, &y, 5, po);
  if (run_op(&sdf_kernel_wino_output, &op)) return 1;
  double t3 = now();
  if (t) {
    t[0] += t1 - t0;
    t[1] += t2 - t1;
    t[2] += t3 - t2;
  }
  return 0;
}

static double max_abs_diff(const sdf_tensor *a, const sdf_tensor *b) {
  double md = 0;
  for (int64_t i = 0; i < a->numel; i++) {
    double d = fabs((double)((float *)a->data)[i] - ((float *)b->data)[i]);
    if (!(d <= md)) md = d;
  }
  return md;
}

/* Fused vs a direct conv (+ bias + residual): every m, f32 / f16 / bf16
 * weights, odd Co / Ci, Ci over several transform blocks. */
static void check_fused_isa(void) {
  double worst[7] = {0}, worst_vs_hoisted = 0;
  for (int iter = 0; iter < 24; iter++) {
    int64_t N = 1 + iter % 3, Ci = 1 + (int64_t)(urand() * 90), Co = 1 + (int64_t)(urand() * 50);
    int64_t H = 3 + (int64_t)(urand() * 18), W = 3 + (int64_t)(urand() * 18);
    if (iter == 0) Ci = 600, Co = 13, H = 7, W = 9;   /* 3 Ci blocks */
    if (iter == 1) Ci = 37, Co = 203, H = 10, W = 5;  /* several Co blocks */
    if (iter == 2) Ci = 1, Co = 1, H = 3, W = 3;
    if (iter == 3) Ci = 300, Co = 131, H = 4, W = 4, N = 2;
    int64_t pad = iter % 4 ? 1 : 0;
    int wdt = iter % 3;
    int64_t OH = H + 2 * pad - 2, OW = W + 2 * pad - 2;
    sdf_tensor *x = T4(SDF_F32, N, Ci, H, W), *w = T4(wdt, Co, Ci, 3, 3);
    sdf_tensor *b = T1(SDF_F32, Co), *res = T4(SDF_F32, N, Co, OH, OW);
    sdf_tensor *ref = T4(SDF_F32, N, Co, OH, OW), *y = T4(SDF_F32, N, Co, OH, OW);
    sdf_tensor *yh = T4(SDF_F32, N, Co, OH, OW);
    fill(x, 1.0f);
    fill(w, 1.0f / sqrtf(9.0f * Ci));
    fill(b, 0.1f);
    fill(res, 1.0f);
    conv(x, w, b, ref, 1, pad, 1);
    for (int64_t i = 0; i < ref->numel; i++) ((float *)ref->data)[i] += ((float *)res->data)[i];
    for (int m = 2; m <= 6; m += 2) {
      wino_bufs wb;
      wino_alloc(&wb, m, N, Ci, Co, OH, OW);
      memset(y->data, 0xff, (size_t)y->numel * 4);
      char what[160];
      snprintf(what, sizeof what, "fused F(%d,3) N%lld Ci%lld Co%lld %lldx%lld pad%lld wdt%d", m,
               (long long)N, (long long)Ci, (long long)Co, (long long)H, (long long)W,
               (long long)pad, wdt);
      if (wino_band(w, 1, wb.v, wb.mm, x, b, res, y, m, pad, 0, 0, NULL) || wino_filter(&wb, w, m) ||
          wino_band(wb.u, 0, wb.v, wb.mm, x, b, res, yh, m, pad, 0, 0, NULL)) {
        failures++;
      } else {
        double e = rel_err(y, ref), eh = rel_err(y, yh);
        if (e > worst[m]) worst[m] = e;
        if (eh > worst_vs_hoisted) worst_vs_hoisted = eh;
        report(what, e, m == 2 ? 1e-5 : (m == 4 ? 1e-4 : 1e-3));
        report(what, eh, m == 2 ? 1e-5 : (m == 4 ? 5e-5 : 1e-4));
      }
      wino_free(&wb);
    }
    tfree(x), tfree(w), tfree(b), tfree(res), tfree(ref), tfree(y), tfree(yh);
  }
  printf("  fused vs direct: F(2,3) %.2e, F(4,3) %.2e, F(6,3) %.2e; vs hoisted %.2e\n", worst[2],
         worst[4], worst[6], worst_vs_hoisted);
}

/* Random row-band splits (1-row bands, a partial last band) vs the unbanded
 * conv: hoisted bands must match it exactly (the same arithmetic per tile),
 * fused ones within the fused-vs-hoisted bound. */
static void check_bands_isa(void) {
  double worst_h = 0, worst_f = 0;
  int bands_run = 0;
  for (int iter = 0; iter < 18; iter++) {
    const int m = 2 + 2 * (iter % 3);
    int64_t N = 1 + iter % 3, Ci = 1 + (int64_t)(urand() * 40), Co = 1 + (int64_t)(urand() * 40);
    int64_t H = 3 + (int64_t)(urand() * 30), W = 3 + (int64_t)(urand() * 20);
    int64_t pad = iter % 5 ? 1 : 0;
    int64_t OH = H + 2 * pad - 2, OW = W + 2 * pad - 2, th = (OH + m - 1) / m, tw = (OW + m - 1) / m;
    int64_t A = m + 2;
    sdf_tensor *x = T4(SDF_F32, N, Ci, H, W), *w = T4(SDF_F32, Co, Ci, 3, 3);
    sdf_tensor *b = T1(SDF_F32, Co), *res = T4(SDF_F32, N, Co, OH, OW);
    sdf_tensor *yf = T4(SDF_F32, N, Co, OH, OW), *y = T4(SDF_F32, N, Co, OH, OW);
    fill(x, 1.0f);
    fill(w, 1.0f / sqrtf(9.0f * Ci));
    fill(b, 0.1f);
    fill(res, 1.0f);
    wino_bufs wb;
    wino_alloc(&wb, m, N, Ci, Co, OH, OW);
    if (wino_filter(&wb, w, m) || wino_band(wb.u, 0, wb.v, wb.mm, x, b, res, yf, m, pad, 0, 0, NULL)) {
      failures++;
    } else {
      for (int fused = 0; fused <= 1; fused++) {
        memset(y->data, 0xff, (size_t)y->numel * 4);
        int64_t r0 = 0;
        while (r0 < th) {
          /* 1-row bands, random sizes, and the rest in one go */
          int64_t rows = urand() < 0.3 ? 1 : 1 + (int64_t)(urand() * (double)th);
          if (rows > th - r0) rows = th - r0;
          sdf_tensor *v = T3(SDF_F32, A * A, Ci, N * rows * tw);
          sdf_tensor *mm = T3(SDF_F32, A * A, Co, N * rows * tw);
          if (wino_band(fused ? w : wb.u, fused, v, mm, x, b, res, y, m, pad, r0, rows, NULL))
            failures++;
          tfree(v), tfree(mm);
          r0 += rows;
          bands_run++;
        }
        char what[160];
        snprintf(what, sizeof what, "bands%s F(%d,3) N%lld Ci%lld Co%lld %lldx%lld pad%lld",
                 fused ? " fused" : "", m, (long long)N, (long long)Ci, (long long)Co,
                 (long long)H, (long long)W, (long long)pad);
        double e = fused ? rel_err(y, yf) : max_abs_diff(y, yf);
        if (fused && e > worst_f) worst_f = e;
        if (!fused && e > worst_h) worst_h = e;
        report(what, e, fused ? (m == 2 ? 1e-5 : (m == 4 ? 5e-5 : 1e-4)) : 0.0);
      }
    }
    wino_free(&wb);
    tfree(x), tfree(w), tfree(b), tfree(res), tfree(yf), tfree(y);
  }
  printf("  bands (%d run): hoisted max |diff| %.2e (exact), fused rel %.2e\n", bands_run, worst_h,
         worst_f);
}

/* prepare() of the new params: precise rejections. */
static int fused_band_bad_input(void) {
  sdf_tensor *x = T4(SDF_F32, 2, 8, 10, 10), *w = T4(SDF_F32, 4, 8, 3, 3);
  sdf_tensor *u = T3(SDF_F32, 16, 4, 8), *y = T4(SDF_F32, 2, 4, 10, 10);
  /* F(2,3), pad 1: tiles 5 x 5; a band of 2 rows has T = 2*2*5 = 20 */
  sdf_tensor *v = T3(SDF_F32, 16, 8, 20), *mm = T3(SDF_F32, 16, 4, 20);
  sdf_tensor *w5 = T4(SDF_F32, 4, 8, 5, 5), *wi = T4(SDF_I32, 4, 8, 3, 3);
  struct {
    const sdf_kernel *k;
    int opc, nin;
    sdf_tensor *in0, *in1;
    sdf_tensor *out;
    int np;
    int64_t p[5];
    int want_ok;
  } cs[] = {
      {&sdf_kernel_wino_input, SDF_OP_WINO_INPUT, 1, x, NULL, v, 5, {2, 1, 1, 3, 2}, 1},
      {&sdf_kernel_wino_input, SDF_OP_WINO_INPUT, 1, x, NULL, v, 5, {2, 1, 1, 4, 2}, 0},
      {&sdf_kernel_wino_input, SDF_OP_WINO_INPUT, 1, x, NULL, v, 5, {2, 1, 1, -1, 2}, 0},
      {&sdf_kernel_wino_input, SDF_OP_WINO_INPUT, 1, x, NULL, v, 5, {2, 1, 1, 0, 3}, 0},
      {&sdf_kernel_wino_input, SDF_OP_WINO_INPUT, 1, x, NULL, v, 4, {2, 1, 1, 1}, 0},
      {&sdf_kernel_wino_input, SDF_OP_WINO_INPUT, 1, x, NULL, v, 5, {2, 1, 1, 0, 0}, 0},
      {&sdf_kernel_wino_output, SDF_OP_WINO_OUTPUT, 1, mm, NULL, y, 5, {2, 0, 0, 3, 2}, 1},
      {&sdf_kernel_wino_output, SDF_OP_WINO_OUTPUT, 1, mm, NULL, y, 5, {2, 0, 0, 0, 1}, 0},
      {&sdf_kernel_wino_output, SDF_OP_WINO_OUTPUT, 1, mm, NULL, y, 5, {2, 0, 0, 5, 1}, 0},
      {&sdf_kernel_wino_gemm, SDF_OP_WINO_GEMM, 2, w, v, mm, 2, {2, 1}, 1},
      {&sdf_kernel_wino_gemm, SDF_OP_WINO_GEMM, 2, u, v, mm, 2, {2, 0}, 1},
      {&sdf_kernel_wino_gemm, SDF_OP_WINO_GEMM, 2, u, v, mm, 2, {2, 1}, 0},
      {&sdf_kernel_wino_gemm, SDF_OP_WINO_GEMM, 2, w, v, mm, 2, {2, 0}, 0},
      {&sdf_kernel_wino_gemm, SDF_OP_WINO_GEMM, 2, w, v, mm, 2, {2, 2}, 0},
      {&sdf_kernel_wino_gemm, SDF_OP_WINO_GEMM, 2, w5, v, mm, 2, {2, 1}, 0},
      {&sdf_kernel_wino_gemm, SDF_OP_WINO_GEMM, 2, wi, v, mm, 2, {2, 1}, 0},
      {&sdf_kernel_wino_gemm, SDF_OP_WINO_GEMM, 2, w, mm, mm, 2, {2, 1}, 0},
      {&sdf_kernel_wino_gemm, SDF_OP_WINO_GEMM, 2, w, v, mm, 2, {4, 1}, 0},
  };
  int bad = 0;
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    char err[256] = "";
    sdf_tensor *in[2] = {cs[i].in0, cs[i].in1};
    sdf_op op = mkop(cs[i].opc, cs[i].nin, in, 1, &cs[i].out, cs[i].np, cs[i].p);
    const int ok = cs[i].k->prepare(&op, err, sizeof err) == SDF_OK;
    if (ok != cs[i].want_ok || (!ok && !err[0])) {
      printf("  FAIL bad-input case %zu: %s (%s)\n", i, ok ? "accepted" : "rejected", err);
      bad++;
    } else if (!ok && getenv("SHOW_ERRORS")) {
      printf("  case %zu: %s\n", i, err);
    }
  }
  printf("  fused / band bad-input rejections: %s\n", bad ? "FAIL" : "ok");
  tfree(x), tfree(w), tfree(u), tfree(y), tfree(v), tfree(mm), tfree(w5), tfree(wi);
  return bad;
}

/* ---------------- timings ---------------- */

/* Median ms of reps runs of INPUT + GEMM + OUTPUT (band [row0, row0+rows)
 * or all), after one warm-up run; gemm_ms gets the GEMM stage's median. */
static double time_wino(sdf_tensor *wu, int fused, sdf_tensor *v, sdf_tensor *mm, sdf_tensor *x,
                        sdf_tensor *b, sdf_tensor *y, int m, int reps, double *gemm_ms) {
  double t[9], tg[9];
  wino_band(wu, fused, v, mm, x, b, NULL, y, m, 1, 0, 0, NULL);
  for (int r = 0; r < reps; r++) {
    double tt[3] = {0, 0, 0};
    wino_band(wu, fused, v, mm, x, b, NULL, y, m, 1, 0, 0, tt);
    t[r] = (tt[0] + tt[1] + tt[2]) * 1e3;
    tg[r] = tt[1] * 1e3;
  }
  if (gemm_ms) *gemm_ms = median(tg, reps);
  return median(t, reps);
}

/* Fused vs hoisted (u precomputed) vs per-step filter (WINO_FILTER + the
 * three stages) vs im2col on the SD 1.5 UNet shapes at 256x256, batch 2. */
static int bench_fused(int argc, char **argv) {
  static const bshape shapes[] = {
      {"320@64", 2, 320, 320, 64},   {"640@32", 2, 640, 640, 32},   {"1280@16", 2, 1280, 1280, 16},
      {"1280@8", 2, 1280, 1280, 8},  {"2560>1280@8", 2, 2560, 1280, 8}, {"1280@4", 2, 1280, 1280, 4},
      {"640@16", 2, 640, 640, 16},   {"320@32", 2, 320, 320, 32}};
  nthreads = argc > 0 ? atoi(argv[0]) : 1;
  const char *filter = argc > 1 ? argv[1] : "";
  const int wdt = argc > 2 ? atoi(argv[2]) : SDF_F32;
  const int reps = 5;
  sdf_current_isa = isa_available(SDF_ISA_AVX512) ? SDF_ISA_AVX512 : SDF_ISA_AVX2;
  const char *isa = getenv("SDF_ISA");
  for (int i = 0; isa && i < 4; i++)
    if (!strcmp(isa, isa_name[i]) && isa_available(i)) sdf_current_isa = (sdf_isa)i;
  printf("isa %s, %d thread(s), weights %s; ms, median of %d; per m: hoisted / +filter / fused "
         "[gemm stage: hoisted fused]\n",
         isa_name[sdf_current_isa], nthreads, wdt == 0 ? "f32" : (wdt == 1 ? "f16" : "bf16"), reps);
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const bshape *b = &shapes[s];
    if (!strstr(b->name, filter)) continue;
    const int64_t H = b->H;
    sdf_tensor *x = T4(SDF_F32, b->N, b->Ci, H, H), *w = T4(wdt, b->Co, b->Ci, 3, 3);
    sdf_tensor *bias = T1(SDF_F32, b->Co), *y = T4(SDF_F32, b->N, b->Co, H, H);
    fill(x, 1.0f);
    fill(w, 0.02f);
    double t[9];
    conv(x, w, bias, y, 1, 1, 2);
    for (int r = 0; r < reps; r++) {
      double t0 = now();
      conv(x, w, bias, y, 1, 1, 2);
      t[r] = (now() - t0) * 1e3;
    }
    const double ti = median(t, reps);
    printf("%-12s im2col %7.2f |", b->name, ti);
    double best_h = 1e30, best_f = 1e30;
    int mh = 0, mf = 0;
    for (int m = 2; m <= 6; m += 2) {
      wino_bufs wb;
      wino_alloc(&wb, m, b->N, b->Ci, b->Co, H, H);
      wino_filter(&wb, w, m);
      for (int r = 0; r < reps; r++) {
        double t0 = now();
        wino_filter(&wb, w, m);
        t[r] = (now() - t0) * 1e3;
      }
      const double tfilt = median(t, reps);
      double tg, thg;
      const double th = time_wino(wb.u, 0, wb.v, wb.mm, x, bias, y, m, reps, &thg);
      const double tf = time_wino(w, 1, wb.v, wb.mm, x, bias, y, m, reps, &tg);
      printf(" F%d %6.2f %6.2f %6.2f [%6.2f %6.2f] |", m, th, th + tfilt, tf, thg, tg);
      if (th < best_h) best_h = th, mh = m;
      if (tf < best_f) best_f = tf, mf = m;
      wino_free(&wb);
    }
    printf(" best hoisted F%d %.2f, fused F%d %.2f (%.2fx im2col)\n", mh, best_h, mf, best_f,
           ti / best_f);
    fflush(stdout);
    tfree(x), tfree(w), tfree(bias), tfree(y);
  }
  return 0;
}

/* Row bands of the VAE's big convs: time of the whole conv run as bands of
 * `rows` tile rows one after another, and the v + m_ bytes of one band. */
static int bench_bands(int argc, char **argv) {
  static const bshape shapes[] = {
      {"128@512", 1, 128, 128, 512}, {"256@256", 1, 256, 256, 256}, {"512@128", 1, 512, 512, 128}};
  nthreads = argc > 0 ? atoi(argv[0]) : 1;
  const char *filter = argc > 1 ? argv[1] : "";
  const int reps = 3;
  sdf_current_isa = isa_available(SDF_ISA_AVX512) ? SDF_ISA_AVX512 : SDF_ISA_AVX2;
  printf("isa %s, %d thread(s); hoisted u; ms per whole conv (median of %d), MB of v + m_ per band\n",
         isa_name[sdf_current_isa], nthreads, reps);
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const bshape *b = &shapes[s];
    if (!strstr(b->name, filter)) continue;
    const int64_t H = b->H;
    sdf_tensor *x = T4(SDF_F32, b->N, b->Ci, H, H), *w = T4(SDF_F32, b->Co, b->Ci, 3, 3);
    sdf_tensor *bias = T1(SDF_F32, b->Co), *y = T4(SDF_F32, b->N, b->Co, H, H);
    fill(x, 1.0f);
    fill(w, 0.02f);
    for (int m = 4; m <= 6; m += 2) {
      const int64_t A = m + 2, th = (H + m - 1) / m, tw = th;
      wino_bufs wb;
      wino_alloc(&wb, m, b->N, b->Ci, b->Co, H, H);
      wino_filter(&wb, w, m);
      static const int64_t band_rows[] = {0, 32, 16, 8, 4, 2, 1};
      printf("%-9s F(%d,3):", b->name, m);
      for (size_t br = 0; br < sizeof band_rows / sizeof band_rows[0]; br++) {
        const int64_t rows = band_rows[br] ? band_rows[br] : th;
        if (band_rows[br] && rows >= th) continue;
        const int64_t Tb = b->N * rows * tw;
        sdf_tensor *v = T3(SDF_F32, A * A, b->Ci, Tb), *mm = T3(SDF_F32, A * A, b->Co, Tb);
        double t[9];
        for (int r = 0; r <= reps; r++) {
          double t0 = now();
          for (int64_t r0 = 0; r0 < th; r0 += rows) {
            const int64_t rb = sdfg_min(rows, th - r0); /* the last band may be short */
            v->dims[2] = mm->dims[2] = b->N * rb * tw;
            v->numel = A * A * b->Ci * v->dims[2];
            mm->numel = A * A * b->Co * mm->dims[2];
            wino_band(wb.u, 0, v, mm, x, bias, NULL, y, m, 1, r0, rb, NULL);
          }
          if (r) t[r - 1] = (now() - t0) * 1e3;
        }
        printf(" | %s%lld: %.1f ms %.1f MB", band_rows[br] ? "" : "all ", (long long)rows,
               median(t, reps), (double)(A * A * (b->Ci + b->Co) * Tb) * 4 / 1048576.0);
        fflush(stdout);
        tfree(v), tfree(mm);
      }
      printf("\n");
      wino_free(&wb);
    }
    tfree(x), tfree(w), tfree(bias), tfree(y);
  }
  return 0;
}

#include <sys/mman.h>
/* WINO_OUTPUT alone on the VAE decoder's big F(6,3) convs: m_ random, with
 * bias (and a residual when `res` is 1), one 8-tile-row band and the whole
 * image. ms (median of 7) and effective GB/s (m_ read + y written). */
static int bench_output(int argc, char **argv) {
  static const bshape shapes[] = {
      {"256@512", 1, 256, 256, 512}, {"512@256", 1, 512, 512, 256}, {"128@512", 1, 128, 128, 512}};
  nthreads = argc > 0 ? atoi(argv[0]) : 1;
  const char *filter = argc > 1 ? argv[1] : "";
  const int use_res = argc > 2 ? atoi(argv[2]) : 0;
  const int reps = 7, m = 6;
  const int fresh = getenv("FRESH_Y") != NULL;
  sdf_current_isa = isa_available(SDF_ISA_AVX512) ? SDF_ISA_AVX512 : SDF_ISA_AVX2;
  const char *isa = getenv("SDF_ISA");
  for (int i = 0; isa && i < 4; i++)
    if (!strcmp(isa, isa_name[i]) && isa_available(i)) sdf_current_isa = (sdf_isa)i;
  printf("isa %s, %d thread(s), F(6,3) WINO_OUTPUT%s\n", isa_name[sdf_current_isa], nthreads,
         use_res ? " + residual" : "");
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const bshape *b = &shapes[s];
    if (!strstr(b->name, filter)) continue;
    const int64_t H = b->H, A = m + 2, th = (H + m - 1) / m, tw = th;
    sdf_tensor *bias = T1(SDF_F32, b->Co), *y = T4(SDF_F32, b->N, b->Co, H, H);
    sdf_tensor *res = use_res ? T4(SDF_F32, b->N, b->Co, H, H) : NULL;
    fill(bias, 1.0f);
    if (res) fill(res, 1.0f);
    printf("%-9s", b->name);
    for (int band = 1; band >= 0; band--) {
      const int64_t rows = band ? 8 : th, Tb = b->N * rows * tw;
      sdf_tensor *mm = T3(SDF_F32, A * A, b->Co, Tb);
      fill(mm, 1.0f);
      sdf_tensor *oin[3] = {mm, bias, res};
      double t[9];
      for (int r = 0; r <= reps; r++) {
        int64_t po[5] = {m, 1, res != NULL, band ? th / 2 : 0, band ? rows : 0};
        if (fresh) { /* y in never-touched pages, as an engine arena's first use */
          free(y->data);
          if (posix_memalign(&y->data, getenv("HUGE") ? 2 << 20 : 64, (size_t)y->numel * 4)) abort();
          if (getenv("HUGE")) madvise(y->data, (size_t)y->numel * 4, MADV_HUGEPAGE);
        }
        sdf_op op = mkop(SDF_OP_WINO_OUTPUT, res ? 3 : 2, oin, 1, &y, 5, po);
        double t0 = now();
        if (run_op(&sdf_kernel_wino_output, &op)) return 1;
        if (r) t[r - 1] = (now() - t0) * 1e3;
      }
      const double tm = median(t, reps);
      const double bytes = (double)mm->numel * 4 + (double)b->Co * sdfg_min(H, rows * m) * H * 4 *
                                                     (res ? 2 : 1);
      printf(" | %s: %7.2f ms %5.1f GB/s", band ? "band 8" : "all", tm, bytes / tm * 1e-6);
      fflush(stdout);
      tfree(mm);
    }
    printf("\n");
    tfree(bias), tfree(y), tfree(res);
  }
  return 0;
}
