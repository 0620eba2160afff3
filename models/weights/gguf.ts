/**
 * GGUF (v2/v3) reader: header, metadata key/values, tensor infos, aligned data
 * section. F32/F16/BF16, Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 and Q2_K..Q6_K tensors load as file ranges (the
 * quantized ones after a check of their block scales); other types are listed and refused
 * when requested. GGUF stores dims fastest-first; shapes here are PyTorch order.
 *
 * @example
 * ```ts
 * const f = await openGguf("sd15-f16.gguf");
 * f.metadata["general.alignment"];
 * ```
 */
import { CorruptHeaderError, TruncatedFileError, UnsupportedDtypeError, UnsupportedFormatError } from "./errors.ts";
import { type RangeReader, readRangeSync, withReader } from "./io.ts";
import { firstBadScale, isQuantDType, QUANT_BLOCKS } from "./quant.ts";
import { TensorTable } from "./table.ts";
import {
  fmtShape,
  type MetadataValue,
  safeNumel,
  type TensorInfo,
  type WeightDType,
  type WeightFile,
} from "./types.ts";

/** GGUF tensor types: id -> [name, elements per block, bytes per block]. */
export const GGUF_TYPES: Readonly<Record<number, readonly [string, number, number]>> = {
  0: ["F32", 1, 4],
  1: ["F16", 1, 2],
  2: ["Q4_0", 32, 18],
  3: ["Q4_1", 32, 20],
  6: ["Q5_0", 32, 22],
  7: ["Q5_1", 32, 24],
  8: ["Q8_0", 32, 34],
  9: ["Q8_1", 32, 36],
  10: ["Q2_K", 256, 84],
  11: ["Q3_K", 256, 110],
  12: ["Q4_K", 256, 144],
  13: ["Q5_K", 256, 176],
  14: ["Q6_K", 256, 210],
  15: ["Q8_K", 256, 292],
  16: ["IQ2_XXS", 256, 66],
  17: ["IQ2_XS", 256, 74],
  18: ["IQ3_XXS", 256, 98],
  19: ["IQ1_S", 256, 50],
  20: ["IQ4_NL", 32, 18],
  21: ["IQ3_S", 256, 110],
  22: ["IQ2_S", 256, 82],
  23: ["IQ4_XS", 256, 136],
  24: ["I8", 1, 1],
  25: ["I16", 1, 2],
  26: ["I32", 1, 4],
  27: ["I64", 1, 8],
  28: ["F64", 1, 8],
  29: ["IQ1_M", 256, 56],
  30: ["BF16", 1, 2],
  34: ["TQ1_0", 256, 54],
  35: ["TQ2_0", 256, 66],
  39: ["MXFP4", 32, 17],
};

const MAX_DIMS = 8;
const MAX_STRING = 64 * 1024 * 1024;

/** Opens a GGUF file; reads only its header. */
export function openGguf(path: string): Promise<WeightFile> {
  return withReader(path, (r) => readGguf(r));
}

/** Sequential reads through a window of the file, refilled on demand (headers can hold MBs of vocab). */
class Cursor {
  pos = 0;
  private buf: Uint8Array = new Uint8Array(0);
  private bufStart = 0;
  constructor(private readonly r: RangeReader) {}
  async take(n: number, what: string): Promise<DataView> {
    if (!Number.isSafeInteger(n) || n < 0 || this.pos + n > this.r.size) {
      throw new TruncatedFileError(
        this.r.path,
        `${this.r.path} is truncated: ${what} at byte ${this.pos} needs ${n} bytes but the file has ${this.r.size}`,
      );
    }
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.buf.length) {
      const len = Math.min(Math.max(n, 1 << 20), this.r.size - this.pos);
      this.buf = await this.r.read(this.pos, len, what);
      this.bufStart = this.pos;
    }
    const o = this.pos - this.bufStart;
    this.pos += n;
    return new DataView(this.buf.buffer, this.buf.byteOffset + o, n);
  }
  async u32(what: string): Promise<number> {
    return (await this.take(4, what)).getUint32(0, true);
  }
  async u64(what: string): Promise<number> {
    const v = (await this.take(8, what)).getBigUint64(0, true);
    if (v > BigInt(this.r.size) * 8n) {
      throw new CorruptHeaderError(this.r.path, `${this.r.path}: ${what} = ${v} is impossible for this file size`);
    }
    return Number(v);
  }
  async str(what: string): Promise<string> {
    const n = await this.u64(what);
    if (n > MAX_STRING) throw new CorruptHeaderError(this.r.path, `${this.r.path}: ${what} is ${n} bytes long`);
    const v = await this.take(n, what);
    return new TextDecoder().decode(new Uint8Array(v.buffer, v.byteOffset, n));
  }
}

export async function readGguf(r: RangeReader): Promise<WeightFile> {
  const path = r.path;
  const bad = (m: string) => new CorruptHeaderError(path, `${path}: ${m}; the file is corrupt`);
  const c = new Cursor(r);
  if ((await c.u32("the magic")) !== 0x46554747) throw bad("no GGUF magic");
  const version = await c.u32("the version");
  if (version !== 2 && version !== 3) {
    throw new UnsupportedFormatError(path, `${path} is GGUF version ${version}; sdflow reads versions 2 and 3`);
  }
  const nTensors = await c.u64("the tensor count");
  const nKv = await c.u64("the key/value count");
  if (nTensors * 24 > r.size || nKv * 12 > r.size) throw bad(`header claims ${nTensors} tensors and ${nKv} keys`);

  const scalar = async (type: number, what: string): Promise<MetadataValue> => {
    switch (type) {
      case 0:
        return (await c.take(1, what)).getUint8(0);
      case 1:
        return (await c.take(1, what)).getInt8(0);
      case 2:
        return (await c.take(2, what)).getUint16(0, true);
      case 3:
        return (await c.take(2, what)).getInt16(0, true);
      case 4:
        return (await c.take(4, what)).getUint32(0, true);
      case 5:
        return (await c.take(4, what)).getInt32(0, true);
      case 6:
        return (await c.take(4, what)).getFloat32(0, true);
      case 7:
        return (await c.take(1, what)).getUint8(0) !== 0;
      case 8:
        return await c.str(what);
      case 10:
      case 11: {
        const d = await c.take(8, what);
        const v = type === 10 ? d.getBigUint64(0, true) : d.getBigInt64(0, true);
        return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      case 12:
        return (await c.take(8, what)).getFloat64(0, true);
      default:
        throw bad(`${what} has unknown value type ${type}`);
    }
  };
  const metadata: Record<string, MetadataValue> = {};
  for (let i = 0; i < nKv; i++) {
    const key = await c.str(`key ${i}`);
    const type = await c.u32(`the type of ${key}`);
    if (type === 9) {
      const et = await c.u32(`the element type of ${key}`);
      const n = await c.u64(`the length of ${key}`);
      if (et === 9) throw bad(`${key} is a nested array`);
      if (n > r.size - c.pos) throw bad(`array ${key} claims ${n} elements`);
      const arr: MetadataValue[] = [];
      for (let j = 0; j < n; j++) arr.push(await scalar(et, key));
      metadata[key] = arr;
    } else {
      metadata[key] = await scalar(type, key);
    }
  }
  const alignment = metadata["general.alignment"] ?? 32;
  if (typeof alignment !== "number" || alignment < 1 || (alignment & (alignment - 1)) !== 0) {
    throw bad(`general.alignment ${alignment} is not a power of two`);
  }

  const infos: { name: string; shape: number[]; type: number; offset: number }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = await c.str(`tensor name ${i}`);
    const nd = await c.u32(`the rank of ${name}`);
    if (nd > MAX_DIMS) throw bad(`tensor ${name} has rank ${nd}`);
    const ne: number[] = [];
    for (let d = 0; d < nd; d++) ne.push(await c.u64(`a dim of ${name}`));
    const type = await c.u32(`the type of ${name}`);
    const offset = await c.u64(`the offset of ${name}`);
    if (offset % alignment !== 0) throw bad(`tensor ${name} offset ${offset} is not ${alignment}-aligned`);
    infos.push({ name, shape: ne.reverse(), type, offset });
  }
  const dataStart = Math.ceil(c.pos / alignment) * alignment;

  const tensors = new Map<string, TensorInfo>();
  const ranges: { name: string; begin: number; end: number }[] = [];
  for (const t of infos) {
    if (tensors.has(t.name)) throw bad(`tensor ${t.name} appears twice`);
    const spec = GGUF_TYPES[t.type];
    const numel = safeNumel(t.shape);
    if (numel < 0) throw bad(`tensor ${t.name} has an impossible shape ${fmtShape(t.shape)}`);
    let bytes = 0;
    if (spec) {
      const [, blck, size] = spec;
      const rowLen = t.shape.length ? t.shape[t.shape.length - 1] : 1;
      if (rowLen % blck !== 0) throw bad(`tensor ${t.name} rows of ${rowLen} do not split into ${blck}-element blocks`);
      bytes = (numel / blck) * size;
      if (dataStart + t.offset + bytes > r.size) {
        throw new TruncatedFileError(
          path,
          `${path} is truncated: tensor ${t.name} ends at byte ${dataStart + t.offset + bytes} ` +
            `but the file has ${r.size} bytes; download it again`,
        );
      }
      ranges.push({ name: t.name, begin: t.offset, end: t.offset + bytes });
    }
    const typeName = spec?.[0] ?? `type id ${t.type}`;
    tensors.set(t.name, {
      name: t.name,
      dtype: spec ? typeName.toLowerCase() as WeightDType : "unknown",
      shape: t.shape,
      fileDType: typeName,
      source: { kind: "file", path, offset: dataStart + t.offset, bytes },
    });
  }
  ranges.sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i].begin < ranges[i - 1].end) throw bad(`tensors ${ranges[i - 1].name} and ${ranges[i].name} overlap`);
  }
  return new TensorTable({
    path,
    format: "gguf",
    tensors,
    metadata,
    dtypeError: (t) =>
      new UnsupportedDtypeError(
        path,
        t.name,
        t.fileDType ?? t.dtype,
        t.dtype === "unknown"
          ? `${path}: tensor ${t.name} has GGUF ${t.fileDType}, which sdflow does not know (it loads ${LOADED}); ` +
            `the file is corrupt or from a newer ggml`
          : `${path}: tensor ${t.name} is ${t.fileDType}, which sdflow does not load (it loads ${LOADED}); ` +
            `convert the model with sdflow -M convert --type q8_0 (or q4_0, ..., f16)`,
      ),
    verify: (t) => verifyScales(path, t),
  });
}

const LOADED = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K..Q6_K";

/** Refuses a quantized tensor with a NaN or infinite block scale (read in 16 MiB runs of whole blocks). */
function verifyScales(path: string, t: TensorInfo): void {
  if (!isQuantDType(t.dtype) || t.source.kind !== "file") return;
  const blockBytes = QUANT_BLOCKS[t.dtype].bytes;
  const run = Math.floor((16 << 20) / blockBytes) * blockBytes;
  for (let off = 0; off < t.source.bytes; off += run) {
    const n = Math.min(run, t.source.bytes - off);
    const bad = firstBadScale(t.dtype, readRangeSync(t.source.path, t.source.offset + off, n));
    if (bad >= 0) {
      throw new CorruptHeaderError(
        path,
        `${path}: tensor ${t.name} (${t.fileDType}) block ${off / blockBytes + bad} has a NaN or infinite scale; ` +
          `the file is corrupt`,
      );
    }
  }
}

/** Bytes of a GGUF v3 file (for tests and tools): string/number metadata, tensors of known types. */
export function encodeGguf(
  metadata: Record<string, string | number>,
  tensors: readonly { name: string; type: number; shape: readonly number[]; data: Uint8Array }[],
  alignment = 32,
): Uint8Array {
  const parts: number[] = [];
  const te = new TextEncoder();
  const u32 = (v: number) => parts.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  const u64 = (v: number) => (u32(v % 2 ** 32), u32(Math.floor(v / 2 ** 32)));
  const str = (s: string) => {
    const b = te.encode(s);
    u64(b.length);
    parts.push(...b);
  };
  u32(0x46554747);
  u32(3);
  u64(tensors.length);
  u64(Object.keys(metadata).length);
  for (const [k, v] of Object.entries(metadata)) {
    str(k);
    if (typeof v === "string") (u32(8), str(v));
    else (u32(4), u32(v));
  }
  let off = 0;
  const offs: number[] = [];
  for (const t of tensors) {
    str(t.name);
    u32(t.shape.length);
    [...t.shape].reverse().forEach(u64);
    u32(t.type);
    u64(off);
    offs.push(off);
    off = Math.ceil((off + t.data.length) / alignment) * alignment;
  }
  const start = Math.ceil(parts.length / alignment) * alignment;
  const out = new Uint8Array(start + off);
  out.set(parts);
  tensors.forEach((t, i) => out.set(t.data, start + offs[i]));
  return out;
}
