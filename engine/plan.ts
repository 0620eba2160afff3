/**
 * The planner: lowers a Graph, hoists constant work, plans the activation
 * arena, and serialises two backend plans — a constant plan run once per
 * compiled program (filter transforms, dtype conversions) and the step plan
 * run on every call.
 *
 * Binding slots (buffers handed to the backend at run time):
 *   0 arena (activations, inputs, outputs)   1 hoisted constants
 *   2 in-memory constants (packed)            3.. one mapped file range each
 */

import { SDF_BINARY, SDF_DTYPE, SDF_OP, SDF_UNARY } from "../backends/abi.ts";
import { PlanWriter } from "../backends/plan_writer.ts";
import type { BackendBuffer } from "../backends/backend.ts";
import { type Graph, GraphError, numel } from "./graph.ts";
import {
  DEFAULT_CAPABILITIES,
  type LOp,
  lower,
  type LoweredGraph,
  type LowerOptions,
  type LTensor,
  tensorBytes,
} from "./lower.ts";
import { planArena, rootOf } from "./memory.ts";
import { type Placement, segmentPlan, type Side, sideOf, type Transfer } from "./placement.ts";

export type { Placement, PlanSegment, Side, Transfer } from "./placement.ts";
import { opCost } from "./cost.ts";

export const SLOT_ARENA = 0;
export const SLOT_HOISTED = 1;
export const SLOT_DATA = 2;
export const SLOT_FIRST_FILE = 3;

export interface PlanOptions extends LowerOptions {
  /**
   * Whether ops the backend lacks (by `capabilities`) may run on a fallback
   * backend; without one such an op is an error at planning.
   */
  fallback?: boolean;
  /**
   * Most bytes of Winograd-transformed filters computed once and kept for the
   * program's life (default 0). Filters past the budget are transformed inside
   * the products, block by block while hot in cache. Kept filters are 1.8-7x
   * the size of the weights (SD 1.5's UNet: 8.6 GB for all of them) and, with
   * the fused transform, save no measurable time per SD step (see the README),
   * so by default none are kept; single convs and small models may keep them.
   */
  hoistBudgetBytes?: number;
  /**
   * Transform filters that are not hoisted inside the Winograd products
   * (default true) rather than as a separate stage into a full tensor.
   */
  fuseFilterTransforms?: boolean;
  /**
   * Most bytes of mapped weights the step plan keeps resident from one run to the next (default: all of
   * them). Weights past it, in the order the step first reads them, that one op reads are bound through
   * separate file buffers marked `stream`: the backend may drop each one's pages right after that op
   * (`BackendBuffer.adviseStream`), so they are read again from the page cache every run. Peak RSS then
   * holds about this many bytes of weights instead of the whole network, at the cost of refaulting the
   * rest each run.
   */
  residentWeightBytes?: number;
}

export type BindingSpec =
  | { kind: "arena"; bytes: number }
  | { kind: "hoisted"; bytes: number }
  | { kind: "data"; bytes: number; parts: { tensor: number; offset: number }[] }
  /** `stream`: the weights past `residentWeightBytes`, each read by one op (see PlanOptions). */
  | { kind: "file"; path: string; offset: number; bytes: number; stream?: boolean }
  /** A backend buffer the program binds but does not own (ConstantSource kind "buffer"). */
  | { kind: "buffer"; buffer: BackendBuffer; bytes: number };

export interface Location {
  slot: number;
  offset: number;
}

export interface PlannedOp {
  kind: string;
  /** "fallback" when the op runs on the fallback (CPU) backend. */
  side?: Side;
  label?: string;
  note?: string;
  flops: number;
  bytes: number;
  deps: number[];
}

export interface PlanStats {
  arenaPeakBytes: number;
  hoistedBytes: number;
  constantBytes: number;
  stepOps: number;
  constOps: number;
  winogradConvs: number;
  otherConvs: number;
  stepFlops: number;
  /** Most ops that the dependency graph lets run at once. */
  maxParallelOps: number;
  criticalPathOps: number;
  /** Step ops placed on the fallback backend, and the bytes copied between backends per run. */
  fallbackOps: number;
  transferBytes: number;
}

export interface CompiledPlan {
  lowered: LoweredGraph;
  constPlan?: Uint8Array;
  stepPlan: Uint8Array;
  bindings: BindingSpec[];
  locations: Map<number, Location>;
  constOps: PlannedOp[];
  stepOps: PlannedOp[];
  stats: PlanStats;
  /** Set when some ops run on the fallback backend (then constPlan/stepPlan are not used). */
  placement?: Placement;
}

const DEFAULT_HOIST_BUDGET = 0;

/** Plans `g`. Throws GraphError on a graph the planner cannot place. */
export function plan(g: Graph, opts: PlanOptions = {}): CompiledPlan {
  if (g.outputs.size === 0) throw new GraphError("graph has no outputs");
  const caps = opts.capabilities ?? DEFAULT_CAPABILITIES;
  const alignUp = (n: number): number => Math.ceil(n / caps.alignment) * caps.alignment;
  const lg = lower(g, opts);
  const { tensors } = lg;
  const root = (id: number): number => rootOf(tensors, id);

  // ---- hoisting ------------------------------------------------------
  const constant = new Set<number>(tensors.filter((t) => t.kind === "constant").map((t) => t.id));
  const filterCandidates: { op: number; bytes: number; tiles: number }[] = [];
  const hoistable = new Set<number>();
  lg.ops.forEach((op, i) => {
    if (!op.inputs.every((t) => constant.has(t) || hoistable.has(t))) return;
    if (op.kind === "wino_filter") {
      const gemms = lg.ops.filter((o) => o.kind === "wino_gemm" && o.inputs[0] === op.outputs[0]);
      const tiles = gemms.reduce((t, o) => t + tensors[o.inputs[1]].shape[2], 0);
      filterCandidates.push({ op: i, bytes: tensorBytes(tensors[op.outputs[0]]), tiles });
      return;
    }
    for (const o of op.outputs) hoistable.add(o);
  });
  // Keep transformed filters where recomputing them costs most relative to the conv (fewest tiles).
  filterCandidates.sort((a, b) => a.tiles - b.tiles);
  let budget = opts.hoistBudgetBytes ?? DEFAULT_HOIST_BUDGET;
  let hoistedOps = new Set<number>();
  for (const c of filterCandidates) {
    if (c.bytes > budget) continue;
    budget -= c.bytes;
    hoistedOps.add(c.op);
  }
  if (opts.fuseFilterTransforms ?? true) {
    // Filters left out of the budget are transformed inside the products, block by block
    // while hot in cache, instead of into a full transformed tensor on every run.
    const fusedU = new Map<number, number>();
    for (const c of filterCandidates) {
      if (!hoistedOps.has(c.op)) fusedU.set(lg.ops[c.op].outputs[0], lg.ops[c.op].inputs[0]);
    }
    const kept: LOp[] = [];
    const remap = new Map<number, number>();
    lg.ops.forEach((op, i) => {
      if (op.kind === "wino_filter" && fusedU.has(op.outputs[0])) return;
      remap.set(i, kept.length);
      const w = op.kind === "wino_gemm" ? fusedU.get(op.inputs[0]) : undefined;
      kept.push(
        w === undefined ? op : {
          ...op,
          inputs: [w, op.inputs[1]],
          attrs: { ...op.attrs, fused: 1 },
          note: `${op.note}, filter transform fused`,
        },
      );
    });
    hoistedOps = new Set([...hoistedOps].map((i) => remap.get(i)!));
    lg.ops = kept;
  }
  // Non-filter constant ops: hoist, then drop those feeding only dropped filters.
  lg.ops.forEach((op, i) => {
    if (op.kind !== "wino_filter" && op.outputs.every((o) => hoistable.has(o))) hoistedOps.add(i);
  });
  const constOpsIdx = lg.ops.map((_, i) => i).filter((i) => hoistedOps.has(i));
  const stepOpsIdx = lg.ops.map((_, i) => i).filter((i) => !hoistedOps.has(i));
  const hoistedTensors = new Set<number>();
  for (const i of constOpsIdx) for (const o of lg.ops[i].outputs) hoistedTensors.add(root(o));

  // ---- locations -----------------------------------------------------
  const locations = new Map<number, Location>();
  const bindings: BindingSpec[] = [
    { kind: "arena", bytes: 0 },
    { kind: "hoisted", bytes: 0 },
    { kind: "data", bytes: 0, parts: [] },
  ];
  const data = bindings[SLOT_DATA] as Extract<BindingSpec, { kind: "data" }>;
  const streamed = streamedWeights(lg.ops, stepOpsIdx, tensors, root, opts.residentWeightBytes);
  const fileRanges = new Map<string, { path: string; stream: boolean; ids: number[] }>();
  const bufferSlots = new Map<BackendBuffer, number>();
  let bufferBytes = 0;
  for (const t of tensors) {
    if (t.kind !== "constant" || !t.source) continue;
    if (t.source.kind === "buffer") {
      let slot = bufferSlots.get(t.source.buffer);
      if (slot === undefined) {
        slot = bindings.length;
        bindings.push({ kind: "buffer", buffer: t.source.buffer, bytes: t.source.buffer.size });
        bufferSlots.set(t.source.buffer, slot);
      }
      bufferBytes += t.source.bytes;
      locations.set(t.id, { slot, offset: t.source.offset });
    } else if (t.source.kind === "data") {
      const offset = alignUp(data.bytes);
      data.parts.push({ tensor: t.id, offset });
      data.bytes = offset + t.source.data.byteLength;
      locations.set(t.id, { slot: SLOT_DATA, offset });
    } else {
      const stream = streamed.has(t.id);
      const key = `${stream ? "stream" : "resident"}:${t.source.path}`;
      const r = fileRanges.get(key) ?? { path: t.source.path, stream, ids: [] };
      r.ids.push(t.id);
      fileRanges.set(key, r);
    }
  }
  let fileBytes = 0;
  for (const { path, stream, ids: fileIds } of fileRanges.values()) {
    // One binding per file, or several where the backend's buffers are smaller than the range (a GPU's
    // largest buffer): tensors in file order, a new binding when the next would not fit.
    const src = (id: number) => tensors[id].source as { offset: number; bytes: number };
    const ids = [...fileIds].sort((a, b) => src(a).offset - src(b).offset);
    let group: number[] = [];
    let start = 0;
    let end = 0;
    const flush = () => {
      if (group.length === 0) return;
      const slot = bindings.length;
      bindings.push({ kind: "file", path, offset: start, bytes: end - start, ...(stream ? { stream } : {}) });
      fileBytes += end - start;
      for (const id of group) locations.set(id, { slot, offset: src(id).offset - start });
      group = [];
    };
    for (const id of ids) {
      const { offset, bytes } = src(id);
      if (group.length && Math.max(end, offset + bytes) - start > caps.maxBufferBytes) flush();
      if (group.length === 0) {
        start = offset;
        end = offset + bytes;
      }
      if (bytes > caps.maxBufferBytes) {
        throw new GraphError(
          `${
            tensors[id].name ?? `tensor ${id}`
          }: ${bytes} bytes exceed the backend's largest buffer (${caps.maxBufferBytes})`,
        );
      }
      end = Math.max(end, offset + bytes);
      group.push(id);
    }
    flush();
  }
  let hoistedTop = 0;
  for (const i of constOpsIdx) {
    for (const o of lg.ops[i].outputs) {
      const r = root(o);
      if (locations.has(r)) continue;
      locations.set(r, { slot: SLOT_HOISTED, offset: hoistedTop });
      hoistedTop = alignUp(hoistedTop + tensorBytes(tensors[r]));
    }
  }
  bindings[SLOT_HOISTED].bytes = hoistedTop;

  for (const [name, id] of lg.outputs) {
    const t = tensors[id];
    if (t.kind !== "value") throw new GraphError(`graph output "${name}" is a graph ${t.kind}, not a computed value`);
  }
  const stepOps = stepOpsIdx.map((i) => lg.ops[i]);
  const pinned = new Set<number>([...lg.inputs.values(), ...lg.outputs.values()].map(root));
  const arena = planArena(
    stepOps,
    tensors,
    (r) => tensors[r].kind !== "constant" && !hoistedTensors.has(r),
    pinned,
    caps.alignment,
  );
  for (const [r, offset] of arena.offsets) locations.set(r, { slot: SLOT_ARENA, offset });
  bindings[SLOT_ARENA].bytes = Math.max(arena.peakBytes, caps.alignment);
  const needs = arena.peakBytes + hoistedTop + data.bytes;
  if (needs > caps.memoryBytes) {
    throw new GraphError(
      `the plan needs ${needs} bytes of activations and kept constants, more than the backend's ${caps.memoryBytes}`,
    );
  }

  // ---- serialise -----------------------------------------------------
  const locate = (id: number): Location => {
    const loc = locations.get(root(id));
    if (!loc) throw new GraphError(`internal: tensor ${id} has no location`);
    return loc;
  };
  const constDeps = rawDeps(constOpsIdx.map((i) => lg.ops[i]), root);
  const constPlan = constOpsIdx.length
    ? serialise(constOpsIdx.map((i) => lg.ops[i]), constDeps, tensors, locate, bindings.length)
    : undefined;
  const stepDeps = arena.deps.map((d) => [...d].sort((a, b) => a - b));
  const stepPlan = serialise(stepOps, stepDeps, tensors, locate, bindings.length);
  const constOps = constOpsIdx.map((i) => lg.ops[i]);
  const constSides = constOps.map((op) => sideOf(op, tensors, caps, opts.fallback ?? false));
  const stepSides = stepOps.map((op) => sideOf(op, tensors, caps, opts.fallback ?? false));
  let placement: Placement | undefined;
  const fallbackOps: Placement["fallbackOps"] = [];
  [...constOps, ...stepOps].forEach((op, i) => {
    const s = i < constOps.length ? constSides[i] : stepSides[i - constOps.length];
    if (s !== "primary") fallbackOps.push({ kind: op.kind, label: op.label, why: s.why });
  });
  if (fallbackOps.length > 0) {
    const movable = (r: number): Location | undefined => {
      const loc = locations.get(r);
      return loc && (loc.slot === SLOT_ARENA || loc.slot === SLOT_HOISTED) ? loc : undefined;
    };
    const write = (o: LOp[], d: number[][]) => serialise(o, d, tensors, locate, bindings.length);
    const sideNames = (ss: (Side | { why: string })[]): Side[] =>
      ss.map((x) => (typeof x === "string" ? x : "fallback"));
    const valid = new Map<number, Set<Side>>();
    for (const id of lg.inputs.values()) valid.set(root(id), new Set(["primary"]));
    const constPart = segmentPlan(
      constOps,
      constDeps,
      sideNames(constSides),
      tensors,
      movable,
      valid,
      root,
      write,
    );
    // Hoisted tensors go once to whichever side reads them in the step plan.
    const afterConst: Transfer[] = [];
    const stepSideList = sideNames(stepSides);
    stepOps.forEach((op, i) => {
      for (const t of op.inputs) {
        const r = root(t);
        const loc = locations.get(r);
        if (!loc || loc.slot !== SLOT_HOISTED) continue;
        const v = valid.get(r) ?? new Set<Side>(["primary"]);
        if (!v.has(stepSideList[i])) {
          afterConst.push({ slot: loc.slot, offset: loc.offset, bytes: tensorBytes(tensors[r]), to: stepSideList[i] });
          v.add(stepSideList[i]);
        }
        valid.set(r, v);
      }
    });
    const stepPart = segmentPlan(
      stepOps,
      stepDeps,
      stepSideList,
      tensors,
      movable,
      valid,
      root,
      write,
    );
    const afterStep: Transfer[] = [];
    for (const id of lg.outputs.values()) {
      const r = root(id);
      const loc = locations.get(r)!;
      if (!(valid.get(r)?.has("primary") ?? true)) {
        afterStep.push({ slot: loc.slot, offset: loc.offset, bytes: tensorBytes(tensors[r]), to: "primary" });
      }
    }
    placement = { constSegments: constPart, afterConst, stepSegments: stepPart, afterStep, fallbackOps };
  }

  const describe = (ops: LOp[], deps: number[][]): PlannedOp[] =>
    ops.map((op, i) => {
      const cost = opCost(op, tensors);
      return { kind: op.kind, label: op.label, note: op.note, flops: cost.flops, bytes: cost.bytes, deps: deps[i] };
    });
  const stepDescribed = describe(stepOps, stepDeps);
  stepSides.forEach((s, i) => {
    if (s !== "primary") {
      stepDescribed[i].side = "fallback";
      stepDescribed[i].note = `${stepDescribed[i].note ? stepDescribed[i].note + "; " : ""}on the CPU: ${s.why}`;
    }
  });
  const planned = stepDescribed.filter((_, i) => stepOps[i].kind !== "reshape");
  const { width, depth } = parallelism(stepOps, stepDeps);
  const isConv = (op: LOp): boolean => op.kind === "conv2d";
  let constantBytes = data.bytes + bufferBytes;
  constantBytes += fileBytes;
  return {
    lowered: lg,
    constPlan,
    stepPlan,
    bindings,
    locations,
    constOps: describe(constOps, constDeps),
    placement,
    stepOps: planned,
    stats: {
      arenaPeakBytes: arena.peakBytes,
      hoistedBytes: hoistedTop,
      constantBytes,
      stepOps: planned.length,
      constOps: constOpsIdx.length,
      winogradConvs: lg.ops.filter((o) => o.kind === "wino_output").length,
      otherConvs: lg.ops.filter(isConv).length,
      stepFlops: planned.reduce((a, o) => a + o.flops, 0),
      maxParallelOps: width,
      criticalPathOps: depth,
      fallbackOps: stepSides.filter((s) => s !== "primary").length,
      transferBytes: placement
        ? [...placement.stepSegments.flatMap((x) => x.before), ...placement.afterStep].reduce((a, t) => a + t.bytes, 0)
        : 0,
    },
  };
}

function rawDeps(ops: LOp[], root: (id: number) => number): number[][] {
  const producer = new Map<number, number>();
  return ops.map((op, i) => {
    const deps = new Set<number>();
    for (const t of op.inputs) {
      const p = producer.get(root(t));
      if (p !== undefined) deps.add(p);
    }
    for (const t of op.outputs) producer.set(root(t), i);
    return [...deps].sort((a, b) => a - b);
  });
}

/** Widest level and depth of the dependency DAG (levels by longest path). */
function parallelism(ops: LOp[], deps: number[][]): { width: number; depth: number } {
  const level: number[] = [];
  const counts = new Map<number, number>();
  ops.forEach((op, i) => {
    const l = deps[i].reduce((m, d) => Math.max(m, level[d] + 1), 0);
    level.push(l);
    if (op.kind !== "reshape") counts.set(l, (counts.get(l) ?? 0) + 1);
  });
  return { width: Math.max(0, ...counts.values()), depth: counts.size };
}

/** Writes ops as a backend plan. Reshape ops are views and emit nothing. */
function serialise(
  ops: LOp[],
  deps: number[][],
  tensors: readonly LTensor[],
  locate: (id: number) => Location,
  nBindings: number,
): Uint8Array {
  const w = new PlanWriter(nBindings);
  const tensorIndex = new Map<number, number>();
  const ref = (id: number): number => {
    let idx = tensorIndex.get(id);
    if (idx === undefined) {
      const t = tensors[id];
      const loc = locate(id);
      idx = w.tensor(loc.slot, SDF_DTYPE[t.dtype], loc.offset, t.shape);
      tensorIndex.set(id, idx);
    }
    return idx;
  };
  // Backend op index of each emitted op; reshape ops forward their own deps.
  const emitted: number[][] = [];
  ops.forEach((op, i) => {
    const through = deps[i].flatMap((d) => emitted[d]);
    const uniq = [...new Set(through)].sort((a, b) => a - b);
    if (op.kind === "reshape") {
      emitted.push(uniq);
      return;
    }
    const { code, p, f } = encode(op, tensors);
    const idx = w.op(code, op.inputs.map(ref), op.outputs.map(ref), p, f, uniq);
    emitted.push([idx]);
  });
  return w.finish();
}

/** Tile-row band params of a banded Winograd stage (none for a whole conv). */
function band(a: LOp["attrs"]): number[] {
  return a.rows !== undefined ? [num(a.row0), num(a.rows)] : [];
}

function num(v: unknown): number {
  return typeof v === "boolean" ? (v ? 1 : 0) : Number(v);
}

/** Op code and parameters, in the order sdflow_backend.h documents. */
function encode(op: LOp, tensors: readonly LTensor[]): { code: number; p: number[]; f: number[] } {
  const a = op.attrs;
  switch (op.kind) {
    case "conv2d":
      return { code: SDF_OP.CONV2D, p: [a.stride_h, a.stride_w, a.pad_h, a.pad_w, a.algo ?? 0].map(num), f: [] };
    case "wino_filter":
      return { code: SDF_OP.WINO_FILTER, p: [num(a.m)], f: [] };
    case "wino_input":
      return { code: SDF_OP.WINO_INPUT, p: [a.m, a.pad_h, a.pad_w, ...band(a)].map(num), f: [] };
    case "wino_gemm":
      return { code: SDF_OP.WINO_GEMM, p: a.fused ? [num(a.m), 1] : [num(a.m)], f: [] };
    case "wino_output":
      return { code: SDF_OP.WINO_OUTPUT, p: [a.m, a.has_bias, a.has_residual, ...band(a)].map(num), f: [] };
    case "matmul":
      return { code: SDF_OP.MATMUL, p: [], f: [] };
    case "bmm":
      return { code: SDF_OP.BMM, p: [num(a.trans_b)], f: [num(a.alpha)] };
    case "attention":
      return { code: SDF_OP.ATTENTION, p: [num(a.heads), num(a.causal)], f: [num(a.scale)] };
    case "group_norm":
      return { code: SDF_OP.GROUP_NORM, p: [num(a.groups), num(a.silu)], f: [num(a.eps)] };
    case "layer_norm":
      return { code: SDF_OP.LAYER_NORM, p: [], f: [num(a.eps)] };
    case "unary":
      return { code: SDF_OP.UNARY, p: [SDF_UNARY[a.kind as keyof typeof SDF_UNARY]], f: [] };
    case "geglu":
      return { code: SDF_OP.GEGLU, p: [], f: [] };
    case "softmax":
      return { code: SDF_OP.SOFTMAX, p: [], f: [num(a.scale)] };
    case "binary":
      return { code: SDF_OP.BINARY, p: [SDF_BINARY[a.kind as keyof typeof SDF_BINARY]], f: [] };
    case "scale":
      return { code: SDF_OP.SCALE, p: [], f: [num(a.mul), num(a.add)] };
    case "concat":
      return { code: SDF_OP.CONCAT, p: [num(a.axis)], f: [] };
    case "upsample_nearest":
      return { code: SDF_OP.UPSAMPLE_NEAREST, p: [num(a.factor)], f: [] };
    case "timestep_embedding":
      return { code: SDF_OP.TIMESTEP_EMBEDDING, p: [num(a.dim), num(a.flip)], f: [num(a.max_period)] };
    case "permute":
      return { code: SDF_OP.PERMUTE, p: [...(a.perm as readonly number[])], f: [] };
    case "gather_rows":
      return { code: SDF_OP.GATHER_ROWS, p: [], f: [] };
    case "copy":
      return { code: SDF_OP.COPY, p: [], f: [] };
    case "slice":
      return { code: SDF_OP.SLICE, p: [num(a.axis), num(a.start)], f: [] };
    case "reshape":
      break;
  }
  throw new GraphError(
    `internal: op ${op.kind} has no backend encoding (${numel(tensors[op.outputs[0]].shape)} elems)`,
  );
}

/**
 * The file-mapped weights past `residentBytes` (PlanOptions.residentWeightBytes), by root tensor id:
 * in the order the step ops first read them, those one step op reads and no constant op does. The first
 * `residentBytes` of weights stay resident; none are streamed when `residentBytes` is undefined.
 */
function streamedWeights(
  ops: readonly LOp[],
  stepOpsIdx: readonly number[],
  tensors: readonly LTensor[],
  root: (id: number) => number,
  residentBytes: number | undefined,
): Set<number> {
  const streamed = new Set<number>();
  if (residentBytes === undefined) return streamed;
  if (!(residentBytes >= 0)) throw new GraphError(`residentWeightBytes must be >= 0, got ${residentBytes}`);
  const isFile = (r: number): boolean => tensors[r].kind === "constant" && tensors[r].source?.kind === "file";
  const step = new Set(stepOpsIdx);
  const readers = new Map<number, number>();
  const order: number[] = [];
  ops.forEach((op, i) => {
    for (const r of new Set(op.inputs.map(root))) {
      if (!isFile(r)) continue;
      // A weight a constant op reads (a hoisted transform) is read outside the step: keep it.
      const n = (readers.get(r) ?? 0) + (step.has(i) ? 1 : 2);
      if (!readers.has(r)) order.push(r);
      readers.set(r, n);
    }
  });
  let resident = 0;
  for (const r of order) {
    const bytes = (tensors[r].source as { bytes: number }).bytes;
    if (readers.get(r) === 1 && resident + bytes > residentBytes) streamed.add(r);
    else resident += bytes;
  }
  return streamed;
}
