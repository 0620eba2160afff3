/**
 * Liveness-based activation arena and the dependency edges that make it safe
 * under out-of-order execution.
 *
 * Ops run in any order their dependencies allow, so reusing memory is only
 * safe when the new tenant's producer waits for every op that touched the old
 * tenant. Those write-after-read edges are added here; everything else is
 * left free to overlap.
 */

import type { LOp, LTensor } from "./lower.ts";
import { tensorBytes } from "./lower.ts";

/** Default tensor alignment (the CPU backend's); a backend may ask for more (`capabilities.alignment`). */
export const ARENA_ALIGN = 64;

export interface ArenaPlan {
  /** Arena byte offset of each arena tensor (by storage root id). */
  offsets: Map<number, number>;
  peakBytes: number;
  /** deps[i]: indices of earlier ops that op i must wait for. */
  deps: Set<number>[];
}

interface Interval {
  start: number;
  end: number;
}

interface FreedTenant extends Interval {
  touchedBy: number[];
}

/** Storage root of a tensor (follows reshape views). */
export function rootOf(tensors: readonly LTensor[], id: number): number {
  let t = tensors[id];
  while (t.aliasOf !== undefined) t = tensors[t.aliasOf];
  return t.id;
}

/**
 * Plans the arena for `ops` (already in a valid order). `inArena(root)` says
 * which storage roots live in the arena; `pinned` roots (graph inputs and
 * outputs) are live for the whole run; every tensor starts at a multiple of
 * `alignment` bytes.
 */
export function planArena(
  ops: readonly LOp[],
  tensors: readonly LTensor[],
  inArena: (root: number) => boolean,
  pinned: ReadonlySet<number>,
  alignment: number = ARENA_ALIGN,
): ArenaPlan {
  const align = (n: number): number => Math.ceil(n / alignment) * alignment;
  const root = (id: number): number => rootOf(tensors, id);
  // Winograd bands write disjoint parts of one tensor: a root may have several producers.
  const producers = new Map<number, number[]>();
  const lastUse = new Map<number, number>();
  const touched = new Map<number, number[]>();
  const touch = (r: number, i: number): void => {
    const list = touched.get(r);
    if (list) list.push(i);
    else touched.set(r, [i]);
  };
  ops.forEach((op, i) => {
    for (const t of op.inputs) {
      const r = root(t);
      lastUse.set(r, i);
      touch(r, i);
    }
    for (const t of op.outputs) {
      const r = root(t);
      if (op.kind !== "reshape") producers.set(r, [...(producers.get(r) ?? []), i]);
      lastUse.set(r, Math.max(lastUse.get(r) ?? i, i));
      touch(r, i);
    }
  });

  const deps = ops.map(() => new Set<number>());
  // Read-after-write edges.
  ops.forEach((op, i) => {
    for (const t of op.inputs) {
      for (const p of producers.get(root(t)) ?? []) if (p < i) deps[i].add(p);
    }
  });

  const offsets = new Map<number, number>();
  const free: Interval[] = [];
  const freed: FreedTenant[] = [];
  let top = 0;

  const allocate = (bytes: number): number => {
    const size = align(bytes);
    let best = -1;
    for (let k = 0; k < free.length; k++) {
      const len = free[k].end - free[k].start;
      if (len >= size && (best < 0 || len < free[best].end - free[best].start)) best = k;
    }
    if (best >= 0) {
      const blk = free[best];
      const start = blk.start;
      blk.start += size;
      if (blk.start === blk.end) free.splice(best, 1);
      return start;
    }
    // Grow the arena, extending a free block that ends at the top if there is one.
    const tail = free.findIndex((f) => f.end === top);
    if (tail >= 0) {
      const start = free[tail].start;
      free.splice(tail, 1);
      top = start + size;
      return start;
    }
    const start = top;
    top += size;
    return start;
  };

  const release = (start: number, bytes: number): void => {
    const end = start + align(bytes);
    free.push({ start, end });
    free.sort((a, b) => a.start - b.start);
    for (let k = free.length - 2; k >= 0; k--) {
      if (free[k].end === free[k + 1].start) {
        free[k].end = free[k + 1].end;
        free.splice(k + 1, 1);
      }
    }
  };

  const place = (r: number, opIndex: number): void => {
    const bytes = tensorBytes(tensors[r]);
    const start = allocate(bytes);
    const end = start + align(bytes);
    offsets.set(r, start);
    // Every op that writes the new tenant: Winograd bands write one output from several ops, and each of them
    // may run as soon as its own inputs are ready, so each must wait for the old tenants' users.
    const writers = opIndex >= 0 ? (producers.get(r) ?? [opIndex]).filter((p) => p >= opIndex) : [];
    // Write-after-read: wait for everything that touched this memory before.
    for (let k = freed.length - 1; k >= 0; k--) {
      const f = freed[k];
      if (f.end <= start || f.start >= end) continue;
      for (const w of writers) for (const o of f.touchedBy) if (o < w) deps[w].add(o);
      // Fully covered: later tenants will depend on this one, which depends on f.
      if (f.start >= start && f.end <= end && opIndex >= 0) freed.splice(k, 1);
    }
  };

  // Pinned tensors (inputs, outputs) first: they are live for the whole run.
  for (const r of pinned) if (inArena(r) && !offsets.has(r)) place(r, -1);

  ops.forEach((op, i) => {
    if (op.kind === "reshape") return;
    for (const t of op.outputs) {
      const r = root(t);
      if (inArena(r) && !offsets.has(r)) place(r, i);
    }
    const done = new Set<number>();
    for (const t of [...op.inputs, ...op.outputs]) {
      const r = root(t);
      if (done.has(r) || !offsets.has(r) || pinned.has(r) || lastUse.get(r) !== i) continue;
      done.add(r);
      const start = offsets.get(r)!;
      const bytes = tensorBytes(tensors[r]);
      release(start, bytes);
      freed.push({ start, end: start + align(bytes), touchedBy: touched.get(r) ?? [] });
    }
  });

  // Transitive reduction is not needed for correctness; drop self and duplicate edges only.
  deps.forEach((d, i) => d.delete(i));
  return { offsets, peakBytes: top, deps };
}
