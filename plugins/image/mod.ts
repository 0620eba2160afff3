/** Image input/output: PNG with sd-webui `parameters` and the sdflow graph in text chunks. */
export {
  type DecodedImage,
  decodePngImage,
  encodePngImage,
  formatParameters,
  type GenerationParameters,
  GRAPH_KEY,
  PARAMETERS_KEY,
  parseParameters,
  type PngWriteOptions,
  readPng,
  writePng,
} from "./png.ts";
