/**
 * `-M convert`: any model sdflow reads (safetensors, ckpt, GGUF, a diffusers folder) written as a GGUF
 * file the way stable-diffusion.cpp's convert writes it: the file's tensor names (a diffusers folder's
 * as ldm names), sorted; 32-byte alignment; no metadata keys but sdflow's own (`sdflow.*`, which sd.cpp
 * ignores); sd.cpp's rule for which tensors take
 * `--type` ({@link takesWeightType}); the training-only tensors it drops, dropped. One tensor is in
 * memory at a time, and the output is written under a temporary name and renamed when complete.
 *
 * @example
 * ```ts
 * await convertModel("sd15.safetensors", "sd15-q8_0.gguf", { type: "q8_0" });
 * ```
 */
import { f32ToF16BitsInto } from "../../backends/float16.ts";
import { UnsupportedDtypeError, WeightFileError } from "./errors.ts";
import { readRangeSync } from "./io.ts";
import { openLdmWeights, openWeights } from "./open.ts";
import { isQuantDType, QUANT_BLOCKS, QUANT_TYPES, quantizeRows, type QuantizeType } from "./quant.ts";
import { fusedPartsOf, readTensorF32 } from "./tensor_data.ts";
import { DTYPE_SIZE, isLoadable, safeNumel, type TensorInfo, type WeightDType } from "./types.ts";
import { takesWeightType, type WeightType } from "./weight_type.ts";

/** GGUF type ids of the types a converted file holds. */
const GGUF_TYPE_ID: Readonly<Record<string, number>> = {
  f32: 0,
  f16: 1,
  q4_0: 2,
  q4_1: 3,
  q5_0: 6,
  q5_1: 7,
  q8_0: 8,
  q2_k: 10,
  q3_k: 11,
  q4_k: 12,
  q5_k: 13,
  q6_k: 14,
  i8: 24,
  i16: 25,
  i32: 26,
  bf16: 30,
};

const ALIGNMENT = 32;

/**
 * Tensors sd.cpp drops when it reads a checkpoint (training state, schedules it recomputes, unused
 * position ids): names starting with one of these.
 */
const UNUSED_PREFIXES = [
  "betas",
  "alphas_cumprod_prev",
  "sqrt_alphas_cumprod",
  "sqrt_one_minus_alphas_cumprod",
  "log_one_minus_alphas_cumprod",
  "sqrt_recip_alphas_cumprod",
  "sqrt_recipm1_alphas_cumprod",
  "posterior_variance",
  "posterior_log_variance_clipped",
  "posterior_mean_coef1",
  "posterior_mean_coef2",
  "cond_stage_model.transformer.text_model.embeddings.position_ids",
  "cond_stage_model.1.model.text_model.embeddings.position_ids",
  "cond_stage_model.transformer.vision_model.embeddings.position_ids",
  "cond_stage_model.model.logit_scale",
  "conditioner.embedders.0.transformer.text_model.embeddings.position_ids",
  "conditioner.embedders.0.model.logit_scale",
  "conditioner.embedders.1.model.logit_scale",
  "model.diffusion_model.time_embedding.cond_proj.weight",
  "unet.time_embedding.cond_proj.weight",
  "model_ema.decay",
  "model_ema.num_updates",
  "model_ema.diffusion_model",
  "embedding_manager",
  "denoiser.sigmas",
  "text_encoders.t5xxl.transformer.encoder.embed_tokens.weight",
  "ztsnr",
  "edm_vpred.sigma_min",
  "text_encoders.llm.output.weight",
  "text_encoders.llm.lm_head.",
];

/** A conversion that cannot be done (unsupported output, a tensor type with no GGUF equivalent). */
export class ConvertError extends Error {
  override name = "ConvertError";
}

export interface ConvertOptions {
  /** The type of the tensors sd.cpp's rule converts; absent: every tensor keeps its stored type. */
  type?: WeightType;
  /** Called after each tensor with the count done, the total and the bytes written so far. */
  onProgress?: (done: number, total: number, bytes: number) => void;
}

export interface ConvertResult {
  tensors: number;
  bytes: number;
  /** Tensors per written type, e.g. { q8_0: 380, f16: 751 }. */
  types: Record<string, number>;
}

/** The type sd.cpp stores a source dtype as before any `--type` (f64 → f32, i64 → i32, ...); undefined: none. */
function storedType(dtype: WeightDType): string | undefined {
  switch (dtype) {
    case "f64":
      return "f32";
    case "i64":
      return "i32";
    default:
      return GGUF_TYPE_ID[dtype] !== undefined ? dtype : undefined;
  }
}

const isFloatType = (t: string): boolean => t === "f32" || t === "f16" || t === "bf16" || isQuantDType(t);

interface Planned {
  info: TensorInfo;
  parts?: readonly TensorInfo[];
  type: string;
  shape: readonly number[];
  bytes: number;
  offset: number;
}

function typeBytes(type: string, n: number): number {
  if (isQuantDType(type)) return (n / QUANT_BLOCKS[type].elems) * QUANT_BLOCKS[type].bytes;
  return n * (type === "f32" || type === "i32" ? 4 : type === "f16" || type === "bf16" || type === "i16" ? 2 : 1);
}

/**
 * Converts model `input` to a GGUF file `output` (see the module comment). Throws a ConvertError or
 * a WeightFileError naming the problem; `output` is then left untouched.
 */
export async function convertModel(input: string, output: string, opts: ConvertOptions = {}): Promise<ConvertResult> {
  if (/\.safetensors$/i.test(output)) {
    throw new ConvertError(`${output}: sdflow converts to GGUF only; name the output .gguf`);
  }
  const st = await Deno.stat(input);
  const file = st.isDirectory ? await openLdmWeights(input) : await openWeights(input);
  try {
    const fromGguf = file.format === "gguf";
    const names = [...file.tensors.keys()]
      .filter((n) => fromGguf || !UNUSED_PREFIXES.some((p) => n.startsWith(p)))
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const plan: Planned[] = [];
    let offset = 0;
    for (const name of names) {
      const info = file.tensors.get(name)!;
      // Loadable tensors go through `get`: a GGUF input's quantized blocks get their scales checked.
      if (isLoadable(info.dtype) && !fusedPartsOf(file, name)) file.get(name);
      const stored = storedType(info.dtype);
      if (stored === undefined) {
        throw new UnsupportedDtypeError(
          file.path,
          name,
          info.fileDType ?? info.dtype,
          `${file.path}: tensor ${name} is ${info.fileDType ?? info.dtype}, which sdflow cannot convert to GGUF`,
        );
      }
      const type = opts.type && isFloatType(stored) && takesWeightType(name, info.shape, opts.type)
        ? opts.type
        : stored;
      const n = safeNumel(info.shape);
      const bytes = typeBytes(type, n);
      plan.push({ info, parts: fusedPartsOf(file, name), type, shape: info.shape, bytes, offset });
      offset += Math.ceil(bytes / ALIGNMENT) * ALIGNMENT;
    }
    const header = ggufHeader(plan, keptMetadata(file.metadata));
    const tmp = `${output}.sdflow-partial`;
    const out = await Deno.open(tmp, { write: true, create: true, truncate: true });
    const types: Record<string, number> = {};
    try {
      await writeAll(out, header);
      let written = header.length;
      for (const [i, p] of plan.entries()) {
        let produced = 0;
        for (const chunk of tensorChunks(file.path, p)) {
          produced += chunk.length;
          if (produced > p.bytes) break;
          await writeAll(out, chunk);
        }
        if (produced !== p.bytes) {
          throw new ConvertError(`${p.info.name}: produced ${produced} bytes, expected ${p.bytes}`);
        }
        const pad = Math.ceil(p.bytes / ALIGNMENT) * ALIGNMENT - p.bytes;
        if (pad) await writeAll(out, new Uint8Array(pad));
        written += p.bytes + pad;
        types[p.type] = (types[p.type] ?? 0) + 1;
        opts.onProgress?.(i + 1, plan.length, written);
      }
      out.close();
      await Deno.rename(tmp, output);
      return { tensors: plan.length, bytes: written, types };
    } catch (e) {
      try {
        out.close();
      } catch { /* already closed */ }
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
  } finally {
    file.close();
  }
}

async function writeAll(f: Deno.FsFile, data: Uint8Array): Promise<void> {
  for (let o = 0; o < data.length;) o += await f.write(data.subarray(o));
}

/** Elements per conversion chunk: about 4 Mi (16 MiB as f32), rounded down to whole rows. */
const CHUNK = 1 << 22;

/**
 * A tensor's bytes in its planned type, in chunks of at most {@link CHUNK} elements: the stored bytes
 * when the type is unchanged, else read, widened to f32 and encoded chunk by chunk.
 */
function* tensorChunks(path: string, p: Planned): Generator<Uint8Array> {
  const { info, type } = p;
  const n = safeNumel(info.shape);
  if (p.parts) {
    // A diffusers folder's q/k/v of a fused tensor: small; concatenated whole.
    const values = new Float32Array(n);
    let at = 0;
    for (const piece of p.parts) {
      const v = readTensorF32(piece);
      if (at + v.length > n) break;
      values.set(v, at);
      at += v.length;
    }
    if (at !== n) throw new WeightFileError(path, `${path}: the pieces of ${info.name} do not hold ${n} values`);
    yield encode(info.name, type, values, info.shape[info.shape.length - 1]);
    return;
  }
  const src = info.source;
  if (src.kind !== "file") {
    const rows = info.shape.length ? info.shape[info.shape.length - 1] : 1;
    yield info.dtype === type ? rawBytes(info, p.bytes) : encode(info.name, type, readTensorF32(info), rows);
    return;
  }
  // Whole rows per chunk: sd.cpp's quantization weighs each block by its row's mean square.
  const rowLength = info.shape.length ? info.shape[info.shape.length - 1] : 1;
  const step = Math.max(1, Math.floor(CHUNK / rowLength)) * rowLength;
  for (let e0 = 0; e0 < n; e0 += step) {
    const count = Math.min(step, n - e0);
    const from = sourceSpan(info, e0, count);
    const piece: TensorInfo = {
      ...info,
      shape: [count],
      source: { ...src, offset: src.offset + from.offset, bytes: from.bytes },
    };
    yield info.dtype === type
      ? readRangeSync(src.path, src.offset + from.offset, from.bytes)
      : encode(info.name, type, readTensorF32(piece), rowLength);
  }
}

/** Byte offset and length of elements [e0, e0 + n) of a stored tensor (e0 whole blocks for block types). */
function sourceSpan(info: TensorInfo, e0: number, n: number): { offset: number; bytes: number } {
  if (isQuantDType(info.dtype)) {
    const b = QUANT_BLOCKS[info.dtype];
    return { offset: (e0 / b.elems) * b.bytes, bytes: Math.ceil(n / b.elems) * b.bytes };
  }
  const size = DTYPE_SIZE[info.dtype];
  if (size === undefined) {
    throw new UnsupportedDtypeError("<convert>", info.name, info.fileDType ?? info.dtype);
  }
  return { offset: e0 * size, bytes: n * size };
}

function rawBytes(info: TensorInfo, bytes: number): Uint8Array {
  const s = info.source;
  if (s.kind === "file") return readRangeSync(s.path, s.offset, bytes);
  return new Uint8Array(s.data.buffer, s.data.byteOffset, bytes);
}

/** f32 values (whole rows of `rowLength`) as `type`'s bytes. */
function encode(name: string, type: string, values: Float32Array, rowLength: number): Uint8Array {
  const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  switch (type) {
    case "f32":
      return bytes(values);
    case "f16":
      return bytes(f32ToF16BitsInto(values));
    case "i32":
      return bytes(Int32Array.from(values));
    case "i16":
      return bytes(Int16Array.from(values));
    case "i8":
      return bytes(Int8Array.from(values));
    case "bf16": {
      // Only bf16 sources keep bf16, and their f32 widening is exact: the high halves are the bits.
      const u32 = new Uint32Array(values.buffer, values.byteOffset, values.length);
      return bytes(Uint16Array.from(u32, (u) => u >>> 16));
    }
    default:
      if ((QUANT_TYPES as readonly string[]).includes(type)) {
        return quantizeRows(type as QuantizeType, values, rowLength);
      }
      throw new ConvertError(`${name}: cannot write type ${type}`);
  }
}

/**
 * sdflow's own string metadata of the input (`sdflow.*`, e.g. the tiny models' head counts), kept as GGUF
 * strings. sd.cpp writes no metadata (and ignores unknown keys), so a real model converts to the same
 * bytes as sd.cpp's convert writes.
 */
function keptMetadata(metadata: Readonly<Record<string, unknown>>): [string, string][] {
  return Object.entries(metadata)
    .filter((e): e is [string, string] => typeof e[1] === "string" && e[0].startsWith("sdflow."))
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** GGUF v3 header: string keys, the tensor infos (dims innermost first, trailing 1s trimmed as ggml does), padding. */
function ggufHeader(plan: readonly Planned[], metadata: readonly [string, string][]): Uint8Array {
  const te = new TextEncoder();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const push = (b: Uint8Array) => (chunks.push(b), size += b.length);
  const u32 = (v: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    push(b);
  };
  const u64 = (v: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    push(b);
  };
  u32(0x46554747);
  u32(3);
  u64(plan.length);
  u64(metadata.length);
  const str = (s: string) => {
    const b = te.encode(s);
    u64(b.length);
    push(b);
  };
  for (const [k, v] of metadata) {
    str(k);
    u32(8);
    str(v);
  }
  for (const p of plan) {
    str(p.info.name);
    const ne = [...p.shape].reverse();
    let nDims = ne.length;
    while (nDims > 1 && ne[nDims - 1] === 1) nDims--;
    if (ne.length === 0) ne.push(1), nDims = 1;
    u32(nDims);
    for (let d = 0; d < nDims; d++) u64(ne[d]);
    u32(GGUF_TYPE_ID[p.type]);
    u64(p.offset);
  }
  const total = Math.ceil(size / ALIGNMENT) * ALIGNMENT;
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) out.set(c, o), o += c.length;
  return out;
}
