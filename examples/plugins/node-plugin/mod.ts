/**
 * An example third-party node plugin: image `grayscale` and `invert` nodes.
 * List it in a graph to use it:
 *
 * ```json
 * { "version": 1, "plugins": ["../examples/plugins/node-plugin/mod.ts"], "nodes": { … "gray": { "type": "grayscale", … } } }
 * ```
 *
 * A plugin imports only sdflow's node API (`plugins/node.ts`; from outside this
 * repository, by URL) and default-exports `{ nodes }`.
 *
 * @module
 */

import type { Image } from "../../../models/types.ts";
import { defineNode } from "../../../plugins/node.ts";

function mapPixels(im: Image, f: (r: number, g: number, b: number) => [number, number, number]): Image {
  const data = new Uint8Array(im.data.length);
  for (let i = 0; i < im.data.length; i += im.channels) {
    const [r, g, b] = f(im.data[i], im.data[i + 1], im.data[i + 2]);
    data[i] = r;
    data[i + 1] = g;
    data[i + 2] = b;
    if (im.channels === 4) data[i + 3] = im.data[i + 3];
  }
  return { width: im.width, height: im.height, channels: im.channels, data };
}

/** Converts images to grayscale (Rec. 709 luma), keeping RGB(A) layout. */
export const grayscale = defineNode({
  type: "grayscale",
  category: "image",
  description: "Converts images to grayscale (Rec. 709 luma), blended with the original by `amount`.",
  inputs: {
    images: { type: "IMAGE", description: "The images to convert." },
    amount: { schema: { type: "number", minimum: 0, maximum: 1, default: 1, description: "1: fully gray." } },
  },
  outputs: { images: "IMAGE" },
  run({ images, amount }) {
    const out = images.map((im) =>
      mapPixels(im, (r, g, b) => {
        const y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        const mix = (c: number) => Math.round(c + amount * (y - c));
        return [mix(r), mix(g), mix(b)];
      })
    );
    return Promise.resolve({ images: out });
  },
  estimate({ images }) {
    const n = images?.shape ? images.shape.reduce((a, b) => a * b, 1) : 0;
    return { ops: [{ op: "grayscale", flops: n * 3, bytes: n * 2 }], outputs: { images: images ?? {} } };
  },
});

/** Inverts the colours of images (alpha untouched). */
export const invert = defineNode({
  type: "invert",
  category: "image",
  description: "Inverts the colours of images (alpha is kept).",
  inputs: { images: { type: "IMAGE", description: "The images to invert." } },
  outputs: { images: "IMAGE" },
  run({ images }) {
    return Promise.resolve({ images: images.map((im) => mapPixels(im, (r, g, b) => [255 - r, 255 - g, 255 - b])) });
  },
});

export default { nodes: [grayscale, invert] };
