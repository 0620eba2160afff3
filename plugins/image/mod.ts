/**
 * Image input/output: PNG with sd-webui `parameters` and the sdflow graph in text chunks (decoding checks
 * the header's claims first), JPEG and WebP by extension, and safe writes.
 */
export {
  checkWritable,
  encodeImage,
  type EncodeImageOptions,
  exifUserComment,
  type ImageFormat,
  imageFormat,
  writeFileAtomic,
} from "./formats.ts";
export {
  checkPngHeader,
  type DecodedImage,
  decodePngImage,
  encodePngImage,
  formatParameters,
  type GenerationParameters,
  GRAPH_KEY,
  MAX_PNG_PIXELS,
  MAX_PNG_SIDE,
  PARAMETERS_KEY,
  parseParameters,
  type PngWriteOptions,
  readPng,
  writePng,
} from "./png.ts";
