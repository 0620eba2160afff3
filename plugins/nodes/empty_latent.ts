/** `empty_latent`: the all-zero latent txt2img starts from. */

import { defineNode } from "../node.ts";

/** Makes a zero latent of the given picture size. */
export const emptyLatent = defineNode({
  type: "empty_latent",
  category: "latent",
  description: "An empty (zero) latent for txt2img: [batch, 4, height/8, width/8]. The sampler adds the noise.",
  inputs: {
    width: {
      schema: {
        type: "integer",
        minimum: 64,
        maximum: 8192,
        multipleOf: 8,
        default: 512,
        description: "Image width in pixels (a multiple of 8).",
      },
    },
    height: {
      schema: {
        type: "integer",
        minimum: 64,
        maximum: 8192,
        multipleOf: 8,
        default: 512,
        description: "Image height in pixels (a multiple of 8).",
      },
    },
    batch: { schema: { type: "integer", minimum: 1, maximum: 64, default: 1, description: "Images per batch." } },
  },
  outputs: { latent: "LATENT" },
  run({ width, height, batch }) {
    const shape = [batch, 4, height / 8, width / 8];
    return Promise.resolve({ latent: { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) } });
  },
  estimate({ width, height, batch }) {
    const shape = [batch, 4, height / 8, width / 8];
    const bytes = shape.reduce((a, b) => a * b, 4);
    return { ops: [{ op: "fill", flops: 0, bytes }], outputs: { latent: { shape } } };
  },
});
