/**
 * k-diffusion samplers as stable-diffusion.cpp's `sample_k_diffusion` (denoiser.hpp) runs them: the same
 * update formulas, the same order of model calls and RNG draws (one `rng.randn(x.length)` per noise
 * injection), and float32 arithmetic where sd.cpp's is float (every stored value rounded to float32;
 * scalar coefficients computed as sd.cpp computes them). The latent is sampled one image at a time, as
 * sd.cpp does for a batch (seed + b per image), so `x` is one image's latent.
 *
 * `denoise(x, sigma, stepIndex)` returns k-diffusion's "denoised" (the model's estimate of x0, after CFG);
 * the array it returns is only read until the next call. `stepIndex` is the 0-based sampler step the call
 * belongs to (both calls of a two-stage step get the same index).
 */

import type { Rng } from "./rng.ts";

const f32 = Math.fround;

export type SampleMethod =
  | "euler"
  | "euler_a"
  | "heun"
  | "dpm2"
  | "dpm++2s_a"
  | "dpm++2m"
  | "dpm++2mv2"
  | "ipndm"
  | "ipndm_v"
  | "lcm"
  | "ddim_trailing"
  | "tcd";

export const SAMPLE_METHODS: readonly SampleMethod[] = [
  "euler",
  "euler_a",
  "heun",
  "dpm2",
  "dpm++2s_a",
  "dpm++2m",
  "dpm++2mv2",
  "ipndm",
  "ipndm_v",
  "lcm",
  "ddim_trailing",
  "tcd",
];

/** Display names sd.cpp logs (and sd-webui-like metadata uses). */
export const SAMPLE_METHOD_LABELS: Readonly<Record<SampleMethod, string>> = {
  "euler": "Euler",
  "euler_a": "Euler a",
  "heun": "Heun",
  "dpm2": "DPM2",
  "dpm++2s_a": "DPM++ 2S a",
  "dpm++2m": "DPM++ 2M",
  "dpm++2mv2": "DPM++ 2M v2",
  "ipndm": "iPNDM",
  "ipndm_v": "iPNDM_v",
  "lcm": "LCM",
  "ddim_trailing": "DDIM trailing",
  "tcd": "TCD",
};

export type DenoiseFn = (x: Float32Array, sigma: number, stepIndex: number) => Promise<Float32Array>;
/** Called after each step with the current latent; a returned promise is awaited (a live preview decodes it). */
export type StepCallback = (step: number, steps: number, x: Float32Array) => unknown;

/**
 * sd.cpp's `--eta` when it is not given (`resolve_eta`): 1 for the ancestral samplers, 0 for the others
 * (ddim_trailing and tcd are deterministic unless asked).
 */
export function defaultEta(method: SampleMethod): number {
  return method === "euler_a" || method === "dpm++2s_a" ? 1 : 0;
}

export interface SampleOptions {
  /**
   * Noise added back per step (sd.cpp `--eta`) for euler_a, dpm++2s_a, ddim_trailing and tcd; ignored by
   * the others. Default: `defaultEta(method)`.
   */
  eta?: number;
  onStep?: StepCallback;
}

/**
 * Runs `method` from `x` (the initial latent already noised to sigmas[0]) down the schedule `sigmas`
 * (`steps + 1` values ending in 0). Returns the sampled latent (a new array; `x` is not modified).
 */
export async function sample(
  method: SampleMethod,
  denoise: DenoiseFn,
  x: Float32Array,
  sigmas: Float32Array | Float64Array,
  rng: Rng,
  opts: SampleOptions | StepCallback = {},
): Promise<Float32Array> {
  const o: SampleOptions = typeof opts === "function" ? { onStep: opts } : opts;
  const s = Float32Array.from(sigmas);
  if (s.length < 1) throw new RangeError("sample: empty sigma schedule");
  const xs = Float32Array.from(x);
  const run = SAMPLERS[method];
  if (!run) throw new Error(`unknown sample method "${method}"`);
  const eta = o.eta ?? defaultEta(method);
  if (!(eta >= 0) || (method === "tcd" && eta > 1)) {
    throw new RangeError(`${method}: eta must be ${method === "tcd" ? "in [0, 1]" : "a number >= 0"}, got ${eta}`);
  }
  await run({ denoise, x: xs, s, rng, eta, onStep: o.onStep ?? (() => {}) });
  return xs;
}

interface Ctx {
  denoise: DenoiseFn;
  x: Float32Array;
  s: Float32Array;
  rng: Rng;
  eta: number;
  onStep: StepCallback;
}

/** d = (x − denoised) / sigma, in float. */
function derivative(x: Float32Array, den: Float32Array, sigma: number, out: Float32Array): void {
  for (let j = 0; j < x.length; j++) out[j] = f32(f32(x[j] - den[j]) / sigma);
}

/** x = x + d·dt, in float. */
function axpy(x: Float32Array, d: Float32Array, dt: number): void {
  for (let j = 0; j < x.length; j++) x[j] = f32(x[j] + f32(d[j] * dt));
}

/** sd.cpp get_ancestral_step: the step down to sigma_down, then noise of sigma_up, in float. */
function ancestral(s0: number, s1: number, eta: number): { up: number; down: number } {
  if (eta <= 0) return { up: 0, down: s1 };
  const s1s = f32(s1 * s1), s0s = f32(s0 * s0);
  let up = 0;
  if (s0s > 0) {
    const term = f32(f32(s1s * f32(s0s - s1s)) / s0s);
    up = Math.min(s1, f32(eta * f32(Math.sqrt(Math.max(term, 0)))));
  }
  const downSq = f32(s1s - f32(up * up));
  return { up, down: downSq > 0 ? f32(Math.sqrt(downSq)) : 0 };
}

/**
 * sd.cpp `sample_euler_ancestral`, which also runs ddim_trailing ("DDIM is Euler ancestral with the
 * simple scheduler"): x ← r·x + (1 − r)·denoised with r = sigma_down/sigma, then noise·sigma_up; the
 * last step (to sigma 0) returns denoised itself.
 */
async function eulerAncestral({ denoise, x, s, rng, eta, onStep }: Ctx): Promise<void> {
  const steps = s.length - 1;
  for (let i = 0; i < steps; i++) {
    const sigma = s[i], to = s[i + 1];
    const den = await denoise(x, sigma, i);
    if (to === 0) {
      x.set(den);
    } else {
      const { up, down } = ancestral(sigma, to, eta);
      const ratio = f32(down / sigma), keep = f32(1 - ratio);
      for (let j = 0; j < x.length; j++) x[j] = f32(f32(ratio * x[j]) + f32(keep * den[j]));
      if (up > 0) addNoise(x, rng, up);
    }
    await onStep(i, steps, x);
  }
}

function addNoise(x: Float32Array, rng: Rng, scale: number): void {
  const noise = rng.randn(x.length);
  for (let j = 0; j < x.length; j++) x[j] = f32(x[j] + f32(noise[j] * scale));
}

/** `-log(sigma)` returned as float (sd.cpp's t_fn lambdas). */
const tFn = (sigma: number) => f32(-Math.log(sigma));

const SAMPLERS: Record<SampleMethod, (c: Ctx) => Promise<void>> = {
  async euler({ denoise, x, s, onStep }) {
    const steps = s.length - 1;
    const d = new Float32Array(x.length);
    for (let i = 0; i < steps; i++) {
      const den = await denoise(x, s[i], i);
      derivative(x, den, s[i], d);
      axpy(x, d, f32(s[i + 1] - s[i]));
      await onStep(i, steps, x);
    }
  },

  euler_a: eulerAncestral,

  async heun({ denoise, x, s, onStep }) {
    const steps = s.length - 1;
    const d = new Float32Array(x.length);
    const x2 = new Float32Array(x.length);
    for (let i = 0; i < steps; i++) {
      const den = await denoise(x, s[i], i);
      derivative(x, den, s[i], d);
      const dt = f32(s[i + 1] - s[i]);
      if (s[i + 1] === 0) {
        axpy(x, d, dt);
      } else {
        for (let j = 0; j < x.length; j++) x2[j] = f32(x[j] + f32(d[j] * dt));
        const den2 = await denoise(x2, s[i + 1], i);
        for (let j = 0; j < x.length; j++) {
          const d2 = f32(f32(x2[j] - den2[j]) / s[i + 1]);
          d[j] = f32(f32(d[j] + d2) / 2);
          x[j] = f32(x[j] + f32(d[j] * dt));
        }
      }
      await onStep(i, steps, x);
    }
  },

  async dpm2({ denoise, x, s, onStep }) {
    const steps = s.length - 1;
    const d = new Float32Array(x.length);
    const x2 = new Float32Array(x.length);
    for (let i = 0; i < steps; i++) {
      const den = await denoise(x, s[i], i);
      derivative(x, den, s[i], d);
      if (s[i + 1] === 0) {
        axpy(x, d, f32(s[i + 1] - s[i]));
      } else {
        // exp(0.5f * (log(a) + log(b))): the log/exp of float arguments evaluated in double.
        const mid = f32(Math.exp(0.5 * (Math.log(s[i]) + Math.log(s[i + 1]))));
        const dt1 = f32(mid - s[i]), dt2 = f32(s[i + 1] - s[i]);
        for (let j = 0; j < x.length; j++) x2[j] = f32(x[j] + f32(d[j] * dt1));
        const den2 = await denoise(x2, mid, i);
        for (let j = 0; j < x.length; j++) {
          const d2 = f32(f32(x2[j] - den2[j]) / mid);
          x[j] = f32(x[j] + f32(d2 * dt2));
        }
      }
      await onStep(i, steps, x);
    }
  },

  async "dpm++2s_a"({ denoise, x, s, rng, eta, onStep }) {
    const steps = s.length - 1;
    const x2 = new Float32Array(x.length);
    const sigmaFn = (t: number) => f32(Math.exp(-t));
    for (let i = 0; i < steps; i++) {
      const den = await denoise(x, s[i], i);
      const { up, down } = ancestral(s[i], s[i + 1], eta);
      if (down === 0) {
        x.set(den);
      } else {
        const t = tFn(s[i]), tNext = tFn(down);
        const h = f32(tNext - t);
        const sigmaS = sigmaFn(f32(t + f32(0.5 * h)));
        const a1 = f32(sigmaS / sigmaFn(t));
        const b1 = Math.exp(f32(-h * 0.5)) - 1;
        for (let j = 0; j < x.length; j++) x2[j] = f32(f32(a1 * x[j]) - b1 * den[j]);
        const den2 = await denoise(x2, sigmaS, i);
        const a2 = f32(sigmaFn(tNext) / sigmaFn(t));
        const b2 = Math.exp(-h) - 1;
        for (let j = 0; j < x.length; j++) x[j] = f32(f32(a2 * x[j]) - b2 * den2[j]);
      }
      // Drawn whenever the next sigma is not 0, even when sigma_up is 0 (eta 0), as sd.cpp does.
      if (s[i + 1] > 0) addNoise(x, rng, up);
      await onStep(i, steps, x);
    }
  },

  async "dpm++2m"({ denoise, x, s, onStep }) {
    const steps = s.length - 1;
    const old = new Float32Array(x.length);
    for (let i = 0; i < steps; i++) {
      const den = await denoise(x, s[i], i);
      const t = tFn(s[i]), tNext = tFn(s[i + 1]);
      const h = f32(tNext - t);
      const a = f32(s[i + 1] / s[i]);
      const b = f32(Math.exp(-h) - 1);
      if (i === 0 || s[i + 1] === 0) {
        for (let j = 0; j < x.length; j++) x[j] = f32(f32(a * x[j]) - f32(b * den[j]));
      } else {
        const hLast = f32(t - tFn(s[i - 1]));
        const r = f32(hLast / h);
        const c1 = f32(1 + f32(1 / f32(2 * r))), c2 = f32(1 / f32(2 * r));
        for (let j = 0; j < x.length; j++) {
          const dd = f32(f32(c1 * den[j]) - f32(c2 * old[j]));
          x[j] = f32(f32(a * x[j]) - f32(b * dd));
        }
      }
      old.set(den);
      await onStep(i, steps, x);
    }
  },

  async "dpm++2mv2"({ denoise, x, s, onStep }) {
    const steps = s.length - 1;
    const old = new Float32Array(x.length);
    for (let i = 0; i < steps; i++) {
      const den = await denoise(x, s[i], i);
      const t = tFn(s[i]), tNext = tFn(s[i + 1]);
      const h = f32(tNext - t);
      const a = f32(s[i + 1] / s[i]);
      if (i === 0 || s[i + 1] === 0) {
        const b = f32(Math.exp(-h) - 1);
        for (let j = 0; j < x.length; j++) x[j] = f32(f32(a * x[j]) - f32(b * den[j]));
      } else {
        const hLast = f32(t - tFn(s[i - 1]));
        const hMin = Math.min(hLast, h), hMax = Math.max(hLast, h);
        const r = f32(hMax / hMin);
        const hD = f32(f32(hMax + hMin) / 2);
        const b = f32(Math.exp(-hD) - 1);
        const c1 = f32(1 + f32(1 / f32(2 * r))), c2 = f32(1 / f32(2 * r));
        for (let j = 0; j < x.length; j++) {
          const dd = f32(f32(c1 * den[j]) - f32(c2 * old[j]));
          x[j] = f32(f32(a * x[j]) - f32(b * dd));
        }
      }
      old.set(den);
      await onStep(i, steps, x);
    }
  },

  async ipndm({ denoise, x, s, onStep }) {
    const steps = s.length - 1;
    const history: Float32Array[] = []; // last ≤ 3 derivatives, oldest first
    for (let i = 0; i < steps; i++) {
      const sigma = s[i], next = s[i + 1];
      const den = await denoise(x, sigma, i);
      const d = new Float32Array(x.length);
      derivative(x, den, sigma, d);
      const order = Math.min(4, i + 1);
      const dt = f32(next - sigma);
      const p1 = history[history.length - 1], p2 = history[history.length - 2], p3 = history[history.length - 3];
      for (let j = 0; j < x.length; j++) {
        let step: number;
        switch (order) {
          case 1:
            step = f32(dt * d[j]);
            break;
          case 2:
            step = f32(f32(dt * f32(f32(3 * d[j]) - p1[j])) / 2);
            break;
          case 3:
            step = f32(f32(dt * f32(f32(f32(23 * d[j]) - f32(16 * p1[j])) + f32(5 * p2[j]))) / 12);
            break;
          default:
            step = f32(
              f32(dt * f32(f32(f32(f32(55 * d[j]) - f32(59 * p1[j])) + f32(37 * p2[j])) - f32(9 * p3[j]))) / 24,
            );
        }
        x[j] = f32(x[j] + step);
      }
      if (history.length === 3) history.shift();
      history.push(d);
      await onStep(i, steps, x);
    }
  },

  async ipndm_v({ denoise, x, s, onStep }) {
    const steps = s.length - 1;
    const history: Float32Array[] = [];
    for (let i = 0; i < steps; i++) {
      const sigma = s[i], next = s[i + 1];
      const den = await denoise(x, sigma, i);
      const d = new Float32Array(x.length);
      derivative(x, den, sigma, d);
      const order = Math.min(4, i + 1);
      const hn = f32(next - sigma);
      const hn1 = i > 0 ? f32(sigma - s[i - 1]) : hn;
      const p1 = history[history.length - 1];
      const p2 = history.length > 1 ? history[history.length - 2] : p1;
      const p3 = history.length > 2 ? history[history.length - 3] : p2;
      const ratio = f32(hn / hn1);
      for (let j = 0; j < x.length; j++) {
        let inc: number;
        switch (order) {
          case 1:
            inc = f32(d[j] * hn);
            break;
          case 2:
            inc = f32(f32(hn * f32(f32(f32(2 + ratio) * d[j]) - f32(ratio * p1[j]))) / 2);
            break;
          case 3:
            inc = f32(hn * f32(f32(f32(f32(23 * d[j]) - f32(16 * p1[j])) + f32(5 * p2[j])) / 12));
            break;
          default:
            inc = f32(
              hn * f32(f32(f32(f32(f32(55 * d[j]) - f32(59 * p1[j])) + f32(37 * p2[j])) - f32(9 * p3[j])) / 24),
            );
        }
        x[j] = f32(x[j] + inc);
      }
      if (history.length === 3) history.shift();
      history.push(d);
      await onStep(i, steps, x);
    }
  },

  async lcm({ denoise, x, s, rng, onStep }) {
    const steps = s.length - 1;
    for (let i = 0; i < steps; i++) {
      const den = await denoise(x, s[i], i);
      x.set(den);
      if (s[i + 1] > 0) {
        const noise = rng.randn(x.length);
        for (let j = 0; j < x.length; j++) x[j] = f32(x[j] + f32(s[i + 1] * noise[j]));
      }
      await onStep(i, steps, x);
    }
  },

  ddim_trailing: eulerAncestral,

  /**
   * sd.cpp `sample_tcd` (Trajectory Consistency Distillation): from denoised and d = (x − denoised)/σ,
   * jump to the timestep s = ⌊(1 − eta)·t_prev⌋ of its own alphas_cumprod table, then (eta > 0) noise back
   * up to the next sigma.
   */
  async tcd({ denoise, x, s, rng, eta, onStep }) {
    const steps = s.length - 1;
    const { alphas, sigmas } = tcdTables();
    const d = new Float32Array(x.length);
    for (let i = 0; i < steps; i++) {
      const sigma = s[i], to = s[i + 1];
      const timestepS = Math.floor(f32(f32(1 - eta) * nearestTimestep(sigmas, to)));
      const den = await denoise(x, sigma, i);
      derivative(x, den, sigma, d);
      const aPrev = f32(1 / f32(f32(to * to) + 1));
      const aS = f32(alphas[timestepS]);
      const c1 = f32(Math.sqrt(f32(aS / aPrev))), c2 = f32(Math.sqrt(f32(f32(1 - aS) / aPrev)));
      for (let j = 0; j < x.length; j++) x[j] = f32(f32(c1 * den[j]) + f32(c2 * d[j]));
      if (eta > 0 && to > 0) {
        const noise = rng.randn(x.length);
        const q1 = f32(Math.sqrt(f32(aPrev / aS))), q2 = f32(Math.sqrt(f32(f32(1 / aPrev) - f32(1 / aS))));
        for (let j = 0; j < x.length; j++) x[j] = f32(f32(q1 * x[j]) + f32(q2 * noise[j]));
      }
      await onStep(i, steps, x);
    }
  },
};

const TIMESTEPS = 1000;

let tcdCache: { alphas: Float64Array; sigmas: Float64Array } | null = null;

/**
 * TCD in sd.cpp computes its own alphas_cumprod (not the checkpoint's): SD's scaled-linear betas from
 * float terms, the running product in double, and the matching CompVis sigmas in double.
 */
function tcdTables(): { alphas: Float64Array; sigmas: Float64Array } {
  if (tcdCache) return tcdCache;
  const alphas = new Float64Array(TIMESTEPS), sigmas = new Float64Array(TIMESTEPS);
  const s0 = f32(Math.sqrt(f32(0.00085))), s1 = f32(Math.sqrt(f32(0.012)));
  const span = f32(s1 - s0);
  for (let i = 0; i < TIMESTEPS; i++) {
    const b = f32(s0 + f32(span * f32(i / (TIMESTEPS - 1))));
    alphas[i] = (i === 0 ? 1 : alphas[i - 1]) * (1 - b * b);
    sigmas[i] = Math.sqrt((1 - alphas[i]) / alphas[i]);
  }
  tcdCache = { alphas, sigmas };
  return tcdCache;
}

/** sd.cpp TCD's `get_timestep_from_sigma`: the table entry nearest `sigma` (lower_bound, then the closer). */
function nearestTimestep(sigmas: Float64Array, sigma: number): number {
  let lo = 0, hi = sigmas.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sigmas[mid] < sigma) lo = mid + 1;
    else hi = mid;
  }
  if (lo === 0) return 0;
  if (lo === sigmas.length) return sigmas.length - 1;
  return Math.abs(sigmas[lo] - sigma) < Math.abs(sigmas[lo - 1] - sigma) ? lo : lo - 1;
}
