/** The few tensor reads JS itself does (schedules, embeddings) and zero-copy row splits. */
import { bf16BitsToF32, f16BitsToF32 } from "../../backends/float16.ts";
import { CorruptHeaderError, UnsupportedDtypeError } from "./errors.ts";
import { readRangeSync } from "./io.ts";
import { dequantize, isQuantDType, quantBytes } from "./quant.ts";
import {
  DTYPE_SIZE,
  fmtShape,
  isLoadable,
  type LoadableTensor,
  safeNumel,
  type TensorInfo,
  type WeightFile,
} from "./types.ts";

/** Bytes of a tensor's source, read from its file range or viewed from memory. */
function sourceBytes(info: TensorInfo, bytes: number): Uint8Array {
  const s = info.source;
  if (s.kind === "file") {
    if (s.bytes < bytes) {
      throw new CorruptHeaderError(s.path, `${s.path}: tensor ${info.name} has ${s.bytes} bytes, needs ${bytes}`);
    }
    return readRangeSync(s.path, s.offset, bytes);
  }
  if (s.data.byteLength < bytes) {
    throw new CorruptHeaderError(
      "<memory>",
      `tensor ${info.name} has ${s.data.byteLength} bytes in memory, needs ${bytes}`,
    );
  }
  return new Uint8Array(s.data.buffer, s.data.byteOffset, bytes);
}

/**
 * A tensor's values as float32, read synchronously: for small tensors JS needs (alphas_cumprod,
 * textual-inversion embeddings). Converts f16/bf16/f64/i64/i32/i16/i8/u8/bool and dequantizes q4_0..q8_0.
 *
 * @example
 * ```ts
 * const ac = readTensorF32(file.tensors.get("alphas_cumprod")!);
 * ```
 */
export function readTensorF32(info: TensorInfo): Float32Array {
  const size = DTYPE_SIZE[info.dtype];
  const n = safeNumel(info.shape);
  const where = info.source.kind === "file" ? info.source.path : "<memory>";
  if (isQuantDType(info.dtype)) {
    const n = safeNumel(info.shape);
    return dequantize(info.dtype, sourceBytes(info, quantBytes(info.dtype, n)), n);
  }
  const conv = ["f32", "f16", "bf16", "f64", "i64", "i32", "i16", "i8", "u8", "bool"];
  if (size === undefined || !conv.includes(info.dtype)) {
    throw new UnsupportedDtypeError(where, info.name, info.fileDType ?? info.dtype);
  }
  if (n < 0) throw new CorruptHeaderError(where, `tensor ${info.name} has an impossible shape ${fmtShape(info.shape)}`);
  const b = sourceBytes(info, n * size);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    switch (info.dtype) {
      case "f32":
        out[i] = dv.getFloat32(4 * i, true);
        break;
      case "f16":
        out[i] = f16BitsToF32(dv.getUint16(2 * i, true));
        break;
      case "bf16":
        out[i] = bf16BitsToF32(dv.getUint16(2 * i, true));
        break;
      case "f64":
        out[i] = dv.getFloat64(8 * i, true);
        break;
      case "i64":
        out[i] = Number(dv.getBigInt64(8 * i, true));
        break;
      case "i32":
        out[i] = dv.getInt32(4 * i, true);
        break;
      case "i16":
        out[i] = dv.getInt16(2 * i, true);
        break;
      case "i8":
        out[i] = dv.getInt8(i);
        break;
      default:
        out[i] = dv.getUint8(i);
    }
  }
  return out;
}

/**
 * Splits tensor `name` along its first axis into blocks of `rows` rows, without copying: a
 * fused tensor (OpenCLIP `attn.in_proj_weight`) becomes byte sub-ranges; one stored as separate
 * pieces (a diffusers folder's q/k/v) returns the pieces.
 *
 * @example
 * ```ts
 * const [q, k, v] = splitRows(file, "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", [1024, 1024, 1024]);
 * ```
 */
export function splitRows(file: WeightFile, name: string, rows: readonly number[]): LoadableTensor[] {
  const parts = fusedPartsOf(file, name);
  if (parts) {
    if (parts.length !== rows.length || parts.some((p, i) => p.shape[0] !== rows[i])) {
      throw new CorruptHeaderError(
        file.path,
        `${file.path}: the pieces of ${name} have ${parts.map((p) => p.shape[0]).join("+")} rows, not ${
          rows.join("+")
        }`,
      );
    }
    return parts.map((p) => probe(file, p));
  }
  const t = file.get(name);
  const total = rows.reduce((a, b) => a + b, 0);
  if (t.shape.length < 1 || total !== t.shape[0]) {
    throw new CorruptHeaderError(
      file.path,
      `${file.path}: ${name} ${fmtShape(t.shape)} does not split into ${rows.join("+")} rows`,
    );
  }
  const rowBytes = (t.source.kind === "file" ? t.source.bytes : t.source.data.byteLength) / total;
  let row = 0;
  return rows.map((r) => {
    const shape = [r, ...t.shape.slice(1)];
    const s = t.source;
    const name_ = `${name}#rows${row}-${row + r}`;
    const source: TensorInfo["source"] = s.kind === "file"
      ? { kind: "file", path: s.path, offset: s.offset + row * rowBytes, bytes: r * rowBytes }
      : {
        kind: "data",
        data: s.data instanceof Float32Array
          ? s.data.subarray((row * rowBytes) / 4, ((row + r) * rowBytes) / 4)
          : s.data instanceof Uint8Array
          ? s.data.subarray(row * rowBytes, (row + r) * rowBytes)
          : (s.data as Uint16Array).subarray((row * rowBytes) / 2, ((row + r) * rowBytes) / 2),
      };
    row += r;
    return { ...t, name: name_, shape, source };
  });
}

/**
 * Rows [start, start + count) of tensor `name` when the file stores it in pieces (a diffusers folder's
 * q/k/v of a fused ldm in_proj) and one piece is exactly those rows; undefined when it is stored whole
 * (slice `get(name)` then). Rows that straddle pieces are a CorruptHeaderError.
 */
export function storedRows(file: WeightFile, name: string, start: number, count: number): LoadableTensor | undefined {
  const parts = fusedPartsOf(file, name);
  if (!parts) return undefined;
  let row = 0;
  for (const p of parts) {
    if (row === start && p.shape[0] === count) return probe(file, p);
    row += p.shape[0];
  }
  throw new CorruptHeaderError(
    file.path,
    `${file.path}: rows ${start}..${start + count} of ${name} are not one of its stored pieces (${
      parts.map((p) => p.shape[0]).join("+")
    } rows)`,
  );
}

/** The stored pieces of a fused tensor, from a {@link TensorTable} or a view that forwards them. */
export function fusedPartsOf(file: WeightFile, name: string): readonly TensorInfo[] | undefined {
  const f = file as WeightFile & { fusedParts?: (n: string) => readonly TensorInfo[] | undefined };
  return typeof f.fusedParts === "function" ? f.fusedParts(name) : undefined;
}

/** A piece of a fused tensor, checked loadable like `get` would. */
function probe(file: WeightFile, p: TensorInfo): LoadableTensor {
  if (!isLoadable(p.dtype)) {
    throw new UnsupportedDtypeError(file.path, p.name, p.fileDType ?? p.dtype);
  }
  return p as LoadableTensor;
}
