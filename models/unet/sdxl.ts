/**
 * SDXL's extra conditioning vector `y` [N, 2816] for the UNet's label_emb
 * (sgm's vector conditioners, as stable-diffusion.cpp builds it): the OpenCLIP
 * bigG pooled, projected text embedding (1280) followed by 256-wide sinusoidal
 * embeddings ([cos | sin], max period 10000) of original_size (h, w),
 * crop_coords_top_left (top, left) and target_size (h, w): 1280 + 6 * 256.
 */

import { ArchError } from "../arch.ts";

export interface SdxlSizeConditioning {
  originalWidth: number;
  originalHeight: number;
  cropLeft?: number;
  cropTop?: number;
  targetWidth: number;
  targetHeight: number;
}

/** Sinusoidal embedding of one scalar, sgm's timestep_embedding (cos first), in float32 as sd.cpp computes it. */
function embed(out: Float32Array, at: number, value: number, dim: number): void {
  const half = dim / 2;
  for (let i = 0; i < half; i++) {
    const freq = Math.fround(Math.exp(Math.fround((-Math.log(10000) * i) / half)));
    const arg = Math.fround(value * freq);
    out[at + i] = Math.cos(arg);
    out[at + half + i] = Math.sin(arg);
  }
}

/**
 * Builds `y` for `pooled` [N, pooledDim] (one row per batch entry): each row
 * gets the same size conditioning. `admInChannels` checks the total width.
 */
export function sdxlVector(
  pooled: Float32Array,
  batch: number,
  size: SdxlSizeConditioning,
  admInChannels = 2816,
  embedDim = 256,
): Float32Array {
  const pooledDim = pooled.length / batch;
  if (!Number.isInteger(pooledDim) || pooledDim + 6 * embedDim !== admInChannels) {
    throw new ArchError(
      `SDXL vector: pooled width ${pooledDim} + 6 x ${embedDim} does not make the UNet's ${admInChannels} channels`,
    );
  }
  const values = [
    size.originalHeight,
    size.originalWidth,
    size.cropTop ?? 0,
    size.cropLeft ?? 0,
    size.targetHeight,
    size.targetWidth,
  ];
  const y = new Float32Array(batch * admInChannels);
  for (let b = 0; b < batch; b++) {
    const base = b * admInChannels;
    y.set(pooled.subarray(b * pooledDim, (b + 1) * pooledDim), base);
    values.forEach((v, k) => embed(y, base + pooledDim + k * embedDim, v, embedDim));
  }
  return y;
}
