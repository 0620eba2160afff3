/**
 * Schedules and samplers against an independent reference: testdata/sampler_reference.json, written by
 * tools/sampler_reference.py (numpy, float64) from stable-diffusion.cpp's denoiser.hpp and k-diffusion,
 * not from this code. Every scheduler at several step counts; every sampler on a closed-form denoiser
 * (Gaussian data: D(x, σ) = (s²x + σ²μ)/(s² + σ²)) with the reference's noise rows served draw by draw,
 * checking the result, the σ of every model call and the number of noise draws.
 *
 * Bounds (sdflow computes in float32 where sd.cpp does; the reference in float64):
 * - schedules: |ours − ref| ≤ 5e-6·ref + 1e-7. The sigma table is float32 (log σ rounded to 6e-8 relative,
 *   exp of a float: a few ulps); measured worst 7.0e-7.
 * - samplers: |ours − ref| ≤ 1e-6·max|x_start| over the latent. Each step does ~10 float32 operations per
 *   element, each rounding by ≤ 6e-8 relative to values no larger than max|x_start|, and the closed-form
 *   denoiser contracts errors; measured worst 3.7e-8 (ipndm). A formula error (another σ for a second
 *   stage, a dropped history term, a wrong ancestral split) moves the result by 1e-3 of the scale or more.
 * - the σ of each model call: 1e-5 relative. Float32 σ against float64 is ~1e-7, but dpm++2s_a's second
 *   stage σ comes from σ_down = √(σ_to² − σ_up²), which loses digits to cancellation when σ_up ≈ σ_to
 *   (measured 1.5e-6 at eta 1).
 */

import { assert, assertEquals } from "../../tests/assert.ts";
import { sample, type SampleMethod } from "./samplers.ts";
import { type AysFamily, DiscreteSchedule, getSigmas, type SchedulerName, sdAlphasCumprod } from "./schedules.ts";
import type { Rng } from "./rng.ts";

interface Reference {
  schedules: { scheduler: SchedulerName; steps: number; family?: AysFamily; sigmas: number[] }[];
  denoiser: { mu: number[]; s: number };
  noise: number[][];
  samplers: {
    method: SampleMethod;
    eta: number;
    scheduler: string;
    steps: number;
    sigmas: number[];
    x: number[];
    out: number[];
    calls: number[];
    draws: number;
  }[];
}

const ref: Reference = JSON.parse(
  await Deno.readTextFile(new URL("./testdata/sampler_reference.json", import.meta.url)),
);
const schedule = new DiscreteSchedule(sdAlphasCumprod());

Deno.test("every scheduler matches the independent reference (5e-6 relative)", () => {
  const seen = new Set<string>();
  for (const c of ref.schedules) {
    const what = `${c.scheduler}${c.family ? `/${c.family}` : ""} ${c.steps} steps`;
    const got = getSigmas(c.scheduler, c.steps, schedule, { family: c.family });
    assertEquals(got.length, c.sigmas.length, `${what}: length`);
    for (let i = 0; i < got.length; i++) {
      const want = c.sigmas[i];
      assert(Math.abs(got[i] - want) <= 5e-6 * want + 1e-7, `${what}: sigma ${i} is ${got[i]}, reference ${want}`);
    }
    seen.add(c.scheduler);
  }
  assertEquals(seen.size, 9, "a scheduler is missing from the reference");
});

/** Serves the reference's noise rows in order, as an Rng. */
class TableRng implements Rng {
  draws = 0;
  constructor(readonly rows: readonly number[][]) {}
  randn(n: number): Float32Array {
    const row = this.rows[this.draws++];
    assert(row !== undefined && row.length === n, `noise draw ${this.draws} of ${n} values`);
    return Float32Array.from(row);
  }
  manualSeed(): void {
    throw new Error("samplers never reseed");
  }
}

Deno.test("every sampler matches the independent reference: result, model-call sigmas, noise draws", async () => {
  const { mu, s } = ref.denoiser;
  const s2 = s * s;
  const methods = new Set<string>();
  const failures: string[] = [];
  for (const c of ref.samplers) {
    const what = `${c.method} eta ${c.eta} ${c.scheduler} ${c.steps} steps`;
    const calls: number[] = [];
    const denoise = (x: Float32Array, sigma: number) => {
      calls.push(sigma);
      const v2 = sigma * sigma;
      return Promise.resolve(Float32Array.from(x, (xi, i) => (s2 * xi + v2 * mu[i]) / (s2 + v2)));
    };
    const rng = new TableRng(ref.noise);
    const x = Float32Array.from(c.x);
    const out = await sample(c.method, denoise, x, Float32Array.from(c.sigmas), rng, { eta: c.eta });
    methods.add(c.method);
    // One line per failing case, so a formula error shows every run it affects.
    const problems: string[] = [];
    if (calls.length !== c.calls.length) problems.push(`${calls.length} model calls, reference ${c.calls.length}`);
    else {
      const i = calls.findIndex((sigma, i) => !(Math.abs(sigma - c.calls[i]) <= 1e-5 * c.calls[i]));
      if (i >= 0) problems.push(`call ${i} at sigma ${calls[i]}, reference ${c.calls[i]}`);
    }
    if (rng.draws !== c.draws) problems.push(`${rng.draws} noise draws, reference ${c.draws}`);
    const scale = Math.max(...c.x.map(Math.abs));
    let worst = 0, at = 0;
    for (let i = 0; i < out.length; i++) {
      const e = Math.abs(out[i] - c.out[i]);
      if (!(e <= worst)) [worst, at] = [e, i];
    }
    if (!(worst <= 1e-6 * scale)) {
      problems.push(`element ${at} is ${out[at]}, reference ${c.out[at]} (|error| ${worst} > ${1e-6 * scale})`);
    }
    if (problems.length) failures.push(`${what}: ${problems.join("; ")}`);
  }
  assertEquals(failures, []);
  assertEquals(methods.size, 12, "a sampler is missing from the reference");
});
