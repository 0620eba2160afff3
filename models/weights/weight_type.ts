/**
 * stable-diffusion.cpp's `--type`: which tensors take the requested type, and a view of a weight file
 * whose weights are converted to it when first requested (quantize on load).
 *
 * @example
 * ```ts
 * const file = withWeightType(await openLdmWeights("sd15.safetensors"), "q8_0");
 * file.get("model.diffusion_model.input_blocks.1.1.proj_in.weight").dtype; // "q8_0" or kept, per sd.cpp's rule
 * ```
 */
import { f32ToF16BitsInto } from "../../backends/float16.ts";
import { isQuantDType, QUANT_BLOCKS, quantizeRows, type QuantizeType } from "./quant.ts";
import { fusedPartsOf, readTensorF32 } from "./tensor_data.ts";
import type { LoadableTensor, TensorInfo, WeightFile } from "./types.ts";

/** The types `--type` takes (sd.cpp's spelling). */
export type WeightType = QuantizeType | "f16" | "f32";
export const WEIGHT_TYPES: readonly WeightType[] = ["f32", "f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"];

export function isWeightType(s: string): s is WeightType {
  return (WEIGHT_TYPES as readonly string[]).includes(s);
}

/** Name fragments whose tensors sd.cpp never converts (embeddings, FLUX/MMDiT/UNet input and time layers). */
const KEEP_CONTAINS = [
  "img_in.",
  "txt_in.",
  "time_in.",
  "vector_in.",
  "guidance_in.",
  "final_layer.",
  "x_embedder.",
  "t_embedder.",
  "y_embedder.",
  "pos_embed",
  "context_embedder.",
  "time_embed.",
  "label_emb.",
  "embedding",
];
const KEEP_SUFFIX = [".bias", ".scale", ".weight_scale"];

/**
 * Whether sd.cpp's conversion gives tensor `name` (PyTorch-order `shape`) the type `type`
 * (`ModelLoader::tensor_should_be_converted`): not biases, scales, embeddings or the layers listed
 * above; for a block type, only when the innermost dimension is whole blocks.
 */
export function takesWeightType(name: string, shape: readonly number[], type: WeightType): boolean {
  if (isQuantDType(type)) {
    const inner = shape.length ? shape[shape.length - 1] : 1;
    if (inner % QUANT_BLOCKS[type].elems !== 0) return false;
  }
  if (KEEP_SUFFIX.some((s) => name.endsWith(s))) return false;
  return !KEEP_CONTAINS.some((s) => name.includes(s));
}

/** `values` (f32, whole rows of `rowLength`) as `type`'s bytes / bits, quantized as sd.cpp does. */
export function encodeAs(
  type: WeightType,
  values: Float32Array,
  rowLength: number,
): Float32Array | Uint16Array | Uint8Array {
  if (type === "f32") return values;
  if (type === "f16") return f32ToF16BitsInto(values);
  return quantizeRows(type, values, rowLength);
}

/**
 * `file`, with every float tensor that sd.cpp's rule gives `type` converted to it when requested
 * (kept in memory, once per tensor); other tensors (and other types) pass through unchanged.
 */
export function withWeightType(file: WeightFile, type: WeightType): WeightFile {
  const converted = new Map<string, LoadableTensor>();
  const convert = (t: LoadableTensor): LoadableTensor => {
    if (t.dtype === type || !takesWeightType(t.name, t.shape, type)) return t;
    let c = converted.get(t.name);
    if (!c) {
      const data = encodeAs(type, readTensorF32(t), t.shape.length ? t.shape[t.shape.length - 1] : 1);
      c = { ...t, dtype: type, fileDType: `${t.fileDType ?? t.dtype} as ${type}`, source: { kind: "data", data } };
      converted.set(t.name, c);
    }
    return c;
  };
  const view: WeightFile & { fusedParts(name: string): readonly TensorInfo[] | undefined } = {
    // Pieces of fused tensors (a diffusers folder's q/k/v) pass through in their stored type.
    fusedParts: (name: string) => fusedPartsOf(file, name),
    path: file.path,
    format: file.format,
    get tensors(): ReadonlyMap<string, TensorInfo> {
      return file.tensors;
    },
    metadata: file.metadata,
    get: (name) => convert(file.get(name)),
    has: (name) => file.has(name),
    close: () => {
      converted.clear();
      file.close();
    },
  };
  return view;
}
