/**
 * Placement: which ops run on the fallback backend (the CPU) because the
 * program's backend lacks them (op, dtype, tensor size), and the segments and
 * copies that make such a split plan run: consecutive ops on one side form a
 * segment, and a tensor is copied to a side before a segment reads it there
 * if its current value is on the other side.
 */

import { tensorBytes } from "./lower.ts";
import type { LOp, LTensor } from "./lower.ts";
import type { BackendCapabilities } from "../backends/backend.ts";
import type { Location } from "./plan.ts";

/** Which backend runs an op: the program's own, or its fallback (the CPU backend) for ops the own one lacks. */
export type Side = "primary" | "fallback";

/** A copy of one tensor's bytes between the two backends' copies of a binding slot (same slot, same offset). */
export interface Transfer {
  slot: number;
  offset: number;
  bytes: number;
  to: Side;
}

/** A run of consecutive ops on one backend, preceded by the transfers it needs. */
export interface PlanSegment {
  side: Side;
  plan: Uint8Array;
  before: Transfer[];
}

/**
 * Where ops run when the backend lacks some: segments of the constant and
 * step plans alternate between the backend and its fallback.
 */
export interface Placement {
  constSegments: PlanSegment[];
  /** After the constant plan: hoisted tensors copied to the side that reads them. */
  afterConst: Transfer[];
  stepSegments: PlanSegment[];
  /** After the step plan: outputs computed on the fallback copied back. */
  afterStep: Transfer[];
  /** Op kinds placed on the fallback, with the reason. */
  fallbackOps: { kind: string; label?: string; why: string }[];
}

/**
 * "primary" when the backend runs `op` (or there is no fallback to place it
 * on), else why not.
 */
export function sideOf(
  op: LOp,
  tensors: readonly LTensor[],
  caps: BackendCapabilities,
  allowFallback: boolean,
): "primary" | { why: string } {
  if (op.kind === "reshape") return "primary";
  let why: string | undefined;
  if (!caps.ops.has(op.kind)) why = `the backend has no ${op.kind} kernel`;
  else {
    for (const id of [...op.inputs, ...op.outputs]) {
      const t = tensors[id];
      if (!caps.dtypes.has(t.dtype)) {
        why = `the backend does not read ${t.dtype} tensors`;
        break;
      }
      if (tensorBytes(t) > caps.maxTensorBytes) {
        why = `a ${tensorBytes(t)}-byte tensor exceeds the backend's ${caps.maxTensorBytes}-byte limit`;
        break;
      }
    }
  }
  // Without a fallback the op stays where it is: the backend itself says what it lacks, at compile.
  if (why === undefined || !allowFallback) return "primary";
  return { why };
}

/**
 * Splits `ops` (with their dependency lists) into runs of one side each, and
 * the copies each run needs first. `valid` tracks which side holds a current
 * copy of each arena/hoisted tensor (constants in files and data are on both).
 */
export function segmentPlan(
  ops: LOp[],
  deps: number[][],
  sides: Side[],
  tensors: readonly LTensor[],
  /** Where a storage root lives if it is an activation or hoisted tensor (what can be stale on one side). */
  movable: (root: number) => Location | undefined,
  valid: Map<number, Set<Side>>,
  root: (id: number) => number,
  write: (ops: LOp[], deps: number[][]) => Uint8Array,
): PlanSegment[] {
  const out: PlanSegment[] = [];
  // A reshape stays with the op before it (it is a view and emits nothing).
  const side = [...sides];
  for (let i = 0; i < side.length; i++) if (ops[i].kind === "reshape" && i > 0) side[i] = side[i - 1];
  let start = 0;
  while (start < ops.length) {
    let end = start + 1;
    while (end < ops.length && side[end] === side[start]) end++;
    const s = side[start];
    const before: Transfer[] = [];
    const segOps = ops.slice(start, end);
    for (const op of segOps) {
      for (const t of op.inputs) {
        const r = root(t);
        const loc = movable(r);
        if (!loc) continue;
        const v = valid.get(r);
        if (v && !v.has(s)) {
          before.push({ slot: loc.slot, offset: loc.offset, bytes: tensorBytes(tensors[r]), to: s });
          v.add(s);
        }
      }
      for (const t of op.outputs) if (op.kind !== "reshape") valid.set(root(t), new Set([s]));
    }
    const segDeps = deps.slice(start, end).map((d) => d.filter((x) => x >= start).map((x) => x - start));
    out.push({ side: s, plan: write(segOps, segDeps), before });
    start = end;
  }
  return out;
}
