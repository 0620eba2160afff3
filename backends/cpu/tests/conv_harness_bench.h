/* Timings of conv_harness.c (SDF_ISA=scalar|avx2|avx512|neon picks the ISA): Winograd (m = 2, 4, 6) vs im2col + GEMM on the
 * SD 1.5 UNet / VAE 3x3 shapes, and MATMUL. Median of `reps` runs. */

typedef struct bshape {
  const char *name;
  int64_t N, Ci, Co, H;
} bshape;

static const bshape bshapes[] = {
    {"unet 320@64", 2, 320, 320, 64},     {"unet 640@32", 2, 640, 640, 32},
    {"unet 1280@16", 2, 1280, 1280, 16},  {"unet 1280@8", 2, 1280, 1280, 8},
    {"unet 640>320@64", 2, 640, 320, 64}, {"unet 960>320@64", 2, 960, 320, 64},
    {"unet 1280>640@32", 2, 1280, 640, 32}, {"unet 1920>640@32", 2, 1920, 640, 32},
    {"unet 960>640@32", 2, 960, 640, 32}, {"unet 2560>1280@16", 2, 2560, 1280, 16},
    {"unet 1920>1280@16", 2, 1920, 1280, 16}, {"unet 2560>1280@8", 2, 2560, 1280, 8},
    {"unet 320>640@32", 2, 320, 640, 32}, {"unet 640>1280@16", 2, 640, 1280, 16},
    {"unet 4>320@64", 2, 4, 320, 64},     {"vae 512@64", 1, 512, 512, 64},
    {"vae 512@128", 1, 512, 512, 128},    {"vae 256@256", 1, 256, 256, 256},
    {"vae 128@512", 1, 128, 128, 512},    {"vae 512>256@256", 1, 512, 256, 256},
    {"vae 256>128@512", 1, 256, 128, 512}, {"vae 4>512@64", 1, 4, 512, 64},
    {"vae 128>3@512", 1, 128, 3, 512},
    {"b1 320@64", 1, 320, 320, 64},       {"b1 640@32", 1, 640, 640, 32},
    {"b1 1280@16", 1, 1280, 1280, 16},    {"b1 1280@8", 1, 1280, 1280, 8},
    {"b1 320@48", 1, 320, 320, 48},       {"b1 640@24", 1, 640, 640, 24},
    {"b1 1280@12", 1, 1280, 1280, 12},    {"b2 1280@12", 2, 1280, 1280, 12},
    {"b2 640@24", 2, 640, 640, 24},       {"b2 320@48", 2, 320, 320, 48},
    {"b2 320@96", 2, 320, 320, 96},       {"b2 640@48", 2, 640, 640, 48},
    {"b2 1280@24", 2, 1280, 1280, 24},    {"b1 1280@4", 1, 1280, 1280, 4},
};

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmpd);
  return v[n / 2];
}

static int bench(int argc, char **argv) {
  nthreads = argc > 0 ? atoi(argv[0]) : 1;
  const char *filter = argc > 1 ? argv[1] : "";
  int do_im2col = argc > 2 ? atoi(argv[2]) : 1;
  sdf_current_isa = SDF_ISA_AVX512;
  if (!isa_available(SDF_ISA_AVX512)) sdf_current_isa = SDF_ISA_AVX2;
  const char *isa = getenv("SDF_ISA");
  for (int i = 0; isa && i < 4; i++)
    if (!strcmp(isa, isa_name[i]) && isa_available(i)) sdf_current_isa = (sdf_isa)i;
  printf("isa %s, %d thread(s); GF/s = direct-conv FLOPs / time\n",
         isa_name[sdf_current_isa], nthreads);
  printf("%-19s %9s %7s | %-28s %-28s %-28s | best\n", "shape", "im2col", "GF/s",
         "F(2,3) ms GF/s [gemm GF/s]", "F(4,3)", "F(6,3)");
  for (size_t s = 0; s < sizeof bshapes / sizeof bshapes[0]; s++) {
    const bshape *b = &bshapes[s];
    if (!strstr(b->name, filter)) continue;
    int64_t H = b->H;
    double flops = 2.0 * b->Co * b->Ci * 9 * H * H * b->N;
    int reps = flops > 100e9 ? 3 : 5;
    sdf_tensor *x = T4(SDF_F32, b->N, b->Ci, H, H), *w = T4(SDF_F32, b->Co, b->Ci, 3, 3);
    sdf_tensor *bias = T1(SDF_F32, b->Co), *y = T4(SDF_F32, b->N, b->Co, H, H);
    fill(x, 1.0f);
    fill(w, 0.02f);
    double t[5], ti = 0;
    if (do_im2col) {
      for (int r = 0; r < reps; r++) {
        double t0 = now();
        conv(x, w, bias, y, 1, 1, b->Co <= 8 ? 0 : 2);
        t[r] = now() - t0;
      }
      ti = median(t, reps);
    }
    printf("%-19s %8.1fms %7.0f |", b->name, ti * 1e3, ti > 0 ? flops / ti * 1e-9 : 0);
    double best = 1e30, tfilt[3];
    int bestm = 0;
    for (int m = 2; m <= 6; m += 2) {
      wino_bufs wb;
      wino_alloc(&wb, m, b->N, b->Ci, b->Co, H, H);
      double tf0 = now();
      wino_filter(&wb, w, m);
      tfilt[m / 2 - 1] = now() - tf0;
      double st[3][5];
      for (int r = 0; r < reps; r++) {
        double tt[3] = {0, 0, 0};
        wino_run(&wb, x, bias, NULL, y, m, 1, tt);
        t[r] = tt[0] + tt[1] + tt[2];
        for (int i = 0; i < 3; i++) st[i][r] = tt[i];
      }
      double tw = median(t, reps), tg = median(st[1], reps);
      double gemm_flops = 2.0 * (double)wb.u->numel * (double)wb.v->dims[2];
      printf(" %6.1fms %5.0f [%3.0f %4.1f/%4.1f]", tw * 1e3, flops / tw * 1e-9,
             gemm_flops / tg * 1e-9, median(st[0], reps) * 1e3,
             median(st[2], reps) * 1e3);
      if (tw < best) best = tw, bestm = m;
      wino_free(&wb);
    }
    printf(" | m=%d (model %d) %.2fx | filter %.0f/%.0f/%.0fms\n", bestm,
           sdfw_choose_m(b->N, b->Ci, b->Co, H, H), ti > 0 ? ti / best : 0,
           tfilt[0] * 1e3, tfilt[1] * 1e3, tfilt[2] * 1e3);
    fflush(stdout);
    tfree(x), tfree(w), tfree(bias), tfree(y);
  }
  static const int64_t mm[][3] = {{8192, 320, 320}, {8192, 1280, 320}, {8192, 320, 1280},
                                  {2048, 640, 640}, {154, 320, 768},   {77, 768, 768},
                                  {77, 3072, 768}};
  for (size_t s = 0; s < sizeof mm / sizeof mm[0] && (!*filter || strstr("matmul", filter)); s++) {
    for (int dt = 0; dt < 3; dt += 1) {
      int64_t M = mm[s][0], N = mm[s][1], K = mm[s][2];
      sdf_tensor *x = T2(SDF_F32, M, K), *w = T2(dt, N, K), *bb = T1(SDF_F32, N);
      sdf_tensor *y = T2(SDF_F32, M, N);
      fill(x, 1.0f);
      fill(w, 0.05f);
      sdf_tensor *in[3] = {x, w, bb};
      double t[5];
      for (int r = 0; r < 5; r++) {
        sdf_op op = mkop(SDF_OP_MATMUL, 3, in, 1, &y, 0, NULL);
        double t0 = now();
        run_op(&sdf_kernel_matmul, &op);
        t[r] = now() - t0;
      }
      double tm = median(t, 5);
      printf("matmul M%-5lld N%-5lld K%-5lld %-4s %7.2fms %6.0f GF/s\n", (long long)M,
             (long long)N, (long long)K, dt == 0 ? "f32" : (dt == 1 ? "f16" : "bf16"),
             tm * 1e3, 2.0 * M * N * K / tm * 1e-9);
      tfree(x), tfree(w), tfree(bb), tfree(y);
    }
  }
  return 0;
}
