/**
 * Building blocks shared by the network graph builders (CLIP, UNet, VAE):
 * the weight lookup contract, and the layers every network is made of, written
 * against the tensor graph IR of engine/graph.ts.
 *
 * Networks name their weights by their CompVis/ldm single-file names
 * ("model.diffusion_model.input_blocks.1.0.in_layers.0.weight"); how those
 * names map to a file (safetensors, ckpt, gguf, diffusers folders) is the
 * weight loader's business, behind a {@link WeightLookup}.
 */

import { type ConstantSource, type DType, dtypeBytes, type Graph, numel, type Tensor } from "../engine/graph.ts";
import type { RowRange, WeightDelta } from "./patch.ts";

/**
 * Adds the weight named `ldmName` to the graph as a constant and returns it.
 * Throws an Error naming the tensor when it is missing or, if `expectShape` is
 * given, when its shape differs. `runtimeDeltas`, when present, gives the
 * patches' deltas that the layer using a weight adds to its output at run time
 * (see {@link addRuntimeDeltas}).
 */
export type WeightLookup = ((ldmName: string, expectShape?: readonly number[]) => Tensor) & {
  readonly runtimeDeltas?: (ldmName: string) => readonly WeightDelta[];
};

/** What a weight file says about one tensor (models/weights' TensorInfo satisfies this). */
export interface WeightInfo {
  readonly name?: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly source: ConstantSource;
}

/**
 * Anything that can describe a tensor by name; `get` may throw or return undefined when it is missing.
 * `rows`, when given, returns rows [start, start + count) of a tensor that the file may store in pieces
 * (a diffusers folder's q/k/v of OpenCLIP's fused in_proj), or undefined to slice `get(name)`.
 */
export interface WeightSource {
  get(name: string): WeightInfo | undefined;
  /** Deltas the layer using weight `name` adds at run time (a patched network's). */
  runtimeDeltas?(name: string): readonly WeightDelta[];
  rows?(name: string, start: number, count: number): WeightInfo | undefined;
}

/** A missing or mis-shaped weight. */
export class WeightError extends Error {
  override name = "WeightError";
}

const fmt = (s: readonly number[]): string => `[${s.join(", ")}]`;

/** Maps a file-format dtype spelling ("F16", "f16", "BF16", "float32") to the graph's DType. */
export function graphDType(dtype: string, tensorName: string): DType {
  switch (dtype.toLowerCase()) {
    case "f32":
    case "float32":
    case "float":
      return "f32";
    case "f16":
    case "float16":
    case "half":
      return "f16";
    case "bf16":
    case "bfloat16":
      return "bf16";
    case "i32":
    case "int32":
      return "i32";
    case "q4_0":
    case "q4_1":
    case "q5_0":
    case "q5_1":
    case "q8_0":
    case "q2_k":
    case "q3_k":
    case "q4_k":
    case "q5_k":
    case "q6_k":
      return dtype.toLowerCase() as DType;
    default:
      throw new WeightError(`tensor "${tensorName}": dtype ${dtype} cannot be used as a graph constant`);
  }
}

/**
 * A {@link WeightLookup} that adds constants to `g` from `source`. Each name is
 * added once; asking again returns the same constant. A name `X[a:b]` is rows
 * [a, b) of tensor X's first axis (see {@link constantRows}): the source's
 * `rows` piece when it stores X in pieces, else a view of X.
 */
export function createWeightLookup(g: Graph, source: WeightSource): WeightLookup {
  const lookup = (name: string, expectShape?: readonly number[]): Tensor => {
    const existing = g.constants.get(name);
    let t: Tensor;
    const range = /^(.*)\[(\d+):(\d+)\]$/.exec(name);
    if (existing !== undefined) {
      t = g.tensor(existing);
    } else if (range) {
      const [base, start, end] = [range[1], Number(range[2]), Number(range[3])];
      let piece: WeightInfo | undefined;
      try {
        piece = source.rows?.(base, start, end - start);
      } catch (e) {
        throw new WeightError(`missing weight "${name}": ${e instanceof Error ? e.message : String(e)}`);
      }
      t = piece
        ? g.constant(name, piece.shape, graphDType(piece.dtype, name), piece.source)
        : constantRows(g, lookup(base), start, end - start);
    } else {
      let info: WeightInfo | undefined;
      try {
        info = source.get(name);
      } catch (e) {
        throw new WeightError(`missing weight "${name}": ${e instanceof Error ? e.message : String(e)}`);
      }
      if (!info) throw new WeightError(`missing weight "${name}"`);
      const shape = info.shape.length === 0 ? [1] : info.shape;
      t = g.constant(name, shape, graphDType(info.dtype, name), info.source);
    }
    if (expectShape && (t.shape.length !== expectShape.length || t.shape.some((d, i) => d !== expectShape[i]))) {
      throw new WeightError(`weight "${name}" has shape ${fmt(t.shape)}, expected ${fmt(expectShape)}`);
    }
    return t;
  };
  const runtime = source.runtimeDeltas?.bind(source);
  return runtime ? Object.assign(lookup, { runtimeDeltas: runtime }) : lookup;
}

/** A delta factor as a graph constant of `shape` (its own shape, or a view of it with the same elements). */
function factorConstant(g: Graph, name: string, info: WeightInfo, shape: readonly number[]): Tensor {
  const existing = g.constants.get(name);
  const t = existing !== undefined
    ? g.tensor(existing)
    : g.constant(name, info.shape.length === 0 ? [1] : info.shape, graphDType(info.dtype, name), info.source);
  return numel(t.shape) === numel(shape) && t.shape.join() !== shape.join() ? g.reshape(t, shape) : t;
}

/** How the patched layer applies its weight, for {@link addRuntimeDeltas}. */
export type PatchedLayer =
  | { readonly kind: "linear"; readonly rows?: RowRange }
  | { readonly kind: "conv2d"; readonly stride: number; readonly padding: number };

/**
 * y + Σ scale · up(down(x)) (or scale · D(x) for a dense delta) over the run-time deltas of weight
 * `weightName`: the layer's output when its weight is patched at run time (stable-diffusion.cpp's
 * `at_runtime` LoRA mode). A linear layer runs the factors as linear layers; a k×k convolution runs
 * down as a k×k convolution with the layer's stride and padding, then up as a 1×1 convolution.
 * `layer.rows` picks the deltas of one row range (an OpenCLIP q/k/v third). Returns `y` unchanged
 * when the weight has no run-time deltas.
 */
export function addRuntimeDeltas(
  g: Graph,
  w: WeightLookup,
  weightName: string,
  x: Tensor,
  y: Tensor,
  layer: PatchedLayer,
): Tensor {
  const all = w.runtimeDeltas?.(weightName) ?? [];
  const rows = layer.kind === "linear" ? layer.rows : undefined;
  if (!rows && all.some((d) => d.rows)) {
    throw new WeightError(`${weightName}: a run-time delta on some of its rows, but the layer uses it whole`);
  }
  let out = y;
  all.forEach((d, i) => {
    if (rows && d.rows?.start !== rows.start) return;
    const name = `${weightName}#delta${i}`;
    const outF = layer.kind === "linear" ? y.shape[y.shape.length - 1] : y.shape[1];
    const inF = layer.kind === "linear" ? x.shape[x.shape.length - 1] : x.shape[1];
    let z: Tensor;
    if (layer.kind === "linear") {
      if (d.kind === "dense") {
        z = g.linear(x, factorConstant(g, `${name}.delta`, d.delta, [outF, inF]));
      } else {
        const rank = d.down.shape[0];
        const h = g.linear(x, factorConstant(g, `${name}.down`, d.down, [rank, inF]));
        z = g.linear(h, factorConstant(g, `${name}.up`, d.up, [outF, rank]));
      }
    } else {
      const conv = { stride: layer.stride, padding: layer.padding };
      if (d.kind === "dense") {
        const k = Math.round(Math.sqrt(numel(d.delta.shape) / (outF * inF)));
        z = g.conv2d(x, factorConstant(g, `${name}.delta`, d.delta, [outF, inF, k, k]), undefined, conv);
      } else {
        const rank = d.down.shape[0];
        const k = Math.round(Math.sqrt(numel(d.down.shape) / (rank * inF)));
        const h = g.conv2d(x, factorConstant(g, `${name}.down`, d.down, [rank, inF, k, k]), undefined, conv);
        z = g.conv2d(h, factorConstant(g, `${name}.up`, d.up, [outF, rank, 1, 1]));
      }
    }
    out = g.add(out, d.scale === 1 ? z : g.scale(z, d.scale));
  });
  return out;
}

/**
 * A constant that views rows [start, start+count) of a constant's first axis
 * (no copy: a narrower byte range of the same source). Used to split OpenCLIP's
 * packed in_proj_weight [3d, d] into q/k/v.
 */
export function constantRows(g: Graph, t: Tensor, start: number, count: number): Tensor {
  if (t.kind !== "constant" || !t.source || !t.name) {
    throw new WeightError(`constantRows: tensor ${t.id} is not a constant`);
  }
  const rows = t.shape[0];
  if (start < 0 || count < 1 || start + count > rows) {
    throw new WeightError(`constantRows: rows [${start}, ${start + count}) outside "${t.name}" ${fmt(t.shape)}`);
  }
  const name = `${t.name}[${start}:${start + count}]`;
  const existing = g.constants.get(name);
  if (existing !== undefined) return g.tensor(existing);
  const rowElems = numel(t.shape.slice(1));
  const shape = [count, ...t.shape.slice(1)];
  const src = t.source;
  let view: ConstantSource;
  // Byte offsets of whole elements: in a block format (q8_0, …) a slice must start and end on a block, which
  // holds for rows of a whole number of blocks and for 1-D tensors (a packed q/k/v bias) cut at block multiples.
  const startBytes = dtypeBytes(t.dtype, start * rowElems);
  const countBytes = dtypeBytes(t.dtype, count * rowElems);
  if (!Number.isInteger(startBytes) || !Number.isInteger(countBytes)) {
    throw new WeightError(
      `constantRows: rows [${start}, ${start + count}) of "${t.name}" ${fmt(t.shape)} ${t.dtype} do not fall on ` +
        "whole blocks of its format",
    );
  }
  if (src.kind === "data" && src.data instanceof Uint8Array) {
    view = { kind: "data", data: src.data.subarray(startBytes, startBytes + countBytes) };
  } else if (src.kind === "data") {
    view = { kind: "data", data: src.data.subarray(start * rowElems, (start + count) * rowElems) };
  } else {
    view = { ...src, offset: src.offset + startBytes, bytes: countBytes };
  }
  return g.constant(name, shape, t.dtype, view);
}

const f32Copies = new WeakMap<Graph, Map<number, Tensor>>();

/**
 * The weight as f32: itself, or one `copy` per graph and weight. Used where an
 * op needs f32 operands (binary ops, and norm gamma/beta, which backends take
 * as f32 only, and biases: the CPU backend's Winograd output stage takes an
 * f32 bias only) while checkpoints store f16. The copy depends on constants
 * only, so the planner hoists it out of the per-step plan.
 */
export function asF32(g: Graph, t: Tensor): Tensor {
  if (t.dtype === "f32") return t;
  let m = f32Copies.get(g);
  if (!m) f32Copies.set(g, m = new Map());
  let c = m.get(t.id);
  if (!c) {
    c = g.copy(t);
    m.set(t.id, c);
  }
  return c;
}

// ---- layers ---------------------------------------------------------------

/** PyTorch nn.Linear named `p` (p.weight [out, in], p.bias [out] if `bias`). */
export function linear(
  g: Graph,
  w: WeightLookup,
  p: string,
  x: Tensor,
  outF: number,
  opts: { bias?: boolean; inF?: number } = {},
): Tensor {
  const inF = opts.inF ?? x.shape[x.shape.length - 1];
  const wt = w(`${p}.weight`, [outF, inF]);
  const b = opts.bias === false ? undefined : asF32(g, w(`${p}.bias`, [outF]));
  return addRuntimeDeltas(g, w, `${p}.weight`, x, g.linear(x, wt, b), { kind: "linear" });
}

/** A 1x1 convolution's weight [out, in, 1, 1] viewed as a linear weight [out, in]. */
export function conv1x1AsLinear(
  g: Graph,
  w: WeightLookup,
  p: string,
  x: Tensor,
  outF: number,
): Tensor {
  const inF = x.shape[x.shape.length - 1];
  const wt = g.reshape(w(`${p}.weight`, [outF, inF, 1, 1]), [outF, inF]);
  const y = g.linear(x, wt, asF32(g, w(`${p}.bias`, [outF])));
  return addRuntimeDeltas(g, w, `${p}.weight`, x, y, { kind: "linear" });
}

/** PyTorch nn.Linear whose weight may be stored either as [out, in] or as a [out, in, 1, 1] conv. */
export function linearOrConv1x1(
  g: Graph,
  w: WeightLookup,
  p: string,
  x: Tensor,
  outF: number,
  asConv: boolean,
): Tensor {
  return asConv ? conv1x1AsLinear(g, w, p, x, outF) : linear(g, w, p, x, outF);
}

/** nn.Conv2d named `p` with a k x k kernel. */
export function conv2d(
  g: Graph,
  w: WeightLookup,
  p: string,
  x: Tensor,
  outC: number,
  k: number,
  opts: { stride?: number; padding?: number } = {},
): Tensor {
  const inC = x.shape[1];
  const wt = w(`${p}.weight`, [outC, inC, k, k]);
  const b = asF32(g, w(`${p}.bias`, [outC]));
  const stride = opts.stride ?? 1;
  const padding = opts.padding ?? (k - 1) / 2;
  const y = g.conv2d(x, wt, b, { stride, padding });
  return addRuntimeDeltas(g, w, `${p}.weight`, x, y, { kind: "conv2d", stride, padding });
}

/** GroupNorm named `p` (32 groups unless told), optionally fused with SiLU. */
export function groupNorm(
  g: Graph,
  w: WeightLookup,
  p: string,
  x: Tensor,
  opts: { eps: number; silu?: boolean; groups?: number },
): Tensor {
  const c = x.shape[1];
  return g.groupNorm(x, asF32(g, w(`${p}.weight`, [c])), asF32(g, w(`${p}.bias`, [c])), {
    groups: opts.groups ?? 32,
    eps: opts.eps,
    silu: opts.silu ?? false,
  });
}

/** LayerNorm over the last axis, named `p`. */
export function layerNorm(g: Graph, w: WeightLookup, p: string, x: Tensor, eps = 1e-5): Tensor {
  const c = x.shape[x.shape.length - 1];
  return g.layerNorm(x, asF32(g, w(`${p}.weight`, [c])), asF32(g, w(`${p}.bias`, [c])), { eps });
}

/** [N, C, H, W] -> [N, H*W, C] tokens. */
export function toTokens(g: Graph, x: Tensor): Tensor {
  const [n, c, h, wd] = x.shape;
  return g.reshape(g.permute(x, [0, 2, 3, 1]), [n, h * wd, c]);
}

/** [N, H*W, C] tokens -> [N, C, H, W]. */
export function fromTokens(g: Graph, x: Tensor, h: number, wd: number): Tensor {
  const [n, hw, c] = x.shape;
  if (hw !== h * wd) throw new WeightError(`fromTokens: ${hw} tokens are not ${h}x${wd}`);
  return g.permute(g.reshape(x, [n, h, wd, c]), [0, 3, 1, 2]);
}
