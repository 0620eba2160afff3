/**
 * Weight merges (W' = W + Σ ΔW) run by the backend: one MERGE_LOW_RANK op per weight, in plans of
 * a few hundred weights whose ops the backend runs concurrently on all its threads. The deltas of
 * one weight become one product: their scaled up factors side by side ([R, Σ rank], zero outside a
 * delta's rows) times their down factors stacked ([Σ rank, I]); dense deltas are summed into one
 * [R, I] term. W is read where it lies (a mapping of its checkpoint range, or its backend buffer),
 * and the result is written once, in W's dtype, into the buffer the network then binds. Only the
 * factors (a LoRA's size in float32) pass through JavaScript.
 */

import { type Backend, type BackendBuffer, PlanWriter, SDF_DTYPE, SDF_OP } from "../backends/mod.ts";
import type { WeightInfo } from "./nn.ts";
import { PatchError, type WeightDelta } from "./patch.ts";
import { readWeightF32 } from "./weight_values.ts";

/** The backend op this module needs; backends without it merge in JavaScript. */
export const MERGE_OP_NAME = "merge_low_rank";

/** One weight to merge. */
export interface MergeItem {
  readonly name: string;
  readonly info: WeightInfo;
  readonly deltas: readonly WeightDelta[];
}

/** Factor bytes (float32) gathered per plan: bounds what JavaScript holds at once. */
const PLAN_FACTOR_BYTES = 64 << 20;
const ALIGN = 64;

const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);
const alignUp = (n: number): number => Math.ceil(n / ALIGN) * ALIGN;
const DTYPES: Readonly<Record<string, number>> = {
  f32: SDF_DTYPE.f32,
  float32: SDF_DTYPE.f32,
  f16: SDF_DTYPE.f16,
  bf16: SDF_DTYPE.bf16,
};

/** Bytes of a weight of a mergeable dtype (f32, f16, bf16). */
const storedBytes = (info: WeightInfo): number =>
  numel(info.shape) * (DTYPES[info.dtype.toLowerCase()] === SDF_DTYPE.f32 ? 4 : 2);

/** The merge of one weight as the op's operands: up [R, K], down [K, I], optional dense [R, I]. */
interface Operands {
  readonly rows: number;
  readonly inner: number;
  readonly rank: number;
  readonly up: Float32Array;
  readonly down: Float32Array;
  readonly dense?: Float32Array;
}

function operands(item: MergeItem): Operands {
  const rows = item.info.shape[0];
  const inner = numel(item.info.shape) / rows;
  const lowRank = item.deltas.filter((d) => d.kind === "low_rank");
  // Dense-only merges still pass one zero rank (the op's product is then exactly zero).
  const rank = Math.max(1, lowRank.reduce((k, d) => k + d.down.shape[0], 0));
  const up = new Float32Array(rows * rank);
  const down = new Float32Array(rank * inner);
  let dense: Float32Array | undefined;
  let k0 = 0;
  for (const d of item.deltas) {
    const r = d.rows ?? { start: 0, count: rows };
    if (d.kind === "dense") {
      const values = readWeightF32(d.delta);
      dense ??= new Float32Array(rows * inner);
      const off = r.start * inner;
      for (let i = 0; i < values.length; i++) dense[off + i] += d.scale * values[i];
      continue;
    }
    const k = d.down.shape[0];
    const u = readWeightF32(d.up);
    for (let o = 0; o < r.count; o++) {
      for (let j = 0; j < k; j++) up[(r.start + o) * rank + k0 + j] = d.scale * u[o * k + j];
    }
    down.set(readWeightF32(d.down), k0 * inner);
    k0 += k;
  }
  return { rows, inner, rank, up, down, dense };
}

/**
 * Merges `items` on `backend` (which must list {@link MERGE_OP_NAME}); `done` receives each merged
 * weight (a `buffer` source in one of the returned buffers, which the caller owns and frees).
 */
export async function mergeOnBackend(
  backend: Backend,
  items: readonly MergeItem[],
  done: (name: string, merged: WeightInfo) => void,
): Promise<BackendBuffer[]> {
  const kept: BackendBuffer[] = [];
  let group: { item: MergeItem; ops: Operands }[] = [];
  let bytes = 0;
  const flush = async () => {
    if (group.length === 0) return;
    kept.push(await runGroup(backend, group, done));
    group = [];
    bytes = 0;
  };
  try {
    for (const item of items) {
      const dtype = DTYPES[item.info.dtype.toLowerCase()];
      if (dtype === undefined) {
        throw new PatchError(
          `${item.name} is ${item.info.dtype}: a LoRA cannot be merged into quantized weights; ` +
            `use --lora-apply-mode at_runtime`,
        );
      }
      const ops = operands(item);
      group.push({ item, ops });
      bytes += (ops.up.length + ops.down.length + (ops.dense?.length ?? 0)) * 4;
      if (bytes >= PLAN_FACTOR_BYTES) await flush();
    }
    await flush();
  } catch (e) {
    for (const b of kept) b.free();
    throw e;
  }
  return kept;
}

/** One plan: the group's factors (and in-memory weights) in one host buffer, outputs in another. */
async function runGroup(
  backend: Backend,
  group: readonly { item: MergeItem; ops: Operands }[],
  done: (name: string, merged: WeightInfo) => void,
): Promise<BackendBuffer> {
  const temporary: BackendBuffer[] = [];
  // Binding 0: factors and in-memory weights; 1: the merged weights; then W's file ranges and buffers.
  const bindings: BackendBuffer[] = [];
  let hostBytes = 0;
  const hostParts: { offset: number; data: ArrayBufferView }[] = [];
  const host = (data: ArrayBufferView): number => {
    const offset = hostBytes;
    hostParts.push({ offset, data });
    hostBytes = alignUp(hostBytes + data.byteLength);
    return offset;
  };
  let outBytes = 0;
  const outOffsets = group.map(({ item }) => {
    const o = outBytes;
    const size = storedBytes(item.info);
    outBytes = alignUp(o + size);
    return o;
  });
  // Each file is mapped once, over the range its merged weights span.
  const fileSpans = new Map<string, { start: number; end: number }>();
  for (const { item } of group) {
    const s = item.info.source;
    if (s.kind !== "file") continue;
    const span = fileSpans.get(s.path) ?? { start: s.offset, end: s.offset + s.bytes };
    fileSpans.set(s.path, { start: Math.min(span.start, s.offset), end: Math.max(span.end, s.offset + s.bytes) });
  }
  const slotOf = new Map<string | BackendBuffer, number>();
  let out: BackendBuffer | undefined;
  try {
    /** W's byte offset in its binding (the host buffer, its file's mapping, or its own buffer). */
    const wOffsets: number[] = [];
    const factorOffsets = group.map(({ item, ops }) => {
      const s = item.info.source;
      const wBytes = storedBytes(item.info);
      if (s.kind === "data") {
        if (s.data.byteLength < wBytes) {
          throw new PatchError(`${item.name}: ${s.data.byteLength} bytes, needs ${wBytes}`);
        }
        wOffsets.push(host(new Uint8Array(s.data.buffer, s.data.byteOffset, wBytes)));
      } else if (s.kind === "file") {
        if (s.bytes < wBytes) throw new PatchError(`${item.name}: ${s.bytes} bytes in ${s.path}, needs ${wBytes}`);
        wOffsets.push(s.offset - fileSpans.get(s.path)!.start);
      } else {
        if (s.bytes < wBytes) throw new PatchError(`${item.name}: ${s.bytes} bytes in its buffer, needs ${wBytes}`);
        wOffsets.push(s.offset);
      }
      return { up: host(ops.up), down: host(ops.down), dense: ops.dense ? host(ops.dense) : -1 };
    });
    const factors = backend.alloc(hostBytes);
    temporary.push(factors);
    for (const p of hostParts) factors.write(p.offset, p.data);
    out = backend.alloc(outBytes);
    // Written once, front to back: huge pages spare most of the first-touch page faults.
    out.adviseHugePages?.();
    bindings.push(factors, out);
    for (const [path, span] of fileSpans) {
      const mapped = backend.fromFile(path, span.start, span.end - span.start);
      temporary.push(mapped);
      slotOf.set(path, bindings.length);
      bindings.push(mapped);
    }
    for (const { item } of group) {
      const s = item.info.source;
      if (s.kind === "buffer" && !slotOf.has(s.buffer)) {
        slotOf.set(s.buffer, bindings.length);
        bindings.push(s.buffer);
      }
    }
    const plan = new PlanWriter(bindings.length);
    group.forEach(({ item, ops }, i) => {
      const dtype = DTYPES[item.info.dtype.toLowerCase()];
      const s = item.info.source;
      const binding = s.kind === "file" ? slotOf.get(s.path)! : s.kind === "buffer" ? slotOf.get(s.buffer)! : 0;
      const f = factorOffsets[i];
      const w = plan.tensor(binding, dtype, wOffsets[i], [ops.rows, ops.inner]);
      const up = plan.tensor(0, SDF_DTYPE.f32, f.up, [ops.rows, ops.rank]);
      const down = plan.tensor(0, SDF_DTYPE.f32, f.down, [ops.rank, ops.inner]);
      const ins = [w, up, down];
      if (f.dense >= 0) ins.push(plan.tensor(0, SDF_DTYPE.f32, f.dense, [ops.rows, ops.inner]));
      const y = plan.tensor(1, dtype, outOffsets[i], [ops.rows, ops.inner]);
      plan.op(SDF_OP.MERGE_LOW_RANK, ins, [y]);
    });
    const compiled = backend.compile(plan.finish());
    try {
      await compiled.run(bindings);
    } finally {
      compiled.free();
    }
    const merged = out;
    out = undefined;
    group.forEach(({ item }, i) => {
      const size = storedBytes(item.info);
      done(item.name, {
        name: item.name,
        dtype: item.info.dtype,
        shape: item.info.shape,
        source: { kind: "buffer", buffer: merged, offset: outOffsets[i], bytes: size },
      });
    });
    return merged;
  } finally {
    for (const b of temporary) b.free();
    out?.free();
  }
}
