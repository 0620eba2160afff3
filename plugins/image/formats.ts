/**
 * Image files by extension — PNG (`fast-png`, with text metadata), JPEG (`jpeg-js`) and WebP
 * (`@jsquash/webp`, libwebp compiled to WebAssembly) — and writing them safely: the path is checked
 * before a run, and the bytes go to a temporary file in the same folder that is renamed over the
 * target, so a full disk or a crash never leaves half a picture nor destroys the older one.
 */

import { basename, dirname, extname, resolve } from "node:path";
import jpeg from "jpeg-js";
import type { Image } from "../../models/types.ts";
import { encodePngImage, type PngWriteOptions } from "./png.ts";

/** The formats images are written in. */
export type ImageFormat = "png" | "jpeg" | "webp";

const EXTENSIONS: Readonly<Record<string, ImageFormat>> = {
  ".png": "png",
  ".jpg": "jpeg",
  ".jpeg": "jpeg",
  ".webp": "webp",
};

/** The format a file name's extension names (case-insensitive); throws for any other extension. */
export function imageFormat(path: string): ImageFormat {
  const ext = extname(path).toLowerCase();
  const format = EXTENSIONS[ext];
  if (!format) {
    throw new Error(
      `${path}: ${ext ? `unsupported image format "${ext}"` : "no file extension"}; ` +
        "write .png, .jpg (or .jpeg) or .webp",
    );
  }
  return format;
}

/** Options of {@link encodeImage}. */
export interface EncodeImageOptions extends PngWriteOptions {
  /** JPEG and WebP quality, 1–100 (PNG is lossless). Default 90. */
  quality?: number;
}

/** The largest COM segment of a JPEG (a 16-bit length that counts itself). */
const JPEG_COMMENT_MAX = 65533;

function rgba(image: Image): Uint8Array {
  if (image.channels === 4) return image.data;
  const out = new Uint8Array(image.width * image.height * 4);
  for (let p = 0, q = 0; p < image.data.length; p += 3, q += 4) {
    out[q] = image.data[p];
    out[q + 1] = image.data[p + 1];
    out[q + 2] = image.data[p + 2];
    out[q + 3] = 255;
  }
  return out;
}

/**
 * Encodes an image in `format`. PNG keeps `parameters` and the graph in text chunks; JPEG keeps
 * `parameters` as a UTF-8 comment (COM segment, which sd-webui reads); WebP keeps no metadata.
 */
export async function encodeImage(
  format: ImageFormat,
  image: Image,
  opts: EncodeImageOptions = {},
): Promise<Uint8Array> {
  const quality = Math.round(Math.min(100, Math.max(1, opts.quality ?? 90)));
  if (format === "png") return encodePngImage(image, opts);
  if (format === "jpeg") {
    // jpeg-js writes each comment character as one byte: hand it the UTF-8 bytes as such characters.
    const utf8 = new TextEncoder().encode(opts.parameters ?? "").subarray(0, JPEG_COMMENT_MAX);
    const comments = utf8.length ? [String.fromCharCode(...utf8)] : undefined;
    const out = jpeg.encode({ data: rgba(image), width: image.width, height: image.height, comments }, quality);
    return new Uint8Array(out.data);
  }
  // Loaded on first use: it instantiates libwebp's WebAssembly.
  const { default: encodeWebp } = await import("@jsquash/webp/encode.js");
  const data = new Uint8ClampedArray(rgba(image));
  const out = await encodeWebp(
    { data, width: image.width, height: image.height, colorSpace: "srgb" } as ImageData,
    { quality },
  );
  return new Uint8Array(out);
}

/**
 * Checks, before anything is generated, that `path` can be written: a known extension, not a folder,
 * and the nearest existing folder above it accepts a new file (tried with a file created and removed).
 */
export async function checkWritable(path: string): Promise<void> {
  imageFormat(path);
  const target = await Deno.stat(path).catch((e) => {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return undefined;
    throw new Error(`cannot write ${path}: ${(e as Error).message}`);
  });
  if (target?.isDirectory) throw new Error(`cannot write ${path}: it is a folder`);
  let dir = dirname(resolve(path));
  for (;;) {
    const st = await Deno.stat(dir).catch((e) => {
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return undefined;
      throw e;
    });
    if (st?.isDirectory) break;
    if (st) throw new Error(`cannot write ${path}: ${dir} is a file, not a folder`);
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot write ${path}: no folder above it exists`);
    dir = up;
  }
  const probe = `${dir}/.sdflow-write-check-${crypto.randomUUID()}`;
  try {
    Deno.openSync(probe, { createNew: true, write: true }).close();
  } catch (e) {
    throw new Error(`cannot write ${path}: ${dir} does not accept new files (${(e as Error).message})`);
  }
  await Deno.remove(probe).catch(() => {});
}

/**
 * Writes `bytes` to `path` through a temporary file in the same folder, renamed over `path` once
 * complete: a failed write (a full disk) leaves any older file at `path` as it was, and no partial file.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${dirname(path)}/.${basename(path)}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    await Deno.writeFile(tmp, bytes, { createNew: true });
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`could not write ${path}: ${(e as Error).message}`, { cause: e });
  }
}
