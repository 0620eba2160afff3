/**
 * One small plan per op kind, compiled when the backend is created: a kernel
 * that does not compile on this adapter (a driver bug, a missing feature) is
 * found then — named, and either left to the CPU fallback or an error — not
 * in the middle of a generation.
 */

import { SDF_DTYPE, SDF_OP } from "../abi.ts";
import { PlanWriter } from "../plan_writer.ts";

type Spec = { ins: [number, number[]][]; outs: number[][]; p?: number[]; f?: number[] };

const F = SDF_DTYPE.f32;
/** Per op kind: inputs (dtype, dims), outputs (f32 dims), params. */
const SPECS: Record<string, Spec> = {
  conv2d: { ins: [[F, [1, 2, 4, 4]], [F, [2, 2, 3, 3]], [F, [2]]], outs: [[1, 2, 4, 4]], p: [1, 1, 1, 1, 0] },
  matmul: { ins: [[F, [2, 4]], [SDF_DTYPE.f16, [3, 4]], [F, [3]]], outs: [[2, 3]] },
  bmm: { ins: [[F, [1, 2, 4]], [F, [1, 4, 3]]], outs: [[1, 2, 3]], p: [0], f: [1] },
  attention: { ins: [[F, [1, 2, 8]], [F, [1, 2, 8]], [F, [1, 2, 8]]], outs: [[1, 2, 8]], p: [2, 1], f: [0.5] },
  group_norm: { ins: [[F, [1, 4, 2, 2]], [F, [4]], [F, [4]]], outs: [[1, 4, 2, 2]], p: [2, 1], f: [1e-5] },
  layer_norm: { ins: [[F, [2, 4]], [F, [4]], [F, [4]]], outs: [[2, 4]], f: [1e-5] },
  unary: { ins: [[F, [8]]], outs: [[8]], p: [1] },
  geglu: { ins: [[F, [2, 8]]], outs: [[2, 4]] },
  softmax: { ins: [[F, [2, 4]]], outs: [[2, 4]], f: [1] },
  binary: { ins: [[F, [2, 4]], [F, [4]]], outs: [[2, 4]], p: [0] },
  scale: { ins: [[F, [8]]], outs: [[8]], f: [2, 1] },
  concat: { ins: [[F, [2, 2]], [F, [2, 3]]], outs: [[2, 5]], p: [1] },
  upsample_nearest: { ins: [[F, [1, 1, 2, 2]]], outs: [[1, 1, 4, 4]], p: [2] },
  permute: { ins: [[F, [2, 3]]], outs: [[3, 2]], p: [1, 0] },
  gather_rows: { ins: [[SDF_DTYPE.bf16, [4, 2]], [SDF_DTYPE.i32, [3]]], outs: [[3, 2]] },
  copy: { ins: [[SDF_DTYPE.f16, [4]]], outs: [[4]] },
  slice: { ins: [[F, [2, 4]]], outs: [[2, 2]], p: [1, 1] },
};

/** A one-op plan of `kind` on small shapes (binding 0 holds every tensor, 256-byte aligned). */
export function selfCheckPlan(kind: string): Uint8Array {
  const spec = SPECS[kind];
  const w = new PlanWriter(1);
  let at = 0;
  const t = (dtype: number, dims: number[]) => {
    const i = w.tensor(0, dtype, at, dims);
    at += 256 * Math.ceil((dims.reduce((a, b) => a * b, 1) * 4) / 256);
    return i;
  };
  const ins = spec.ins.map(([d, dims]) => t(d, dims));
  const outs = spec.outs.map((dims) => t(F, dims));
  w.op(SDF_OP[kind.toUpperCase() as keyof typeof SDF_OP], ins, outs, spec.p ?? [], spec.f ?? []);
  return w.finish();
}

/** The op kinds with a self-check plan. */
export const SELF_CHECK_KINDS: readonly string[] = Object.keys(SPECS);
