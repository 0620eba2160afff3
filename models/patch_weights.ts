/**
 * Applies weight patches to one network's weights: the {@link WeightSource}
 * its graph builder reads (merged weights) and the deltas its layers add at
 * run time (`runtime` mode, see nn.ts `addRuntimeDeltas`).
 *
 * Merging never copies the model into JavaScript: only the patched weights are
 * read, one at a time per worker thread (merge_worker.ts), before the network
 * first runs; W + ΔW is computed row by row in float32, rounded to the
 * weight's dtype (ties to even, as sd.cpp's add into an f16 tensor), and
 * uploaded into a backend buffer that every program of the network then binds
 * (a `buffer` constant). The unpatched weights stay memory-mapped from the
 * checkpoint file.
 */

import type { Backend, BackendBuffer } from "../backends/mod.ts";
import { f16BitsTable, f32ToBf16BitsInto, f32ToF16BitsInto } from "../backends/float16.ts";
import { readRangeSync } from "./weights/io.ts";
import type { WeightInfo, WeightSource } from "./nn.ts";
import { deltaMismatch, type ModelPatch, PatchError, type WeightDelta, type WeightPatch } from "./patch.ts";

const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);
const fmt = (s: readonly number[]): string => `[${s.join(", ")}]`;

/** The raw bytes of a weight (one read of its file range, a view of memory, or a copy out of a backend buffer). */
function weightBytes(info: WeightInfo, bytes: number): Uint8Array {
  const s = info.source;
  if (s.kind === "file") {
    if (s.bytes < bytes) {
      throw new PatchError(`${info.name ?? "weight"}: ${s.bytes} bytes in ${s.path}, needs ${bytes}`);
    }
    return readRangeSync(s.path, s.offset, bytes);
  }
  if (s.kind === "buffer") {
    if (!s.buffer.read) {
      throw new PatchError(
        `${info.name ?? "weight"}: held in ${s.buffer.backend.name} device memory, cannot be re-patched`,
      );
    }
    return s.buffer.read(s.offset, bytes);
  }
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
    const t = f16BitsTable();
    for (let i = 0; i < n; i++) out[i] = t[u16[i]];
  } else {
    const o32 = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) o32[i] = u16[i] << 16;
  }
  return out;
}

/** The low-rank factors of one delta as float32, ready for the row loop: up pre-scaled. */
export interface PreparedDelta {
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
 * row += Σ_r up[upOff + r] · down[r] (down [rank, inner]), eight (then four) rank terms per pass over
 * the row, so that it is loaded and stored an eighth as often (rank 8 is kohya's default).
 */
function addLowRankRow(
  row: Float32Array,
  up: Float32Array,
  upOff: number,
  down: Float32Array,
  rank: number,
  inner: number,
): void {
  let r = 0;
  for (; r + 8 <= rank; r += 8) {
    const u = upOff + r;
    const a0 = up[u], a1 = up[u + 1], a2 = up[u + 2], a3 = up[u + 3];
    const a4 = up[u + 4], a5 = up[u + 5], a6 = up[u + 6], a7 = up[u + 7];
    const o0 = r * inner, o1 = o0 + inner, o2 = o1 + inner, o3 = o2 + inner;
    const o4 = o3 + inner, o5 = o4 + inner, o6 = o5 + inner, o7 = o6 + inner;
    for (let j = 0; j < inner; j++) {
      row[j] += a0 * down[o0 + j] + a1 * down[o1 + j] + a2 * down[o2 + j] + a3 * down[o3 + j] +
        a4 * down[o4 + j] + a5 * down[o5 + j] + a6 * down[o6 + j] + a7 * down[o7 + j];
    }
  }
  for (; r + 4 <= rank; r += 4) {
    const a0 = up[upOff + r], a1 = up[upOff + r + 1], a2 = up[upOff + r + 2], a3 = up[upOff + r + 3];
    const o0 = r * inner, o1 = o0 + inner, o2 = o1 + inner, o3 = o2 + inner;
    for (let j = 0; j < inner; j++) {
      row[j] += a0 * down[o0 + j] + a1 * down[o1 + j] + a2 * down[o2 + j] + a3 * down[o3 + j];
    }
  }
  for (; r < rank; r++) {
    const a = up[upOff + r];
    const off = r * inner;
    for (let j = 0; j < inner; j++) row[j] += a * down[off + j];
  }
}

/**
 * W + Σ ΔW for one weight, in its own dtype: one pass over W's rows (decode a row to float32,
 * add each delta's scale·up[o]·down, round back), so only the result is ever whole in memory.
 * Rounding is to nearest even, so an f16 weight merges as stable-diffusion.cpp's
 * `ggml_add_inplace` into the F16 tensor does (ΔW in float32, the sum rounded to f16).
 */
export function mergeWeight(info: WeightInfo, deltas: readonly WeightDelta[]): Float32Array | Uint16Array {
  return runMergeJob(mergeJob(info, deltas));
}

/**
 * Everything a merge needs, as plain data (structured-cloneable, so a worker can run it): W's
 * location or values, its layout, and the deltas' factors as float32 (up already scaled).
 */
export interface MergeJob {
  readonly dtype: string;
  readonly rows: number;
  readonly inner: number;
  /** W's bytes: a file range, or a copy of them. */
  readonly source: { readonly path: string; readonly offset: number } | { readonly bytes: Uint8Array };
  readonly deltas: readonly PreparedDelta[];
}

/** The merge of `deltas` into `info` as a {@link MergeJob} (reads only the factors, which are small). */
export function mergeJob(info: WeightInfo, deltas: readonly WeightDelta[]): MergeJob {
  const rows = info.shape[0];
  const inner = numel(info.shape) / rows;
  const dtype = info.dtype.toLowerCase();
  const size = dtype === "f16" || dtype === "bf16" ? 2 : 4;
  const s = info.source;
  const source = s.kind === "file"
    ? { path: s.path, offset: s.offset }
    : { bytes: weightBytes(info, rows * inner * size).slice() };
  if (s.kind === "file" && s.bytes < rows * inner * size) {
    throw new PatchError(`${info.name ?? "weight"}: ${s.bytes} bytes in ${s.path}, needs ${rows * inner * size}`);
  }
  return { dtype, rows, inner, source, deltas: deltas.map((d) => prepareDelta(d, rows)) };
}

/** Runs a {@link MergeJob}: W + Σ ΔW in W's dtype (f16/bf16 bits, or float32). */
export function runMergeJob(job: MergeJob): Float32Array | Uint16Array {
  const { dtype, rows, inner } = job;
  const size = dtype === "f16" || dtype === "bf16" ? 2 : 4;
  let bytes = "bytes" in job.source
    ? job.source.bytes
    : readRangeSync(job.source.path, job.source.offset, rows * inner * size);
  if (bytes.byteOffset % 4 !== 0) bytes = bytes.slice();
  const src = size === 2
    ? new Uint16Array(bytes.buffer, bytes.byteOffset, rows * inner)
    : new Float32Array(bytes.buffer, bytes.byteOffset, rows * inner);
  const out = size === 2 ? new Uint16Array(rows * inner) : new Float32Array(rows * inner);
  const row = size === 2 ? new Float32Array(inner) : (out as Float32Array);
  const row32 = new Uint32Array(row.buffer, row.byteOffset, inner);
  const table = dtype === "f16" ? f16BitsTable() : undefined;
  for (let o = 0; o < rows; o++) {
    const base = o * inner;
    // float32 weights are merged in place in `out`, one row view at a time.
    const r = size === 2 ? row : (out as Float32Array).subarray(base, base + inner);
    if (table) { for (let j = 0; j < inner; j++) r[j] = table[src[base + j]]; }
    else if (size === 2) { for (let j = 0; j < inner; j++) row32[j] = src[base + j] << 16; }
    else r.set((src as Float32Array).subarray(base, base + inner));
    for (const d of job.deltas) {
      if (o < d.start || o >= d.start + d.count) continue;
      const i = o - d.start;
      if (!d.up) {
        const off = i * inner;
        for (let j = 0; j < inner; j++) r[j] += d.down[off + j];
        continue;
      }
      addLowRankRow(r, d.up, i * d.rank, d.down, d.rank, inner);
    }
    if (size === 2) {
      const dst = (out as Uint16Array).subarray(base, base + inner);
      if (table) f32ToF16BitsInto(row, dst);
      else f32ToBf16BitsInto(row, dst);
    }
  }
  return out;
}

/**
 * Runs merge jobs on up to `threads` workers (merge_worker.ts), handing each result to `done` in
 * this thread as it arrives; with one thread, or where workers cannot start, runs them here.
 */
async function runMergeJobs(
  jobs: readonly MergeJob[],
  threads: number,
  done: (i: number, values: Float32Array | Uint16Array) => void,
): Promise<void> {
  const n = Math.min(threads, jobs.length);
  if (n <= 1) {
    jobs.forEach((j, i) => done(i, runMergeJob(j)));
    return;
  }
  const workers: Worker[] = [];
  try {
    let next = 0;
    const loop = (w: Worker) =>
      new Promise<void>((resolve, reject) => {
        let current = -1;
        const send = () => {
          if (next >= jobs.length) return resolve();
          current = next++;
          w.postMessage(jobs[current]);
        };
        w.onmessage = (e: MessageEvent<{ values?: Float32Array | Uint16Array; error?: string }>) => {
          if (e.data.error !== undefined || !e.data.values) {
            return reject(new PatchError(`merge worker: ${e.data.error ?? "no result"}`));
          }
          try {
            done(current, e.data.values);
          } catch (err) {
            return reject(err);
          }
          send();
        };
        w.onerror = (e) => {
          e.preventDefault();
          reject(new PatchError(`merge worker: ${e.message}`));
        };
        send();
      });
    for (let i = 0; i < n; i++) {
      workers.push(new Worker(new URL("./merge_worker.ts", import.meta.url), { type: "module" }));
    }
    await Promise.all(workers.map(loop));
  } finally {
    for (const w of workers) w.terminate();
  }
}

/** One network's weights with its patches: what its graph builder and layers read. */
export class PatchedWeights implements WeightSource {
  readonly #base: WeightSource;
  readonly #backend: Backend;
  readonly #merge = new Map<string, WeightDelta[]>();
  readonly #runtime = new Map<string, WeightDelta[]>();
  readonly #merged = new Map<string, WeightInfo>();
  readonly #buffers: BackendBuffer[] = [];
  /** Merge workers: the backend's thread count (the networks are idle while weights merge). */
  readonly #threads: number;

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
    this.#threads = Math.max(1, backend.info.threads ?? 1);
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
  async prepare(): Promise<void> {
    const todo = [...this.#merge].filter(([name]) => !this.#merged.has(name));
    if (todo.length === 0) return;
    const infos = todo.map(([name]) => {
      const info = this.#base.get(name);
      if (!info) throw new PatchError(`missing weight "${name}"`);
      return info;
    });
    const jobs = todo.map(([, deltas], i) => mergeJob(infos[i], deltas));
    await runMergeJobs(jobs, this.#threads, (i, values) => {
      const [name] = todo[i];
      const buffer = this.#backend.alloc(values.byteLength);
      this.#buffers.push(buffer);
      buffer.write(0, values);
      this.#merged.set(name, {
        name,
        dtype: infos[i].dtype,
        shape: infos[i].shape,
        source: { kind: "buffer", buffer, offset: 0, bytes: values.byteLength },
      });
    });
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
