/**
 * Sampling a batch of latents the way stable-diffusion.cpp does: per image,
 * reseed with seed + index, draw the initial noise, then run the sampler down
 * the schedule with classifier-free guidance (cond and uncond batched).
 */

import { sdxlUnconditional } from "./clip/sdxl_conditioning.ts";
import { assertFinite } from "./finite.ts";
import { initialLatent as initialLatentFor, makeCfgDenoiser } from "./sampling/denoiser.ts";
import { createRng, type RngKind } from "./sampling/rng.ts";
import { sample as runSampler, SAMPLE_METHODS, type SampleMethod } from "./sampling/samplers.ts";
import {
  DiscreteSchedule,
  getSigmas,
  img2imgSigmas,
  SCHEDULER_NAMES,
  type SchedulerName,
} from "./sampling/schedules.ts";
import { blendDenoised } from "./inpaint.ts";
import type { Conditioning, Denoiser, Latent } from "./types.ts";

export interface SampleOptions {
  denoiser: Denoiser;
  positive: Conditioning;
  negative: Conditioning;
  /** txt2img: an empty latent [batch or 1, C, h, w] (its values are ignored); img2img: the encoded image. */
  latent: Latent;
  /** Seed of the first image; image i uses seed + i. Must be >= 0 (the caller draws random seeds). */
  seed: number;
  steps: number;
  cfgScale: number;
  method: string;
  scheduler: string;
  rng: RngKind;
  /** img2img: fraction of the schedule run on the noised input (< 1); txt2img: 1 or absent. */
  strength?: number;
  /** Images to make. */
  batch: number;
  /** Called after every sampling step: i of n over the whole batch. */
  onStep?: (i: number, n: number) => void;
  /**
   * Live preview, as stable-diffusion.cpp's `--preview`: called (and awaited) every `interval` steps and at the
   * last step of each image with that image's latent [1, C, h, w]: the model's denoised estimate (x0) of the
   * step's last evaluation, or with `noisy` the sampler's current latent.
   */
  preview?: {
    interval?: number;
    noisy?: boolean;
    onLatent: (latent: Latent, step: number, steps: number, image: number) => Promise<void> | void;
  };
  eta?: number;
}

/** Accepted sampler names: sdflow's and stable-diffusion.cpp's spellings. */
const METHOD_ALIASES: Readonly<Record<string, SampleMethod>> = { ddim: "ddim_trailing", dpmpp2m: "dpm++2m" };

export function resolveSampleMethod(name: string): SampleMethod {
  const m = METHOD_ALIASES[name] ?? name;
  if (!(SAMPLE_METHODS as readonly string[]).includes(m)) {
    throw new RangeError(`unknown sampling method "${name}" (one of ${SAMPLE_METHODS.join(", ")}, ddim)`);
  }
  return m as SampleMethod;
}

/**
 * A scheduler name, or "default": stable-diffusion.cpp's choice for the method when `--scheduler` is not
 * given (`sd_get_default_scheduler`): lcm for lcm and tcd, simple for ddim_trailing, discrete otherwise.
 */
export function resolveScheduler(name: string, method?: SampleMethod): SchedulerName {
  const s = name !== "default"
    ? name
    : method === "lcm" || method === "tcd"
    ? "lcm"
    : method === "ddim_trailing"
    ? "simple"
    : "discrete";
  if (!(SCHEDULER_NAMES as readonly string[]).includes(s)) {
    throw new RangeError(`unknown scheduler "${name}" (one of ${SCHEDULER_NAMES.join(", ")})`);
  }
  return s as SchedulerName;
}

/** Samples `batch` latents. */
export async function sample(opts: SampleOptions): Promise<Latent> {
  const method = resolveSampleMethod(opts.method);
  const scheduler = resolveScheduler(opts.scheduler, method);
  if (!Number.isInteger(opts.steps) || opts.steps < 1) throw new RangeError(`steps must be >= 1, got ${opts.steps}`);
  if (!Number.isInteger(opts.seed) || opts.seed < 0) {
    throw new RangeError(`seed must be an integer >= 0, got ${opts.seed}`);
  }
  const [lb, c, h, w] = opts.latent.shape;
  const per = c * h * w;
  const strength = opts.strength ?? 1;
  const img2img = strength < 1;
  if (!(strength > 0 && strength <= 1)) throw new RangeError(`strength must be in (0, 1], got ${strength}`);
  if (img2img && lb !== 1 && lb !== opts.batch) {
    throw new RangeError(`img2img: ${lb} input latents for a batch of ${opts.batch}`);
  }
  const schedule = new DiscreteSchedule(opts.denoiser.alphasCumprod);
  const family = opts.denoiser.family === "sdxl" ? "sdxl" : opts.denoiser.family === "sd2" ? "sd2" : "sd1";
  let sigmas = getSigmas(scheduler, opts.steps, schedule, { family });
  if (img2img) sigmas = img2imgSigmas(sigmas, strength);
  const cfgDenoise = makeCfgDenoiser({
    model: opts.denoiser,
    cond: opts.positive,
    // sd.cpp: an SDXL model's empty negative prompt gives an all-zero context (its pooled vector stays).
    uncond: family === "sdxl" ? sdxlUnconditional(opts.negative) : opts.negative,
    cfgScale: opts.cfgScale,
    latentShape: [c, h, w],
    schedule,
    concat: opts.latent.inpaintConcat,
  });
  const inChannels = opts.denoiser.unet?.inChannels ?? c;
  const extra = opts.latent.inpaintConcat?.shape[1] ?? 0;
  if (inChannels !== c + extra) {
    throw new RangeError(
      inChannels === 2 * c + 1
        ? `this is an inpainting model (${inChannels} input channels): give it a picture and a mask ` +
          `(-i picture.png --mask mask.png, or an inpaint_encode node)`
        : `the UNet takes ${inChannels} input channels, the latent gives ${c + extra}`,
    );
  }
  const mask = opts.latent.noiseMask;
  if (mask && mask.length !== h * w) throw new RangeError(`inpainting: a mask of ${mask.length} values for ${w}x${h}`);
  /** Inpainting: the encoded picture of the current image, kept outside the mask (sd.cpp's denoise_mask). */
  let keep = opts.latent.data;
  // The last denoised estimate, for previews (the denoiser reuses its output buffer: copied when previewed).
  let denoised: Float32Array | undefined;
  const denoise: typeof cfgDenoise = async (x, sigma, i) => {
    const d = await cfgDenoise(x, sigma, i);
    if (mask) blendDenoised(d, keep, mask);
    return (denoised = d);
  };
  const preview = opts.preview;
  const interval = Math.max(1, Math.trunc(preview?.interval ?? 1));
  const rng = createRng(opts.rng, opts.seed);
  const steps = sigmas.length - 1;
  const out = new Float32Array(opts.batch * per);
  for (let b = 0; b < opts.batch; b++) {
    const init = img2img ? opts.latent.data.subarray((lb === 1 ? 0 : b) * per, (lb === 1 ? 1 : b + 1) * per) : per;
    const x = initialLatentFor(rng, opts.seed, b, sigmas[0], init);
    keep = opts.latent.data.subarray((lb === 1 ? 0 : b) * per, (lb === 1 ? 1 : b + 1) * per);
    const result = await runSampler(method, denoise, x, sigmas, rng, {
      eta: opts.eta,
      onStep: async (i, _n, cur) => {
        assertFinite(cur, `the latent after step ${i + 1} of ${steps} (image ${b + 1} of ${opts.batch})`);
        opts.onStep?.(b * steps + i + 1, opts.batch * steps);
        if (preview && ((i + 1) % interval === 0 || i + 1 === steps)) {
          const src = preview.noisy || !denoised ? cur : denoised;
          await preview.onLatent({ shape: [1, c, h, w], data: src.slice() }, i + 1, steps, b);
        }
      },
    });
    out.set(result, b * per);
  }
  return { shape: [opts.batch, c, h, w], data: out };
}
