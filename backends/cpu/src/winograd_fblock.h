/* The fused WINO_GEMM filter transform (see sdfw_fblock_fn in winograd.h),
 * written once for a GCC vector type; the including file defines
 *   WT        vector of FB_VL floats (winograd_tx.h already included for it)
 *   FB_VL     lanes per vector
 *   FB_WIDEN(dst, src, dtype, n)   widen n f16 / bf16 values to f32 (quantized
 *   weights are dequantized by sdfq_to_f32 instead).
 * Lanes are consecutive (co, ci) pairs of a 6-row panel in its packed order
 * (pair P = c*h + i: input channel ci0 + c, output row i), so every
 * transformed value k is one contiguous vector store into plane k. The taps
 * are first copied into a tap-major panel-order table (9 scalar moves per
 * pair: several times cheaper than gathers on AMD cores). */
#ifndef SDF_CPU_WINOGRAD_FBLOCK_H
#define SDF_CPU_WINOGRAD_FBLOCK_H

static inline __attribute__((always_inline)) void fblock_m(
    const int m, const sdf_tensor *w, int64_t co0, int64_t mb, int64_t ci0, int64_t kc,
    int64_t ps, float *dst, float *tmp) {
  const int A = m + 2;
  const int64_t Ci = w->dims[1], n9 = kc * 9, tstride = SDFW_FBLOCK_TAPS(kc);
  float *taps = tmp;                   /* [9][tstride] */
  float *wide = tmp + 9 * tstride;     /* [6][n9] widened 16-bit weights */
  for (int64_t p0 = 0; p0 < mb; p0 += 6) {
    const int64_t h = sdfg_min(6, mb - p0), np = h * kc;
    const int64_t e0 = ((co0 + p0) * Ci + ci0) * 9;
    const float *src;
    int64_t rs; /* floats between the panel's rows in src */
    if (w->dtype == SDF_F32) {
      src = (const float *)w->data + e0;
      rs = Ci * 9;
    } else if (sdfq_is_quant(w->dtype)) {
      for (int64_t i = 0; i < h; i++) sdfq_to_f32(wide + i * n9, w->data, w->dtype, e0 + i * Ci * 9, n9);
      src = wide;
      rs = n9;
    } else {
      /* The next panel's rows are fetched while this one is transformed. */
      const int64_t hn = sdfg_min(6, mb - p0 - 6);
      const char *nx = (const char *)((const uint16_t *)w->data + e0 + 6 * Ci * 9);
      for (int64_t i = 0; i < hn; i++)
        for (int64_t off = 0; off < n9 * 2; off += 64) __builtin_prefetch(nx + i * Ci * 18 + off);
      for (int64_t i = 0; i < h; i++)
        FB_WIDEN(wide + i * n9, (const uint16_t *)w->data + e0 + i * Ci * 9, w->dtype, n9);
      src = wide;
      rs = n9;
    }
    /* Weights mostly come from DRAM (read once per T block): prefetch each
     * row ~1 KB ahead, the h interleaved streams defeat the hardware. */
    for (int64_t c = 0; c < kc; c++)
      for (int64_t i = 0; i < h; i++) {
        if ((c & 1) == 0) __builtin_prefetch(src + i * rs + (c + 28) * 9);
        const float *s = src + i * rs + c * 9;
        float *t = taps + c * h + i;
        for (int a = 0; a < 9; a++) t[a * tstride] = s[a];
      }
    const int64_t npv = sdfg_rup(np, FB_VL);
    for (int a = 0; a < 9; a++)
      for (int64_t P = np; P < npv; P++) taps[a * tstride + P] = 0.0f;
    /* The last vector may run up to FB_VL - 1 floats past the panel: into
     * the next panel (written after it) or the plane's padding (ps >=
     * mb*kc + 16). */
    float *d = dst + p0 * kc;
    for (int64_t P0 = 0; P0 < np; P0 += FB_VL) {
      WT g[9], t[8][3];
      for (int a = 0; a < 9; a++) memcpy(&g[a], taps + a * tstride + P0, sizeof(WT));
      for (int l = 0; l < 3; l++) sdfw_g(m, &g[l], 3, &t[0][l], 3);
      for (int r = 0; r < A; r++) {
        WT o[8];
        sdfw_g(m, t[r], 1, o, 1);
        for (int c = 0; c < A; c++) memcpy(d + (r * A + c) * ps + P0, &o[c], sizeof(WT));
      }
    }
  }
}

static void fblock_dispatch(int m, const sdf_tensor *w, int64_t co0, int64_t mb, int64_t ci0,
                            int64_t kc, int64_t ps, float *dst, float *tmp) {
  switch (m) {
  case 2: fblock_m(2, w, co0, mb, ci0, kc, ps, dst, tmp); break;
  case 4: fblock_m(4, w, co0, mb, ci0, kc, ps, dst, tmp); break;
  default: fblock_m(6, w, co0, mb, ci0, kc, ps, dst, tmp); break;
  }
}

#endif
