/**
 * The WebGPU kernels: for each op of a plan, the WGSL it runs (generated per
 * dtype and, where it pays, per shape), its parameters and its dispatch size.
 * Shapes are checked here against the op contracts of `sdflow_backend.h`;
 * a mismatch is a BackendError naming the op.
 *
 * Convolutions run directly (implicit GEMM: the im2col matrix is never
 * stored), so the backend asks the planner for no Winograd stages.
 */

import { SDF_DTYPE, SDF_STATUS } from "../abi.ts";
import { BackendError } from "../ffi.ts";
import type { PlanOp, PlanTensor } from "../plan_reader.ts";
import { ACTIVATIONS, elementwise, ELEMENTWISE_WG, PARAM_BASE, prelude, type TensorUse } from "./wgsl.ts";
import {
  attentionDirectKernel,
  attentionKernel,
  attentionKeyChunk,
  gemm,
  type GemmVariant,
  REDUCE,
} from "./templates.ts";

export type { GemmVariant };

/** One dispatch of an op's kernel: its parameters from slot PARAM_BASE (u32 words) and workgroup counts. */
export interface Dispatch {
  params: number[];
  groups: [number, number, number];
}

/** What one op dispatches. */
export interface KernelCall {
  /** WGSL source (pipelines are cached by it). */
  code: string;
  /** Plan tensor indices in binding order (binding i+1). */
  tensors: number[];
  /** Dispatched in order (an op split to bound each invocation's work runs several). */
  dispatches: Dispatch[];
  /** Bytes of a scratch buffer the backend keeps for this op, bound after the tensors (0 or absent: none). */
  scratchBytes?: number;
}

/** Op kinds these kernels implement. */
export const WEBGPU_OPS = [
  "conv2d",
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
  "permute",
  "gather_rows",
  "copy",
  "slice",
] as const;

const f32Bits = (v: number): number => new Uint32Array(new Float32Array([v]).buffer)[0];

function fail(index: number, op: PlanOp, msg: string): never {
  throw new BackendError(SDF_STATUS.E_INVALID, `webgpu: op ${index} (${op.kind}): ${msg}`);
}

/** Groups for `count` threads of `wg`, spread over y when x would pass 65535. */
function spread(count: number, wg: number): [number, number, number] {
  const groups = Math.max(1, Math.ceil(count / wg));
  if (groups <= 65535) return [groups, 1, 1];
  const x = 65535;
  return [x, Math.ceil(groups / x), 1];
}

const use = (t: PlanTensor, write = false): TensorUse => ({ dtype: t.dtype, write });
const FLOAT = new Set<number>([SDF_DTYPE.f32, SDF_DTYPE.f16, SDF_DTYPE.bf16]);

/** Row-major strides of `dims` padded on the left to rank 6. */
function pad6(dims: readonly number[]): number[] {
  return [...Array(6 - dims.length).fill(1), ...dims];
}
function strides(dims: readonly number[]): number[] {
  const s = new Array(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

/** The kernel call of plan op `index`, or a BackendError naming what is wrong. */
export function kernelFor(
  index: number,
  op: PlanOp,
  tensors: readonly PlanTensor[],
  variant: GemmVariant = "tiled",
): KernelCall {
  const call = singleOrSplit(index, op, tensors, variant);
  if ("dispatches" in call) return call;
  const { params, groups, ...rest } = call;
  return { ...rest, dispatches: [{ params, groups }] };
}

/** An op's kernel with one dispatch (params, groups), or already split into several. */
type OneOrMore = KernelCall | (Omit<KernelCall, "dispatches"> & Dispatch);

function singleOrSplit(
  index: number,
  op: PlanOp,
  tensors: readonly PlanTensor[],
  variant: GemmVariant,
): OneOrMore {
  const ins = op.ins.map((t) => tensors[t]);
  const outs = op.outs.map((t) => tensors[t]);
  const arity = (nin: number[], nout: number) => {
    if (!nin.includes(ins.length) || outs.length !== nout) {
      fail(index, op, `expects ${nin.join(" or ")} inputs and ${nout} output(s), got ${ins.length} and ${outs.length}`);
    }
  };
  const needParams = (n: number, nf = 0) => {
    if (op.p.length < n || op.f.length < nf) fail(index, op, `needs ${n} int and ${nf} float params`);
  };
  const f32Only = (...ts: PlanTensor[]) => {
    for (const t of ts) if (t.dtype !== SDF_DTYPE.f32) fail(index, op, "activations must be f32");
  };
  const floatT = (t: PlanTensor) => {
    if (!FLOAT.has(t.dtype)) fail(index, op, "weights must be f32, f16 or bf16");
  };
  const sameCount = (a: PlanTensor, b: PlanTensor) => {
    if (a.count !== b.count) fail(index, op, `input has ${a.count} elements, output ${b.count}`);
  };
  const all = [...op.ins, ...op.outs];
  for (const t of [...ins, ...outs]) {
    const size = t.dtype === SDF_DTYPE.f16 || t.dtype === SDF_DTYPE.bf16 ? 2 : 4;
    if (t.offset % size !== 0) {
      fail(index, op, `a tensor at byte ${t.offset} is not aligned to its ${size}-byte elements`);
    }
  }
  const uses = [...ins.map((t) => use(t)), ...outs.map((t) => use(t, true))];
  const ew = (count: number, body: string, params: number[] = [], extra = ""): OneOrMore => ({
    code: elementwise(uses, body, extra),
    tensors: all,
    params: [count, ...params],
    groups: spread(count, ELEMENTWISE_WG),
  });
  const P = (k: number) => `pf(${PARAM_BASE + k}u)`;
  const o = ins.length; // index of the first output in binding order

  switch (op.kind) {
    case "conv2d": {
      arity([2, 3], 1);
      needParams(4);
      const [x, w, b] = ins;
      const y = outs[0];
      floatT(w);
      f32Only(x, y, ...(b ? [b] : []));
      if (x.dims.length !== 4 || w.dims.length !== 4 || y.dims.length !== 4) fail(index, op, "tensors must be 4-D");
      const [n, ci, h, wd] = x.dims;
      const [co, wci, kh, kw] = w.dims;
      const [sh, sw, ph, pw] = op.p;
      const oh = Math.floor((h + 2 * ph - kh) / sh) + 1;
      const ow = Math.floor((wd + 2 * pw - kw) / sw) + 1;
      if (wci !== ci || sh < 1 || sw < 1 || ph < 0 || pw < 0) fail(index, op, "weight or stride/padding mismatch");
      if (y.dims.join() !== [n, co, oh, ow].join()) {
        fail(index, op, `output must be [${[n, co, oh, ow]}], got [${y.dims}]`);
      }
      if (b && b.count !== co) fail(index, op, `bias must have ${co} values`);
      const bias = b ? `v += ld2(m);` : "";
      const loads = `
const CI = ${ci}u; const H = ${h}u; const W = ${wd}u; const KH = ${kh}u; const KW = ${kw}u;
const OW = ${ow}u; const SH = ${sh}u; const SW = ${sw}u; const PH = ${ph}u; const PW = ${pw}u; const CO = ${co}u;
fn la(z: u32, m: u32, k: u32) -> f32 { return ld1(m * CI * KH * KW + k); }
fn lb(z: u32, k: u32, n: u32) -> f32 {
  let c = k / (KH * KW); let r = k % (KH * KW);
  let ih = i32((n / OW) * SH + r / KW) - i32(PH);
  let iw = i32((n % OW) * SW + r % KW) - i32(PW);
  if (ih < 0 || iw < 0 || ih >= i32(H) || iw >= i32(W)) { return 0.0; }
  return ld0(((z * CI + c) * H + u32(ih)) * W + u32(iw));
}
fn store(z: u32, m: u32, n: u32, acc: f32) { var v = acc; ${bias} st${o}((z * CO + m) * ${oh * ow}u + n, v); }`;
      return { ...gemm(variant, uses, loads, co, oh * ow, n), tensors: all, params: [co, oh * ow, ci * kh * kw] };
    }
    case "matmul": {
      arity([2, 3], 1);
      const [x, w, b] = ins;
      const y = outs[0];
      floatT(w);
      f32Only(x, y, ...(b ? [b] : []));
      if (w.dims.length !== 2) fail(index, op, "weight must be [N, K]");
      const [nOut, k] = w.dims;
      if (x.dims.at(-1) !== k || y.dims.at(-1) !== nOut || x.count / k !== y.count / nOut) {
        fail(index, op, `x [${x.dims}] @ w[${w.dims}]^T does not give y [${y.dims}]`);
      }
      if (b && b.count !== nOut) fail(index, op, `bias must have ${nOut} values`);
      const m = x.count / k;
      const loads = `
fn la(z: u32, m: u32, k: u32) -> f32 { return ld0(m * ${k}u + k); }
fn lb(z: u32, k: u32, n: u32) -> f32 { return ld1(n * ${k}u + k); }
fn store(z: u32, m: u32, n: u32, acc: f32) { var v = acc; ${b ? "v += ld2(n);" : ""} st${o}(m * ${nOut}u + n, v); }`;
      return { ...gemm(variant, uses, loads, m, nOut, 1), tensors: all, params: [m, nOut, k] };
    }
    case "bmm": {
      arity([2], 1);
      const [a, bt] = ins;
      const y = outs[0];
      f32Only(a, bt, y);
      const trans = op.p[0] ?? 0;
      const alpha = op.f[0] ?? 1;
      if (a.dims.length !== 3 || bt.dims.length !== 3 || y.dims.length !== 3) fail(index, op, "tensors must be 3-D");
      const [bb, m, k] = a.dims;
      const n = trans ? bt.dims[1] : bt.dims[2];
      const kb = trans ? bt.dims[2] : bt.dims[1];
      if (bt.dims[0] !== bb || kb !== k || y.dims.join() !== [bb, m, n].join()) {
        fail(index, op, `a [${a.dims}] @ b [${bt.dims}]${trans ? "^T" : ""} does not give y [${y.dims}]`);
      }
      const lb = trans ? `ld1(z * ${n * k}u + n * ${k}u + k)` : `ld1(z * ${k * n}u + k * ${n}u + n)`;
      const loads = `
fn la(z: u32, m: u32, k: u32) -> f32 { return ld0(z * ${m * k}u + m * ${k}u + k); }
fn lb(z: u32, k: u32, n: u32) -> f32 { return ${lb}; }
fn store(z: u32, m: u32, n: u32, acc: f32) { st${o}(z * ${m * n}u + m * ${n}u + n, acc * pf(${PARAM_BASE + 3}u)); }`;
      return { ...gemm(variant, uses, loads, m, n, bb), tensors: all, params: [m, n, k, f32Bits(alpha)] };
    }
    case "attention": {
      arity([3], 1);
      needParams(1);
      const [q, k, v] = ins;
      const y = outs[0];
      f32Only(q, k, v, y);
      const heads = op.p[0];
      const causal = (op.p[1] ?? 0) === 1;
      if (q.dims.length !== 3 || k.dims.length !== 3 || heads < 1 || q.dims[2] % heads) {
        fail(index, op, "q, k, v must be [B, N, H*D]");
      }
      const [b, nq, c] = q.dims;
      const nk = k.dims[1];
      if (k.dims.join() !== v.dims.join() || k.dims[0] !== b || k.dims[2] !== c || y.dims.join() !== q.dims.join()) {
        fail(index, op, "k and v must match q's batch and width, o q's shape");
      }
      const d = c / heads;
      if (d > 1024) fail(index, op, `head size ${d} exceeds 1024`);
      const scale = op.f[0] ?? 1 / Math.sqrt(d);
      // The running max and sum between key chunks live in a scratch buffer bound after the tensors (t4).
      const withState = [...uses, { dtype: SDF_DTYPE.f32, write: true }];
      const { code, wg } = variant === "tiled"
        ? attentionKernel(withState, d, causal)
        : attentionDirectKernel(withState, d, causal);
      const chunk = attentionKeyChunk(d, variant);
      const dispatches: Dispatch[] = [];
      for (let k0 = 0; k0 < nk; k0 += chunk) {
        const k1 = Math.min(nk, k0 + chunk);
        dispatches.push({
          params: [nq, nk, heads, f32Bits(scale), k0, k1, k0 === 0 ? 1 : 0, k1 === nk ? 1 : 0],
          groups: [Math.ceil(nq / wg), heads, b],
        });
      }
      return { code, tensors: all, dispatches, scratchBytes: b * heads * nq * 2 * 4 };
    }
    case "group_norm": {
      arity([3], 1);
      needParams(1, 1);
      const [x, g, bt] = ins;
      const y = outs[0];
      f32Only(x, y);
      floatT(g);
      floatT(bt);
      const groups = op.p[0];
      const [n, c] = x.dims;
      if (x.dims.length < 2 || groups < 1 || c % groups || g.count !== c || bt.count !== c) {
        fail(index, op, `x [${x.dims}] with ${groups} groups and ${g.count} gammas`);
      }
      sameCount(x, y);
      const spatial = x.count / (n * c);
      const per = (c / groups) * spatial;
      const silu = (op.p[1] ?? 0) === 1;
      const code = `${prelude(uses)}
${REDUCE}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let lid = lid3.x;
  let PER = ${per}u; let S = ${spatial}u; let CG = ${c / groups}u;
  let base = wid.x * PER;
  let g = wid.x % ${groups}u;
  var s = 0.0;
  for (var i = lid; i < PER; i += 256u) { s += ld0(base + i); }
  let mean = reduce_sum(lid, s) / f32(PER);
  var q = 0.0;
  for (var i = lid; i < PER; i += 256u) { let d = ld0(base + i) - mean; q = fma(d, d, q); }
  let rstd = inverseSqrt(reduce_sum(lid, q) / f32(PER) + pf(${PARAM_BASE + 1}u));
  for (var i = lid; i < PER; i += 256u) {
    let ch = g * CG + i / S;
    var v = (ld0(base + i) - mean) * rstd * ld1(ch) + ld2(ch);
    ${silu ? "v = v / (1.0 + exp(-v));" : ""}
    st3(base + i, v);
  }
}`;
      return { code, tensors: all, params: [0, f32Bits(op.f[0])], groups: [n * groups, 1, 1] };
    }
    case "layer_norm": {
      arity([3], 1);
      needParams(0, 1);
      const [x, g, bt] = ins;
      const y = outs[0];
      f32Only(x, y);
      floatT(g);
      floatT(bt);
      const c = x.dims.at(-1)!;
      if (g.count !== c || bt.count !== c) fail(index, op, `gamma and beta must have ${c} values`);
      sameCount(x, y);
      const code = `${prelude(uses)}
${REDUCE}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let lid = lid3.x;
  let C = ${c}u;
  let row = wid.x + wid.y * nw.x;
  if (row >= p(${PARAM_BASE}u)) { return; }
  let base = row * C;
  var s = 0.0;
  for (var i = lid; i < C; i += 256u) { s += ld0(base + i); }
  let mean = reduce_sum(lid, s) / f32(C);
  var q = 0.0;
  for (var i = lid; i < C; i += 256u) { let d = ld0(base + i) - mean; q = fma(d, d, q); }
  let rstd = inverseSqrt(reduce_sum(lid, q) / f32(C) + pf(${PARAM_BASE + 1}u));
  for (var i = lid; i < C; i += 256u) { st3(base + i, (ld0(base + i) - mean) * rstd * ld1(i) + ld2(i)); }
}`;
      const rows = x.count / c;
      return { code, tensors: all, params: [rows, f32Bits(op.f[0])], groups: spread(rows, 1) };
    }
    case "softmax": {
      arity([1], 1);
      f32Only(ins[0], outs[0]);
      sameCount(ins[0], outs[0]);
      const c = ins[0].dims.at(-1)!;
      const rows = ins[0].count / c;
      const code = `${prelude(uses)}
${REDUCE}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let lid = lid3.x;
  let C = ${c}u;
  let row = wid.x + wid.y * nw.x;
  if (row >= p(${PARAM_BASE}u)) { return; }
  let base = row * C;
  let sc = pf(${PARAM_BASE + 1}u);
  var m = -3.0e38;
  for (var i = lid; i < C; i += 256u) { m = max(m, ld0(base + i) * sc); }
  let mx = reduce_max(lid, m);
  var s = 0.0;
  for (var i = lid; i < C; i += 256u) { s += exp(ld0(base + i) * sc - mx); }
  let inv = 1.0 / reduce_sum(lid, s);
  for (var i = lid; i < C; i += 256u) { st1(base + i, exp(ld0(base + i) * sc - mx) * inv); }
}`;
      return { code, tensors: all, params: [rows, f32Bits(op.f[0] ?? 1)], groups: spread(rows, 1) };
    }
    case "unary": {
      arity([1], 1);
      needParams(1);
      f32Only(ins[0], outs[0]);
      sameCount(ins[0], outs[0]);
      if (op.p[0] < 0 || op.p[0] > 7) fail(index, op, `unknown kind ${op.p[0]}`);
      return ew(outs[0].count, `st1(i, unary_(${op.p[0]}u, ld0(i)));`, [], ACTIVATIONS);
    }
    case "geglu": {
      arity([1], 1);
      f32Only(ins[0], outs[0]);
      const c = outs[0].dims.at(-1)!;
      if (ins[0].dims.at(-1) !== 2 * c || ins[0].count !== 2 * outs[0].count) fail(index, op, "x must be [..., 2C]");
      return ew(
        outs[0].count,
        `let r = i / ${c}u; let c = i % ${c}u; st1(i, ld0(r * ${2 * c}u + c) * gelu_(ld0(r * ${2 * c}u + ${c}u + c)));`,
        [],
        ACTIVATIONS,
      );
    }
    case "scale": {
      arity([1], 1);
      needParams(0, 2);
      f32Only(ins[0], outs[0]);
      sameCount(ins[0], outs[0]);
      return ew(outs[0].count, `st1(i, fma(ld0(i), ${P(1)}, ${P(2)}));`, [
        f32Bits(op.f[0]),
        f32Bits(op.f[1]),
      ]);
    }
    case "binary": {
      arity([2], 1);
      needParams(1);
      const [a, b] = ins;
      const y = outs[0];
      f32Only(a, b, y);
      if (op.p[0] < 0 || op.p[0] > 3) fail(index, op, `unknown kind ${op.p[0]}`);
      const yd = pad6(y.dims);
      const ad = pad6(a.dims);
      const bd = pad6(b.dims);
      if (y.dims.length < Math.max(a.dims.length, b.dims.length)) fail(index, op, "output rank too small");
      for (let k = 0; k < 6; k++) {
        if ((ad[k] !== 1 && ad[k] !== yd[k]) || (bd[k] !== 1 && bd[k] !== yd[k]) || yd[k] !== Math.max(ad[k], bd[k])) {
          fail(index, op, `shapes [${a.dims}] and [${b.dims}] do not broadcast to [${y.dims}]`);
        }
      }
      const as = strides(ad).map((s, k) => (ad[k] === 1 ? 0 : s));
      const bs = strides(bd).map((s, k) => (bd[k] === 1 ? 0 : s));
      const expr = ["x + w", "x - w", "x * w", "x / w"][op.p[0]];
      // Same shapes: no index arithmetic.
      if (a.count === y.count && b.count === y.count) {
        return ew(y.count, `let x = ld0(i); let w = ld1(i); st2(i, ${expr});`);
      }
      return ew(
        y.count,
        `var r = i; var ia = 0u; var ib = 0u;
  for (var k = 5; k >= 0; k--) {
    let d = p(${PARAM_BASE + 1}u + u32(k)); let c = r % d; r = r / d;
    ia += c * p(${PARAM_BASE + 7}u + u32(k)); ib += c * p(${PARAM_BASE + 13}u + u32(k));
  }
  let x = ld0(ia); let w = ld1(ib); st2(i, ${expr});`,
        [...yd, ...as, ...bs],
      );
    }
    case "concat": {
      arity([2], 1);
      needParams(1);
      const [a, b] = ins;
      const y = outs[0];
      const axis = op.p[0];
      if (axis < 0 || axis >= y.dims.length || a.dims.length !== y.dims.length || b.dims.length !== y.dims.length) {
        fail(index, op, "axis out of range or ranks differ");
      }
      if (a.dtype !== y.dtype || b.dtype !== y.dtype || y.dtype !== SDF_DTYPE.f32) {
        fail(index, op, "tensors must be f32");
      }
      for (let k = 0; k < y.dims.length; k++) {
        const want = k === axis ? a.dims[k] + b.dims[k] : a.dims[k];
        if (y.dims[k] !== want || (k !== axis && b.dims[k] !== a.dims[k])) fail(index, op, "shapes do not concatenate");
      }
      const inner = y.dims.slice(axis + 1).reduce((s, d) => s * d, 1);
      const la = a.dims[axis] * inner;
      const lb = b.dims[axis] * inner;
      return ew(
        y.count,
        `let o = i / ${la + lb}u; let j = i % ${la + lb}u;
  if (j < ${la}u) { st2(i, ld0(o * ${la}u + j)); } else { st2(i, ld1(o * ${lb}u + j - ${la}u)); }`,
      );
    }
    case "slice": {
      arity([1], 1);
      needParams(2);
      const [x] = ins;
      const y = outs[0];
      const [axis, start] = op.p;
      if (x.dtype !== SDF_DTYPE.f32 || y.dtype !== SDF_DTYPE.f32) fail(index, op, "tensors must be f32");
      if (axis < 0 || axis >= x.dims.length || y.dims.length !== x.dims.length) fail(index, op, "axis out of range");
      if (start < 0 || start + y.dims[axis] > x.dims[axis]) fail(index, op, "slice exceeds the input");
      const inner = x.dims.slice(axis + 1).reduce((s, d) => s * d, 1);
      const ly = y.dims[axis] * inner;
      const lx = x.dims[axis] * inner;
      return ew(y.count, `let o = i / ${ly}u; let j = i % ${ly}u; st1(i, ld0(o * ${lx}u + ${start * inner}u + j));`);
    }
    case "permute": {
      arity([1], 1);
      const [x] = ins;
      const y = outs[0];
      const r = x.dims.length;
      if (x.dtype !== SDF_DTYPE.f32 || y.dtype !== SDF_DTYPE.f32) fail(index, op, "tensors must be f32");
      if (op.p.length !== r || [...op.p].sort().some((v, k) => v !== k)) fail(index, op, "not a permutation");
      if (op.p.some((d, k) => y.dims[k] !== x.dims[d])) fail(index, op, "output shape does not match");
      const xs = strides(x.dims);
      const ydims = pad6(y.dims);
      const src = [...Array(6 - r).fill(0), ...op.p.map((d) => xs[d])];
      return ew(
        y.count,
        `var r = i; var ix = 0u;
  for (var k = 5; k >= 0; k--) { let d = p(${PARAM_BASE + 1}u + u32(k)); ix += (r % d) * p(${
          PARAM_BASE + 7
        }u + u32(k)); r = r / d; }
  st1(i, ld0(ix));`,
        [...ydims, ...src],
      );
    }
    case "upsample_nearest": {
      arity([1], 1);
      needParams(1);
      const [x] = ins;
      const y = outs[0];
      f32Only(x, y);
      const s = op.p[0];
      const [n, c, h, w] = x.dims;
      if (x.dims.length !== 4 || s < 1 || y.dims.join() !== [n, c, h * s, w * s].join()) {
        fail(index, op, `output must be [${[n, c, h * s, w * s]}]`);
      }
      return ew(
        y.count,
        `let ow = i % ${w * s}u; let oh = (i / ${w * s}u) % ${h * s}u; let nc = i / ${w * s * h * s}u;
  st1(i, ld0((nc * ${h}u + oh / ${s}u) * ${w}u + ow / ${s}u));`,
      );
    }
    case "gather_rows": {
      arity([2], 1);
      const [table, idx] = ins;
      const y = outs[0];
      floatT(table);
      if (idx.dtype !== SDF_DTYPE.i32) fail(index, op, "indices must be i32");
      if (table.dims.length !== 2 || y.dims.join() !== [idx.count, table.dims[1]].join()) {
        fail(index, op, `output must be [${idx.count}, ${table.dims[1]}]`);
      }
      const [v, d] = table.dims;
      // An index out of range gives NaN rows (the network's finite check then names the problem).
      return ew(
        y.count,
        `let r = ldi1(i / ${d}u); if (r < 0 || r >= ${v}) { st2(i, bitcast<f32>(0x7fc00000u)); return; }
  st2(i, ld0(u32(r) * ${d}u + i % ${d}u));`,
      );
    }
    case "copy": {
      arity([1], 1);
      floatT(ins[0]);
      if (outs[0].dtype !== SDF_DTYPE.f32) fail(index, op, "output must be f32");
      sameCount(ins[0], outs[0]);
      return ew(outs[0].count, `st1(i, ld0(i));`);
    }
  }
  throw new BackendError(
    SDF_STATUS.E_UNSUPPORTED,
    `webgpu: op ${index} (${op.kind}) is not implemented by this backend`,
  );
}
