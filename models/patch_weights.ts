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
import { readRangeSync } from "./weights/io.ts";
import type { WeightInfo, WeightSource } from "./nn.ts";
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
export function f32ToBf16Bits(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
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

/** The low-rank factors of one delta as float32, ready for the row loop: up pre-scaled. */
interface PreparedDelta {
  readonly start: number;
  readonly count: number;
  readonly rank: number;
  /** [count, rank], times scale (low rank); undefined for a dense delta. */
  readonly up?: Float32Array;
  /** [rank, inner] (low rank), or the dense delta [count, inner] times scale. */
  readonly down: Float32Array;
}

function prepareDelta(d: WeightDelta, rowsAll: number): PreparedDelta {
  const rows = d.rows ?? { start: 0, count: rowsAll };
  if (d.kind === "dense") {
    const down = readWeightF32(d.delta);
    for (let i = 0; i < down.length; i++) down[i] *= d.scale;
    return { ...rows, rank: 0, down };
  }
  const up = readWeightF32(d.up);
  for (let i = 0; i < up.length; i++) up[i] *= d.scale;
  return { ...rows, rank: d.down.shape[0], up, down: readWeightF32(d.down) };
}

/**
 * W + Σ ΔW for one weight, in its own dtype: one pass over W's rows (decode a row to float32,
 * add each delta's scale·up[o]·down, round back), so only the result is ever whole in memory.
 * Rounding is to nearest even, so an f16 weight merges as stable-diffusion.cpp's
 * `ggml_add_inplace` into the F16 tensor does (ΔW in float32, the sum rounded to f16).
 */
export function mergeWeight(info: WeightInfo, deltas: readonly WeightDelta[]): Float32Array | Uint16Array {
  const rowsAll = info.shape[0];
  const inner = numel(info.shape) / rowsAll;
  const dtype = info.dtype.toLowerCase();
  const half = dtype === "f16" || dtype === "bf16";
  if (!half) {
    const w = readWeightF32(info);
    addDeltas(w, info.shape, deltas);
    return w;
  }
  const prepared = deltas.map((d) => prepareDelta(d, rowsAll));
  let bytes = weightBytes(info, rowsAll * inner * 2);
  if (bytes.byteOffset % 2 !== 0) bytes = bytes.slice();
  const src = new Uint16Array(bytes.buffer, bytes.byteOffset, rowsAll * inner);
  const out = new Uint16Array(rowsAll * inner);
  const row = new Float32Array(inner);
  const row32 = new Uint32Array(row.buffer);
  const table = f16Table();
  for (let o = 0; o < rowsAll; o++) {
    const base = o * inner;
    if (dtype === "f16") for (let j = 0; j < inner; j++) row[j] = table[src[base + j]];
    else for (let j = 0; j < inner; j++) row32[j] = src[base + j] << 16;
    for (const d of prepared) {
      if (o < d.start || o >= d.start + d.count) continue;
      const i = o - d.start;
      if (!d.up) {
        const off = i * inner;
        for (let j = 0; j < inner; j++) row[j] += d.down[off + j];
        continue;
      }
      for (let r = 0; r < d.rank; r++) {
        const a = d.up[i * d.rank + r];
        if (a === 0) continue;
        const off = r * inner;
        for (let j = 0; j < inner; j++) row[j] += a * d.down[off + j];
      }
    }
    const dst = out.subarray(base, base + inner);
    if (dtype === "f16") f32ToF16Bits(row, dst);
    else f32ToBf16Bits(row, dst);
  }
  return out;
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
   * Merges every weight with merge-mode deltas that is not merged yet, one at a time, each into
   * its own backend buffer. Call before building a graph from this source.
   */
  prepare(): Promise<void> {
    for (const [name, deltas] of this.#merge) {
      if (this.#merged.has(name)) continue;
      const info = this.#base.get(name);
      if (!info) throw new PatchError(`missing weight "${name}"`);
      const values = mergeWeight(info, deltas);
      const buffer = this.#backend.alloc(values.byteLength);
      this.#buffers.push(buffer);
      buffer.write(0, values);
      this.#merged.set(name, {
        name,
        dtype: info.dtype,
        shape: info.shape,
        source: { kind: "buffer", buffer, offset: 0, bytes: values.byteLength },
      });
    }
    return Promise.resolve();
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
