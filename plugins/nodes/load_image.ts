/** `load_image`: reads a PNG for img2img. */

import { defineNode, NodeInputError, type NodeValues } from "../node.ts";
import { pngCodec, pngSize } from "./image_codec.ts";

/** Reads a PNG file as a batch of one image. */
export const loadImage = defineNode({
  type: "load_image",
  category: "image",
  description: "Reads a PNG file as a batch of one RGB(A) image.",
  inputs: {
    path: { schema: { type: "string", minLength: 1, description: "Path of the PNG file." } },
  },
  outputs: { image: "IMAGE" },
  async fingerprint(values: NodeValues) {
    try {
      const st = await Deno.stat(String(values.path));
      return [st.size, st.mtime?.getTime() ?? 0];
    } catch {
      return null;
    }
  },
  async run({ path }) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new NodeInputError("path", `image not found: ${path}`);
      throw e;
    }
    const { decodePng } = await pngCodec();
    return { image: [decodePng(bytes)] };
  },
  async estimate({ path }) {
    const size = await pngSize(path);
    if (!size) return { ops: [{ op: "png_decode", flops: 0, bytes: 0 }], note: `${path}: size unknown` };
    const bytes = size.width * size.height * 4;
    return {
      ops: [{ op: "png_decode", flops: bytes * 4, bytes }],
      outputs: { image: { shape: [1, size.height, size.width, 3] } },
    };
  },
});
