/**
 * Tensor graph IR: model code builds a graph of ops over typed, shaped
 * tensors; the planner lowers and schedules it; a backend runs it.
 *
 * Shapes are inferred and checked as each op is added, so a miswired model
 * fails at the line that miswired it, with both shapes in the message.
 *
 * @example
 * ```ts
 * const g = new Graph();
 * const x = g.input("x", [1, 4, 8, 8]);
 * const w = g.constant("w", [8, 4, 3, 3], "f32", { kind: "data", data: new Float32Array(288) });
 * g.output("y", g.silu(g.conv2d(x, w, undefined, { padding: 1 })));
 * ```
 */

import type { BackendBuffer } from "../backends/mod.ts";

/** ggml's block-quantized weight formats (blocks of 32, K-quants 256, elements over the flattened tensor; see sdflow_backend.h). */
export type QuantDType = "q4_0" | "q4_1" | "q5_0" | "q5_1" | "q8_0" | "q2_k" | "q3_k" | "q4_k" | "q5_k" | "q6_k";

/** Element types of graph tensors: activations are f32; constants (weights) may be any. */
export type DType = "f32" | "f16" | "bf16" | "i32" | QuantDType;

/**
 * Where a constant's bytes come from: memory (a Uint8Array holds quantized blocks), a byte range of a file, or a byte range of a
 * backend buffer that outlives the programs using it (weights computed once and shared by every
 * program of a network, e.g. a LoRA merged into a checkpoint weight).
 */
export type ConstantSource =
  | { kind: "data"; data: Float32Array | Uint16Array | Int32Array | Uint8Array }
  | { kind: "file"; path: string; offset: number; bytes: number }
  | { kind: "buffer"; buffer: BackendBuffer; offset: number; bytes: number };

export type UnaryKind =
  | "silu"
  | "gelu"
  | "gelu_tanh"
  | "quick_gelu"
  | "relu"
  | "leaky_relu"
  | "sigmoid"
  | "tanh";

export type BinaryKind = "add" | "sub" | "mul" | "div";

/** Op kinds of the IR. Winograd stages appear only after lowering. */
export type OpKind =
  | "conv2d"
  | "wino_filter"
  | "wino_input"
  | "wino_gemm"
  | "wino_output"
  | "matmul"
  | "bmm"
  | "attention"
  | "group_norm"
  | "layer_norm"
  | "unary"
  | "geglu"
  | "softmax"
  | "binary"
  | "scale"
  | "concat"
  | "upsample_nearest"
  | "timestep_embedding"
  | "permute"
  | "gather_rows"
  | "copy"
  | "slice"
  | "reshape";

/** A tensor value in a graph. `producer` is -1 for inputs and constants. */
export interface Tensor {
  readonly id: number;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly producer: number;
  readonly kind: "input" | "constant" | "value";
  readonly name?: string;
  readonly source?: ConstantSource;
}

/** One op: inputs and outputs are tensor ids; attributes are op-specific. */
export interface Op {
  readonly id: number;
  readonly kind: OpKind;
  readonly inputs: readonly number[];
  readonly outputs: readonly number[];
  readonly attrs: Readonly<Record<string, number | string | boolean | readonly number[]>>;
  /** The model-level name of what this op computes (for profiles). */
  readonly label?: string;
}

/** A shape or type mismatch found while building a graph. */
export class GraphError extends Error {
  override name = "GraphError";
}

/** Bytes per element of the element dtypes (see {@link dtypeBytes} for any dtype). */
export const DTYPE_BYTES: Readonly<Record<Exclude<DType, QuantDType>, number>> = { f32: 4, f16: 2, bf16: 2, i32: 4 };

/** Elements and bytes of one block of each quantized dtype. */
export const QUANT_BLOCKS: Readonly<Record<QuantDType, { readonly elems: number; readonly bytes: number }>> = {
  q4_0: { elems: 32, bytes: 18 },
  q4_1: { elems: 32, bytes: 20 },
  q5_0: { elems: 32, bytes: 22 },
  q5_1: { elems: 32, bytes: 24 },
  q8_0: { elems: 32, bytes: 34 },
  q2_k: { elems: 256, bytes: 84 },
  q3_k: { elems: 256, bytes: 110 },
  q4_k: { elems: 256, bytes: 144 },
  q5_k: { elems: 256, bytes: 176 },
  q6_k: { elems: 256, bytes: 210 },
};

export function isQuantDType(dtype: string): dtype is QuantDType {
  return Object.hasOwn(QUANT_BLOCKS, dtype);
}

/** Bytes of `n` elements of `dtype` (for a quantized dtype, n must be whole blocks; NaN otherwise). */
export function dtypeBytes(dtype: DType, n: number): number {
  if (isQuantDType(dtype)) {
    const b = QUANT_BLOCKS[dtype];
    return n % b.elems === 0 ? (n / b.elems) * b.bytes : NaN;
  }
  return n * DTYPE_BYTES[dtype];
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const fmt = (s: readonly number[]): string => `[${s.join(", ")}]`;

export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
}

/** A tensor graph under construction. */
export class Graph {
  readonly tensors: Tensor[] = [];
  readonly ops: Op[] = [];
  readonly inputs = new Map<string, number>();
  readonly outputs = new Map<string, number>();
  readonly constants = new Map<string, number>();
  private label?: string;

  /** Runs `fn` with every op it adds labelled `label` (e.g. a module path). */
  scope<T>(label: string, fn: () => T): T {
    const outer = this.label;
    this.label = outer ? `${outer}.${label}` : label;
    try {
      return fn();
    } finally {
      this.label = outer;
    }
  }

  input(name: string, shape: readonly number[], dtype: DType = "f32"): Tensor {
    if (this.inputs.has(name)) throw new GraphError(`duplicate graph input "${name}"`);
    const t = this.newTensor(shape, dtype, -1, "input", name);
    this.inputs.set(name, t.id);
    return t;
  }

  /** A weight or other value fixed for the life of the compiled program. */
  constant(name: string, shape: readonly number[], dtype: DType, source: ConstantSource): Tensor {
    if (this.constants.has(name)) throw new GraphError(`duplicate constant "${name}"`);
    if (isQuantDType(dtype) && shape[shape.length - 1] % QUANT_BLOCKS[dtype].elems !== 0) {
      throw new GraphError(
        `constant "${name}": ${fmt(shape)} ${dtype} rows of ${shape[shape.length - 1]} do not split into blocks of ` +
          `${QUANT_BLOCKS[dtype].elems}`,
      );
    }
    const bytes = dtypeBytes(dtype, numel(shape));
    if (source.kind === "data" && source.data.byteLength !== bytes) {
      throw new GraphError(
        `constant "${name}": ${fmt(shape)} ${dtype} needs ${bytes} bytes, data has ${source.data.byteLength}`,
      );
    }
    if (source.kind !== "data" && source.bytes !== bytes) {
      throw new GraphError(
        `constant "${name}": ${fmt(shape)} ${dtype} needs ${bytes} bytes, ${source.kind} range has ${source.bytes}`,
      );
    }
    if (source.kind === "buffer" && source.offset + source.bytes > source.buffer.size) {
      throw new GraphError(`constant "${name}": bytes [${source.offset}, +${source.bytes}) outside its buffer`);
    }
    const t = this.newTensor(shape, dtype, -1, "constant", name, source);
    this.constants.set(name, t.id);
    return t;
  }

  output(name: string, t: Tensor): void {
    if (this.outputs.has(name)) throw new GraphError(`duplicate graph output "${name}"`);
    this.outputs.set(name, t.id);
  }

  tensor(id: number): Tensor {
    const t = this.tensors[id];
    if (!t) throw new GraphError(`no tensor ${id}`);
    return t;
  }

  // ---- ops -------------------------------------------------------------

  conv2d(x: Tensor, w: Tensor, b?: Tensor, opts: Conv2dOptions = {}): Tensor {
    const [sh, sw] = pair(opts.stride ?? 1);
    const [ph, pw] = pair(opts.padding ?? 0);
    this.expectF32("conv2d", x);
    this.expectRank("conv2d input", x, 4);
    this.expectRank("conv2d weight", w, 4);
    this.expectFloat("conv2d weight", w);
    const [n, ci, h, wd] = x.shape;
    const [co, wci, kh, kw] = w.shape;
    if (wci !== ci) {
      throw new GraphError(`conv2d: input ${fmt(x.shape)} has ${ci} channels, weight ${fmt(w.shape)} expects ${wci}`);
    }
    if (b) this.expectShape("conv2d bias", b, [co]);
    if (sh < 1 || sw < 1 || ph < 0 || pw < 0) {
      throw new GraphError(`conv2d: bad stride ${sh},${sw} / padding ${ph},${pw}`);
    }
    const oh = Math.floor((h + 2 * ph - kh) / sh) + 1;
    const ow = Math.floor((wd + 2 * pw - kw) / sw) + 1;
    if (oh < 1 || ow < 1) {
      throw new GraphError(`conv2d: ${kh}x${kw} kernel does not fit input ${fmt(x.shape)} with padding ${ph},${pw}`);
    }
    const ins = b ? [x, w, b] : [x, w];
    return this.add1("conv2d", ins, [n, co, oh, ow], { stride_h: sh, stride_w: sw, pad_h: ph, pad_w: pw });
  }

  /** PyTorch Linear: y = x @ w^T + b, w is [out, in]. */
  linear(x: Tensor, w: Tensor, b?: Tensor): Tensor {
    this.expectF32("linear", x);
    this.expectRank("linear weight", w, 2);
    this.expectFloat("linear weight", w);
    const k = x.shape[x.shape.length - 1];
    const [nOut, wk] = w.shape;
    if (wk !== k) {
      throw new GraphError(`linear: input ${fmt(x.shape)} has ${k} features, weight ${fmt(w.shape)} expects ${wk}`);
    }
    if (b) this.expectShape("linear bias", b, [nOut]);
    return this.add1("matmul", b ? [x, w, b] : [x, w], [...x.shape.slice(0, -1), nOut], {});
  }

  /** Batched product of activations: a[B,M,K] @ b[B,K,N] (or b[B,N,K]^T). */
  bmm(a: Tensor, b: Tensor, opts: { transB?: boolean; alpha?: number } = {}): Tensor {
    this.expectF32("bmm", a, b);
    this.expectRank("bmm a", a, 3);
    this.expectRank("bmm b", b, 3);
    const transB = opts.transB ?? false;
    const [ba, m, k] = a.shape;
    const [bb, b1, b2] = b.shape;
    const [kb, n] = transB ? [b2, b1] : [b1, b2];
    if (ba !== bb || k !== kb) {
      throw new GraphError(`bmm: ${fmt(a.shape)} x ${fmt(b.shape)}${transB ? "^T" : ""} do not match`);
    }
    return this.add1("bmm", [a, b], [ba, m, n], { trans_b: transB ? 1 : 0, alpha: opts.alpha ?? 1 });
  }

  /** Multi-head attention over q[B,Nq,H*D], k/v[B,Nk,H*D]; never forms the full score matrix. */
  attention(q: Tensor, k: Tensor, v: Tensor, opts: { heads: number; scale?: number; causal?: boolean }): Tensor {
    this.expectF32("attention", q, k, v);
    for (const [nm, t] of [["q", q], ["k", k], ["v", v]] as const) this.expectRank(`attention ${nm}`, t, 3);
    const [b, nq, c] = q.shape;
    if (k.shape[0] !== b || v.shape[0] !== b || k.shape[2] !== c || v.shape[2] !== c || k.shape[1] !== v.shape[1]) {
      throw new GraphError(`attention: q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)} do not match`);
    }
    if (!(opts.heads >= 1) || c % opts.heads !== 0) {
      throw new GraphError(`attention: ${c} channels do not split into ${opts.heads} heads`);
    }
    const d = c / opts.heads;
    return this.add1("attention", [q, k, v], [b, nq, c], {
      heads: opts.heads,
      causal: opts.causal ? 1 : 0,
      scale: opts.scale ?? 1 / Math.sqrt(d),
    });
  }

  groupNorm(x: Tensor, gamma: Tensor, beta: Tensor, opts: { groups: number; eps?: number; silu?: boolean }): Tensor {
    this.expectF32("group_norm", x);
    if (x.shape.length < 2) throw new GraphError(`group_norm: input ${fmt(x.shape)} needs [N, C, ...]`);
    const c = x.shape[1];
    if (c % opts.groups !== 0) {
      throw new GraphError(`group_norm: ${c} channels do not split into ${opts.groups} groups`);
    }
    this.expectShape("group_norm gamma", gamma, [c]);
    this.expectShape("group_norm beta", beta, [c]);
    return this.add1("group_norm", [x, gamma, beta], x.shape, {
      groups: opts.groups,
      silu: opts.silu ? 1 : 0,
      eps: opts.eps ?? 1e-5,
    });
  }

  layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, opts: { eps?: number } = {}): Tensor {
    this.expectF32("layer_norm", x);
    const c = x.shape[x.shape.length - 1];
    this.expectShape("layer_norm gamma", gamma, [c]);
    this.expectShape("layer_norm beta", beta, [c]);
    return this.add1("layer_norm", [x, gamma, beta], x.shape, { eps: opts.eps ?? 1e-5 });
  }

  unary(kind: UnaryKind, x: Tensor): Tensor {
    this.expectF32(kind, x);
    return this.add1("unary", [x], x.shape, { kind });
  }
  silu(x: Tensor): Tensor {
    return this.unary("silu", x);
  }
  gelu(x: Tensor): Tensor {
    return this.unary("gelu", x);
  }

  /** x[..., 2C] -> x[..., :C] * gelu(x[..., C:]) (the SD feed-forward). */
  geglu(x: Tensor): Tensor {
    this.expectF32("geglu", x);
    const c2 = x.shape[x.shape.length - 1];
    if (c2 % 2 !== 0) throw new GraphError(`geglu: last dim of ${fmt(x.shape)} is odd`);
    return this.add1("geglu", [x], [...x.shape.slice(0, -1), c2 / 2], {});
  }

  softmax(x: Tensor, opts: { scale?: number } = {}): Tensor {
    this.expectF32("softmax", x);
    return this.add1("softmax", [x], x.shape, { scale: opts.scale ?? 1 });
  }

  binary(kind: BinaryKind, a: Tensor, b: Tensor): Tensor {
    this.expectF32(kind, a, b);
    return this.add1("binary", [a, b], broadcastShape(kind, a.shape, b.shape), { kind });
  }
  add(a: Tensor, b: Tensor): Tensor {
    return this.binary("add", a, b);
  }
  sub(a: Tensor, b: Tensor): Tensor {
    return this.binary("sub", a, b);
  }
  mul(a: Tensor, b: Tensor): Tensor {
    return this.binary("mul", a, b);
  }
  div(a: Tensor, b: Tensor): Tensor {
    return this.binary("div", a, b);
  }

  /** y = x * mul + add. */
  scale(x: Tensor, mul: number, add = 0): Tensor {
    this.expectF32("scale", x);
    return this.add1("scale", [x], x.shape, { mul, add });
  }

  concat(parts: readonly Tensor[], axis: number): Tensor {
    if (parts.length < 1) throw new GraphError("concat: no inputs");
    this.expectF32("concat", ...parts);
    const r = parts[0].shape.length;
    const ax = axis < 0 ? axis + r : axis;
    if (ax < 0 || ax >= r) throw new GraphError(`concat: axis ${axis} out of range for rank ${r}`);
    let out = parts[0];
    for (let i = 1; i < parts.length; i++) {
      const a = out.shape;
      const b = parts[i].shape;
      if (b.length !== r || a.some((d, j) => j !== ax && d !== b[j])) {
        throw new GraphError(`concat: ${fmt(a)} and ${fmt(b)} differ outside axis ${ax}`);
      }
      const shape = a.slice();
      shape[ax] = a[ax] + b[ax];
      out = this.add1("concat", [out, parts[i]], shape, { axis: ax });
    }
    return out;
  }

  upsampleNearest(x: Tensor, factor = 2): Tensor {
    this.expectF32("upsample_nearest", x);
    this.expectRank("upsample_nearest input", x, 4);
    const [n, c, h, w] = x.shape;
    return this.add1("upsample_nearest", [x], [n, c, h * factor, w * factor], { factor });
  }

  /** Sinusoidal timestep embedding of t[N] (as in the SD UNet). */
  timestepEmbedding(t: Tensor, dim: number, opts: { flipSinToCos?: boolean; maxPeriod?: number } = {}): Tensor {
    this.expectF32("timestep_embedding", t);
    this.expectRank("timestep_embedding input", t, 1);
    if (dim % 2 !== 0) throw new GraphError(`timestep_embedding: dim ${dim} must be even`);
    return this.add1("timestep_embedding", [t], [t.shape[0], dim], {
      dim,
      flip: opts.flipSinToCos === false ? 1 : 0,
      max_period: opts.maxPeriod ?? 10000,
    });
  }

  permute(x: Tensor, perm: readonly number[]): Tensor {
    this.expectF32("permute", x);
    const r = x.shape.length;
    if (perm.length !== r || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
      throw new GraphError(`permute: [${perm.join(", ")}] is not a permutation of rank ${r}`);
    }
    return this.add1("permute", [x], perm.map((p) => x.shape[p]), { perm: perm.slice() });
  }

  /** A view with another shape and the same element count (free: no copy). */
  reshape(x: Tensor, shape: readonly number[]): Tensor {
    const s = shape.slice();
    const infer = s.indexOf(-1);
    if (infer >= 0) s[infer] = numel(x.shape) / -numel(s);
    if (numel(s) !== numel(x.shape) || s.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new GraphError(`reshape: ${fmt(x.shape)} cannot become ${fmt(shape)}`);
    }
    if (x.kind === "constant") {
      // Constants are views of their source bytes; a reshaped constant is a new constant.
      const name = `${x.name}#${s.join("x")}`;
      const existing = this.constants.get(name);
      return existing !== undefined ? this.tensor(existing) : this.constant(name, s, x.dtype, x.source!);
    }
    return this.add1("reshape", [x], s, {}, x.dtype);
  }

  /** Rows of table[V,D] picked by idx[N] (i32): token embeddings. */
  gatherRows(table: Tensor, idx: Tensor): Tensor {
    this.expectRank("gather_rows table", table, 2);
    this.expectFloat("gather_rows table", table);
    this.expectRank("gather_rows indices", idx, 1);
    if (idx.dtype !== "i32") throw new GraphError(`gather_rows: indices must be i32, got ${idx.dtype}`);
    return this.add1("gather_rows", [table, idx], [idx.shape[0], table.shape[1]], {});
  }

  /** A copy as f32 (converts f16/bf16 constants). */
  copy(x: Tensor): Tensor {
    this.expectFloat("copy", x);
    return this.add1("copy", [x], x.shape, {});
  }

  /** x restricted to [start, start+length) along axis. */
  slice(x: Tensor, axis: number, start: number, length: number): Tensor {
    this.expectF32("slice", x);
    const r = x.shape.length;
    const ax = axis < 0 ? axis + r : axis;
    if (ax < 0 || ax >= r || start < 0 || length < 1 || start + length > x.shape[ax]) {
      throw new GraphError(`slice: [${start}, ${start + length}) along axis ${axis} is outside ${fmt(x.shape)}`);
    }
    const shape = x.shape.slice();
    shape[ax] = length;
    return this.add1("slice", [x], shape, { axis: ax, start });
  }

  // ---- internals -------------------------------------------------------

  /** Adds an op with one output (used by the planner for lowered ops too). */
  add1(
    kind: OpKind,
    ins: readonly Tensor[],
    shape: readonly number[],
    attrs: Op["attrs"],
    dtype: DType = "f32",
  ): Tensor {
    if (shape.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new GraphError(`${kind}: output shape ${fmt(shape)} is invalid`);
    }
    const id = this.ops.length;
    const out = this.newTensor(shape, dtype, id, "value");
    this.ops.push({ id, kind, inputs: ins.map((t) => t.id), outputs: [out.id], attrs, label: this.label });
    return out;
  }

  private newTensor(
    shape: readonly number[],
    dtype: DType,
    producer: number,
    kind: Tensor["kind"],
    name?: string,
    source?: ConstantSource,
  ): Tensor {
    if (shape.length > 6) throw new GraphError(`tensor rank ${shape.length} exceeds 6`);
    if (shape.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new GraphError(`${name ?? "tensor"}: shape ${fmt(shape)} is invalid`);
    }
    const t: Tensor = { id: this.tensors.length, shape: shape.slice(), dtype, producer, kind, name, source };
    this.tensors.push(t);
    return t;
  }

  private expectF32(op: string, ...ts: Tensor[]): void {
    for (const t of ts) {
      if (t.dtype !== "f32") {
        throw new GraphError(`${op}: expects f32 activations, got ${t.dtype} ${t.name ?? ""}`.trim());
      }
    }
  }
  private expectFloat(what: string, t: Tensor): void {
    if (t.dtype === "i32") throw new GraphError(`${what}: expects a float tensor, got i32`);
  }
  private expectRank(what: string, t: Tensor, r: number): void {
    if (t.shape.length !== r) throw new GraphError(`${what}: expected rank ${r}, got ${fmt(t.shape)}`);
  }
  private expectShape(what: string, t: Tensor, s: readonly number[]): void {
    if (t.shape.length !== s.length || t.shape.some((d, i) => d !== s[i])) {
      throw new GraphError(`${what}: expected ${fmt(s)}, got ${fmt(t.shape)}`);
    }
  }
}

function pair(v: number | [number, number]): [number, number] {
  return typeof v === "number" ? [v, v] : v;
}

/** NumPy broadcasting of two shapes (right-aligned). */
export function broadcastShape(op: string, a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1;
    const db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new GraphError(`${op}: shapes ${fmt(a)} and ${fmt(b)} do not broadcast`);
    }
    out.push(Math.max(da, db));
  }
  return out;
}
