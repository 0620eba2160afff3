/**
 * Lowering: turns a model's Graph into the flat op list a backend runs.
 *
 * - dead ops (not reachable from an output) are dropped;
 * - eligible 3x3 stride-1 convolutions become the four Winograd stages, with
 *   the tile size chosen per shape (see chooseWinograd);
 * - a residual add that is a Winograd conv's only consumer is fused into the
 *   output transform (saves one full pass over the activation);
 * - ops whose inputs are all constant are marked for hoisting: they run once
 *   per compiled program, not per run (filter transforms, dtype conversions).
 */

import { type DType, dtypeBytes, type Graph, numel, type OpKind, type Tensor } from "./graph.ts";
import type { BackendCapabilities } from "../backends/backend.ts";
import { cpuCapabilities } from "../backends/cpu/capabilities.ts";

export interface LTensor {
  id: number;
  shape: readonly number[];
  dtype: DType;
  kind: "input" | "constant" | "value";
  name?: string;
  source?: Tensor["source"];
  /** For reshape views: the tensor whose storage this one shares. */
  aliasOf?: number;
}

export interface LOp {
  kind: OpKind;
  inputs: number[];
  outputs: number[];
  attrs: Record<string, number | string | boolean | readonly number[]>;
  label?: string;
  /** Why this op was lowered the way it was (shown by `--profile`, which groups Winograd ops by tile). */
  note?: string;
  /** Writes only part of its output; the other parts come from sibling ops (Winograd bands). */
  partial?: boolean;
}

export interface LoweredGraph {
  tensors: LTensor[];
  ops: LOp[];
  inputs: Map<string, number>;
  outputs: Map<string, number>;
}

export type WinogradChoice = "auto" | "off" | 2 | 4 | 6;

export interface LowerOptions {
  /** "auto" picks F(m,3) per shape; a number forces it for every eligible conv; "off" disables. */
  winograd?: WinogradChoice;
  /**
   * Most bytes of Winograd intermediates (transformed input + products) per
   * band: a conv whose intermediates exceed it runs as bands of tile rows,
   * which bounds memory and keeps each band's data closer to the caches.
   * Default: the backend's (`capabilities.conv.bandBytes`; the CPU's is 48 MiB); Infinity disables banding.
   */
  bandBytes?: number;
  /** What the target backend runs and prefers (default: the CPU backend's). */
  capabilities?: BackendCapabilities;
  /** Fallback conv algorithm: auto (backend decides), direct, or im2col+GEMM. */
  conv?: "auto" | "direct" | "im2col";
}

/**
 * F(m,3) tile size for a 3x3 stride-1 conv producing n images of oh x ow, or
 * 0 when Winograd should not run: the backend's own choice (its capabilities'
 * cost model; the CPU backend's by default) unless `choice` forces one.
 */
export function chooseWinograd(
  n: number,
  ci: number,
  co: number,
  oh: number,
  ow: number,
  choice: WinogradChoice,
  capabilities: BackendCapabilities = DEFAULT_CAPABILITIES,
): 0 | 2 | 4 | 6 {
  const conv = capabilities.conv;
  if (choice === "off" || conv.kind !== "winograd") return 0;
  if (choice !== "auto") return conv.tiles.includes(choice) ? choice : 0;
  return conv.choose(n, ci, co, oh, ow);
}

/** Lowering and planning without a backend at hand (tests, estimates) assume the CPU backend's. */
export const DEFAULT_CAPABILITIES: BackendCapabilities = cpuCapabilities();

const CONV_ALGO = { auto: 0, direct: 1, im2col: 2 } as const;

/** Lowers `g` for a backend. Does not modify `g`. */
export function lower(g: Graph, opts: LowerOptions = {}): LoweredGraph {
  const choice = opts.winograd ?? "auto";
  const caps = opts.capabilities ?? DEFAULT_CAPABILITIES;
  const defaultBand = caps.conv.kind === "winograd" ? caps.conv.bandBytes : Infinity;
  const algo = CONV_ALGO[opts.conv ?? "auto"];
  const tensors: LTensor[] = g.tensors.map((t) => ({
    id: t.id,
    shape: t.shape,
    dtype: t.dtype,
    kind: t.kind,
    name: t.name,
    source: t.source,
  }));
  const live = liveOps(g);
  const consumers = new Map<number, number[]>();
  for (const op of g.ops) {
    if (!live[op.id]) continue;
    for (const i of op.inputs) consumers.set(i, [...(consumers.get(i) ?? []), op.id]);
  }
  const graphOutputs = new Set(g.outputs.values());
  const newValue = (shape: number[]): number => {
    const id = tensors.length;
    tensors.push({ id, shape, dtype: "f32", kind: "value" });
    return id;
  };

  const ops: LOp[] = [];
  /** Adds fused into a conv: op id of the add -> skip it, its output is the conv's. */
  const fusedAdds = new Set<number>();

  for (const op of g.ops) {
    if (!live[op.id] || fusedAdds.has(op.id)) continue;
    const inputs = [...op.inputs];
    if (op.kind === "reshape") {
      tensors[op.outputs[0]].aliasOf = inputs[0];
      ops.push({ kind: "reshape", inputs, outputs: [...op.outputs], attrs: {}, label: op.label });
      continue;
    }
    if (op.kind !== "conv2d") {
      ops.push({ kind: op.kind, inputs, outputs: [...op.outputs], attrs: { ...op.attrs }, label: op.label });
      continue;
    }
    const [x, w, b] = inputs.map((i) => tensors[i]);
    const y = tensors[op.outputs[0]];
    const [co, ci, kh, kw] = w.shape;
    const a = op.attrs;
    const eligible = kh === 3 && kw === 3 && a.stride_h === 1 && a.stride_w === 1 && w.kind === "constant";
    const m = eligible ? chooseWinograd(x.shape[0], ci, co, y.shape[2], y.shape[3], choice, caps) : 0;
    if (m === 0) {
      const why = !eligible
        ? `${kh}x${kw} stride ${a.stride_h}: not a 3x3 stride-1 conv`
        : caps.conv.kind === "direct"
        ? "the backend runs 3x3 convs directly"
        : `Winograd does not pay for ${ci}->${co} @${y.shape[2]}x${y.shape[3]}`;
      ops.push({
        kind: "conv2d",
        inputs,
        outputs: [...op.outputs],
        attrs: { ...a, algo },
        label: op.label,
        note: why,
      });
      continue;
    }
    const tile = m + 2;
    const [n] = x.shape;
    const tilesH = Math.ceil(y.shape[2] / m);
    const tilesW = Math.ceil(y.shape[3] / m);
    const u = newValue([tile * tile, co, ci]);
    // Fuse `conv + residual` when the conv's only consumer is an add of the same shape.
    let out = y.id;
    let residual: number | undefined;
    const users = consumers.get(y.id) ?? [];
    if (users.length === 1 && !graphOutputs.has(y.id)) {
      const add = g.ops[users[0]];
      if (add.kind === "binary" && add.attrs.kind === "add") {
        const other = add.inputs[0] === y.id ? add.inputs[1] : add.inputs[0];
        // The residual must already exist where the conv runs (op order is topological).
        const before = g.tensors[other].producer < op.id;
        if (other !== y.id && before && sameShape(tensors[other].shape, y.shape)) {
          residual = other;
          out = add.outputs[0];
          fusedAdds.add(add.id);
        }
      }
    }
    const label = op.label;
    const bytesPerRow = tile * tile * (ci + co) * n * tilesW * 4;
    const rowsPerBand = Math.max(1, Math.min(tilesH, Math.floor((opts.bandBytes ?? defaultBand) / bytesPerRow)));
    const bands = Math.ceil(tilesH / rowsPerBand);
    const why = `F(${m},3): ${ci}->${co} @${y.shape[2]}x${y.shape[3]}, ${n * tilesH * tilesW} tiles` +
      (bands > 1 ? ` in ${bands} bands` : "") + (residual !== undefined ? ", residual add fused" : "");
    ops.push({ kind: "wino_filter", inputs: [w.id], outputs: [u], attrs: { m }, label, note: why });
    for (let row0 = 0; row0 < tilesH; row0 += rowsPerBand) {
      const rows = Math.min(rowsPerBand, tilesH - row0);
      const tiles = n * rows * tilesW;
      const band: Record<string, number> = bands > 1 ? { row0, rows } : {};
      const v = newValue([tile * tile, ci, tiles]);
      const prod = newValue([tile * tile, co, tiles]);
      ops.push({
        kind: "wino_input",
        inputs: [x.id],
        outputs: [v],
        attrs: { m, pad_h: a.pad_h, pad_w: a.pad_w, ...band },
        label,
        note: why,
      });
      ops.push({
        kind: "wino_gemm",
        inputs: [u, v],
        outputs: [prod],
        // The share of the conv's direct FLOPs this band computes (for cost reports).
        attrs: { m, conv_out: [n, co, Math.min(rows * m, y.shape[2] - row0 * m), y.shape[3]], conv_ci: ci },
        label,
        note: why,
      });
      const outIns = [prod];
      if (b) outIns.push(b.id);
      if (residual !== undefined) outIns.push(residual);
      ops.push({
        kind: "wino_output",
        inputs: outIns,
        outputs: [out],
        attrs: { m, has_bias: b ? 1 : 0, has_residual: residual !== undefined ? 1 : 0, ...band },
        label,
        note: why,
        partial: bands > 1,
      });
    }
  }
  return { tensors, ops, inputs: new Map(g.inputs), outputs: new Map(g.outputs) };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Marks ops that contribute to some graph output. */
function liveOps(g: Graph): boolean[] {
  const live = new Array<boolean>(g.ops.length).fill(false);
  const need = new Set<number>(g.outputs.values());
  for (let i = g.ops.length - 1; i >= 0; i--) {
    const op = g.ops[i];
    if (op.outputs.some((o) => need.has(o))) {
      live[i] = true;
      for (const t of op.inputs) need.add(t);
    }
  }
  return live;
}

/** Bytes a tensor occupies. */
export function tensorBytes(t: LTensor): number {
  return dtypeBytes(t.dtype, numel(t.shape));
}
