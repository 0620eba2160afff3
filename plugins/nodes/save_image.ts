/**
 * `save_image`: writes pictures as PNG (with the generation parameters in a `parameters` text chunk,
 * sd-webui format, and the graph that made them in an `sdflow-graph` chunk), JPEG or WebP by the
 * path's extension; checks the path before the run, and replaces files only once fully written.
 */

import { dirname } from "node:path";
import type { Image } from "../../models/types.ts";
import { defineNode, findGeneration, NodeInputError, type UpstreamNode } from "../node.ts";
import { checkWritable, encodeImage, imageFormat, writeFileAtomic } from "../image/formats.ts";
import { formatParameters } from "../image/png.ts";

/** The path of image `i` of `n`: the path itself for one image, `name_<i+1>.png` for a batch. */
export function batchPath(path: string, i: number, n: number): string {
  if (n === 1) return path;
  const dot = path.lastIndexOf(".");
  const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return dot > slash ? `${path.slice(0, dot)}_${i + 1}${path.slice(dot)}` : `${path}_${i + 1}`;
}

/**
 * Describes picture `i` of a batch of `n` in the sd-webui (A1111) `parameters` format that image viewers
 * and stable-diffusion.cpp read, from the {@link GenerationInfo} the nearest generating ancestor published
 * (just the size when there is none).
 */
export function describeGeneration(upstream: readonly UpstreamNode[], image: Image, i: number, n: number): string {
  const g = findGeneration(upstream);
  if (!g) return `Size: ${image.width}x${image.height}, Version: sdflow`;
  return formatParameters({
    prompt: g.prompt,
    negativePrompt: g.negativePrompt,
    steps: g.steps,
    sampler: g.sampler,
    scheduler: g.scheduler,
    cfgScale: g.cfgScale,
    seed: g.seeds[i] ?? g.seeds[0],
    width: image.width,
    height: image.height,
    model: g.model,
    clipSkip: g.clipSkip,
    denoisingStrength: g.denoisingStrength,
    rng: g.rng,
    extra: { ...(n > 1 ? { "Batch size": n, "Batch pos": i } : {}), Version: "sdflow" },
  });
}

/** Writes a batch of images as PNG, JPEG or WebP files. */
export const saveImage = defineNode({
  type: "save_image",
  category: "image",
  description: "Writes images as PNG, JPEG or WebP files, by the path's extension (creating the folders of the " +
    "path). A batch of n > 1 images is written as name_1.png … name_n.png. A PNG gets the generation parameters " +
    "in a `parameters` text chunk (sd-webui format) and the graph that made the images in an `sdflow-graph` " +
    "chunk (JSON); a JPEG gets the parameters as a comment, a WebP as an EXIF UserComment. The path is checked before the " +
    "run starts, and each file is written under a temporary name and renamed, so an older picture is only " +
    "replaced by a complete one.",
  inputs: {
    images: { type: "IMAGE", description: "The images to write." },
    path: {
      schema: {
        type: "string",
        minLength: 1,
        default: "output.png",
        // The extension names the format (checked again when a wired path arrives).
        pattern: "\\.([pP][nN][gG]|[jJ][pP][eE]?[gG]|[wW][eE][bB][pP])$",
        description: "Output file: .png, .jpg (.jpeg) or .webp.",
      },
    },
    parameters: {
      optional: true,
      schema: { type: "string", description: "Text for the `parameters` chunk. Default: described from the graph." },
    },
    metadata: {
      schema: {
        type: "boolean",
        default: true,
        description: "Whether to write the `parameters` and `sdflow-graph` chunks at all.",
      },
    },
    quality: {
      schema: {
        type: "integer",
        minimum: 1,
        maximum: 100,
        default: 90,
        description: "JPEG and WebP quality (PNG is lossless).",
      },
    },
  },
  outputs: {},
  sideEffects: true,
  async preflight({ path }) {
    if (typeof path !== "string") return; // wired from another node: checked when written
    try {
      await checkWritable(path);
    } catch (e) {
      throw new NodeInputError("path", (e as Error).message);
    }
  },
  async run({ images, path, parameters, metadata, quality }, ctx) {
    let format;
    try {
      format = imageFormat(path);
    } catch (e) {
      throw new NodeInputError("path", (e as Error).message);
    }
    const upstream = ctx.upstream();
    const graph = metadata ? ctx.graph() : undefined;
    const dir = dirname(path);
    if (dir !== "." && dir !== path) await Deno.mkdir(dir, { recursive: true });
    for (const [i, im] of images.entries()) {
      const file = batchPath(path, i, images.length);
      const opts = metadata
        ? { parameters: parameters ?? describeGeneration(upstream, im, i, images.length), graph, quality }
        : { quality };
      await writeFileAtomic(file, await encodeImage(format, im, opts));
      ctx.log(`saved ${file}`);
    }
    return {};
  },
  estimate({ images }) {
    const shape = images?.shape;
    const bytes = shape ? shape.reduce((a, b) => a * b, 1) : 0;
    return { ops: [{ op: "png_encode", flops: bytes * 8, bytes }] };
  },
});
