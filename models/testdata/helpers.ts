/**
 * Test helpers for the model graph builders: tensor lists of the reference
 * checkpoints, fake weight sources (right byte lengths, no bytes), and a
 * minimal safetensors reader, so model tests depend on no loader.
 */

import { f16BitsToF32 } from "../../backends/float16.ts";
import { sharedUrl } from "../../tests/shared.ts";
import type { ConstantSource } from "../../engine/graph.ts";
import type { TensorShape } from "../arch.ts";
import type { WeightInfo, WeightSource } from "../nn.ts";

export interface ListedTensor extends TensorShape {
  readonly dtype: string;
}

const ESIZE: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4 };

/** Reads ../shared/reference/<file> (name TAB dtype TAB [shape]); undefined when absent. */
export function readReferenceList(file: string): ListedTensor[] | undefined {
  const path = sharedUrl(`reference/${file}`);
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
  const out: ListedTensor[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const [name, dtype, shape] = line.split("\t");
    out.push({ name, dtype, shape: JSON.parse(shape) as number[] });
  }
  return out;
}

/** A weight source whose constants point at fake file ranges of the right length. */
export function fakeWeightSource(list: readonly ListedTensor[]): WeightSource {
  const map = new Map<string, WeightInfo>();
  let offset = 0;
  for (const t of list) {
    const bytes = (t.shape.length === 0 ? 1 : t.shape.reduce((a, b) => a * b, 1)) * (ESIZE[t.dtype] ?? 4);
    map.set(t.name, { dtype: t.dtype, shape: t.shape, source: { kind: "file", path: "/fake", offset, bytes } });
    offset += bytes;
  }
  return { get: (n) => map.get(n) };
}

export interface Safetensors {
  readonly tensors: ListedTensor[];
  readonly metadata: Record<string, string>;
  /** Weight source with in-memory constants (f32 as Float32Array, f16/bf16 as Uint16Array). */
  readonly source: WeightSource;
  /** Float32 values of a tensor (f16 converted). */
  f32(name: string): Float32Array;
  /** Int32 values of an I32 tensor. */
  i32(name: string): Int32Array;
}

/** Parses a safetensors file held in memory. */
export function parseSafetensors(bytes: Uint8Array): Safetensors {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  const metadata = (header["__metadata__"] ?? {}) as Record<string, string>;
  delete header["__metadata__"];
  const base = 8 + n;
  const tensors: ListedTensor[] = [];
  const infos = new Map<string, WeightInfo>();
  const ranges = new Map<string, [number, number, string]>();
  for (const [name, v] of Object.entries(header)) {
    const e = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    tensors.push({ name, dtype: e.dtype, shape: e.shape });
    const [a, b] = e.data_offsets;
    ranges.set(name, [base + a, base + b, e.dtype]);
    let source: ConstantSource | undefined;
    const buf = bytes.slice(base + a, base + b).buffer;
    if (e.dtype === "F32") source = { kind: "data", data: new Float32Array(buf) };
    else if (e.dtype === "F16" || e.dtype === "BF16") source = { kind: "data", data: new Uint16Array(buf) };
    if (source) infos.set(name, { dtype: e.dtype, shape: e.shape, source });
  }
  const f32 = (name: string): Float32Array => {
    const r = ranges.get(name);
    if (!r) throw new Error(`no tensor ${name}`);
    const buf = bytes.slice(r[0], r[1]).buffer;
    if (r[2] === "F32") return new Float32Array(buf);
    if (r[2] === "F16") return Float32Array.from(new Uint16Array(buf), f16BitsToF32);
    throw new Error(`tensor ${name} is ${r[2]}`);
  };
  const i32 = (name: string): Int32Array => {
    const r = ranges.get(name);
    if (!r || r[2] !== "I32") throw new Error(`no I32 tensor ${name}`);
    return new Int32Array(bytes.slice(r[0], r[1]).buffer);
  };
  return { tensors, metadata, source: { get: (nm) => infos.get(nm) }, f32, i32 };
}

/** Op kinds and their counts in a graph (for structural assertions). */
export function opCounts(ops: readonly { kind: string }[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const o of ops) c[o.kind] = (c[o.kind] ?? 0) + 1;
  return c;
}
