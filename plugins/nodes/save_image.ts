/**
 * `save_image`: writes PNGs with the generation parameters in a `parameters` text chunk (sd-webui
 * format) and the graph that made them in an `sdflow-graph` chunk.
 */

import { dirname } from "node:path";
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
 * sd-webui's "Schedule type" names. sd.cpp's `discrete` is k-diffusion's `get_sigmas(n)` (timesteps
 * evenly spaced), which sd-webui calls "Uniform"; sd.cpp-only schedules keep a capitalised name.
 */
export const SCHEDULE_LABELS: Readonly<Record<string, string>> = {
  discrete: "Uniform",
  karras: "Karras",
  exponential: "Exponential",
  ays: "Align Your Steps",
  sgm_uniform: "SGM Uniform",
  simple: "Simple",
  smoothstep: "Smoothstep",
  kl_optimal: "KL Optimal",
  lcm: "LCM",
};

/**
 * The `RNG` field: `cuda` (Philox, torch.randn on CUDA) is sd-webui's "GPU" noise source; `std_default`
 * (stable-diffusion.cpp's CPU generator) has no sd-webui counterpart and keeps sd.cpp's name.
 */
export const RNG_LABELS: Readonly<Record<string, string>> = { cuda: "GPU", std_default: "std_default", cpu: "CPU" };

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
  // The sampler publishes the schedule it ran (a "default" resolved for the method).
  const scheduler = String(s.meta.schedule ?? v.scheduler);
  const rng = String(v.rng);
  return formatParameters({
    prompt: typeof pos?.values.text === "string" ? pos.values.text : "",
    negativePrompt: typeof neg?.values.text === "string" ? neg.values.text : undefined,
    steps: Number(v.steps),
    sampler: SAMPLE_METHOD_LABELS[method as SampleMethod] ?? method,
    scheduler: SCHEDULE_LABELS[scheduler] ?? scheduler,
    cfgScale: Number(v.cfg),
    seed: Number(s.meta.seed ?? v.seed),
    width: image.width,
    height: image.height,
    model,
    clipSkip: typeof pos?.values.clip_skip === "number" ? pos.values.clip_skip : undefined,
    denoisingStrength: typeof v.denoise === "number" && v.denoise < 1 ? v.denoise : undefined,
    rng: RNG_LABELS[rng] ?? rng,
    extra: { ...(n > 1 ? { "Batch size": n, "Batch pos": i } : {}), Version: "sdflow" },
  });
}

/** Writes a batch of images as PNG files. */
export const saveImage = defineNode({
  type: "save_image",
  category: "image",
  description: "Writes images as PNG files (creating the folders of the path). A batch of n > 1 images is " +
    "written as name_1.png … name_n.png. The generation parameters go into a `parameters` text chunk " +
    "(sd-webui format) and the graph that made the images into an `sdflow-graph` chunk (JSON).",
  inputs: {
    images: { type: "IMAGE", description: "The images to write." },
    path: { schema: { type: "string", minLength: 1, default: "output.png", description: "Output file (PNG)." } },
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
  },
  outputs: {},
  sideEffects: true,
  async run({ images, path, parameters, metadata }, ctx) {
    const upstream = ctx.upstream();
    const graph = metadata ? ctx.graph() : undefined;
    const dir = dirname(path);
    if (dir !== "." && dir !== path) await Deno.mkdir(dir, { recursive: true });
    for (const [i, im] of images.entries()) {
      const file = batchPath(path, i, images.length);
      const opts = metadata
        ? { parameters: parameters ?? describeGeneration(upstream, im, i, images.length), graph }
        : {};
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
