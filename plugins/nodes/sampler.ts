/** `sampler`: denoises a latent with the UNet, guided by positive and negative conditioning. */

import { SAMPLE_METHOD_LABELS, SAMPLE_METHODS, type SampleMethod } from "../../models/sampling/samplers.ts";
import { img2imgSigmas, SCHEDULER_NAMES } from "../../models/sampling/schedules.ts";
import { projectLatent } from "../../models/preview.ts";
import type { Conditioning, Latent, Vae } from "../../models/types.ts";
import { encodePngImage } from "../image/png.ts";
import {
  defineNode,
  type GenerationInfo,
  type NodeContext,
  NodeInputError,
  type NodeValues,
  type UpstreamNode,
} from "../node.ts";
import { estimateNetwork, resolveScheduler, sample } from "./model_layer.ts";

/** Sampling methods, named as stable-diffusion.cpp's `--sampling-method` (the model layer's list). */
export const SAMPLING_METHODS: readonly SampleMethod[] = SAMPLE_METHODS;

/**
 * Noise schedules, named as stable-diffusion.cpp's `--scheduler`, and `default`: sd.cpp's choice for the
 * sampling method (lcm for lcm and tcd, simple for ddim_trailing, discrete for the others).
 */
export const SCHEDULERS = ["default", ...SCHEDULER_NAMES] as const;

/**
 * Noise generators, as stable-diffusion.cpp's `--rng`: `cuda` (its default: Philox, as torch.randn on CUDA),
 * `std_default` (libstdc++'s default engine) and `cpu` (mt19937, as torch.randn on the CPU).
 */
export const RNGS = ["cuda", "std_default", "cpu"] as const;

/** Methods that evaluate the UNet twice per step. */
const TWO_EVALS = new Set(["heun", "dpm2", "dpm++2s_a"]);

/** A random seed in [0, 2^31), as stable-diffusion.cpp draws one for a negative seed. */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0] >>> 1;
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

/** What the sampler's inputs say about the pictures it makes (its `generation`, which save_image writes). */
export function samplerGeneration(
  inputs: {
    positive: Conditioning;
    negative: Conditioning;
    steps: number;
    cfg: number;
    sampler: string;
    scheduler: string;
    rng: string;
    denoise: number;
  },
  seed: number,
  batch: number,
  upstream: readonly UpstreamNode[],
): GenerationInfo {
  const model = upstream.find((u) => typeof u.meta.model === "string")?.meta.model as string | undefined;
  return {
    prompt: inputs.positive.prompt ?? "",
    ...(inputs.negative.prompt ? { negativePrompt: inputs.negative.prompt } : {}),
    steps: inputs.steps,
    sampler: SAMPLE_METHOD_LABELS[inputs.sampler as SampleMethod] ?? inputs.sampler,
    // The schedule that ran ("default" resolved for the method, as sd.cpp does).
    scheduler: ((s) => SCHEDULE_LABELS[s] ?? s)(resolveScheduler(inputs.scheduler, inputs.sampler as SampleMethod)),
    cfgScale: inputs.cfg,
    // Picture i of a batch is made from seed + i (as stable-diffusion.cpp does).
    seeds: Array.from({ length: batch }, (_, i) => seed + i),
    ...(model === undefined ? {} : { model }),
    ...(inputs.positive.clipSkip === undefined ? {} : { clipSkip: inputs.positive.clipSkip }),
    ...(inputs.denoise < 1 ? { denoisingStrength: inputs.denoise } : {}),
    rng: RNG_LABELS[inputs.rng] ?? inputs.rng,
  };
}

/**
 * What the sampler's preview inputs ask of `sample` (a file), plus the run's live preview (every step) when its
 * caller shows one; or nothing.
 */
function previewWriter(
  o: {
    preview: string;
    preview_vae?: Vae;
    preview_path: string;
    preview_interval: number;
    preview_noisy: boolean;
  },
  family: "sd1" | "sd2" | "sdxl",
  live?: NodeContext["livePreview"],
) {
  const toFile = o.preview !== "none";
  if (!toFile && !live) return undefined;
  const write = async (latent: Latent, step: number, steps: number, image: number) => {
    if (live) await live(latent, { step, steps, image, family });
    if (!toFile || (step % o.preview_interval !== 0 && step !== steps)) return;
    const [im] = o.preview === "proj" ? [projectLatent(latent, family)] : await o.preview_vae!.decode(latent);
    // One file, the image being sampled (as sd.cpp), written beside and renamed so a viewer never reads half a file.
    const tmp = `${o.preview_path}.${Deno.pid}.tmp`;
    await Deno.writeFile(tmp, encodePngImage(im, {}));
    await Deno.rename(tmp, o.preview_path);
  };
  return {
    // The live preview wants every step; the file keeps its own interval.
    interval: live ? 1 : o.preview_interval,
    noisy: o.preview_noisy,
    onLatent: write,
  };
}

/** The diffusion sampler (KSampler). */
export const sampler = defineNode({
  type: "sampler",
  category: "sampling",
  description: "Runs the diffusion sampler: starts from a latent (empty for txt2img, an encoded image for img2img), " +
    "adds noise and denoises it with the UNet, guided by the positive and negative conditioning (CFG).",
  inputs: {
    model: { type: "MODEL", description: "The UNet (a checkpoint's model output)." },
    positive: { type: "CONDITIONING", description: "What the picture should show." },
    negative: { type: "CONDITIONING", description: "What it should not show (an empty prompt is usual)." },
    latent: { type: "LATENT", description: "The starting latent." },
    seed: {
      schema: {
        type: "integer",
        minimum: -9007199254740991,
        maximum: 9007199254740991,
        default: -1,
        description: "Noise seed; negative: a random seed (reported, and written into saved images).",
      },
    },
    steps: { schema: { type: "integer", minimum: 1, maximum: 1000, default: 20, description: "Sampling steps." } },
    cfg: {
      schema: {
        type: "number",
        minimum: 0,
        maximum: 100,
        default: 7,
        description: "Classifier-free guidance scale (1 = no guidance: the negative prompt is not evaluated).",
      },
    },
    sampler: {
      schema: { enum: SAMPLING_METHODS, default: "euler_a", description: "Sampling method." },
    },
    scheduler: {
      schema: {
        enum: SCHEDULERS,
        default: "default",
        description: "Noise schedule (sigmas); default: stable-diffusion.cpp's choice for the sampling method " +
          "(lcm for lcm and tcd, simple for ddim_trailing, discrete for the others).",
      },
    },
    rng: { schema: { enum: RNGS, default: "cuda", description: "Random number generator for the noise." } },
    eta: {
      optional: true,
      schema: {
        type: "number",
        minimum: 0,
        description: "Noise added back per step (sd.cpp --eta) by euler_a, dpm++2s_a (default 1), ddim_trailing " +
          "and tcd (default 0); the other samplers ignore it.",
      },
    },
    denoise: {
      schema: {
        type: "number",
        minimum: 0,
        maximum: 1,
        default: 1,
        description: "Strength: 1 replaces the latent entirely (txt2img); below 1 keeps that much of it (img2img).",
      },
    },
    batch: {
      optional: true,
      schema: {
        type: "integer",
        minimum: 1,
        maximum: 64,
        description: "Images to make. Default: the latent's batch size; a latent of batch 1 is repeated, " +
          "each copy getting its own noise (img2img with -b).",
      },
    },
    preview: {
      schema: {
        enum: ["none", "proj", "vae"],
        default: "none",
        description: "Live preview written to `preview_path` while sampling (stable-diffusion.cpp's --preview): " +
          "`proj` maps the latent's channels to RGB at latent size (no network, free); `vae` decodes it with " +
          "`preview_vae` (wire a taesd node's vae for a cheap full-size preview: sd.cpp's `tae`).",
      },
    },
    preview_vae: {
      type: "VAE",
      optional: true,
      description: "The VAE that decodes previews (preview = vae): a TAESD, or the checkpoint's own VAE.",
    },
    preview_path: {
      schema: { type: "string", minLength: 1, default: "preview.png", description: "Where the preview PNG goes." },
    },
    preview_interval: {
      schema: {
        type: "integer",
        minimum: 1,
        maximum: 1000,
        default: 1,
        description: "Steps between preview updates (and always the last step).",
      },
    },
    preview_noisy: {
      schema: {
        type: "boolean",
        default: false,
        description: "Preview the sampler's noisy latent instead of the model's denoised estimate.",
      },
    },
  },
  outputs: { latent: "LATENT" },
  cacheable: (values: NodeValues) => typeof values.seed === "number" && values.seed >= 0,
  async run(inputs, ctx) {
    if (inputs.preview === "vae" && !inputs.preview_vae) {
      throw new NodeInputError("preview_vae", "preview = vae needs a VAE wired into preview_vae (e.g. a taesd node's)");
    }
    const seed = inputs.seed < 0 ? randomSeed() : inputs.seed;
    if (inputs.seed < 0) ctx.log(`${ctx.nodeId}: random seed ${seed}`);
    const batch = inputs.batch ?? inputs.latent.shape[0];
    ctx.publish({ seed, generation: samplerGeneration(inputs, seed, batch, ctx.upstream()) });
    // The bar shows from the start (the first step may take long); img2img runs the tail of the schedule.
    const stepsRun = inputs.denoise < 1
      ? img2imgSigmas(new Float32Array(inputs.steps + 1), inputs.denoise).length - 1
      : inputs.steps;
    ctx.progress(0, batch * stepsRun, "step");
    const latent = await sample({
      denoiser: inputs.model,
      positive: inputs.positive,
      negative: inputs.negative,
      latent: inputs.latent,
      seed,
      steps: inputs.steps,
      cfgScale: inputs.cfg,
      method: inputs.sampler,
      scheduler: inputs.scheduler,
      rng: inputs.rng,
      eta: inputs.eta,
      strength: inputs.denoise,
      batch,
      onStep: (i, n) => ctx.progress(i, n, "step"),
      preview: previewWriter(inputs, inputs.model.family, ctx.livePreview),
    });
    return { latent };
  },
  async estimate({ model, latent, steps, cfg, sampler, denoise, batch }) {
    const shape = latent?.shape;
    if (!model?.checkpoint || !shape) return { ops: [], note: "input size unknown" };
    const n = batch ?? shape[0];
    const out = [n, ...shape.slice(1)];
    const evalShape = [cfg === 1 ? n : 2 * n, ...shape.slice(1)];
    const evals = Math.max(1, Math.round(steps * denoise)) * (TWO_EVALS.has(sampler) ? 2 : 1);
    const r = await estimateNetwork("unet", { checkpoint: model.checkpoint, latentShape: evalShape });
    const ops = (r.ops ?? []).map((op) => ({ ...op, count: (op.count ?? 1) * evals }));
    const note = [`${evals} UNet evaluations at [${evalShape}]`, r.note].filter(Boolean).join("; ");
    return { ops, note, outputs: { latent: { shape: out } } };
  },
});
