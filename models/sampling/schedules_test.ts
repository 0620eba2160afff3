import { assert as ok, assertEquals } from "../../tests/assert.ts";
import {
  aysSigmas,
  DiscreteSchedule,
  getSigmas,
  img2imgSigmas,
  karrasSigmas,
  logLinearInterpolation,
  type SchedulerName,
  sdAlphasCumprod,
} from "./schedules.ts";

/**
 * testdata/schedules_ref.json: output of a small C++ program (g++ 12 -O2, x86-64 without FMA) that spells
 * out stable-diffusion.cpp's float32 formulas — calculate_alphas_cumprod, CompVisDenoiser sigmas /
 * log_sigmas / t_to_sigma / sigma_to_t, and the Discrete, Karras, Exponential and AYS schedulers
 * (denoiser.hpp) — with glibc's logf/expf/powf. Bound: 2 float32 ulps (libm functions vs correctly rounded
 * ones), and most values must agree exactly.
 */
const ref: Record<string, number[]> = JSON.parse(
  await Deno.readTextFile(new URL("./testdata/schedules_ref.json", import.meta.url)),
);

function ulpDiff(a: number, b: number): number {
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat32(0, a);
  buf.setFloat32(4, b);
  const ia = buf.getInt32(0), ib = buf.getInt32(4);
  return Math.abs((ia < 0 ? -2147483648 - ia : ia) - (ib < 0 ? -2147483648 - ib : ib));
}

function close(got: ArrayLike<number>, want: number[], what: string, maxUlp = 2): number {
  assertEquals(got.length, want.length, `${what}: length`);
  let exact = 0;
  for (let i = 0; i < want.length; i++) {
    const d = ulpDiff(got[i], Math.fround(want[i]));
    ok(d <= maxUlp, `${what}[${i}]: got ${got[i]}, want ${want[i]} (${d} ulp)`);
    if (d === 0) exact++;
  }
  return exact;
}

const sched = new DiscreteSchedule(sdAlphasCumprod());

Deno.test("alphas_cumprod and sigma table as sd.cpp (float32)", () => {
  const a = sdAlphasCumprod();
  const exactA = close(a, ref.alphas_cumprod, "alphas_cumprod", 0);
  assertEquals(exactA, 1000);
  // The float32 product really differs from a float64 schedule (why sd.cpp's is kept).
  let p = 1, maxRel = 0;
  for (let i = 0; i < 1000; i++) {
    const b = Math.sqrt(0.00085) + (Math.sqrt(0.012) - Math.sqrt(0.00085)) * i / 999;
    p *= 1 - b * b;
    maxRel = Math.max(maxRel, Math.abs(a[i] - p) / p);
  }
  ok(maxRel > 1e-7 && maxRel < 1e-4, `float32 drift ${maxRel}`);
  const exactS = close(sched.sigmas, ref.sigmas, "sigmas");
  const exactL = close(sched.logSigmas, ref.log_sigmas, "log_sigmas");
  ok(exactS >= 995 && exactL >= 950, `exact sigmas ${exactS}, log sigmas ${exactL}`);
  ok(Math.abs(sched.sigmaMax - 14.6146) < 1e-4 && Math.abs(sched.sigmaMin - 0.029168) < 1e-5);
});

Deno.test("sigma <-> t as sd.cpp", () => {
  close(ref.sigma_to_t_in.map((s) => sched.sigmaToT(s)), ref.sigma_to_t_out, "sigma_to_t", 4);
  close(ref.t_to_sigma_in.map((t) => sched.tToSigma(t)), ref.t_to_sigma_out, "t_to_sigma");
  // Round trip on the table itself.
  for (const t of [0, 1, 250, 500, 998, 999]) ok(Math.abs(sched.sigmaToT(sched.sigmas[t]) - t) < 2e-3);
});

Deno.test("discrete / karras / exponential / ays schedules as sd.cpp", () => {
  const cases: [SchedulerName, number[], string][] = [];
  for (const n of [1, 2, 4, 10, 20, 25]) cases.push(["discrete", [n], `discrete_${n}`]);
  for (const n of [2, 4, 20]) cases.push(["karras", [n], `karras_${n}`], ["exponential", [n], `exponential_${n}`]);
  for (const [name, [n], key] of cases) close(getSigmas(name, n, sched), ref[key], key);
  for (const n of [4, 10, 20]) {
    close(getSigmas("ays", n, sched, { family: "sd1" }), ref[`ays_sd1_${n}`], `ays_sd1_${n}`);
    close(getSigmas("ays", n, sched, { family: "sdxl" }), ref[`ays_sdxl_${n}`], `ays_sdxl_${n}`);
  }
  // By hand, discrete with 4 steps: t = 999, 666, 333, 0 → table sigmas (integer t: no interpolation).
  const d4 = getSigmas("discrete", 4, sched);
  // exp(float log sigma) comes back within float rounding of log sigma (~1e-7 absolute), not bit-exact.
  for (const [i, t] of [[0, 999], [1, 666], [2, 333], [3, 0]]) {
    ok(Math.abs(d4[i] - sched.sigmas[t]) / sched.sigmas[t] < 1e-6);
  }
  assertEquals(d4[4], 0);
  // Karras endpoints are sigma_max / sigma_min; AYS with 10 steps is the table itself.
  const k = karrasSigmas(8, sched.sigmaMin, sched.sigmaMax);
  ok(Math.abs(k[0] - sched.sigmaMax) < 1e-4 && Math.abs(k[7] - sched.sigmaMin) < 1e-6 && k[8] === 0);
  assertEquals(
    Array.from(aysSigmas(10, "sd1").subarray(0, 10)),
    [
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
    ].map(Math.fround),
  );
  // Log-linear resampling keeps the end points.
  const r = logLinearInterpolation([10, 1, 0.1], 5);
  ok(Math.abs(r[0] - 10) < 1e-5 && Math.abs(r[2] - 1) < 1e-6 && Math.abs(r[4] - 0.1) < 1e-7);
});

Deno.test("other sd.cpp schedulers are monotone and end in 0", () => {
  for (const name of ["sgm_uniform", "simple", "smoothstep", "kl_optimal", "lcm"] as SchedulerName[]) {
    for (const n of [1, 4, 9]) {
      const s = getSigmas(name, n, sched);
      assertEquals(s.length, n + 1, name);
      assertEquals(s[n], 0);
      for (let i = 0; i + 1 < s.length; i++) ok(s[i] > s[i + 1], `${name} ${n} not decreasing at ${i}`);
      ok(s[0] <= sched.sigmaMax * 1.0001);
    }
  }
});

Deno.test("img2img truncation as sd.cpp (t_enc = steps·strength)", () => {
  const s = getSigmas("discrete", 20, sched);
  assertEquals(img2imgSigmas(s, 0.75).length, 17); // t_enc = 15 → sigmas[4..20]: 16 steps
  assertEquals(img2imgSigmas(s, 0.75)[0], s[4]);
  assertEquals(img2imgSigmas(s, 1).length, 21); // t_enc = steps → steps − 1 → the whole schedule
  assertEquals(img2imgSigmas(s, 0).length, 2);
  // float product: 10 × 0.7f = 7.0f (not 6.99…) → t_enc 7 → 9 values.
  assertEquals(img2imgSigmas(getSigmas("discrete", 10, sched), 0.7).length, 9);
});
