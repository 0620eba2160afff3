/** `vae_encode` and `vae_decode`: between pixels and latents. */

import { defineNode } from "../node.ts";
import { estimateNetwork } from "./model_layer.ts";
import { RNGS } from "./sampler.ts";

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
  },
  outputs: { latent: "LATENT" },
  async run({ vae, image, seed, rng }) {
    for (const im of image) {
      if (im.width % 8 || im.height % 8) {
        throw new Error(`image is ${im.width}x${im.height}; vae_encode needs width and height that are multiples of 8`);
      }
    }
    return { latent: await vae.encode(image, seed === undefined ? {} : { seed, rng }) };
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
  },
  outputs: { image: "IMAGE" },
  async run({ vae, latent }, ctx) {
    return { image: await vae.decode(latent, (done, total) => ctx.progress(done, total)) };
  },
  async estimate({ vae, latent }) {
    const shape = latent?.shape;
    if (!vae?.checkpoint || !shape) return { ops: [], note: "input size unknown" };
    const r = await estimateNetwork("vae_decoder", { checkpoint: vae.checkpoint, latentShape: shape });
    const [n, , h, w] = shape;
    return { ops: r.ops ?? [], note: r.note, outputs: { image: { shape: [n, h * 8, w * 8, 3] } } };
  },
});
