/**
 * PNG read/write with generation metadata, on the `fast-png` codec.
 *
 * Metadata is stored as text chunks, the way sd-webui does it:
 * - `parameters`: sd-webui's infotext ("<prompt>\nNegative prompt: <neg>\nSteps: 20, Sampler: …"), which
 *   sd-webui, ComfyUI loaders and image viewers read back;
 * - `sdflow-graph`: JSON of the pipeline graph that produced the image.
 * Text that fits Latin-1 goes in `tEXt` (what PNG readers expect); anything else (a prompt in Japanese,
 * emoji) in an uncompressed UTF-8 `iTXt` chunk, as PIL's `PngInfo.add_text` does for sd-webui. Reading
 * accepts `tEXt`, `iTXt` (compressed or not) and `zTXt`.
 */

import { convertIndexedToRgb, decode, encode } from "fast-png";
import { inflateSync } from "node:zlib";
import type { Image } from "../../models/types.ts";

export const PARAMETERS_KEY = "parameters";
export const GRAPH_KEY = "sdflow-graph";

export interface PngWriteOptions {
  /** sd-webui infotext (see `formatParameters`). */
  parameters?: string;
  /** The pipeline graph; stored as JSON. */
  graph?: unknown;
  /** Further text chunks (keyword → text). Keywords: 1–79 Latin-1 characters. */
  text?: Record<string, string>;
}

export interface DecodedImage {
  image: Image;
  /** Every text chunk, keyword → text. */
  text: Record<string, string>;
  parameters?: string;
  /** Parsed `sdflow-graph` JSON (undefined when absent or not valid JSON). */
  graph?: unknown;
}

/** tEXt holds Latin-1: every UTF-16 code unit ≤ 0xFF. */
function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}

function checkKeyword(k: string): void {
  if (k.length < 1 || k.length > 79 || !isLatin1(k) || k.includes("\0")) {
    throw new Error(`PNG text keyword must be 1-79 Latin-1 characters: ${JSON.stringify(k)}`);
  }
}

/** Encodes an 8-bit RGB/RGBA image as PNG with text metadata. */
export function encodePngImage(image: Image, opts: PngWriteOptions = {}): Uint8Array {
  const { width, height, channels, data } = image;
  if (data.length !== width * height * channels) {
    throw new Error(`encodePngImage: ${data.length} bytes for ${width}x${height}x${channels}`);
  }
  const entries: [string, string][] = Object.entries(opts.text ?? {});
  if (opts.parameters !== undefined) entries.push([PARAMETERS_KEY, opts.parameters]);
  if (opts.graph !== undefined) entries.push([GRAPH_KEY, JSON.stringify(opts.graph)]);
  const latin: Record<string, string> = {};
  const utf8: [string, string][] = [];
  for (const [k, text] of entries) {
    checkKeyword(k);
    // The PNG specification forbids NUL in text chunks (readers stop there): a NUL from a prompt is
    // written as U+2400 "␀", which then goes into a UTF-8 iTXt chunk.
    const v = text.replaceAll("\0", "\u2400");
    if (isLatin1(v)) latin[k] = v;
    else utf8.push([k, v]);
  }
  const png = encode({ width, height, channels, depth: 8, data, text: latin });
  return utf8.length === 0 ? png : insertBeforeIend(png, utf8.map(([k, v]) => itxtChunk(k, v)));
}

/** The largest width or height {@link decodePngImage} accepts. */
export const MAX_PNG_SIDE = 16384;
/** The most pixels {@link decodePngImage} accepts (8192 x 8192, the largest picture a graph can make). */
export const MAX_PNG_PIXELS = 8192 * 8192;

/** Channels of each PNG colour type (0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA). */
const PNG_CHANNELS: Readonly<Record<number, number>> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/**
 * Checks what a PNG declares before anything is decoded: the signature, an IHDR with a valid CRC,
 * dimensions within {@link MAX_PNG_SIDE} and {@link MAX_PNG_PIXELS}, and that the compressed image
 * data inflates to no more than those dimensions need (a small file cannot expand into gigabytes).
 * Throws an Error saying what is wrong.
 */
export function checkPngHeader(bytes: Uint8Array): void {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length < 8 || !sig.every((b, i) => bytes[i] === b)) throw new Error("not a PNG file (bad signature)");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = (at: number) => String.fromCharCode(...bytes.subarray(at + 4, at + 8));
  if (bytes.length < 33 || dv.getUint32(8) !== 13 || type(8) !== "IHDR") {
    throw new Error("the PNG does not start with a 13-byte IHDR chunk");
  }
  if (crc32(bytes.subarray(12, 29)) !== dv.getUint32(29)) throw new Error("the PNG's IHDR chunk has a bad CRC");
  const width = dv.getUint32(16);
  const height = dv.getUint32(20);
  const [depth, colour, , , interlace] = bytes.subarray(24, 29);
  if (width === 0 || height === 0) throw new Error(`the PNG declares an empty ${width}x${height} image`);
  if (width > MAX_PNG_SIDE || height > MAX_PNG_SIDE || width * height > MAX_PNG_PIXELS) {
    throw new Error(
      `the PNG declares ${width}x${height} pixels, more than sdflow reads ` +
        `(at most ${MAX_PNG_SIDE} a side and ${MAX_PNG_PIXELS} pixels)`,
    );
  }
  const channels = PNG_CHANNELS[colour];
  if (channels === undefined || ![1, 2, 4, 8, 16].includes(depth)) {
    throw new Error(`the PNG has an invalid colour type ${colour} or bit depth ${depth}`);
  }
  // Filtered scanlines: a filter byte per row plus the row's bytes; Adam7 adds at most a byte and a
  // filter byte per row of each of its passes.
  const rowBytes = Math.ceil((width * channels * depth) / 8);
  const budget = height * (1 + rowBytes) + (interlace ? 4 * height + 64 : 0);
  const idat: Uint8Array[] = [];
  for (let at = 8; at + 12 <= bytes.length;) {
    const len = dv.getUint32(at);
    if (type(at) === "IDAT") idat.push(bytes.subarray(at + 8, Math.min(at + 8 + len, bytes.length)));
    if (type(at) === "IEND") break;
    at += 12 + len;
  }
  const data = new Uint8Array(idat.reduce((n, c) => n + c.length, 0));
  idat.reduce((at, c) => (data.set(c, at), at + c.length), 0);
  try {
    inflateSync(data, { maxOutputLength: budget + 1 });
  } catch (e) {
    if (e instanceof RangeError || (e as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new Error(`the PNG's image data inflates to more than its ${width}x${height} header declares`);
    }
    // A damaged stream is reported by the decoder itself.
  }
}

/** Decodes a PNG to an 8-bit image (RGB or RGBA) plus its text chunks; see {@link checkPngHeader} for the limits. */
export function decodePngImage(bytes: Uint8Array): DecodedImage {
  checkPngHeader(bytes);
  const png = decode(bytes, { checkCrc: true });
  const { width, height } = png;
  let data: Uint8Array;
  let channels: 3 | 4;
  if (png.palette) {
    const rgb = convertIndexedToRgb(png);
    channels = rgb.length === width * height * 4 ? 4 : 3;
    data = Uint8Array.from(rgb);
  } else {
    const src = png.data;
    const c = png.channels;
    const to8 = png.depth === 16 ? (v: number) => v >> 8 : (v: number) => v;
    channels = c === 2 || c === 4 ? 4 : 3;
    data = new Uint8Array(width * height * channels);
    for (let p = 0; p < width * height; p++) {
      if (c >= 3) {
        for (let k = 0; k < channels; k++) data[p * channels + k] = to8(src[p * c + k]);
      } else {
        const g = to8(src[p * c]);
        data[p * channels] = data[p * channels + 1] = data[p * channels + 2] = g;
        if (channels === 4) data[p * channels + 3] = to8(src[p * c + 1]);
      }
    }
  }
  const text: Record<string, string> = { ...png.text, ...readExtraTextChunks(bytes) };
  let graph: unknown;
  if (text[GRAPH_KEY] !== undefined) {
    try {
      graph = JSON.parse(text[GRAPH_KEY]);
    } catch {
      graph = undefined;
    }
  }
  return { image: { width, height, channels, data }, text, parameters: text[PARAMETERS_KEY], graph };
}

// --- chunk level: iTXt / zTXt, which fast-png does not handle --------------------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function latin1Bytes(s: string): Uint8Array {
  return Uint8Array.from(s, (ch) => ch.charCodeAt(0));
}

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, body.length);
  out.set(latin1Bytes(type), 4);
  out.set(body, 8);
  dv.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

/** Uncompressed iTXt: keyword, 0, flag 0, method 0, empty language, 0, empty translated keyword, 0, UTF-8. */
function itxtChunk(keyword: string, text: string): Uint8Array {
  const k = latin1Bytes(keyword);
  const t = new TextEncoder().encode(text);
  const body = new Uint8Array(k.length + 5 + t.length);
  body.set(k, 0);
  // bytes after the keyword: NUL, compression flag 0, method 0, language "" + NUL, translated "" + NUL
  body.set(t, k.length + 5);
  return chunk("iTXt", body);
}

function insertBeforeIend(png: Uint8Array, chunks: Uint8Array[]): Uint8Array {
  const iend = png.length - 12; // IEND is the last chunk: 4 length + 4 type + 0 data + 4 CRC
  const type = new TextDecoder("latin1").decode(png.subarray(iend + 4, iend + 8));
  if (type !== "IEND") throw new Error("PNG: IEND is not the last chunk");
  const extra = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(png.length + extra);
  out.set(png.subarray(0, iend), 0);
  let at = iend;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  out.set(png.subarray(iend), at);
  return out;
}

function readExtraTextChunks(png: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const latin1 = new TextDecoder("latin1");
  const utf8 = new TextDecoder("utf-8");
  for (let at = 8; at + 12 <= png.length;) {
    const len = dv.getUint32(at);
    const type = latin1.decode(png.subarray(at + 4, at + 8));
    const body = png.subarray(at + 8, at + 8 + len);
    at += 12 + len;
    if (type === "IEND") break;
    if (type !== "iTXt" && type !== "zTXt") continue;
    const kEnd = body.indexOf(0);
    if (kEnd < 1) continue;
    const keyword = latin1.decode(body.subarray(0, kEnd));
    try {
      if (type === "zTXt") {
        out[keyword] = latin1.decode(inflateSync(body.subarray(kEnd + 2)));
        continue;
      }
      const compressed = body[kEnd + 1] === 1;
      const langEnd = body.indexOf(0, kEnd + 3);
      const transEnd = body.indexOf(0, langEnd + 1);
      if (langEnd < 0 || transEnd < 0) continue;
      const raw = body.subarray(transEnd + 1);
      out[keyword] = utf8.decode(compressed ? inflateSync(raw) : raw);
    } catch {
      // A damaged text chunk does not make the image unreadable.
    }
  }
  return out;
}

// --- sd-webui infotext ------------------------------------------------------------------------------------

export interface GenerationParameters {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  /** Sampler display name, e.g. "Euler a" (see SAMPLE_METHOD_LABELS), or sd.cpp's method name. */
  sampler: string;
  /** Schedule type, e.g. "Karras"; omitted from the text when undefined. */
  scheduler?: string;
  cfgScale: number;
  seed: number | bigint;
  width: number;
  height: number;
  model?: string;
  modelHash?: string;
  clipSkip?: number;
  denoisingStrength?: number;
  rng?: string;
  /** Further "Key: value" fields, appended in order. */
  extra?: Record<string, string | number>;
}

/** sd-webui's `quote()`: JSON-quote a value that holds a comma, colon or newline. */
function quote(v: string): string {
  return /[,:\n]/.test(v) ? JSON.stringify(v) : v;
}

/**
 * sd-webui infotext: the prompt, a "Negative prompt: " line when there is one, then
 * "Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512,
 * Model hash: …, Model: …, Denoising strength: …, Clip skip: 2, RNG: …" and the extra fields.
 */
export function formatParameters(p: GenerationParameters): string {
  const fields: [string, string | number | bigint | undefined][] = [
    ["Steps", p.steps],
    ["Sampler", p.sampler],
    ["Schedule type", p.scheduler],
    ["CFG scale", p.cfgScale],
    ["Seed", p.seed],
    ["Size", `${p.width}x${p.height}`],
    ["Model hash", p.modelHash],
    ["Model", p.model],
    ["Denoising strength", p.denoisingStrength],
    ["Clip skip", p.clipSkip],
    ["RNG", p.rng],
    ...Object.entries(p.extra ?? {}),
  ];
  const tail = fields
    .filter(([, v]) => v !== undefined && v !== "")
    .map(([k, v]) => `${k}: ${quote(String(v))}`)
    .join(", ");
  const lines = [p.prompt];
  if (p.negativePrompt) lines.push(`Negative prompt: ${p.negativePrompt}`);
  lines.push(tail);
  return lines.join("\n");
}

/** Splits infotext back into prompt, negative prompt and the key/value fields (sd-webui's parser rules). */
export function parseParameters(
  text: string,
): { prompt: string; negativePrompt: string; fields: Record<string, string> } {
  const lines = text.trim().split("\n");
  let last = lines[lines.length - 1] ?? "";
  const fieldRe = /\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;
  const fields: Record<string, string> = {};
  const matches = [...last.matchAll(fieldRe)];
  if (matches.length < 3) {
    last = "";
  } else {
    lines.pop();
    for (const m of matches) {
      const v = m[2].trim();
      fields[m[1].trim()] = v.startsWith('"') ? JSON.parse(v) : v;
    }
  }
  const prompt: string[] = [];
  const negative: string[] = [];
  let inNegative = false;
  for (const line of lines) {
    if (line.startsWith("Negative prompt:")) {
      inNegative = true;
      negative.push(line.slice("Negative prompt:".length).trimStart());
    } else if (inNegative) negative.push(line);
    else prompt.push(line);
  }
  return { prompt: prompt.join("\n"), negativePrompt: negative.join("\n"), fields };
}

/** Writes a PNG file with metadata. */
export async function writePng(path: string, image: Image, opts: PngWriteOptions = {}): Promise<void> {
  await Deno.writeFile(path, encodePngImage(image, opts));
}

/** Reads a PNG file with its metadata. */
export async function readPng(path: string): Promise<DecodedImage> {
  return decodePngImage(await Deno.readFile(path));
}
