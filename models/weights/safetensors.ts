/**
 * safetensors reader: an 8-byte little-endian header length, a JSON header, then
 * the tensor bytes. Only the header is read; tensors become file ranges.
 *
 * @example
 * ```ts
 * const f = await openSafetensors("model.safetensors");
 * const w = f.get("model.diffusion_model.out.2.weight"); // { dtype, shape, source: { kind: "file", ... } }
 * ```
 */
import { CorruptHeaderError, TruncatedFileError } from "./errors.ts";
import { type RangeReader, withReader } from "./io.ts";
import { TensorTable } from "./table.ts";
import {
  DTYPE_SIZE,
  fmtShape,
  type MetadataValue,
  safeNumel,
  type TensorInfo,
  type WeightDType,
  type WeightFile,
} from "./types.ts";

/** Largest header accepted (the format's own limit is 100 MB). */
export const MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024;

const DTYPES: Record<string, WeightDType> = {
  F32: "f32",
  F16: "f16",
  BF16: "bf16",
  F64: "f64",
  I64: "i64",
  I32: "i32",
  I16: "i16",
  I8: "i8",
  U64: "u64",
  U32: "u32",
  U16: "u16",
  U8: "u8",
  BOOL: "bool",
  F8_E4M3: "f8_e4m3",
  F8_E5M2: "f8_e5m2",
  C64: "c64",
};

/** Opens a safetensors file and validates its header against itself and the file's size. */
export function openSafetensors(path: string): Promise<WeightFile> {
  return withReader(path, (r) => readSafetensors(r));
}

/** Parses the header of an opened file (exported for the diffusers reader and tests). */
export async function readSafetensors(r: RangeReader): Promise<WeightFile> {
  const path = r.path;
  const bad = (msg: string) => new CorruptHeaderError(path, `${path}: ${msg}`);
  if (r.size < 8) {
    throw new TruncatedFileError(
      path,
      `${path} is ${r.size} bytes, too short for a safetensors header; download it again`,
    );
  }
  const lenBytes = await r.read(0, 8, "the header length");
  const n = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (n > BigInt(MAX_SAFETENSORS_HEADER)) {
    throw bad(`header length ${n} exceeds the 100 MB limit: not a safetensors file, or a corrupt one`);
  }
  const hlen = Number(n);
  if (8 + hlen > r.size) {
    throw new TruncatedFileError(
      path,
      `${path}: header length ${hlen} runs past the end of the file (${r.size} bytes): the file is truncated or not safetensors`,
    );
  }
  const raw = await r.read(8, hlen, "the JSON header");
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw));
  } catch (e) {
    throw bad(`header is not valid UTF-8 JSON (${(e as Error).message}); the file is corrupt`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw bad("header is not a JSON object; the file is corrupt");
  }
  const dataStart = 8 + hlen;
  const dataLen = r.size - dataStart;
  const tensors = new Map<string, TensorInfo>();
  const metadata: Record<string, MetadataValue> = {};
  const ranges: { name: string; begin: number; end: number }[] = [];
  let furthest: { name: string; end: number } | undefined;

  for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad("__metadata__ is not an object");
      for (const [k, mv] of Object.entries(v as Record<string, unknown>)) {
        metadata[k] = typeof mv === "string" ? mv : JSON.stringify(mv);
      }
      continue;
    }
    if (typeof v !== "object" || v === null) throw bad(`entry for tensor ${name} is not an object`);
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e.dtype !== "string") throw bad(`tensor ${name} has no dtype`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`tensor ${name} has an invalid shape ${JSON.stringify(e.shape)}`);
    }
    const off = e.data_offsets;
    if (
      !Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      off[0] > off[1]
    ) {
      throw bad(`tensor ${name} has invalid data_offsets ${JSON.stringify(off)}`);
    }
    const shape = e.shape as number[];
    const [begin, end] = off as [number, number];
    const dtype = DTYPES[e.dtype] ?? "unknown";
    const size = DTYPE_SIZE[dtype];
    const numel = safeNumel(shape);
    if (numel < 0) throw bad(`tensor ${name} has an impossible shape ${fmtShape(shape)}`);
    if (size !== undefined && numel * size !== end - begin) {
      throw bad(
        `header lies about sizes: tensor ${name} is ${e.dtype} ${fmtShape(shape)} = ${numel * size} bytes ` +
          `but its data_offsets [${begin}, ${end}] span ${end - begin}; the file is corrupt`,
      );
    }
    if (!furthest || end > furthest.end) furthest = { name, end };
    ranges.push({ name, begin, end });
    tensors.set(name, {
      name,
      dtype,
      shape,
      fileDType: e.dtype,
      source: { kind: "file", path, offset: dataStart + begin, bytes: end - begin },
    });
  }
  if (furthest && furthest.end > dataLen) {
    throw new TruncatedFileError(
      path,
      `${path} is truncated: tensor ${furthest.name} ends at byte ${dataStart + furthest.end} ` +
        `but the file has ${r.size} bytes (expected at least ${dataStart + furthest.end}); download it again`,
    );
  }
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < ranges.length; i++) {
    const p = ranges[i - 1];
    const c = ranges[i];
    if (c.begin < p.end && c.end > c.begin) {
      throw bad(
        `tensors ${p.name} [${p.begin}, ${p.end}) and ${c.name} [${c.begin}, ${c.end}) overlap; the file is corrupt`,
      );
    }
  }
  return new TensorTable({ path, format: "safetensors", tensors, metadata });
}

/** Bytes of a safetensors file holding `entries` (for writers and tests). */
export function encodeSafetensors(
  entries: readonly { name: string; dtype: string; shape: readonly number[]; data: Uint8Array }[],
  metadata?: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + e.data.byteLength] };
    off += e.data.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const hj = new Uint8Array(json.length + ((8 - (json.length % 8)) % 8)).fill(0x20);
  hj.set(json);
  const out = new Uint8Array(8 + hj.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hj.length), true);
  out.set(hj, 8);
  let p = 8 + hj.length;
  for (const e of entries) {
    out.set(e.data, p);
    p += e.data.byteLength;
  }
  return out;
}
