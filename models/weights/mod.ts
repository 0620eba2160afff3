/**
 * Weight files: safetensors, PyTorch checkpoints (restricted unpickler), GGUF and
 * diffusers folders, opened without reading tensor data. Every tensor is a
 * `(path, offset, bytes, dtype, shape)` the backend memory-maps.
 *
 * @example
 * ```ts
 * import { openLdmWeights } from "./models/weights/mod.ts";
 * const f = await openLdmWeights("sd15.safetensors");
 * const w = f.get("first_stage_model.decoder.conv_in.weight");
 * ```
 */
export * from "./errors.ts";
export type {
  GgufOnlyDType,
  LoadableDType,
  LoadableTensor,
  MetadataValue,
  TensorInfo,
  TensorSource,
  WeightDType,
  WeightFile,
  WeightFormat,
} from "./types.ts";
export { DTYPE_SIZE, isLoadable } from "./types.ts";
export { openLdmWeights, openWeights, sniffFormat } from "./open.ts";
export { encodeSafetensors, openSafetensors } from "./safetensors.ts";
export { isContiguous, openCkpt } from "./ckpt.ts";
export { encodeGguf, GGUF_TYPES, openGguf } from "./gguf.ts";
export { DIFFUSERS_COMPONENTS, isDiffusersFolder, openDiffusers } from "./diffusers.ts";
export {
  type DiffusersContext,
  diffusersFamily,
  diffusersToLdmName,
  type LdmTarget,
  ldmToDiffusersNames,
  type ModelFamily,
  toLdmNames,
  upBlocksWithAttention,
} from "./names.ts";
export { readTensorF32, splitRows, storedRows } from "./tensor_data.ts";
export { closestName, TensorTable } from "./table.ts";
export { dequantize, firstBadScale, QUANT_TYPES, quantize } from "./quant.ts";
export { isWeightType, takesWeightType, WEIGHT_TYPES, type WeightType, withWeightType } from "./weight_type.ts";
export { ConvertError, convertModel, type ConvertOptions, type ConvertResult } from "./convert.ts";
