/**
 * PNG encoding and decoding for the image nodes, from `plugins/image/png.ts`
 * (loaded on first use so the catalog does not depend on it being present).
 */

import type { Image } from "../../models/types.ts";

/** What the image nodes need from `plugins/image/png.ts`. */
export interface PngCodec {
  /** Encodes one image; `text` becomes tEXt chunks (e.g. `parameters`). */
  encodePng(image: Image, opts?: { text?: Record<string, string> }): Uint8Array;
  decodePng(bytes: Uint8Array): Image;
}

const PNG_URL = new URL("../image/png.ts", import.meta.url).href;

/** Loads the PNG codec, or says clearly that it is missing. */
export async function pngCodec(): Promise<PngCodec> {
  let mod: Partial<PngCodec>;
  try {
    await Deno.stat(new URL(PNG_URL));
    mod = await import(PNG_URL);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        "the PNG codec (plugins/image/png.ts) is not in this checkout, so images cannot be read or written",
      );
    }
    throw e;
  }
  if (typeof mod.encodePng !== "function" || typeof mod.decodePng !== "function") {
    throw new Error("plugins/image/png.ts does not export encodePng() and decodePng()");
  }
  return mod as PngCodec;
}

/** Reads width and height from a PNG's IHDR without decoding it (for `plan`); undefined if not a PNG. */
export async function pngSize(path: string): Promise<{ width: number; height: number } | undefined> {
  try {
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
