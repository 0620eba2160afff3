/** `inpaint_encode`: a picture and a mask as the sampler's starting latent for inpainting. */

import { defineNode, NodeInputError } from "../node.ts";
import { inpaintConcat, latentMask, maskedImage, MaskError, pixelMask } from "../../models/inpaint.ts";
import { estimateNetwork } from "./model_layer.ts";
import { RNGS } from "./sampler.ts";

/** Encodes a picture for inpainting (ComfyUI's VAEEncode + SetLatentNoiseMask, or InpaintModelConditioning). */
export const inpaintEncode = defineNode({
  type: "inpaint_encode",
  category: "latent",
  description: "Encodes a picture with the VAE and attaches a mask: the sampler repaints the white area and keeps " +
    "the rest (every prediction is blended with the encoded picture outside the mask, as stable-diffusion.cpp " +
    "does). For inpainting checkpoints (9 input channels, e.g. SD 1.5 inpainting) it also encodes the masked " +
    "picture and hands the mask and that latent to the UNet as its extra channels.",
  inputs: {
    model: { type: "MODEL", description: "The model that will sample (tells whether it is an inpainting model)." },
    vae: { type: "VAE", description: "The VAE (a checkpoint's vae output)." },
    image: { type: "IMAGE", description: "The picture to repaint; width and height multiples of 8." },
    mask: {
      type: "IMAGE",
      description: "Same size as the picture; white (grey >= 128) is repainted, black kept.",
    },
    seed: {
      optional: true,
      schema: {
        type: "integer",
        minimum: 0,
        maximum: 9007199254740991,
        description: "Samples the VAE posterior with this seed (give the sampler's, as sd.cpp does); " +
          "without it the posterior's mean is taken.",
      },
    },
    rng: { schema: { enum: RNGS, default: "cuda", description: "Random number generator for the posterior noise." } },
  },
  outputs: { latent: "LATENT" },
  async run({ model, vae, image, mask, seed, rng }) {
    if (mask.length !== 1) throw new NodeInputError("mask", `one mask expected, got a batch of ${mask.length}`);
    const { width, height } = image[0];
    if (width % 8 || height % 8) {
      throw new NodeInputError("image", `the picture is ${width}x${height}; width and height must be multiples of 8`);
    }
    let pixels: Uint8Array;
    try {
      pixels = pixelMask(mask[0], width, height);
    } catch (e) {
      if (e instanceof MaskError) throw new NodeInputError("mask", e.message);
      throw e;
    }
    const inpaintModel = model.unet !== undefined && model.unet.inChannels === 2 * vae.latentChannels + 1;
    const encodeOpts = seed === undefined ? {} : { seed, rng };
    const init = await vae.encode(image, encodeOpts);
    const lm = latentMask(pixels, width, height, 8, inpaintModel);
    if (!inpaintModel) return { latent: { ...init, noiseMask: lm.data } };
    const masked = await vae.encode([maskedImage(image[0], pixels)], encodeOpts);
    return { latent: { ...init, noiseMask: lm.data, inpaintConcat: inpaintConcat(lm, masked) } };
  },
  async estimate({ vae, image }) {
    const shape = image?.shape;
    if (!vae?.checkpoint || !shape) return { ops: [], note: "input size unknown" };
    const r = await estimateNetwork("vae_encoder", { checkpoint: vae.checkpoint, imageShape: shape });
    const [n, h, w] = shape;
    const note = ["one VAE encode (two for an inpainting model)", r.note].filter(Boolean).join("; ");
    return { ops: r.ops ?? [], note, outputs: { latent: { shape: [n, 4, h / 8, w / 8] } } };
  },
});
