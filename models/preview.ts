/**
 * The cheapest live preview: stable-diffusion.cpp's `--preview proj`, a fixed linear map from the 4 latent
 * channels to RGB at latent resolution (its latent-preview.h coefficients for SD 1.x/2.x and SDXL), no network.
 */

import type { Image, Latent, ModelFamily } from "./types.ts";

const SD_PROJ = [
  [0.337366, 0.216344, 0.257386],
  [0.165636, 0.386828, 0.046994],
  [-0.267803, 0.237036, 0.223517],
  [-0.178022, -0.200862, -0.678514],
];
const SD_BIAS = [-0.017478, -0.055834, -0.105825];
const SDXL_PROJ = [
  [0.258303, 0.27764, 0.329699],
  [-0.299701, 0.105446, 0.014194],
  [0.050522, 0.186163, -0.143257],
  [-0.211938, -0.149892, -0.080036],
];
const SDXL_BIAS = [0.144381, -0.033313, 0.007061];

/** Latent [1, 4, h, w] to an h x w RGB preview: rgb = latent . proj + bias, then (v + 1) / 2, clamped, times 255, truncated. */
export function projectLatent(latent: Latent, family: ModelFamily): Image {
  const [, c, h, w] = latent.shape;
  if (c !== 4) throw new RangeError(`latent preview: expected 4 latent channels, got ${c}`);
  const [proj, bias] = family === "sdxl" ? [SDXL_PROJ, SDXL_BIAS] : [SD_PROJ, SD_BIAS];
  const plane = h * w;
  const data = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++) {
    for (let k = 0; k < 3; k++) {
      let v = bias[k];
      for (let d = 0; d < 4; d++) v += latent.data[d * plane + i] * proj[d][k];
      const u = Math.min(1, Math.max(0, v * 0.5 + 0.5));
      data[i * 3 + k] = Math.trunc(u * 255); // sd.cpp truncates here
    }
  }
  return { width: w, height: h, channels: 3, data };
}
