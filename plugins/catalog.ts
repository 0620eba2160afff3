/**
 * The built-in node catalog: every node type a graph can use without plugins.
 *
 * @example
 * ```ts
 * import { builtinNodes } from "./catalog.ts";
 * console.log(builtinNodes.map((n) => n.type));
 * ```
 */

import { checkpoint, tinyCheckpoint } from "./nodes/checkpoint.ts";
import { clipEncode } from "./nodes/clip_encode.ts";
import { canny, controlnet } from "./nodes/controlnet.ts";
import { emptyLatent } from "./nodes/empty_latent.ts";
import { inpaintEncode } from "./nodes/inpaint.ts";
import { loadImage } from "./nodes/load_image.ts";
import { lora } from "./nodes/lora.ts";
import { sampler } from "./nodes/sampler.ts";
import { saveImage } from "./nodes/save_image.ts";
import { taesd } from "./nodes/taesd.ts";
import { upscale, upscaleModelLoader } from "./nodes/upscale.ts";
import { vaeDecode, vaeEncode } from "./nodes/vae.ts";
import { vaeLoader } from "./nodes/vae_loader.ts";

/** The built-in node definitions, in documentation order. */
export const builtinNodes = [
  checkpoint,
  tinyCheckpoint,
  lora,
  taesd,
  upscaleModelLoader,
  vaeLoader,
  clipEncode,
  emptyLatent,
  loadImage,
  canny,
  controlnet,
  vaeEncode,
  inpaintEncode,
  sampler,
  vaeDecode,
  upscale,
  saveImage,
] as const;

/** One of the built-in node definitions. */
export type BuiltinNode = typeof builtinNodes[number];
