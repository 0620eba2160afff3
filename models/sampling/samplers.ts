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
export type StepCallback = (step: number, steps: number, x: Float32Array) => void;

export interface SampleOptions {
  /** Stochasticity of ddim_trailing and tcd (sd.cpp `--eta`, default 0). Ignored by the others. */
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
  await run({ denoise, x: xs, s, rng, eta: o.eta ?? 0, onStep: o.onStep ?? (() => {}) });
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

/** sd.cpp get_ancestral_step (eta = 1), in float. */
function ancestral(s0: number, s1: number): { up: number; down: number } {
  const s1s = f32(s1 * s1), s0s = f32(s0 * s0);
  const up = Math.min(s1, f32(Math.sqrt(f32(f32(s1s * f32(s0s - s1s)) / s0s))));
  const down = f32(Math.sqrt(f32(s1s - f32(up * up))));
  return { up, down };
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
      onStep(i, steps, x);
    }
  },

  async euler_a({ denoise, x, s, rng, onStep }) {
    const steps = s.length - 1;
    const d = new Float32Array(x.length);
    for (let i = 0; i < steps; i++) {
      const den = await denoise(x, s[i], i);
      derivative(x, den, s[i], d);
      const { up, down } = ancestral(s[i], s[i + 1]);
      axpy(x, d, f32(down - s[i]));
      if (s[i + 1] > 0) addNoise(x, rng, up);
      onStep(i, steps, x);
    }
  },

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
      onStep(i, steps, x);
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
      onStep(i, steps, x);
    }
  },

  async "dpm++2s_a"({ denoise, x, s, rng, onStep }) {
    const steps = s.length - 1;
    const x2 = new Float32Array(x.length);
    const sigmaFn = (t: number) => f32(Math.exp(-t));
    for (let i = 0; i < steps; i++) {
      const den = await denoise(x, s[i], i);
      const { up, down } = ancestral(s[i], s[i + 1]);
      if (down === 0) {
        x.set(den);
      } else {
        const t = tFn(s[i]), tNext = tFn(down);
        const h = f32(tNext - t);
        const sMid = f32(t + f32(0.5 * h));
        const a1 = f32(sigmaFn(sMid) / sigmaFn(t));
        const b1 = Math.exp(f32(-h * 0.5)) - 1;
        for (let j = 0; j < x.length; j++) x2[j] = f32(f32(a1 * x[j]) - b1 * den[j]);
        // sd.cpp evaluates the second stage at sigmas[i + 1], not at sigma(s) as k-diffusion does.
        const den2 = await denoise(x2, s[i + 1], i);
        const a2 = f32(sigmaFn(tNext) / sigmaFn(t));
        const b2 = Math.exp(-h) - 1;
        for (let j = 0; j < x.length; j++) x[j] = f32(f32(a2 * x[j]) - b2 * den2[j]);
      }
      if (s[i + 1] > 0) addNoise(x, rng, up);
      onStep(i, steps, x);
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
      onStep(i, steps, x);
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
      onStep(i, steps, x);
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
      onStep(i, steps, x);
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
      onStep(i, steps, x);
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
      onStep(i, steps, x);
    }
  },

  async ddim_trailing({ denoise, x, s, rng, eta, onStep }) {
    const steps = s.length - 1;
    const { alphas, sigmas } = ddimTables();
    const T = TIMESTEPS;
    const mo = new Float32Array(x.length);
    const pos = new Float32Array(x.length);
    for (let i = 0; i < steps; i++) {
      // "trailing" spacing: roundf(1000 − i·(1000/steps)) − 1, float arithmetic, round half away.
      const timestep = roundf(f32(T - f32(i * f32(T / steps)))) - 1;
      const prev = timestep - Math.trunc(T / steps);
      const sigma = f32(sigmas[timestep]);
      prescale(x, sigma, i === 0);
      const out = await denoise(x, sigma, i);
      const invSigma = f32(1 / sigma);
      for (let j = 0; j < x.length; j++) mo[j] = f32(f32(x[j] - out[j]) * invSigma);
      const apt = f32(alphas[timestep]);
      const aptPrev = f32(prev >= 0 ? alphas[prev] : alphas[0]);
      const bpt = f32(1 - apt);
      predictX0(x, mo, sigma, apt, bpt, pos);
      const bptPrev = f32(1 - aptPrev);
      const variance = f32(f32(bptPrev / bpt) * f32(1 - f32(apt / aptPrev)));
      const std = f32(eta * f32(Math.sqrt(variance)));
      const sqrtAPrev = f32(Math.sqrt(aptPrev));
      // sqrt((1 − ᾱ_prev) − std²): 1 − ᾱ_prev is float, std::pow(float, 2) is double, so the rest is double.
      const dirCoef = Math.sqrt(f32(1 - aptPrev) - std * std);
      for (let j = 0; j < x.length; j++) {
        const dir = f32(dirCoef * mo[j]);
        x[j] = f32(f32(sqrtAPrev * pos[j]) + dir);
      }
      if (eta > 0) addNoise(x, rng, std);
      onStep(i, steps, x);
    }
  },

  async tcd({ denoise, x, s, rng, eta, onStep }) {
    const steps = s.length - 1;
    const { alphas, sigmas } = ddimTables();
    const T = TIMESTEPS, original = 50, k = T / original;
    const mo = new Float32Array(x.length);
    const pos = new Float32Array(x.length);
    const ratio = f32(original / steps);
    for (let i = 0; i < steps; i++) {
      const timestep = T - 1 - k * Math.floor(f32(i * ratio));
      const prev = i >= steps - 1 ? 0 : T - 1 - k * Math.floor(f32((i + 1) * ratio));
      const timestepS = Math.floor(f32(f32(1 - eta) * prev));
      const sigma = f32(sigmas[timestep]);
      prescale(x, sigma, i === 0);
      const out = await denoise(x, sigma, i);
      const invSigma = f32(1 / sigma);
      for (let j = 0; j < x.length; j++) mo[j] = f32(f32(x[j] - out[j]) * invSigma);
      const apt = f32(alphas[timestep]);
      const bpt = f32(1 - apt);
      const aptPrev = f32(prev >= 0 ? alphas[prev] : alphas[0]);
      const aps = f32(alphas[timestepS]);
      const bps = f32(1 - aps);
      predictX0(x, mo, sigma, apt, bpt, pos);
      const sa = f32(Math.sqrt(aps)), sb = f32(Math.sqrt(bps));
      for (let j = 0; j < x.length; j++) x[j] = f32(f32(sa * pos[j]) + f32(sb * mo[j]));
      if (eta > 0 && i !== steps - 1) {
        const noise = rng.randn(x.length);
        const q = f32(aptPrev / aps);
        const c1 = f32(Math.sqrt(q)), c2 = f32(Math.sqrt(f32(1 - q)));
        for (let j = 0; j < x.length; j++) x[j] = f32(f32(c1 * x[j]) + f32(c2 * noise[j]));
      }
      onStep(i, steps, x);
    }
  },
};

const TIMESTEPS = 1000;

/** C `roundf`: half away from zero. */
function roundf(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/**
 * x ← x·√(σ²+1)/σ on the first step (x arrives as noise·sigmas[0]), x ← x·√(σ²+1) afterwards, so the
 * CompVis wrapper's c_in scaling hands the UNet DDIM's un-scaled sample (sd.cpp's DDIM/TCD workaround).
 */
function prescale(x: Float32Array, sigma: number, first: boolean): void {
  const root = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
  const c = first ? f32(root / sigma) : root;
  for (let j = 0; j < x.length; j++) x[j] = f32(x[j] * c);
}

/** pred_original_sample = (x/√(σ²+1) − √β_t·ε)·(1/√ᾱ_t), in float. */
function predictX0(
  x: Float32Array,
  eps: Float32Array,
  sigma: number,
  apt: number,
  bpt: number,
  out: Float32Array,
): void {
  const root = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
  const sb = f32(Math.sqrt(bpt));
  const inv = f32(1 / f32(Math.sqrt(apt)));
  for (let j = 0; j < x.length; j++) out[j] = f32(f32(f32(x[j] / root) - f32(sb * eps[j])) * inv);
}

let ddimCache: { alphas: Float64Array; sigmas: Float64Array } | null = null;

/**
 * DDIM/TCD in sd.cpp compute their own alphas_cumprod (not the checkpoint's): SD's scaled-linear betas
 * from float terms, the running product in double, and the matching CompVis sigmas in double.
 */
function ddimTables(): { alphas: Float64Array; sigmas: Float64Array } {
  if (ddimCache) return ddimCache;
  const alphas = new Float64Array(TIMESTEPS), sigmas = new Float64Array(TIMESTEPS);
  const s0 = f32(Math.sqrt(f32(0.00085))), s1 = f32(Math.sqrt(f32(0.012)));
  const span = f32(s1 - s0);
  for (let i = 0; i < TIMESTEPS; i++) {
    const b = f32(s0 + f32(span * f32(i / (TIMESTEPS - 1))));
    alphas[i] = (i === 0 ? 1 : alphas[i - 1]) * (1 - b * b);
    sigmas[i] = Math.sqrt((1 - alphas[i]) / alphas[i]);
  }
  ddimCache = { alphas, sigmas };
  return ddimCache;
}
