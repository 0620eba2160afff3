/**
 * What a weight file is, once opened: a table of tensors that point into the
 * file (path, byte offset, byte length) or, rarely, into memory.
 */
import { type ConstantSource, isQuantDType, type QuantDType } from "../../engine/graph.ts";

/** Element types the engine loads directly (q*: ggml blocks, from GGUF files or `--type`). */
export type LoadableDType = "f32" | "f16" | "bf16" | QuantDType;

/** GGUF block-quantized and other GGUF-only types (the q4_0..q8_0 of {@link LoadableDType} load; these are listed only). */
export type GgufOnlyDType =
  | "q8_1"
  | "q8_k"
  | "iq2_xxs"
  | "iq2_xs"
  | "iq3_xxs"
  | "iq1_s"
  | "iq4_nl"
  | "iq3_s"
  | "iq2_s"
  | "iq4_xs"
  | "iq1_m"
  | "tq1_0"
  | "tq2_0"
  | "mxfp4";

/** Every element type a weight file may declare; only {@link LoadableDType} can be requested with `get`. */
export type WeightDType =
  | LoadableDType
  | "f64"
  | "i64"
  | "i32"
  | "i16"
  | "i8"
  | "u64"
  | "u32"
  | "u16"
  | "u8"
  | "bool"
  | "f8_e4m3"
  | "f8_e5m2"
  | "c64"
  | "c128"
  | GgufOnlyDType
  | "unknown";

/** Where a tensor's bytes are: a file range or memory (the engine's `ConstantSource` minus backend buffers). */
export type TensorSource = Exclude<ConstantSource, { kind: "buffer" }>;

/** One tensor of a weight file. Row-major, contiguous, little-endian. */
export interface TensorInfo {
  readonly name: string;
  readonly dtype: WeightDType;
  readonly shape: readonly number[];
  /**
   * The bytes. For `data` sources of dtypes the engine has no array type for
   * (i64, f64, u8, ...) the array is a `Uint16Array` view or padded copy whose
   * first `numel * size` bytes are the tensor; loadable dtypes are always exact.
   */
  readonly source: TensorSource;
  /** The dtype as the file spells it ("I64", "torch.HalfStorage", "Q4_0"), for messages. */
  readonly fileDType?: string;
}

/** A {@link TensorInfo} the engine can load as a constant. */
export interface LoadableTensor extends TensorInfo {
  readonly dtype: LoadableDType;
}

export type WeightFormat = "safetensors" | "ckpt" | "gguf" | "diffusers";

export type MetadataValue = string | number | bigint | boolean | null | readonly MetadataValue[];

/** An opened weight file (or diffusers folder). */
export interface WeightFile {
  readonly path: string;
  readonly format: WeightFormat;
  /** Every tensor the file declares, loadable or not. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** safetensors `__metadata__`, GGUF key/values, a checkpoint's scalar entries (e.g. `global_step`). */
  readonly metadata: Readonly<Record<string, MetadataValue>>;
  /**
   * The tensor `name`, ready for the engine. Throws MissingTensorError (with the closest name),
   * UnsupportedDtypeError or UnsupportedLayoutError.
   */
  get(name: string): LoadableTensor;
  has(name: string): boolean;
  /** Drops the tensor table and any in-memory storages. Sources already handed out stay valid. */
  close(): void;
}

export const DTYPE_SIZE: Readonly<Partial<Record<WeightDType, number>>> = {
  f32: 4,
  f16: 2,
  bf16: 2,
  f64: 8,
  i64: 8,
  i32: 4,
  i16: 2,
  i8: 1,
  u64: 8,
  u32: 4,
  u16: 2,
  u8: 1,
  bool: 1,
  f8_e4m3: 1,
  f8_e5m2: 1,
  c64: 8,
  c128: 16,
};

export function isLoadable(dtype: WeightDType): dtype is LoadableDType {
  return dtype === "f32" || dtype === "f16" || dtype === "bf16" || isQuantDType(dtype);
}

/** Product of dims, or -1 if it is not a safe integer. */
export function safeNumel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return -1;
  }
  return n;
}

export const fmtShape = (s: readonly number[]): string => `[${s.join(", ")}]`;
