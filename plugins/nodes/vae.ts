/** `vae_encode` and `vae_decode`: between pixels and latents. */

import { defineNode } from "../node.ts";
import { estimateNetwork } from "./model_layer.ts";

/** Encodes images into latents (img2img's starting point). */
export const vaeEncode = defineNode({
  type: "vae_encode",
  category: "latent",
  description: "Encodes images into the VAE's latent space (scaled by the VAE's factor), e.g. for img2img.",
  inputs: {
    vae: { type: "VAE", description: "The VAE (a checkpoint's vae output)." },
    image: { type: "IMAGE", description: "The images to encode; width and height must be multiples of 8." },
  },
  outputs: { latent: "LATENT" },
  async run({ vae, image }) {
    for (const im of image) {
      if (im.width % 8 || im.height % 8) {
        throw new Error(`image is ${im.width}x${im.height}; vae_encode needs width and height that are multiples of 8`);
      }
    }
    return { latent: await vae.encode(image) };
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
