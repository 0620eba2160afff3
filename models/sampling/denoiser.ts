/**
 * The CompVis denoiser wrapper (k-diffusion `CompVisDenoiser` / `CompVisVDenoiser`) with classifier-free
 * guidance, and sd.cpp's latent initialisation — the glue between a UNet noise predictor
 * (models/types.ts `Denoiser`) and the samplers.
 *
 * For one evaluation at noise level sigma (sd.cpp's `denoise` lambda in `StableDiffusionGGML::sample`):
 *   c_in = 1/√(σ²+1); eps: c_skip = 1, c_out = −σ; v: c_skip = 1/(σ²+1), c_out = −σ/√(σ²+1)
 *   t = sigma_to_t(σ) (fractional timestep, log-sigma interpolation of the model's table)
 *   out = UNet(x·c_in, t, cond) (and the unconditional pass when cfg ≠ 1)
 *   guided = uncond + cfg·(cond − uncond)
 *   denoised = guided·c_out + x·c_skip
 * all in float32 as sd.cpp does it.
 */

import type { Conditioning, Denoiser, HostTensor, Prediction } from "../types.ts";
import type { DenoiseFn } from "./samplers.ts";
import type { Rng } from "./rng.ts";
import { DiscreteSchedule } from "./schedules.ts";

const f32 = Math.fround;

export interface Scalings {
  cSkip: number;
  cOut: number;
  cIn: number;
}

/** sd.cpp `CompVisDenoiser::get_scalings` (eps) and `CompVisVDenoiser::get_scalings` (v), sigma_data = 1. */
export function getScalings(sigma: number, prediction: Prediction): Scalings {
  const s = f32(sigma);
  const s2p1 = f32(f32(s * s) + 1);
  const root = f32(Math.sqrt(s2p1));
  const cIn = f32(1 / root);
  if (prediction === "v") {
    return { cSkip: f32(1 / s2p1), cOut: f32(f32(-s) / root), cIn };
  }
  return { cSkip: 1, cOut: -s, cIn };
}

export interface CfgDenoiserOptions {
  model: Denoiser;
  cond: Conditioning;
  /** Negative-prompt conditioning; required when cfgScale ≠ 1. */
  uncond?: Conditioning;
  cfgScale: number;
  /** Latent shape of ONE image, [C, H, W] (the sampler works on one image at a time, as sd.cpp). */
  latentShape: readonly [number, number, number];
  /** The sigma table; defaults to the one built from `model.alphasCumprod`. */
  schedule?: DiscreteSchedule;
  /**
   * Channels appended to the scaled input of every evaluation ([1, K, H, W]; an inpainting model's mask
   * and masked latent), the same for the conditional and unconditional passes, as sd.cpp's c_concat.
   */
  concat?: HostTensor;
}

function concatBatch(a: HostTensor, b: HostTensor): HostTensor {
  const data = new Float32Array(a.data.length + b.data.length);
  data.set(a.data, 0);
  data.set(b.data, a.data.length);
  return { shape: [a.shape[0] + b.shape[0], ...a.shape.slice(1)], data };
}

function sameShape(a: HostTensor, b: HostTensor): boolean {
  return a.shape.length === b.shape.length && a.shape.every((v, i) => v === b.shape[i]);
}

/**
 * A `DenoiseFn` for the samplers: scales the input, converts sigma to the model timestep, runs the model
 * (conditional and unconditional in one batch of 2 when their contexts have the same shape — sd.cpp runs
 * them one after the other, with the same result — or in two calls otherwise, e.g. a 154-token prompt
 * with a 77-token negative), applies CFG and the c_skip/c_out combination.
 */
export function makeCfgDenoiser(opts: CfgDenoiserOptions): DenoiseFn {
  const { model, cond, uncond, cfgScale } = opts;
  const schedule = opts.schedule ?? new DiscreteSchedule(model.alphasCumprod);
  const [C, H, W] = opts.latentShape;
  const n = C * H * W;
  const useUncond = cfgScale !== 1 && uncond !== undefined;
  if (cfgScale !== 1 && uncond === undefined) throw new Error("makeCfgDenoiser: cfgScale ≠ 1 needs uncond");
  const batchable = useUncond && sameShape(cond.context, uncond!.context) &&
    (cond.pooled === undefined) === (uncond!.pooled === undefined) &&
    (cond.pooled === undefined || sameShape(cond.pooled, uncond!.pooled!));
  const both: Conditioning | null = batchable
    ? {
      context: concatBatch(cond.context, uncond!.context),
      pooled: cond.pooled ? concatBatch(cond.pooled, uncond!.pooled!) : undefined,
    }
    : null;
  const out = new Float32Array(n);
  const extra = opts.concat?.data;
  const Cin = C + (opts.concat ? opts.concat.shape[1] : 0);
  if (opts.concat && extra!.length !== opts.concat.shape[1] * H * W) {
    throw new Error(`makeCfgDenoiser: extra input channels of ${extra!.length / (H * W)} planes of ${H}x${W} expected`);
  }

  return async (x: Float32Array, sigma: number) => {
    if (x.length !== n) throw new Error(`denoise: latent has ${x.length} values, expected ${n}`);
    const { cSkip, cOut, cIn } = getScalings(sigma, model.prediction);
    const t = schedule.sigmaToT(sigma);
    let scaled = new Float32Array(n);
    for (let i = 0; i < n; i++) scaled[i] = f32(x[i] * cIn);
    if (extra) {
      const withExtra = new Float32Array(n + extra.length);
      withExtra.set(scaled, 0);
      withExtra.set(extra, n);
      scaled = withExtra;
    }
    const m = scaled.length;

    let pos: Float32Array, neg: Float32Array | null = null;
    if (both) {
      const input = new Float32Array(2 * m);
      input.set(scaled, 0);
      input.set(scaled, m);
      const r = await model.predict({ shape: [2, Cin, H, W], data: input }, Float32Array.of(t, t), both);
      pos = r.data.subarray(0, n);
      neg = r.data.subarray(n, 2 * n);
    } else {
      const xin: HostTensor = { shape: [1, Cin, H, W], data: scaled };
      pos = (await model.predict(xin, Float32Array.of(t), cond)).data;
      if (useUncond) neg = (await model.predict(xin, Float32Array.of(t), uncond!)).data;
    }
    for (let i = 0; i < n; i++) {
      let r = pos[i];
      if (neg) r = f32(neg[i] + f32(cfgScale * f32(pos[i] - neg[i])));
      out[i] = f32(f32(r * cOut) + f32(x[i] * cSkip));
    }
    return out;
  };
}

/**
 * Initial latent of batch item `batchIndex`, as sd.cpp's generation loop makes it: reseed the generator
 * with seed + batchIndex, draw the noise for the whole latent (one `randn(C·H·W)` call, in NCHW order),
 * and noise the starting latent to sigmas[0]: x = init + noise·sigma0 (txt2img: init = 0; img2img: the
 * encoded image, with the schedule truncated by `img2imgSigmas`). The same generator must then be handed
 * to the sampler, which continues its stream (sd.cpp's sampler_rng is the same object unless a separate
 * sampler RNG type is chosen, in which case it is seeded with the same seed + batchIndex).
 */
export function initialLatent(
  rng: Rng,
  seed: bigint | number,
  batchIndex: number,
  sigma0: number,
  init: Float32Array | number,
): Float32Array {
  rng.manualSeed(typeof seed === "bigint" ? seed + BigInt(batchIndex) : seed + batchIndex);
  const n = typeof init === "number" ? init : init.length;
  const noise = rng.randn(n);
  const x = new Float32Array(n);
  const s = f32(sigma0);
  for (let i = 0; i < n; i++) x[i] = f32((typeof init === "number" ? 0 : init[i]) + f32(noise[i] * s));
  return x;
}
