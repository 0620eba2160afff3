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

import { type ConstantSource, type DType, DTYPE_BYTES, type Graph, numel, type Tensor } from "../engine/graph.ts";

/**
 * Adds the weight named `ldmName` to the graph as a constant and returns it.
 * Throws an Error naming the tensor when it is missing or, if `expectShape` is
 * given, when its shape differs.
 */
export type WeightLookup = (ldmName: string, expectShape?: readonly number[]) => Tensor;

/** What a weight file says about one tensor (models/weights' TensorInfo satisfies this). */
export interface WeightInfo {
  readonly name?: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly source: ConstantSource;
}

/** Anything that can describe a tensor by name; `get` may throw or return undefined when it is missing. */
export interface WeightSource {
  get(name: string): WeightInfo | undefined;
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
    default:
      throw new WeightError(`tensor "${tensorName}": dtype ${dtype} cannot be used as a graph constant`);
  }
}

/**
 * A {@link WeightLookup} that adds constants to `g` from `source`. Each name is
 * added once; asking again returns the same constant.
 */
export function createWeightLookup(g: Graph, source: WeightSource): WeightLookup {
  return (name, expectShape) => {
    const existing = g.constants.get(name);
    let t: Tensor;
    if (existing !== undefined) {
      t = g.tensor(existing);
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
  if (src.kind === "data") {
    view = { kind: "data", data: src.data.subarray(start * rowElems, (start + count) * rowElems) };
  } else {
    const rowBytes = rowElems * DTYPE_BYTES[t.dtype];
    view = { kind: "file", path: src.path, offset: src.offset + start * rowBytes, bytes: count * rowBytes };
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
  return g.linear(x, wt, b);
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
  return g.linear(x, wt, asF32(g, w(`${p}.bias`, [outF])));
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
  return g.conv2d(x, wt, b, { stride: opts.stride ?? 1, padding: opts.padding ?? (k - 1) / 2 });
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
