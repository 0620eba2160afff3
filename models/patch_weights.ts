/**
 * Applies weight patches to one network's weights: the {@link WeightSource}
 * its graph builder reads (merged weights) and the deltas its layers add at
 * run time (`runtime` mode, see nn.ts `addRuntimeDeltas`).
 *
 * Merging never copies the model into JavaScript: only a patched weight is
 * read, one at a time, when a program first needs it; W + ΔW is computed in
 * float32, rounded to the weight's dtype, and uploaded into a backend buffer
 * that every program of the network then binds (a `buffer` constant). The
 * unpatched weights stay memory-mapped from the checkpoint file.
 */

import type { Backend, BackendBuffer } from "../backends/mod.ts";
import { compile, Graph, type Tensor } from "../engine/mod.ts";
import { readRangeSync } from "./weights/io.ts";
import { graphDType, type WeightInfo, type WeightSource } from "./nn.ts";
import { deltaMismatch, type ModelPatch, PatchError, type WeightDelta, type WeightPatch } from "./patch.ts";

const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);
const fmt = (s: readonly number[]): string => `[${s.join(", ")}]`;

/** f16 bits → float32, for every 16-bit pattern. */
let halfTable: Float32Array | undefined;
function f16Table(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    const v = e === 0 ? m * 2 ** -24 : e === 31 ? (m ? NaN : Infinity) : (1 + m / 1024) * 2 ** (e - 15);
    halfTable[h] = h & 0x8000 ? -v : v;
  }
  return halfTable;
}

/** Rounds float32 values to f16 bits, to nearest even (as PyTorch's `.half()` and ggml do). */
export function f32ToF16Bits(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    const sign = (x >>> 16) & 0x8000;
    const e = ((x >>> 23) & 0xff) - 112; // rebias 127 → 15
    let m = x & 0x7fffff;
    let h: number;
    if (e >= 31) {
      // Inf/NaN, or too large: infinity (NaN keeps a payload bit).
      h = (x & 0x7f800000) === 0x7f800000 && m ? 0x7e00 : 0x7c00;
    } else if (e <= 0) {
      if (e < -10) {
        h = 0;
      } else {
        m |= 0x800000;
        const shift = 14 - e;
        h = m >>> shift;
        const rem = m & ((1 << shift) - 1);
        const half = 1 << (shift - 1);
        if (rem > half || (rem === half && (h & 1))) h++;
      }
    } else {
      h = (e << 10) | (m >>> 13);
      const rem = m & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // a carry into the exponent is correct
    }
    out[i] = sign | h;
  }
  return out;
}

/** Rounds float32 values to bf16 bits, to nearest even. */
function f32ToBf16Bits(src: Float32Array): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** The raw bytes of a weight (one read of its file range, a view of memory, or a copy out of a backend buffer). */
function weightBytes(info: WeightInfo, bytes: number): Uint8Array {
  const s = info.source;
  if (s.kind === "file") {
    if (s.bytes < bytes) {
      throw new PatchError(`${info.name ?? "weight"}: ${s.bytes} bytes in ${s.path}, needs ${bytes}`);
    }
    return readRangeSync(s.path, s.offset, bytes);
  }
  if (s.kind === "buffer") return s.buffer.read(s.offset, bytes);
  if (s.data.byteLength < bytes) {
    throw new PatchError(`${info.name ?? "weight"}: ${s.data.byteLength} bytes, needs ${bytes}`);
  }
  return new Uint8Array(s.data.buffer, s.data.byteOffset, bytes);
}

/** A weight's values as float32 (f32, f16 or bf16 storage). */
export function readWeightF32(info: WeightInfo): Float32Array {
  const n = numel(info.shape);
  const dtype = info.dtype.toLowerCase();
  const size = dtype === "f32" || dtype === "float32" ? 4 : dtype === "f16" || dtype === "bf16" ? 2 : 0;
  if (size === 0) throw new PatchError(`${info.name ?? "weight"}: dtype ${info.dtype} cannot be patched`);
  let b = weightBytes(info, n * size);
  if (b.byteOffset % 4 !== 0) b = b.slice();
  if (size === 4) return new Float32Array(b.buffer, b.byteOffset, n).slice();
  const u16 = new Uint16Array(b.buffer, b.byteOffset, n);
  const out = new Float32Array(n);
  if (dtype === "f16") {
    const t = f16Table();
    for (let i = 0; i < n; i++) out[i] = t[u16[i]];
  } else {
    const o32 = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) o32[i] = u16[i] << 16;
  }
  return out;
}

/**
 * Adds the deltas to `w` (float32, the target's values, shape `shape`) in place:
 * w[rows] += scale · up @ down, or scale · dense.
 */
export function addDeltas(w: Float32Array, shape: readonly number[], deltas: readonly WeightDelta[]): void {
  const inner = numel(shape.slice(1));
  for (const d of deltas) {
    const rows = d.rows ?? { start: 0, count: shape[0] };
    const base = rows.start * inner;
    if (d.kind === "dense") {
      const dv = readWeightF32(d.delta);
      for (let i = 0; i < dv.length; i++) w[base + i] += d.scale * dv[i];
      continue;
    }
    const up = readWeightF32(d.up);
    const down = readWeightF32(d.down);
    const rank = d.down.shape[0];
    for (let o = 0; o < rows.count; o++) {
      const row = base + o * inner;
      for (let r = 0; r < rank; r++) {
        const a = d.scale * up[o * rank + r];
        if (a === 0) continue;
        const off = r * inner;
        for (let j = 0; j < inner; j++) w[row + j] += a * down[off + j];
      }
    }
  }
}

/** `info` as a graph constant, flattened to 2-D [rows, inner]. */
function constant2d(g: Graph, name: string, info: WeightInfo): Tensor {
  const t = g.constant(name, info.shape, graphDType(info.dtype, name), info.source);
  const rows = info.shape[0];
  return info.shape.length === 2 ? t : g.reshape(t, [rows, numel(info.shape) / rows]);
}

/**
 * W + Σ ΔW for one weight, computed by the backend (the low-rank products are GEMMs of depth
 * rank) into a new backend buffer holding the merged weight as float32 (the layers take f32 and
 * f16 weights alike; rounding to f16 as stable-diffusion.cpp does would cost a pass in
 * JavaScript over every merged value, and changes the result by less than f16's precision).
 * JavaScript touches only the small factors (scaled, transposed) and copies the result once.
 */
async function mergeOnBackend(
  backend: Backend,
  name: string,
  info: WeightInfo,
  deltas: readonly WeightDelta[],
): Promise<BackendBuffer> {
  const g = new Graph();
  const rowsAll = info.shape[0];
  const inner = numel(info.shape) / rowsAll;
  let w = g.copy(constant2d(g, name, info));
  const inputs: Record<string, Float32Array> = {};
  // Deltas grouped by the rows they cover; each group is added to its slice of W.
  const groups = new Map<string, { start: number; count: number; sum?: Tensor }>();
  deltas.forEach((d, i) => {
    const rows = d.rows ?? { start: 0, count: rowsAll };
    let delta: Tensor;
    if (d.kind === "dense") {
      delta = g.scale(g.copy(constant2d(g, `delta${i}`, d.delta)), d.scale);
    } else {
      const rank = d.down.shape[0];
      const up = readWeightF32(d.up);
      for (let k = 0; k < up.length; k++) up[k] *= d.scale;
      const down = readWeightF32(d.down);
      const downT = new Float32Array(inner * rank);
      for (let r = 0; r < rank; r++) for (let j = 0; j < inner; j++) downT[j * rank + r] = down[r * inner + j];
      inputs[`up${i}`] = up;
      const x = g.input(`up${i}`, [rows.count, rank]);
      delta = g.linear(x, g.constant(`down${i}`, [inner, rank], "f32", { kind: "data", data: downT }));
    }
    const key = `${rows.start}/${rows.count}`;
    const group = groups.get(key) ?? { start: rows.start, count: rows.count };
    group.sum = group.sum ? g.add(group.sum, delta) : delta;
    groups.set(key, group);
  });
  const whole = groups.get(`0/${rowsAll}`);
  if (whole) w = g.add(w, whole.sum!);
  const parts = [...groups.values()].filter((p) => p !== whole).sort((a, b) => a.start - b.start);
  if (parts.length) {
    const pieces: Tensor[] = [];
    let at = 0;
    for (const p of parts) {
      if (p.start < at) throw new PatchError(`${name}: deltas on overlapping rows`);
      if (p.start > at) pieces.push(g.slice(w, 0, at, p.start - at));
      pieces.push(g.add(g.slice(w, 0, p.start, p.count), p.sum!));
      at = p.start + p.count;
    }
    if (at < rowsAll) pieces.push(g.slice(w, 0, at, rowsAll - at));
    w = pieces.length === 1 ? pieces[0] : g.concat(pieces, 0);
  }
  // A graph output must be computed by the step plan: without a factor input, add a zero input.
  if (Object.keys(inputs).length === 0) {
    inputs.zero = new Float32Array(1);
    w = g.add(w, g.input("zero", [1]));
  }
  g.output("w", w);
  const program = compile(g, backend);
  let merged: Float32Array;
  try {
    merged = (await program.run(inputs)).w;
  } finally {
    program.dispose();
  }
  const buffer = backend.alloc(merged.byteLength);
  try {
    buffer.write(0, merged);
  } catch (e) {
    buffer.free();
    throw e;
  }
  return buffer;
}

/** One network's weights with its patches: what its graph builder and layers read. */
export class PatchedWeights implements WeightSource {
  readonly #base: WeightSource;
  readonly #backend: Backend;
  readonly #merge = new Map<string, WeightDelta[]>();
  readonly #runtime = new Map<string, WeightDelta[]>();
  readonly #merged = new Map<string, WeightInfo>();
  readonly #buffers: BackendBuffer[] = [];

  /**
   * @param base the network's unpatched weights
   * @param shapes every weight patches may target (ldm name → shape)
   * @param patches the network's patches; weight patches are checked here (target present, shape fits)
   * @param what names the network in errors ("UNet")
   */
  constructor(
    base: WeightSource,
    shapes: ReadonlyMap<string, readonly number[]>,
    patches: readonly ModelPatch[],
    backend: Backend,
    what: string,
  ) {
    this.#base = base;
    this.#backend = backend;
    for (const p of patches) {
      if (p.kind !== "weights") {
        throw new PatchError(`${what}: "${p.label}" is a ${p.kind} patch, which the ${what} does not apply yet`);
      }
      this.#add(p, shapes, what);
    }
  }

  #add(p: WeightPatch, shapes: ReadonlyMap<string, readonly number[]>, what: string): void {
    const into = (p.mode ?? "merge") === "merge" ? this.#merge : this.#runtime;
    for (const d of p.deltas) {
      const shape = shapes.get(d.target);
      if (!shape) throw new PatchError(`${p.label}: the ${what} has no weight "${d.target}"`);
      const why = deltaMismatch(d, shape);
      if (why) throw new PatchError(`${p.label}: ${d.target} ${fmt(shape)}: ${why}`);
      if (d.scale === 0) continue;
      const list = into.get(d.target) ?? [];
      list.push(d);
      into.set(d.target, list);
    }
  }

  /** Weights changed by merging (for messages and tests). */
  get mergedTargets(): readonly string[] {
    return [...this.#merge.keys()];
  }

  /** The deltas to add at run time to the layer that uses weight `name`. */
  runtimeDeltas(name: string): readonly WeightDelta[] {
    return this.#runtime.get(name) ?? [];
  }

  /**
   * Merges every weight with merge-mode deltas that is not merged yet (one backend program per
   * weight, run one after another). Call before building a graph from this source.
   */
  async prepare(): Promise<void> {
    for (const [name, deltas] of this.#merge) {
      if (this.#merged.has(name)) continue;
      const info = this.#base.get(name);
      if (!info) throw new PatchError(`missing weight "${name}"`);
      const buffer = await mergeOnBackend(this.#backend, name, info, deltas);
      this.#buffers.push(buffer);
      this.#merged.set(name, {
        name,
        dtype: "f32",
        shape: info.shape,
        source: { kind: "buffer", buffer, offset: 0, bytes: buffer.size },
      });
    }
  }

  /** The weight `name`: merged (after {@link prepare}) when it has merge-mode deltas, else the base weight. */
  get(name: string): WeightInfo | undefined {
    if (!this.#merge.has(name)) return this.#base.get(name);
    const merged = this.#merged.get(name);
    if (!merged) throw new PatchError(`internal: weight "${name}" used before its patches were merged (prepare())`);
    return merged;
  }

  /** Frees the merged weights' buffers (programs using them must be disposed first). */
  dispose(): void {
    for (const b of this.#buffers) if (!b.freed) b.free();
    this.#buffers.length = 0;
    this.#merged.clear();
  }
}
