/*
 * AVX-512 flash attention for one (batch, head, block of SDF_ATT512_BQ
 * queries), with the queries in the vector lanes: the query block is packed
 * transposed (qt[c][i], prescaled by scale * log2(e)), so S^T = K Q^T is a
 * sequence of rank-1 updates (broadcast k[j][c], FMA with qt[c]) into a
 * 6-key x 64-query register tile, the online softmax (running max, sum,
 * rescale) is purely lane-wise, and O^T += V^T P^T is another register-tiled
 * product (broadcast v[j][c], FMA with p[j]) into ot[c][i]. No horizontal
 * reductions, no padding of the head dim. See ops_attention.c for the op.
 */
#include <float.h>
#include <immintrin.h>
#include <math.h>

#include "attention.h"
#include "common.h"
#include "transpose_avx512.h"

enum { BQ = SDF_ATT512_BQ, BK = SDF_ATT512_BK, QV = SDF_ATT512_BQ / 16 };

size_t sdf_attention_avx512_scratch(int64_t d) {
  return sizeof(float) * ((size_t)d * BQ * 2 + (size_t)BK * BQ + 2 * BQ);
}

/* 2^x: degree-6 Taylor polynomial of 2^f on [-0.5, 0.5] (rel. error < 2e-7);
 * x <= -150 (and -inf) gives 0. */
SDF_INLINE __m512 exp2_16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-150.0f));
  __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.5403530393381606e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

/* s[r][.] = k[r] . qt for R keys; keys with index > query index (causal:
 * row r is masked in lanes i < ct + r) get -inf; bm = max(bm, rows). */
SDF_INLINE void s_tile(const int R, const float *qt, int d, const float *k, int64_t ldk, float *s, int64_t ct,
                       __m512 *bm) {
  __m512 acc[6][QV];
  for (int r = 0; r < R; r++)
    for (int x = 0; x < QV; x++) acc[r][x] = _mm512_setzero_ps();
  for (int c = 0; c < d; c++) {
    __m512 qv[QV];
    for (int x = 0; x < QV; x++) qv[x] = _mm512_load_ps(qt + (size_t)c * BQ + x * 16);
    for (int r = 0; r < R; r++) {
      __m512 b = _mm512_set1_ps(k[r * ldk + c]);
      for (int x = 0; x < QV; x++) acc[r][x] = _mm512_fmadd_ps(qv[x], b, acc[r][x]);
    }
  }
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int r = 0; r < R; r++) {
    int64_t t = ct + r;
    for (int x = 0; x < QV; x++) {
      if (t > x * 16) {
        int64_t tt = t - x * 16;
        __mmask16 m = _mm512_cmplt_epi32_mask(iota, _mm512_set1_epi32((int)(tt > 16 ? 16 : tt)));
        acc[r][x] = _mm512_mask_mov_ps(acc[r][x], m, _mm512_set1_ps(-INFINITY));
      }
      bm[x] = _mm512_max_ps(bm[x], acc[r][x]);
      _mm512_store_ps(s + r * BQ + x * 16, acc[r][x]);
    }
  }
}

/* ot[c][.] = ot[c][.] * corr + sum_j v[j][c] p[j][.] for C channels. */
SDF_INLINE void pv_tile(const int C, const float *p, int nk, const float *v, int64_t ldv, float *ot, const __m512 *corr) {
  __m512 acc[6][QV];
  for (int c = 0; c < C; c++)
    for (int x = 0; x < QV; x++) acc[c][x] = _mm512_mul_ps(_mm512_load_ps(ot + c * BQ + x * 16), corr[x]);
  for (int j = 0; j < nk; j++) {
    __m512 pv[QV];
    for (int x = 0; x < QV; x++) pv[x] = _mm512_load_ps(p + (size_t)j * BQ + x * 16);
    for (int c = 0; c < C; c++) {
      __m512 b = _mm512_set1_ps(v[j * ldv + c]);
      for (int x = 0; x < QV; x++) acc[c][x] = _mm512_fmadd_ps(pv[x], b, acc[c][x]);
    }
  }
  for (int c = 0; c < C; c++)
    for (int x = 0; x < QV; x++) _mm512_store_ps(ot + c * BQ + x * 16, acc[c][x]);
}

void sdf_attention_avx512(const float *q, const float *k, const float *v, float *out, int64_t ld, int nq, int64_t q0,
                          int64_t kend, int d, float scale, int causal, float *scratch) {
  float *qt = scratch, *ot = qt + (size_t)d * BQ, *s = ot + (size_t)d * BQ, *lsave = s + (size_t)BK * BQ;
  const float qs = scale * 1.44269504088896341f;
  const __m512 vqs = _mm512_set1_ps(qs);
  for (int x = 0; x < QV; x++)
    for (int c0 = 0; c0 < d; c0 += 16) {
      __mmask16 cm = d - c0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (d - c0)) - 1u);
      int dc = d - c0 < 16 ? d - c0 : 16;
      __m512 r[16];
      for (int ii = 0; ii < 16; ii++)
        r[ii] = x * 16 + ii < nq ? _mm512_mul_ps(_mm512_maskz_loadu_ps(cm, q + (x * 16 + ii) * ld + c0), vqs)
                                 : _mm512_setzero_ps();
      tr16x16(r);
      for (int cc = 0; cc < dc; cc++) _mm512_store_ps(qt + (size_t)(c0 + cc) * BQ + x * 16, r[cc]);
    }
  memset(ot, 0, sizeof(float) * (size_t)d * BQ);
  __m512 m[QV], l[QV];
  for (int x = 0; x < QV; x++) {
    m[x] = _mm512_set1_ps(-FLT_MAX);
    l[x] = _mm512_setzero_ps();
  }
  for (int64_t k0 = 0; k0 < kend; k0 += BK) {
    int nk = (int)(kend - k0 < BK ? kend - k0 : BK);
    const float *kb = k + k0 * ld, *vb = v + k0 * ld;
    __m512 bm[QV], corr[QV];
    for (int x = 0; x < QV; x++) bm[x] = _mm512_set1_ps(-INFINITY);
    int64_t ct0 = causal ? k0 - q0 : INT32_MIN;
    int j = 0;
    for (; j + 6 <= nk; j += 6) s_tile(6, qt, d, kb + j * ld, ld, s + (size_t)j * BQ, ct0 + j, bm);
    switch (nk - j) {
    case 5: s_tile(5, qt, d, kb + j * ld, ld, s + (size_t)j * BQ, ct0 + j, bm); break;
    case 4: s_tile(4, qt, d, kb + j * ld, ld, s + (size_t)j * BQ, ct0 + j, bm); break;
    case 3: s_tile(3, qt, d, kb + j * ld, ld, s + (size_t)j * BQ, ct0 + j, bm); break;
    case 2: s_tile(2, qt, d, kb + j * ld, ld, s + (size_t)j * BQ, ct0 + j, bm); break;
    case 1: s_tile(1, qt, d, kb + j * ld, ld, s + (size_t)j * BQ, ct0 + j, bm); break;
    default: break;
    }
    for (int x = 0; x < QV; x++) {
      __m512 mn = _mm512_max_ps(m[x], bm[x]);
      corr[x] = exp2_16(_mm512_sub_ps(m[x], mn));
      l[x] = _mm512_mul_ps(l[x], corr[x]);
      m[x] = mn;
    }
    for (int jj = 0; jj < nk; jj++)
      for (int x = 0; x < QV; x++) {
        float *sp = s + (size_t)jj * BQ + x * 16;
        __m512 e = exp2_16(_mm512_sub_ps(_mm512_load_ps(sp), m[x]));
        _mm512_store_ps(sp, e);
        l[x] = _mm512_add_ps(l[x], e);
      }
    int c = 0;
    for (; c + 6 <= d; c += 6) pv_tile(6, s, nk, vb + c, ld, ot + (size_t)c * BQ, corr);
    switch (d - c) {
    case 5: pv_tile(5, s, nk, vb + c, ld, ot + (size_t)c * BQ, corr); break;
    case 4: pv_tile(4, s, nk, vb + c, ld, ot + (size_t)c * BQ, corr); break;
    case 3: pv_tile(3, s, nk, vb + c, ld, ot + (size_t)c * BQ, corr); break;
    case 2: pv_tile(2, s, nk, vb + c, ld, ot + (size_t)c * BQ, corr); break;
    case 1: pv_tile(1, s, nk, vb + c, ld, ot + (size_t)c * BQ, corr); break;
    default: break;
    }
  }
  for (int x = 0; x < QV; x++) _mm512_store_ps(lsave + x * 16, _mm512_div_ps(_mm512_set1_ps(1.0f), l[x]));
  for (int x = 0; x < QV && x * 16 < nq; x++)
    for (int c0 = 0; c0 < d; c0 += 16) {
      __mmask16 cm = d - c0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (d - c0)) - 1u);
      int dc = d - c0 < 16 ? d - c0 : 16;
      __m512 r[16];
      for (int cc = 0; cc < 16; cc++)
        r[cc] = cc < dc ? _mm512_load_ps(ot + (size_t)(c0 + cc) * BQ + x * 16) : _mm512_setzero_ps();
      tr16x16(r);
      for (int ii = 0; ii < 16 && x * 16 + ii < nq; ii++)
        _mm512_mask_storeu_ps(out + (x * 16 + ii) * ld + c0, cm, _mm512_mul_ps(r[ii], _mm512_set1_ps(lsave[x * 16 + ii])));
    }
}
