/**
 * The WGSL templates behind the heavy ops: the GEMM (workgroup-memory tiles
 * for GPUs, register blocks for CPU-emulated adapters) that matmul, bmm and
 * the implicit-GEMM convolution instantiate, flash attention (both
 * families), and the workgroup reductions of the norms and softmax.
 */

import { LOOP_BUDGET, PARAM_BASE, prelude, type TensorUse } from "./wgsl.ts";

/**
 * The tiled GEMM: C[z][m][n] = sum_k A(z,m,k) B(z,k,n), 64x64 tiles, 16
 * deep, staged through workgroup memory; each of 256 threads computes 4x4.
 * `loads` defines `la(z, m, k)`, `lb(z, k, n)` and `store(z, m, n, acc)`.
 */
export function gemmKernel(uses: readonly TensorUse[], loads: string): string {
  return `${prelude(uses)}
${loads}
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = p(${PARAM_BASE}u); let N = p(${PARAM_BASE + 1}u); let K = p(${PARAM_BASE + 2}u);
  let z = wid.z;
  let m0 = wid.y * 64u; let n0 = wid.x * 64u;
  let tid = lid.y * 16u + lid.x;
  // Four vec4 accumulators (rows lid.y + 16i, columns lid.x + 16j): registers, no indexed private array.
  var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0); var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < K; k0 += 16u) {
    for (var r = 0u; r < 4u; r++) {
      let e = tid + r * 256u;
      // A tile: 64 rows x 16 k, stored k-major; B tile: 16 k x 64 cols.
      let am = e / 16u; let ak = e % 16u;
      var av = 0.0;
      if (m0 + am < M && k0 + ak < K) { av = la(z, m0 + am, k0 + ak); }
      As[ak * 64u + am] = av;
      let bk = e / 64u; let bn = e % 64u;
      var bv = 0.0;
      if (k0 + bk < K && n0 + bn < N) { bv = lb(z, k0 + bk, n0 + bn); }
      Bs[bk * 64u + bn] = bv;
    }
    workgroupBarrier();
    for (var k = 0u; k < 16u; k++) {
      let ra = k * 64u + lid.y; let rb = k * 64u + lid.x;
      let b = vec4<f32>(Bs[rb], Bs[rb + 16u], Bs[rb + 32u], Bs[rb + 48u]);
      acc0 = fma(vec4<f32>(As[ra]), b, acc0);
      acc1 = fma(vec4<f32>(As[ra + 16u]), b, acc1);
      acc2 = fma(vec4<f32>(As[ra + 32u]), b, acc2);
      acc3 = fma(vec4<f32>(As[ra + 48u]), b, acc3);
    }
    workgroupBarrier();
  }
  let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      let m = m0 + lid.y + i * 16u; let n = n0 + lid.x + j * 16u;
      if (m < M && n < N) { store(z, m, n, accs[i][j]); }
    }
  }
}`;
}

/**
 * The GEMM for CPU-emulated adapters (lavapipe, WARP, SwiftShader): no
 * workgroup memory and no barriers — they cost more than they save when the
 * "GPU" is a CPU whose caches already do the staging —, each thread
 * accumulating a 4x4 block in registers (~8x the tiled kernel on lavapipe).
 */
export function gemmRegisterKernel(uses: readonly TensorUse[], loads: string): string {
  return `${prelude(uses)}
${loads}
@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = p(${PARAM_BASE}u); let N = p(${PARAM_BASE + 1}u); let K = p(${PARAM_BASE + 2}u);
  let z = wid.z;
  let m0 = wid.y * 32u + lid.y * 4u; let n0 = wid.x * 32u + lid.x * 4u;
  // Rows/columns past the edge load a valid neighbour and are not stored.
  let ma = min(m0, M - 1u); let mb = min(m0 + 1u, M - 1u); let mc = min(m0 + 2u, M - 1u); let md = min(m0 + 3u, M - 1u);
  let na = min(n0, N - 1u); let nb = min(n0 + 1u, N - 1u); let nc = min(n0 + 2u, N - 1u); let nd = min(n0 + 3u, N - 1u);
  var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0); var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
  for (var k = 0u; k < K; k++) {
    let b = vec4<f32>(lb(z, k, na), lb(z, k, nb), lb(z, k, nc), lb(z, k, nd));
    c0 = fma(vec4<f32>(la(z, ma, k)), b, c0);
    c1 = fma(vec4<f32>(la(z, mb, k)), b, c1);
    c2 = fma(vec4<f32>(la(z, mc, k)), b, c2);
    c3 = fma(vec4<f32>(la(z, md, k)), b, c3);
  }
  let accs = array<vec4<f32>, 4>(c0, c1, c2, c3);
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      if (m0 + i < M && n0 + j < N) { store(z, m0 + i, n0 + j, accs[i][j]); }
    }
  }
}`;
}

/**
 * Which kernels a backend uses: workgroup-memory tiles (GPUs) or register
 * blocks without workgroup memory (CPU-emulated adapters), for GEMMs,
 * convolutions and attention.
 */
export type GemmVariant = "tiled" | "registers";

export function gemm(
  variant: GemmVariant,
  uses: readonly TensorUse[],
  loads: string,
  m: number,
  n: number,
  z: number,
): { code: string; groups: [number, number, number] } {
  const t = variant === "tiled" ? 64 : 32;
  return {
    code: variant === "tiled" ? gemmKernel(uses, loads) : gemmRegisterKernel(uses, loads),
    groups: [Math.ceil(n / t), Math.ceil(m / t), z],
  };
}

/** Row-reduction kernels (softmax, layer norm, group norm): one workgroup of 256 per row/group. */
export const REDUCE = /* wgsl */ `
var<workgroup> red: array<f32, 256>;
fn reduce_sum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn reduce_max(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
`;

/**
 * Attention's running state between key chunks (see {@link attentionKeyChunk}): the output row holds the
 * unnormalised sum o, and a scratch buffer (binding 5, `t4`) the running max and sum (m, l) per query and head.
 * The first chunk starts from zero, the last writes o / l; params PARAM_BASE+4.. = k0, k1, first, last.
 */
const ATTENTION_CHUNK = `
  let k0 = p(${PARAM_BASE + 4}u); let k1 = p(${PARAM_BASE + 5}u);
  let first = p(${PARAM_BASE + 6}u) == 1u; let last = p(${PARAM_BASE + 7}u) == 1u;`;

/** Loads the running state of query `qi` (clamped) and its q row; `obase` is its output row. */
function attentionState(d: number): string {
  return `
  let si = ((b * H + h) * NQ + min(qi, NQ - 1u)) * 2u;
  var q: array<f32, ${d}>;
  var o: array<f32, ${d}>;
  var mx = -3.0e38;
  var l = 0.0;
  if (!first) { mx = ld4(si); l = ld4(si + 1u); }
  for (var c = 0u; c < D; c++) { q[c] = ld0(qbase + c) * scale; o[c] = select(ld3(qbase + c), 0.0, first); }`;
}

/** Stores the state after a chunk: o / l on the last chunk, else o, m and l for the next. */
const ATTENTION_STORE = `
    if (last) {
      let inv = 1.0 / l;
      for (var c = 0u; c < D; c++) { st3(qbase + c, o[c] * inv); }
    } else {
      for (var c = 0u; c < D; c++) { st3(qbase + c, o[c]); }
      st4(si, mx); st4(si + 1u, l);
    }`;

/**
 * Keys per dispatch of the attention kernels, so that one invocation's loop iterations (every loop
 * together) stay within {@link LOOP_BUDGET}: an invocation runs 2D iterations to load and store its
 * rows, then per key D for the score, D for the update and one for the key loop itself, and (tiled)
 * its share of the tile loads, at most ceil(D / 64) + 1 per key.
 */
export function attentionKeyChunk(d: number, variant: GemmVariant): number {
  const perKey = 2 * d + 1 + (variant === "tiled" ? Math.ceil(d / 64) + 1 : 0);
  const keys = Math.max(1, Math.floor((LOOP_BUDGET - 2 * d) / perKey));
  const tk = attentionTile(d);
  return variant === "tiled" && keys >= tk ? keys - (keys % tk) : keys;
}

/** Keys staged per tile of the tiled attention kernel (two tiles of TK x D floats in workgroup memory). */
function attentionTile(d: number): number {
  return Math.max(1, Math.min(32, Math.floor(3072 / d)));
}

/**
 * Flash attention for CPU-emulated adapters: one thread per query reading
 * keys and values straight from the buffers (no workgroup memory, no
 * barriers), online softmax as in the tiled kernel, over the keys [k0, k1)
 * of one dispatch.
 */
export function attentionDirectKernel(
  uses: readonly TensorUse[],
  d: number,
  causal: boolean,
): { code: string; wg: number } {
  const wg = 64;
  const code = `${prelude(uses)}
const D = ${d}u;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let NQ = p(${PARAM_BASE}u); let NK = p(${PARAM_BASE + 1}u); let H = p(${PARAM_BASE + 2}u);
  let scale = pf(${PARAM_BASE + 3}u);${ATTENTION_CHUNK}
  let h = wid.y; let b = wid.z;
  let qi = wid.x * ${wg}u + lid.x;
  if (qi >= NQ) { return; }
  let row = H * D;
  let qbase = (b * NQ + qi) * row + h * D;${attentionState(d)}
  let kend = ${causal ? "min(k1, qi + 1u)" : "k1"};
  for (var j = k0; j < kend; j++) {
    let kb = (b * NK + j) * row + h * D;
    var s = 0.0;
    for (var c = 0u; c < D; c++) { s = fma(q[c], ld1(kb + c), s); }
    let nm = max(mx, s);
    let corr = exp(mx - nm);
    let w = exp(s - nm);
    l = l * corr + w;
    for (var c = 0u; c < D; c++) { o[c] = fma(o[c], corr, w * ld2(kb + c)); }
    mx = nm;
  }
  {${ATTENTION_STORE}
  }
}`;
  return { code, wg };
}

/**
 * Flash attention: one thread per query, the keys [k0, k1) of one dispatch staged in tiles of TK
 * through workgroup memory.
 */
export function attentionKernel(uses: readonly TensorUse[], d: number, causal: boolean): { code: string; wg: number } {
  const tk = attentionTile(d);
  const wg = 64;
  const code = `${prelude(uses)}
const D = ${d}u;
const TK = ${tk}u;
var<workgroup> Ks: array<f32, ${tk * d}>;
var<workgroup> Vs: array<f32, ${tk * d}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let NQ = p(${PARAM_BASE}u); let NK = p(${PARAM_BASE + 1}u); let H = p(${PARAM_BASE + 2}u);
  let scale = pf(${PARAM_BASE + 3}u);${ATTENTION_CHUNK}
  let h = wid.y; let b = wid.z;
  let qi = wid.x * ${wg}u + lid.x;
  let row = H * D;
  let live = qi < NQ;
  let qbase = (b * NQ + min(qi, NQ - 1u)) * row + h * D;${attentionState(d)}
  var kend = k1;
  ${causal ? "kend = min(k1, (wid.x + 1u) * " + wg + "u);" : ""}
  for (var kt = k0; kt < kend; kt += TK) {
    let n = min(TK, kend - kt);
    for (var e = lid.x; e < n * D; e += ${wg}u) {
      let j = e / D; let c = e % D;
      let src = (b * NK + kt + j) * row + h * D + c;
      Ks[e] = ld1(src);
      Vs[e] = ld2(src);
    }
    workgroupBarrier();
    if (live) {
      for (var j = 0u; j < n; j++) {
        ${causal ? "if (kt + j > qi) { break; }" : ""}
        var s = 0.0;
        for (var c = 0u; c < D; c++) { s = fma(q[c], Ks[j * D + c], s); }
        let nm = max(mx, s);
        let corr = exp(mx - nm);
        let w = exp(s - nm);
        l = l * corr + w;
        for (var c = 0u; c < D; c++) { o[c] = fma(o[c], corr, w * Vs[j * D + c]); }
        mx = nm;
      }
    }
    workgroupBarrier();
  }
  if (live) {${ATTENTION_STORE}
  }
}`;
  return { code, wg };
}
