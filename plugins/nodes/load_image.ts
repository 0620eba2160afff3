/** `load_image`: reads a PNG for img2img. */

import { defineNode, NodeInputError, type NodeValues } from "../node.ts";
import { decodePngImage } from "../image/png.ts";

/** Reads width and height from a PNG's IHDR without decoding it (for `plan`); undefined if not a PNG. */
export async function pngSize(path: string): Promise<{ width: number; height: number } | undefined> {
  try {
    if (!(await Deno.stat(path)).isFile) return undefined;
    using f = await Deno.open(path);
    const head = new Uint8Array(24);
    if ((await f.read(head)) !== 24) return undefined;
    const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
    if (!sig.every((b, i) => head[i] === b)) return undefined;
    const v = new DataView(head.buffer);
    return { width: v.getUint32(16), height: v.getUint32(20) };
  } catch {
    return undefined;
  }
}

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
      // Stat before reading: reading a named pipe blocks until something writes to it.
      if (!(await Deno.stat(path)).isFile) throw new NodeInputError("path", `${path} is not a regular file`);
      bytes = await Deno.readFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new NodeInputError("path", `image not found: ${path}`);
      throw e;
    }
    let image;
    try {
      image = decodePngImage(bytes).image;
    } catch (e) {
      throw new NodeInputError("path", `${path} is not a readable PNG: ${(e as Error).message}`);
    }
    return { image: [image] };
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
