/* Fused (flash) attention: o = softmax(scale * q k^T [causal]) v per head,
 * without the Nq x Nk score matrix. A work-group holds get_local_size(0)
 * queries of one (batch, head); blocks of BK keys and values are staged in
 * local memory (BK*D floats each, BK <= ATT_MAX_BK chosen by the host from the
 * device's local memory), each work-item keeps its running max m and sum l
 * (online softmax) and accumulates its output row in o itself.
 * Causal masking is top-left aligned: query i sees keys j <= i.
 * Global size (ceil(Nq / WG) * WG, heads, B). */
#define ATT_MAX_BK 32

__kernel void attention(__global const uchar *qb, ulong qo, __global const uchar *kb, ulong ko,
                        __global const uchar *vb, ulong vo, __global uchar *ob, ulong oo, long Nq, long Nk, int D,
                        int heads, float scale, int causal, int BK, __local float *Ks, __local float *Vs) {
  const long i = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
  const int l = get_local_id(0), wg = get_local_size(0);
  const long HD = (long)heads * D;
  const int valid = i < Nq;
  __global const float *q = CPTR(float, qb, qo) + (b * Nq + i) * HD + h * D;
  __global const float *k = CPTR(float, kb, ko) + b * Nk * HD + h * D;
  __global const float *v = CPTR(float, vb, vo) + b * Nk * HD + h * D;
  __global float *o = PTR(float, ob, oo) + (b * Nq + i) * HD + h * D;
  float mx = -INFINITY, sum = 0.0f;
  if (valid)
    for (int c = 0; c < D; c++) o[c] = 0.0f;
  const long qlast = min(Nq, (long)get_group_id(0) * wg + wg) - 1;
  const long kend = causal ? min(Nk, qlast + 1) : Nk;
  float s[ATT_MAX_BK];
  for (long k0 = 0; k0 < kend; k0 += BK) {
    const int nk = (int)min((long)BK, kend - k0);
    for (int e = l; e < nk * D; e += wg) {
      const int j = e / D, c = e % D;
      Ks[e] = k[(k0 + j) * HD + c];
      Vs[e] = v[(k0 + j) * HD + c];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    int lim = nk;
    if (causal) lim = (int)clamp(i - k0 + 1, (long)0, (long)nk);
    if (valid && lim > 0) {
      float bm = -INFINITY;
      for (int j = 0; j < lim; j++) {
        float acc = 0.0f;
        for (int c = 0; c < D; c++) acc = fma(q[c], Ks[j * D + c], acc);
        s[j] = acc * scale;
        bm = fmax(bm, s[j]);
      }
      const float mnew = fmax(mx, bm);
      const float corr = exp(mx - mnew);
      float bs = 0.0f;
      for (int j = 0; j < lim; j++) {
        s[j] = exp(s[j] - mnew);
        bs += s[j];
      }
      sum = sum * corr + bs;
      for (int c = 0; c < D; c++) {
        float acc = o[c] * corr;
        for (int j = 0; j < lim; j++) acc = fma(s[j], Vs[j * D + c], acc);
        o[c] = acc;
      }
      mx = mnew;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (valid) {
    const float inv = 1.0f / sum;
    for (int c = 0; c < D; c++) o[c] *= inv;
  }
}

/* The same for CPU devices, without local memory or barriers (CPU drivers run work-items as
 * loops; the caches hold the keys and values): one query per work-item, keys in blocks of
 * ATT_MAX_BK for the online softmax. Global size (Nq, heads, B). */
__kernel void attention_direct(__global const uchar *qb, ulong qo, __global const uchar *kb, ulong ko,
                               __global const uchar *vb, ulong vo, __global uchar *ob, ulong oo, long Nq, long Nk,
                               int D, int heads, float scale, int causal) {
  const long i = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
  if (i >= Nq) return;
  const long HD = (long)heads * D;
  __global const float *q = CPTR(float, qb, qo) + (b * Nq + i) * HD + h * D;
  __global const float *k = CPTR(float, kb, ko) + b * Nk * HD + h * D;
  __global const float *v = CPTR(float, vb, vo) + b * Nk * HD + h * D;
  __global float *o = PTR(float, ob, oo) + (b * Nq + i) * HD + h * D;
  float mx = -INFINITY, sum = 0.0f, s[ATT_MAX_BK];
  for (int c = 0; c < D; c++) o[c] = 0.0f;
  const long kend = causal ? min(Nk, i + 1) : Nk;
  for (long k0 = 0; k0 < kend; k0 += ATT_MAX_BK) {
    const int lim = (int)min((long)ATT_MAX_BK, kend - k0);
    float bm = -INFINITY;
    for (int j = 0; j < lim; j++) {
      __global const float *kr = k + (k0 + j) * HD;
      float acc = 0.0f;
      for (int c = 0; c < D; c++) acc = fma(q[c], kr[c], acc);
      s[j] = acc * scale;
      bm = fmax(bm, s[j]);
    }
    const float mnew = fmax(mx, bm), corr = exp(mx - mnew);
    float bs = 0.0f;
    for (int j = 0; j < lim; j++) {
      s[j] = exp(s[j] - mnew);
      bs += s[j];
    }
    sum = sum * corr + bs;
    for (int c = 0; c < D; c++) {
      float acc = o[c] * corr;
      for (int j = 0; j < lim; j++) acc = fma(s[j], v[(k0 + j) * HD + c], acc);
      o[c] = acc;
    }
    mx = mnew;
  }
  const float inv = 1.0f / sum;
  for (int c = 0; c < D; c++) o[c] *= inv;
}
