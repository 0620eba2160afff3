/**
 * Noise schedules of stable-diffusion.cpp's CompVisDenoiser (k-diffusion's discrete-time VP wrapper) and
 * its sigma schedulers (denoiser.hpp). Arithmetic is float32 where sd.cpp's is (`Math.fround` after every
 * float operation), so step sigmas and timesteps agree with sd.cpp to the last bit except where a libm
 * float function (logf/expf/powf) rounds differently from the correctly rounded value (≤ 1 ulp).
 */

const f32 = Math.fround;

export const TIMESTEPS = 1000;

/**
 * alphas_cumprod as sd.cpp computes it when the checkpoint has no `alphas_cumprod` tensor: the SD
 * "scaled linear" betas, beta_i = (√0.00085 + (√0.012 − √0.00085)·i/999)², and the running product of
 * (1 − beta_i) — all in float32. The float32 running product drifts from the float64 one by ~1e-6
 * relative near t=999; sd.cpp's pictures depend on that drift, so it is kept (a float64 schedule gives a
 * picture that is close but not identical).
 */
export function sdAlphasCumprod(linearStart = 0.00085, linearEnd = 0.012, timesteps = TIMESTEPS): Float32Array {
  const ls = f32(Math.sqrt(f32(linearStart)));
  const le = f32(Math.sqrt(f32(linearEnd)));
  const amount = f32(le - ls);
  const out = new Float32Array(timesteps);
  let product = 1;
  for (let i = 0; i < timesteps; i++) {
    const beta = f32(ls + f32(amount * f32(i / (timesteps - 1))));
    // powf(beta, 2): beta² is exact in a double, so rounding it once is powf's correctly rounded result.
    product = f32(product * f32(1 - f32(beta * beta)));
    out[i] = product;
  }
  return out;
}

/**
 * The discrete sigma table of a CompVis (eps or v) model: sigma_t = √((1 − ᾱ_t)/ᾱ_t), and log sigma,
 * in float32 as sd.cpp's `CompVisDenoiser` holds them; plus sd.cpp's sigma ↔ timestep conversions.
 */
export class DiscreteSchedule {
  readonly sigmas: Float32Array;
  readonly logSigmas: Float32Array;

  /** `alphasCumprod`: 1000 values (from the checkpoint, or `sdAlphasCumprod()`). */
  constructor(alphasCumprod: ArrayLike<number> = sdAlphasCumprod()) {
    const n = alphasCumprod.length;
    if (n < 2) throw new Error("DiscreteSchedule: need at least 2 alphas_cumprod values");
    this.sigmas = new Float32Array(n);
    this.logSigmas = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const a = f32(alphasCumprod[i]);
      this.sigmas[i] = f32(Math.sqrt(f32(f32(1 - a) / a)));
      this.logSigmas[i] = f32(Math.log(this.sigmas[i]));
    }
  }

  get sigmaMin(): number {
    return this.sigmas[0];
  }

  get sigmaMax(): number {
    return this.sigmas[this.sigmas.length - 1];
  }

  /**
   * Fractional timestep of a sigma: find the last table entry with log sigma ≤ log(sigma), then
   * interpolate linearly in log sigma, clamped to the table (sd.cpp `CompVisDenoiser::sigma_to_t`).
   */
  sigmaToT(sigma: number): number {
    const ls = this.logSigmas;
    const n = ls.length;
    const logSigma = f32(Math.log(sigma));
    let low = 0;
    for (let i = 0; i < n; i++) if (f32(logSigma - ls[i]) >= 0) low++;
    low = Math.min(Math.max(low - 1, 0), n - 2);
    const high = low + 1;
    const lo = ls[low], hi = ls[high];
    let w = f32(f32(lo - logSigma) / f32(lo - hi));
    w = Math.max(0, Math.min(1, w));
    return f32(f32(f32(1 - w) * low) + f32(w * high));
  }

  /** Sigma of a fractional timestep: linear interpolation of log sigma (sd.cpp `t_to_sigma`). */
  tToSigma(t: number): number {
    const tf = f32(t);
    const low = Math.floor(tf), high = Math.ceil(tf);
    const w = f32(tf - low);
    const ls = f32(f32(f32(1 - w) * this.logSigmas[low]) + f32(w * this.logSigmas[high]));
    return f32(Math.exp(ls));
  }
}

/** Noise schedules, named as stable-diffusion.cpp's `--schedule`. */
export const SCHEDULER_NAMES = [
  "discrete",
  "karras",
  "exponential",
  "ays",
  "sgm_uniform",
  "simple",
  "smoothstep",
  "kl_optimal",
  "lcm",
] as const;

export type SchedulerName = typeof SCHEDULER_NAMES[number];

/** Which Align-Your-Steps table: NVIDIA published SD 1.5 and SDXL levels. */
export type AysFamily = "sd1" | "sd2" | "sdxl";

/** Align Your Steps noise levels (10 steps + final), NVIDIA's published tables as in sd.cpp. */
export const AYS_NOISE_LEVELS: Readonly<Record<"sd1" | "sdxl", readonly number[]>> = {
  sd1: [
    14.6146412293,
    6.4745760956,
    3.8636745985,
    2.694615152,
    1.8841921177,
    1.3943805092,
    0.9642583904,
    0.6523686016,
    0.3977456272,
    0.1515232662,
    0.0291671582,
  ].map(f32),
  sdxl: [
    14.6146412293,
    6.3184485287,
    3.7681790315,
    2.1811480769,
    1.3405244945,
    0.8620721141,
    0.5550693289,
    0.3798540708,
    0.2332364134,
    0.1114188177,
    0.0291671582,
  ].map(f32),
};

export interface SigmaOptions {
  /** Model family, for `ays` (SD 2.x has no published table; sd.cpp's code then uses SD 1.5 levels' intent). */
  family?: AysFamily;
}

/**
 * Sigmas for `steps` sampling steps, `steps + 1` values ending in 0, as sd.cpp's `Denoiser::get_sigmas`
 * with the given scheduler.
 */
export function getSigmas(
  scheduler: SchedulerName,
  steps: number,
  schedule: DiscreteSchedule,
  opts: SigmaOptions = {},
): Float32Array {
  if (!Number.isInteger(steps) || steps < 0) throw new RangeError("steps must be a non-negative integer");
  switch (scheduler) {
    case "discrete":
      return discreteSigmas(steps, schedule);
    case "karras":
      return karrasSigmas(steps, schedule.sigmaMin, schedule.sigmaMax);
    case "exponential":
      return exponentialSigmas(steps, schedule.sigmaMin, schedule.sigmaMax);
    case "ays":
      return aysSigmas(steps, opts.family ?? "sd1");
    case "sgm_uniform":
      return sgmUniformSigmas(steps, schedule);
    case "simple":
      return simpleSigmas(steps, schedule);
    case "smoothstep":
      return smoothstepSigmas(steps, schedule);
    case "kl_optimal":
      return klOptimalSigmas(steps, schedule.sigmaMin, schedule.sigmaMax);
    case "lcm":
      return lcmSigmas(steps, schedule);
  }
}

/**
 * sd.cpp `DiscreteScheduler`: timesteps 999 − i·(999/(n−1)) (float), each mapped through `t_to_sigma`
 * (log-sigma interpolation between table entries), then a final 0. One step: [sigma(999), 0].
 */
export function discreteSigmas(steps: number, schedule: DiscreteSchedule): Float32Array {
  const tMax = schedule.sigmas.length - 1;
  if (steps === 0) return new Float32Array(0);
  if (steps === 1) return Float32Array.of(schedule.tToSigma(tMax), 0);
  const out = new Float32Array(steps + 1);
  const step = f32(tMax / f32(steps - 1));
  for (let i = 0; i < steps; i++) out[i] = schedule.tToSigma(f32(tMax - f32(step * i)));
  out[steps] = 0;
  return out;
}

/**
 * Karras et al. (2022) eq. 5 with rho = 7 (sd.cpp `KarrasScheduler`): pow in double, stored as float.
 * sd.cpp divides by (n − 1) and so yields NaN for one step; here one step gives [sigma_max, 0]
 * (k-diffusion's value).
 */
export function karrasSigmas(steps: number, sigmaMin: number, sigmaMax: number, rho = 7): Float32Array {
  const out = new Float32Array(steps + 1);
  if (steps === 0) return new Float32Array(0);
  const smin = Math.max(f32(sigmaMin), f32(1e-6));
  const invRho = f32(1 / f32(rho));
  const minInv = f32(Math.pow(smin, invRho));
  const maxInv = f32(Math.pow(f32(sigmaMax), invRho));
  for (let i = 0; i < steps; i++) {
    const ramp = steps === 1 ? 0 : f32(i / f32(steps - 1));
    out[i] = f32(Math.pow(f32(maxInv + f32(ramp * f32(minInv - maxInv))), f32(rho)));
  }
  out[steps] = 0;
  return out;
}

/** Log-linear from sigma_max to sigma_min (sd.cpp `ExponentialScheduler`); one step → [sigma_max, 0]. */
export function exponentialSigmas(steps: number, sigmaMin: number, sigmaMax: number): Float32Array {
  if (steps === 0) return new Float32Array(0);
  const out = new Float32Array(steps + 1);
  const lmin = f32(Math.log(sigmaMin));
  const lmax = f32(Math.log(sigmaMax));
  const step = steps === 1 ? 0 : f32(f32(lmax - lmin) / (steps - 1));
  for (let i = 0; i < steps; i++) out[i] = f32(Math.exp(f32(lmax - f32(step * i))));
  out[steps] = 0;
  return out;
}

/** sd.cpp `linear_space`: float accumulation of a float increment (not start + i·inc). */
function linearSpace(start: number, end: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (n === 0) return out;
  const inc = f32(f32(end - start) / f32(n - 1));
  out[0] = start;
  for (let i = 1; i < n; i++) out[i] = f32(out[i - 1] + inc);
  return out;
}

/**
 * sd.cpp `log_linear_interpolation`: resample a descending sigma list to `newLen` points, linear in
 * log sigma over a float linspace(0, 1) grid (interpolation weights and values in double).
 */
export function logLinearInterpolation(sigmas: ArrayLike<number>, newLen: number): Float32Array {
  const sLen = sigmas.length;
  const xs = linearSpace(0, 1, sLen);
  const ys = new Float32Array(sLen);
  for (let i = 0; i < sLen; i++) ys[i] = f32(Math.log(f32(sigmas[sLen - 1 - i])));
  const nx = linearSpace(0, 1, newLen);
  if (nx[0] < xs[0]) nx[0] = xs[0];
  if (nx[newLen - 1] > xs[sLen - 1]) nx[newLen - 1] = xs[sLen - 1];
  const ny = new Float64Array(newLen);
  let j = 0;
  for (let i = 0; i < newLen;) {
    if (j + 2 < sLen && (xs[j] > nx[i] || nx[i] > xs[j + 1])) {
      j++;
      continue;
    }
    const p = f32(nx[i] - xs[j]) / f32(xs[j + 1] - xs[j]);
    ny[i] = ys[j] * (1 - p) + ys[j + 1] * p;
    i++;
  }
  const out = new Float32Array(newLen);
  for (let i = 0; i < newLen; i++) out[i] = f32(Math.exp(ny[newLen - 1 - i]));
  return out;
}

/**
 * Align Your Steps (sd.cpp `AYSScheduler`): NVIDIA's 10-step table, resampled log-linearly to
 * `steps + 1` points when steps ≠ 10, last value forced to 0. SD 2.x: sd.cpp warns that AYS was not
 * designed for it and (by an else-if slip) ends up with no table; the SD 1.5 levels are used here, which
 * is what its "fallthrough" comment meant.
 */
export function aysSigmas(steps: number, family: AysFamily): Float32Array {
  if (steps === 0) return new Float32Array(0);
  const levels = AYS_NOISE_LEVELS[family === "sdxl" ? "sdxl" : "sd1"];
  const out = steps + 1 === levels.length ? Float32Array.from(levels) : logLinearInterpolation(levels, steps + 1);
  out[steps] = 0;
  return out;
}

/** sd.cpp `SGMUniformScheduler`: n+1 float-linspaced timesteps from 999 to 0, the first n mapped. */
export function sgmUniformSigmas(steps: number, schedule: DiscreteSchedule): Float32Array {
  if (steps === 0) return Float32Array.of(0);
  const tMax = schedule.sigmas.length - 1;
  const ts = linearSpace(tMax, 0, steps + 1);
  const out = new Float32Array(steps + 1);
  for (let i = 0; i < steps; i++) out[i] = schedule.tToSigma(ts[i]);
  return out;
}

/** sd.cpp `SimpleScheduler` (ComfyUI "simple"): every 1000/n-th table sigma from the top. */
export function simpleSigmas(steps: number, schedule: DiscreteSchedule): Float32Array {
  if (steps === 0) return new Float32Array(0);
  const len = schedule.sigmas.length;
  const factor = f32(len / steps);
  const out = new Float32Array(steps + 1);
  for (let i = 0; i < steps; i++) {
    const idx = Math.max(0, len - 1 - Math.trunc(f32(i * factor)));
    out[i] = schedule.tToSigma(idx);
  }
  return out;
}

/** sd.cpp `SmoothStepScheduler`: t = round(smoothstep(1 − i/n)·999). */
export function smoothstepSigmas(steps: number, schedule: DiscreteSchedule): Float32Array {
  const tMax = schedule.sigmas.length - 1;
  if (steps === 0) return new Float32Array(0);
  if (steps === 1) return Float32Array.of(schedule.tToSigma(tMax), 0);
  const out = new Float32Array(steps + 1);
  for (let i = 0; i < steps; i++) {
    const u = f32(1 - f32(i / steps));
    const s = f32(f32(u * u) * f32(3 - f32(2 * u)));
    // std::round: half away from zero (values are non-negative here).
    out[i] = schedule.tToSigma(Math.floor(f32(s * tMax) + 0.5));
  }
  return out;
}

/** sd.cpp `KLOptimalScheduler`: tan of a linear blend of atan(sigma_max) and atan(sigma_min). */
export function klOptimalSigmas(steps: number, sigmaMin: number, sigmaMax: number): Float32Array {
  if (steps === 0) return new Float32Array(0);
  if (steps === 1) return Float32Array.of(sigmaMax, 0);
  const smin = Math.max(f32(sigmaMin), f32(1e-6));
  const aMin = f32(Math.atan(smin)), aMax = f32(Math.atan(f32(sigmaMax)));
  const out = new Float32Array(steps + 1);
  for (let i = 0; i < steps; i++) {
    const t = f32(i / (steps - 1));
    out[i] = f32(Math.tan(f32(f32(t * aMin) + f32(f32(1 - t) * aMax))));
  }
  return out;
}

/** sd.cpp `LCMScheduler`: the 50-step LCM training grid, timestep (50 − ⌊50i/n⌋)·20 − 1. */
export function lcmSigmas(steps: number, schedule: DiscreteSchedule): Float32Array {
  const originalSteps = 50;
  const k = Math.trunc(schedule.sigmas.length / originalSteps);
  const out = new Float32Array(steps + 1);
  for (let i = 0; i < steps; i++) {
    const index = Math.trunc((i * originalSteps) / steps);
    out[i] = schedule.tToSigma((originalSteps - index) * k - 1);
  }
  return out;
}

/**
 * img2img: sd.cpp takes t_enc = (size_t)(steps·strength) (float product), lowers it to steps − 1 when it
 * reaches steps, and keeps sigmas[steps − t_enc − 1 ..]: t_enc + 2 values, i.e. t_enc + 1 sampling steps
 * (20 steps at strength 0.75 run 16). Returns the truncated schedule; its first value is the noise level
 * the encoded image is noised to (x = init_latent + noise·sigmas[0]).
 */
export function img2imgSigmas(sigmas: Float32Array | Float64Array, strength: number): Float32Array {
  const steps = sigmas.length - 1;
  if (steps < 1) throw new RangeError("img2imgSigmas: need at least one step");
  // `sample_steps * strength` is int × float: a float product, then truncated.
  let tEnc = Math.trunc(f32(steps * f32(strength)));
  if (tEnc < 0) tEnc = 0;
  if (tEnc >= steps) tEnc = steps - 1;
  return Float32Array.from(sigmas.subarray(steps - tEnc - 1));
}
