/** `save_image`: writes PNGs with the generation parameters in a `parameters` tEXt chunk. */

import type { Image } from "../../models/types.ts";
import { defineNode, type UpstreamNode } from "../node.ts";
import { SAMPLE_METHOD_LABELS, type SampleMethod } from "../../models/sampling/samplers.ts";
import { encodePngImage, formatParameters } from "../image/png.ts";

/** The path of image `i` of `n`: the path itself for one image, `name_<i+1>.png` for a batch. */
export function batchPath(path: string, i: number, n: number): string {
  if (n === 1) return path;
  const dot = path.lastIndexOf(".");
  const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return dot > slash ? `${path.slice(0, dot)}_${i + 1}${path.slice(dot)}` : `${path}_${i + 1}`;
}

/**
 * Describes how an image was made, in the sd-webui (A1111) `parameters` format
 * that image viewers and stable-diffusion.cpp use, from the nearest sampler upstream.
 */
export function describeGeneration(upstream: readonly UpstreamNode[], image: Image, i: number, n: number): string {
  const byId = new Map(upstream.map((u) => [u.id, u]));
  const s = upstream.find((u) => u.type === "sampler");
  if (!s) return `Size: ${image.width}x${image.height}, Version: sdflow`;
  const text = (input: string): UpstreamNode | undefined => {
    const ref = s.refs[input];
    return ref && byId.get(ref.node);
  };
  const pos = text("positive");
  const neg = text("negative");
  const model = upstream.find((u) => typeof u.meta.model === "string")?.meta.model as string | undefined;
  const v = s.values;
  const method = String(v.sampler);
  return formatParameters({
    prompt: typeof pos?.values.text === "string" ? pos.values.text : "",
    negativePrompt: typeof neg?.values.text === "string" ? neg.values.text : undefined,
    steps: Number(v.steps),
    sampler: SAMPLE_METHOD_LABELS[method as SampleMethod] ?? method,
    scheduler: String(v.scheduler),
    cfgScale: Number(v.cfg),
    seed: Number(s.meta.seed ?? v.seed),
    width: image.width,
    height: image.height,
    model,
    clipSkip: typeof pos?.values.clip_skip === "number" ? pos.values.clip_skip : undefined,
    denoisingStrength: typeof v.denoise === "number" && v.denoise < 1 ? v.denoise : undefined,
    rng: String(v.rng),
    extra: { ...(n > 1 ? { "Batch size": n, "Batch pos": i } : {}), Version: "sdflow" },
  });
}

/** Writes a batch of images as PNG files. */
export const saveImage = defineNode({
  type: "save_image",
  category: "image",
  description: "Writes images as PNG files. A batch of n > 1 images is written as name_1.png … name_n.png. " +
    "The generation parameters go into a `parameters` tEXt chunk (sd-webui format).",
  inputs: {
    images: { type: "IMAGE", description: "The images to write." },
    path: { schema: { type: "string", minLength: 1, default: "output.png", description: "Output file (PNG)." } },
    parameters: {
      optional: true,
      schema: { type: "string", description: "Text for the `parameters` chunk. Default: described from the graph." },
    },
    metadata: {
      schema: { type: "boolean", default: true, description: "Whether to write the `parameters` chunk at all." },
    },
  },
  outputs: {},
  sideEffects: true,
  async run({ images, path, parameters, metadata }, ctx) {
    const upstream = ctx.upstream();
    const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
    if (slash > 0) await Deno.mkdir(path.slice(0, slash), { recursive: true });
    for (const [i, im] of images.entries()) {
      const file = batchPath(path, i, images.length);
      const opts = metadata ? { parameters: parameters ?? describeGeneration(upstream, im, i, images.length) } : {};
      await Deno.writeFile(file, encodePngImage(im, opts));
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
