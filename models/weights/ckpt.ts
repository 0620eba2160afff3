/**
 * PyTorch checkpoints (.ckpt/.pt/.pth/.bin): a zip holding `<archive>/data.pkl`
 * and one entry per storage, `<archive>/data/<key>`. The pickle is read with the
 * restricted unpickler; stored (uncompressed) storages become file ranges, the rare
 * deflated ones are inflated into memory.
 *
 * @example
 * ```ts
 * const f = await openCkpt("v1-5-pruned-emaonly.ckpt");
 * f.get("model.diffusion_model.input_blocks.0.0.weight");
 * ```
 */
import { CorruptHeaderError, UnsupportedFormatError, UnsupportedLayoutError, type WeightFileError } from "./errors.ts";
import { type RangeReader, withReader } from "./io.ts";
import { PyGlobal, PyTuple, TensorRef, unpickle } from "./pickle.ts";
import { TensorTable } from "./table.ts";
import {
  DTYPE_SIZE,
  fmtShape,
  type MetadataValue,
  safeNumel,
  type TensorInfo,
  type TensorSource,
  type WeightDType,
  type WeightFile,
} from "./types.ts";
import { entryDataOffset, readEntry, readZipDirectory, type ZipEntry } from "./zip.ts";

const STORAGE_DTYPES: Record<string, WeightDType> = {
  FloatStorage: "f32",
  HalfStorage: "f16",
  BFloat16Storage: "bf16",
  DoubleStorage: "f64",
  LongStorage: "i64",
  IntStorage: "i32",
  ShortStorage: "i16",
  CharStorage: "i8",
  ByteStorage: "u8",
  BoolStorage: "bool",
  ComplexFloatStorage: "c64",
  ComplexDoubleStorage: "c128",
  Float8_e4m3fnStorage: "f8_e4m3",
  Float8_e5m2Storage: "f8_e5m2",
};

interface StorageRef {
  readonly key: string;
  readonly dtype: WeightDType;
  readonly typeName: string;
  readonly numel: number;
}

/** Keys under which trainers nest the weights. */
const NESTING_KEYS = ["state_dict", "params_ema", "params", "model", "module"];

/** Opens a PyTorch zip checkpoint. Legacy (pre-1.6, non-zip) pickles are refused. */
export function openCkpt(path: string): Promise<WeightFile> {
  return withReader(path, (r) => readCkpt(r));
}

export async function readCkpt(r: RangeReader): Promise<WeightFile> {
  const path = r.path;
  const bad = (m: string) => new CorruptHeaderError(path, `${path}: ${m}; the file is corrupt`);
  const magic = await r.read(0, Math.min(4, r.size), "the file magic");
  if (magic[0] === 0x80) {
    throw new UnsupportedFormatError(
      path,
      `${path} uses PyTorch's legacy (pre-1.6, non-zip) format, which sdflow does not read; ` +
        `re-save it with a current torch.save or convert it to .safetensors`,
    );
  }
  const entries = await readZipDirectory(r);
  let pkl: ZipEntry | undefined;
  for (const e of entries.values()) {
    if (/^[^/]+\/data\.pkl$/.test(e.name) && (!pkl || e.name.length < pkl.name.length)) pkl = e;
  }
  if (!pkl) throw bad("no <archive>/data.pkl in the zip: not a PyTorch checkpoint");
  const prefix = pkl.name.slice(0, -"data.pkl".length);
  const byteorder = entries.get(`${prefix}byteorder`);
  if (byteorder && byteorder.size < 16) {
    const order = new TextDecoder().decode(await readEntry(r, byteorder)).trim();
    if (order !== "little") {
      throw new UnsupportedFormatError(
        path,
        `${path} was saved on a ${order}-endian machine; re-save it little-endian`,
      );
    }
  }

  const storages = new Map<string, StorageRef>();
  const root = unpickle(await readEntry(r, pkl), {
    path,
    persistentLoad(pid) {
      const t = pid instanceof PyTuple ? pid.items : undefined;
      if (!t || t[0] !== "storage" || !(t[1] instanceof PyGlobal) || typeof t[2] !== "string") {
        throw bad("pickle has a persistent id that is not a torch storage");
      }
      const typeName = (t[1] as PyGlobal).name;
      const numel = t[4];
      if (!Number.isSafeInteger(numel) || (numel as number) < 0) throw bad(`storage ${t[2]} has an invalid size`);
      const s: StorageRef = {
        key: t[2] as string,
        dtype: STORAGE_DTYPES[typeName] ?? "unknown",
        typeName: `torch.${typeName}`,
        numel: numel as number,
      };
      const prev = storages.get(s.key);
      if (prev && (prev.dtype !== s.dtype || prev.numel !== s.numel)) throw bad(`storage ${s.key} is declared twice`);
      storages.set(s.key, s);
      return s;
    },
  });

  const metadata: Record<string, MetadataValue> = {};
  let dict: Map<unknown, unknown> | undefined;
  if (root instanceof Map) {
    for (const [k, v] of root) {
      if (typeof k === "string" && ["string", "number", "bigint", "boolean"].includes(typeof v)) {
        metadata[k] = v as MetadataValue;
      }
    }
    const hasTensors = [...root.values()].some((v) => v instanceof TensorRef);
    const nestKey = hasTensors ? undefined : NESTING_KEYS.find((k) => root.get(k) instanceof Map);
    dict = nestKey ? root.get(nestKey) as Map<unknown, unknown> : root;
  }
  if (!dict) throw bad("pickle holds no dictionary of tensors");
  const refs = new Map<string, TensorRef>();
  flatten(dict, "", refs, new Set(), 0);

  const tensors = new Map<string, TensorInfo>();
  const problems = new Map<string, () => WeightFileError>();
  const storageSource = new Map<string, { offset: number; bytes: number; data?: Uint8Array }>();
  for (const [name, ref] of refs) {
    const st = ref.storage as StorageRef;
    if (!st || typeof st !== "object" || !("key" in st)) throw bad(`tensor ${name} has no storage`);
    const size = DTYPE_SIZE[st.dtype];
    if (size === undefined) {
      // Storage type without a known element size (quantized, new float8 kinds): listed so the
      // rest of the file loads; it has no byte range, and get() refuses it by dtype.
      tensors.set(name, {
        name,
        dtype: st.dtype,
        shape: ref.shape,
        fileDType: st.typeName,
        source: { kind: "data", data: new Uint16Array(0) },
      });
      continue;
    }
    let src = storageSource.get(st.key);
    if (!src) {
      const entry = entries.get(`${prefix}data/${st.key}`);
      if (!entry) throw bad(`storage ${st.key} of tensor ${name} is missing from the archive`);
      if (entry.size < st.numel * size) {
        throw bad(`storage ${st.key} holds ${entry.size} bytes but the pickle declares ${st.numel} x ${size}`);
      }
      src = entry.method === 0
        ? { offset: await entryDataOffset(r, entry), bytes: entry.size }
        : { offset: 0, bytes: entry.size, data: await readEntry(r, entry) };
      storageSource.set(st.key, src);
    }
    const numel = safeNumel(ref.shape);
    if (numel < 0) throw bad(`tensor ${name} has an impossible shape ${fmtShape(ref.shape)}`);
    // Highest element touched, for any strides.
    let extent = numel === 0 ? 0 : 1;
    ref.shape.forEach((d, i) => (extent += numel === 0 ? 0 : (d - 1) * ref.stride[i]));
    if (ref.offset + extent > st.numel) {
      throw bad(
        `tensor ${name} ${fmtShape(ref.shape)} at element ${ref.offset} runs past its storage of ${st.numel} elements`,
      );
    }
    const contiguous = isContiguous(ref.shape, ref.stride);
    const span = (contiguous ? numel : extent) * size;
    const byteOff = ref.offset * size;
    const source: TensorSource = src.data
      ? { kind: "data", data: view(src.data, byteOff, span, st.dtype) }
      : { kind: "file", path, offset: src.offset + byteOff, bytes: span };
    tensors.set(name, { name, dtype: st.dtype, shape: ref.shape, fileDType: st.typeName, source });
    if (!contiguous) {
      problems.set(name, () =>
        new UnsupportedLayoutError(
          path,
          `tensor ${name} in ${path} is not contiguous (shape ${fmtShape(ref.shape)}, strides ${
            fmtShape(ref.stride)
          }); ` +
            `re-save the checkpoint with .contiguous() tensors or convert it to .safetensors`,
        ));
    }
  }
  return new TensorTable({ path, format: "ckpt", tensors, metadata, problems });
}

function flatten(
  m: Map<unknown, unknown>,
  prefix: string,
  out: Map<string, TensorRef>,
  seen: Set<unknown>,
  depth: number,
) {
  if (seen.has(m) || depth > 4) return;
  seen.add(m);
  for (const [k, v] of m) {
    if (typeof k !== "string" && typeof k !== "number") continue;
    if (v instanceof TensorRef) out.set(prefix + k, v);
    else if (v instanceof Map) flatten(v, `${prefix}${k}.`, out, seen, depth + 1);
  }
}

/** torch's rule: strides match row-major order, ignoring dims of size 1. */
export function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] === 0) return true;
    if (shape[i] !== 1 && stride[i] !== expect) return false;
    expect *= shape[i];
  }
  return true;
}

/** A typed view of `bytes` bytes at `offset` of an inflated storage (copied when misaligned). */
function view(buf: Uint8Array, offset: number, bytes: number, dtype: WeightDType): Float32Array | Uint16Array {
  const slice = buf.subarray(offset, offset + bytes);
  const aligned = (a: number) => (buf.byteOffset + offset) % a === 0 ? slice : slice.slice();
  if (dtype === "f32") {
    const s = aligned(4);
    return new Float32Array(s.buffer, s.byteOffset, bytes / 4);
  }
  if (bytes % 2 === 0) {
    const s = aligned(2);
    return new Uint16Array(s.buffer, s.byteOffset, bytes / 2);
  }
  const padded = new Uint8Array(bytes + 1);
  padded.set(slice);
  return new Uint16Array(padded.buffer, 0, (bytes + 1) / 2);
}
