/** `vae_encode` and `vae_decode`: between pixels and latents. */

import type { VaeTilingOptions } from "../../models/types.ts";
import { defineNode } from "../node.ts";
import { estimateNetwork } from "./model_layer.ts";
import { RNGS } from "./sampler.ts";

/** The tiling inputs of vae_decode and vae_encode (stable-diffusion.cpp's --vae-tiling flags). */
const TILING_INPUTS = {
  tiled: {
    schema: {
      type: "boolean",
      default: false,
      description: "Run the VAE in overlapping tiles blended as stable-diffusion.cpp blends them (its " +
        "--vae-tiling): memory stays bounded by the tile size, so big images fit.",
    },
  },
  tile_size: {
    schema: {
      type: "integer",
      minimum: 4,
      maximum: 4096,
      default: 32,
      description: "Tile size in latent pixels (x8 image pixels), sd.cpp's --vae-tile-size. Encoding uses " +
        "tiles twice this size, as sd.cpp does.",
    },
  },
  tile_overlap: {
    schema: {
      type: "number",
      minimum: 0,
      maximum: 0.5,
      default: 0.5,
      description: "Requested overlap of neighbouring tiles, a fraction of the tile (sd.cpp's --vae-tile-overlap); " +
        "the real overlap is recomputed so the tiles fit the image exactly.",
    },
  },
} as const;

function tilingOf(tiled: boolean, size: number, overlap: number): VaeTilingOptions | undefined {
  return tiled ? { tileX: size, tileY: size, overlap } : undefined;
}

/** Encodes images into latents (img2img's starting point). */
export const vaeEncode = defineNode({
  type: "vae_encode",
  category: "latent",
  description: "Encodes images into the VAE's latent space (scaled by the VAE's factor), e.g. for img2img.",
  inputs: {
    vae: { type: "VAE", description: "The VAE (a checkpoint's vae output)." },
    image: { type: "IMAGE", description: "The images to encode; width and height must be multiples of 8." },
    seed: {
      optional: true,
      schema: {
        type: "integer",
        minimum: 0,
        maximum: 9007199254740991,
        description: "Samples the VAE posterior with noise from this seed, as stable-diffusion.cpp's img2img does " +
          "(give the sampler's seed to match it). Without a seed the posterior's mean is taken.",
      },
    },
    rng: {
      schema: {
        enum: RNGS,
        default: "cuda",
        description: "Random number generator for the posterior noise (used only with a seed).",
      },
    },
    ...TILING_INPUTS,
  },
  outputs: { latent: "LATENT" },
  async run({ vae, image, seed, rng, tiled, tile_size, tile_overlap }) {
    for (const im of image) {
      if (im.width % 8 || im.height % 8) {
        throw new Error(`image is ${im.width}x${im.height}; vae_encode needs width and height that are multiples of 8`);
      }
    }
    const tiling = tilingOf(tiled, tile_size, tile_overlap);
    return { latent: await vae.encode(image, { ...(seed === undefined ? {} : { seed, rng }), tiling }) };
  },
  async estimate({ vae, image }) {
    const shape = image?.shape;
    if (!vae?.checkpoint || !shape) return { ops: [], note: "input size unknown" };
    const r = await estimateNetwork("vae_encoder", { checkpoint: vae.checkpoint, imageShape: shape });
    const [n, h, w] = shape;
    return { ops: r.ops ?? [], note: r.note, outputs: { latent: { shape: [n, 4, h / 8, w / 8] } } };
  },
});

/** Decodes latents into images. */
export const vaeDecode = defineNode({
  type: "vae_decode",
  category: "latent",
  description: "Decodes latents into images with the VAE decoder.",
  inputs: {
    vae: { type: "VAE", description: "The VAE (a checkpoint's vae output)." },
    latent: { type: "LATENT", description: "The latents to decode (a sampler's output)." },
    ...TILING_INPUTS,
  },
  outputs: { image: "IMAGE" },
  async run({ vae, latent, tiled, tile_size, tile_overlap }, ctx) {
    const tiling = tilingOf(tiled, tile_size, tile_overlap);
    return { image: await vae.decode(latent, (done, total) => ctx.progress(done, total), { tiling }) };
  },
  async estimate({ vae, latent }) {
    const shape = latent?.shape;
    if (vae?.taesd && shape) {
      const [n, , h, w] = shape;
      return { ops: [], note: "TAESD cost not estimated", outputs: { image: { shape: [n, h * 8, w * 8, 3] } } };
    }
    if (!vae?.checkpoint || !shape) return { ops: [], note: "input size unknown" };
    const r = await estimateNetwork("vae_decoder", { checkpoint: vae.checkpoint, latentShape: shape });
    const [n, , h, w] = shape;
    return { ops: r.ops ?? [], note: r.note, outputs: { image: { shape: [n, h * 8, w * 8, 3] } } };
  },
});
