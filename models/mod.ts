/**
 * The model layer: loading checkpoints (safetensors, ckpt, gguf, diffusers
 * folders), the SD networks as tensor graphs, tokenizer, samplers, and the
 * entry points pipeline nodes call.
 *
 * @example
 * ```ts
 * import { loadCheckpoint, sample } from "./mod.ts";
 * const ckpt = await loadCheckpoint("sd15.safetensors");
 * const positive = await ckpt.textEncoder.encode("a lovely cat");
 * const negative = await ckpt.textEncoder.encode("");
 * const latent = await sample({
 *   denoiser: ckpt.denoiser, positive, negative, batch: 1, seed: 42, steps: 20, cfgScale: 7,
 *   method: "euler_a", scheduler: "discrete", rng: "cuda",
 *   latent: { shape: [1, 4, 64, 64], data: new Float32Array(4 * 64 * 64) },
 * });
 * const [image] = await ckpt.vae.decode(latent);
 * ```
 */

export * from "./types.ts";
export {
  CheckpointError,
  loadCheckpoint,
  type LoadedVae,
  type LoadOptions,
  loadVae,
  type LoadVaeOptions,
} from "./checkpoint.ts";
export { VaeFileError } from "./vae/file.ts";
export { PREDICTIONS } from "./arch.ts";
export {
  ConvertError,
  convertModel,
  type ConvertResult,
  isWeightType,
  WEIGHT_TYPES,
  type WeightType,
} from "./weights/mod.ts";
export {
  type Embedding,
  type EmbeddingDir,
  EmbeddingError,
  embeddingName,
  loadEmbedding,
  loadEmbeddingDir,
  type LoadEmbeddingOptions,
  type SkippedEmbedding,
} from "./clip/embeddings.ts";
export { resolveSampleMethod, resolveScheduler, sample, type SampleOptions } from "./generate.ts";
export { estimateNetwork } from "./estimate.ts";
export { assertFinite, firstNonFinite, NonFiniteError } from "./finite.ts";
export { PromptWeightError } from "./prompt/mod.ts";
export { makeTinyCheckpoint } from "./tiny/mod.ts";
export {
  type ApplyMode,
  applyPatches,
  type BlockResidualPatch,
  type DecoderPatch,
  deltaMismatch,
  type DenseDelta,
  hostWeight,
  type LowRankDelta,
  type ModelPatch,
  type Patchable,
  PatchError,
  type RowRange,
  type UnetCall,
  type WeightDelta,
  type WeightPatch,
} from "./patch.ts";
export { mergeWeight, readWeightF32 } from "./patch_weights.ts";
export { type LoadedLora, loadLora, LoraError, type LoraModelInfo, type LoraOptions, matchLora } from "./lora/lora.ts";
export type { WeightInfo } from "./nn.ts";
export {
  DEFAULT_UPSCALE_TILE,
  loadUpscaler,
  type UpscaleOptions,
  type Upscaler,
  type UpscalerLoadOptions,
} from "./esrgan/upscaler.ts";
export { type EsrganConfig, EsrganError } from "./esrgan/esrgan.ts";
export { loadTaesd, type Taesd, type TaesdLoadOptions } from "./taesd/load.ts";
export { TaesdError } from "./taesd/taesd.ts";
export { TilingError, VAE_TILE_DEFAULT, VAE_TILE_OVERLAP_DEFAULT } from "./tiling.ts";
