/**
 * Reading a weight's values in JavaScript (for merges and for the small factors of weight deltas):
 * from a file range, a backend buffer or memory, widened from f16 / bf16 to float32.
 */

import { f16BitsTable } from "../backends/float16.ts";
import { readRangeSync } from "./weights/io.ts";
import type { WeightInfo } from "./nn.ts";
import { PatchError } from "./patch.ts";

const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** The raw bytes of a weight (one read of its file range, a view of memory, or a copy out of a backend buffer). */
export function weightBytes(info: WeightInfo, bytes: number): Uint8Array {
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
