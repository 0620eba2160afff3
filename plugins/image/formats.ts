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
 * `parameters` as a UTF-8 comment (COM segment, which sd-webui reads); WebP as an EXIF UserComment
 * (as sd-webui writes and reads it).
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
  const webp = new Uint8Array(out);
  return opts.parameters ? withWebpExif(webp, image, exifUserComment(opts.parameters)) : webp;
}

/**
 * A little-endian TIFF (EXIF) block holding one Exif UserComment, "UNICODE\0" + UTF-16BE text, as
 * sd-webui writes the parameters of a WebP or JPEG (with piexif) and reads them back.
 */
export function exifUserComment(text: string): Uint8Array {
  const comment = new Uint8Array(8 + 2 * text.length);
  comment.set([..."UNICODE\0"].map((c) => c.charCodeAt(0)));
  const cdv = new DataView(comment.buffer);
  for (let i = 0; i < text.length; i++) cdv.setUint16(8 + 2 * i, text.charCodeAt(i));
  const out = new Uint8Array(44 + comment.length);
  const dv = new DataView(out.buffer);
  out.set([0x49, 0x49]); // "II": little-endian
  dv.setUint16(2, 42, true);
  dv.setUint32(4, 8, true); // IFD0 at 8
  // IFD0: one entry, the Exif IFD pointer (tag 0x8769, LONG) → 26
  dv.setUint16(8, 1, true);
  dv.setUint16(10, 0x8769, true);
  dv.setUint16(12, 4, true);
  dv.setUint32(14, 1, true);
  dv.setUint32(18, 26, true);
  dv.setUint32(22, 0, true);
  // Exif IFD: one entry, UserComment (tag 0x9286, UNDEFINED) → 44
  dv.setUint16(26, 1, true);
  dv.setUint16(28, 0x9286, true);
  dv.setUint16(30, 7, true);
  dv.setUint32(32, comment.length, true);
  dv.setUint32(36, 44, true);
  dv.setUint32(40, 0, true);
  out.set(comment, 44);
  return out;
}

/**
 * Adds an EXIF chunk to a WebP file: a simple (VP8/VP8L) file becomes an extended one (a VP8X chunk
 * first, with the EXIF flag and the canvas size); the EXIF chunk goes after the image data.
 */
function withWebpExif(webp: Uint8Array, image: Image, exif: Uint8Array): Uint8Array {
  const fourcc = (at: number) => String.fromCharCode(...webp.subarray(at, at + 4));
  if (fourcc(0) !== "RIFF" || fourcc(8) !== "WEBP") throw new Error("the WebP encoder wrote no RIFF/WEBP file");
  let body = webp.subarray(12);
  if (fourcc(12) === "VP8X") {
    body = body.slice();
    body[8] |= 0x08; // EXIF present
  } else {
    const vp8x = new Uint8Array(18);
    const dv = new DataView(vp8x.buffer);
    vp8x.set([..."VP8X"].map((c) => c.charCodeAt(0)));
    dv.setUint32(4, 10, true);
    vp8x[8] = 0x08 | (image.channels === 4 ? 0x10 : 0); // EXIF, and alpha when the image has it
    for (const [at, v] of [[12, image.width - 1], [15, image.height - 1]]) {
      vp8x[at] = v & 0xff;
      vp8x[at + 1] = (v >> 8) & 0xff;
      vp8x[at + 2] = (v >> 16) & 0xff;
    }
    body = concat([vp8x, body]);
  }
  const head = new Uint8Array(8);
  head.set([..."EXIF"].map((c) => c.charCodeAt(0)));
  new DataView(head.buffer).setUint32(4, exif.length, true);
  const chunk = concat([head, exif, new Uint8Array(exif.length & 1)]); // chunks are padded to even sizes
  const out = concat([webp.subarray(0, 12), body, chunk]);
  new DataView(out.buffer).setUint32(4, out.length - 8, true);
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
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
