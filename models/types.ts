/**
 * The values that flow between pipeline nodes, and the model interfaces that
 * produce them. Plugins (nodes) depend on these; models implement them.
 */

import type { UnetConfig } from "./arch.ts";
import type { Patchable } from "./patch.ts";

/** A dense float32 tensor held in JavaScript (latents, embeddings: small). */
export interface HostTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Latents in the VAE's latent space: [N, C, H/8, W/8], already scaled by the VAE's factor. */
export interface Latent extends HostTensor {
  /**
   * Inpainting: the latent mask, [H/8 · W/8] (1 = repaint, 0 = keep); the sampler blends every prediction
   * with this latent outside the mask (models/inpaint.ts).
   */
  readonly noiseMask?: Float32Array;
  /** Inpainting models (9 input channels): [1, 5, H/8, W/8], the latent mask and the masked picture's latent. */
  readonly inpaintConcat?: HostTensor;
}

/** An 8-bit image, row-major, interleaved channels. */
export interface Image {
  readonly width: number;
  readonly height: number;
  readonly channels: 3 | 4;
  readonly data: Uint8Array;
}

/** Text conditioning: cross-attention context [N, tokens, dim], plus SDXL's pooled vector. */
export interface Conditioning {
  readonly context: HostTensor;
  /** SDXL: the pooled, projected bigG embedding [N, 1280] the UNet's vector conditioning starts with. */
  readonly pooled?: HostTensor;
  /** The prompt it encodes, and the CLIP skip used, carried to the description of the pictures it makes. */
  readonly prompt?: string;
  readonly clipSkip?: number;
  /**
   * SDXL: the prompt was the empty string. Used as the negative prompt, its context is then all
   * zeros and its pooled vector is kept (stable-diffusion.cpp's rule; see models/generate.ts).
   */
  readonly emptyPrompt?: boolean;
}

export type ModelFamily = "sd1" | "sd2" | "sdxl";
export type Prediction = "eps" | "v";

export interface TextEncoderOptions {
  /** 1 = last layer (default); 2 = penultimate, as sd-webui and stable-diffusion.cpp count. */
  clipSkip?: number;
}

/** Patchable (models/patch.ts) when its loader supports patches, as the checkpoint loader's does. */
export interface TextEncoder extends Partial<Patchable<TextEncoder>> {
  encode(prompt: string, opts?: TextEncoderOptions): Promise<Conditioning>;
}

/** The UNet as a k-diffusion style noise predictor. */
export interface Denoiser extends Partial<Patchable<Denoiser>> {
  readonly family: ModelFamily;
  readonly prediction: Prediction;
  /** alphas_cumprod of the training schedule (1000 entries). */
  readonly alphasCumprod: Float64Array;
  /** The UNet's configuration, for add-ons built to match it (ControlNet); absent for models that take no residuals. */
  readonly unet?: UnetConfig;
  /**
   * Predicts the noise (eps, or v) for a batch. x: [N, 4, h, w]; timesteps: one per batch item;
   * context: [N, tokens, dim]. Conditional and unconditional passes are batched by the caller.
   * `control`: ControlNet residuals, already scaled, one per input block then the middle block's
   * ([N, C, H, W] each, in stable-diffusion.cpp's order), added to the skips and the middle block.
   */
  predict(
    x: HostTensor,
    timesteps: Float32Array,
    cond: Conditioning,
    control?: readonly HostTensor[],
  ): Promise<HostTensor>;
}

/**
 * VAE tiling as stable-diffusion.cpp's `--vae-tiling` flags set it (see models/tiling.ts): tile size in
 * latent pixels per axis (default 32), or relative sizes, and the requested overlap (default 0.5).
 */
export interface VaeTilingOptions {
  readonly tileX?: number;
  readonly tileY?: number;
  readonly relX?: number;
  readonly relY?: number;
  readonly overlap?: number;
}

export interface VaeDecodeOptions {
  /** Decode in overlapping tiles, blended as sd.cpp blends them (bounded memory for big images). */
  readonly tiling?: VaeTilingOptions;
}

export interface VaeEncodeOptions {
  /** Posterior noise seed (KL VAE only): sampled as stable-diffusion.cpp's img2img; without, the mean. */
  readonly seed?: number;
  readonly rng?: "cuda" | "std_default" | "cpu";
  /** Encode in overlapping tiles (sd.cpp's encode tiles are twice the decode tile size). */
  readonly tiling?: VaeTilingOptions;
}

export interface Vae {
  /** Latent channels (4 for SD 1/2/XL) and the factor latents are scaled by (0.18215 for SD 1/2; 1 for TAESD). */
  readonly latentChannels: number;
  readonly scalingFactor: number;
  /** True when the VAE came from its own file (`--vae`, a `vae` input, `vae_loader`), not the checkpoint. */
  readonly separate?: boolean;
  decode(
    latent: Latent,
    onProgress?: (done: number, total: number) => void,
    opts?: VaeDecodeOptions,
  ): Promise<Image[]>;
  /**
   * Encodes images to scaled latents. With `seed`, the posterior is sampled with noise from `rng`
   * seeded with it (as stable-diffusion.cpp's img2img does); without, its mean is taken.
   */
  encode(images: readonly Image[], opts?: VaeEncodeOptions): Promise<Latent>;
}

export interface Checkpoint {
  readonly family: ModelFamily;
  /**
   * How `denoiser.prediction` was decided: a marker in the file, a caller override, the family default,
   * or stable-diffusion.cpp's SD 2.x UNet probe.
   */
  readonly predictionSource?: "file" | "override" | "default" | "probe";
  readonly path: string;
  readonly textEncoder: TextEncoder;
  readonly denoiser: Denoiser;
  readonly vae: Vae;
  /**
   * Bytes of the weights the networks use (UNet, text encoders, VAE) as stored: the memory the checkpoint
   * takes once each network has run. A server's model cache budgets by it.
   */
  readonly weightBytes: number;
  dispose(): void;
}
