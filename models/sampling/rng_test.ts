import { assert as ok, assertEquals } from "../../tests/assert.ts";
import { createRng, PhiloxRng, type Rng, StdDefaultRng, TorchCpuRng } from "./rng.ts";

const round4 = (a: Float32Array) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);

Deno.test("PhiloxRng reproduces torch.randn on CUDA (seed 42)", () => {
  // torch.manual_seed(42); torch.randn(8, device="cuda") — values published widely (4 decimals).
  assertEquals(round4(new PhiloxRng(42).randn(8)), [0.194, 2.1614, -0.1721, 0.8491, -1.9244, 0.653, -0.6494, -0.8175]);
  // Each call advances the Philox offset: a second call does not repeat the first.
  const r = new PhiloxRng(42);
  const a = r.randn(4), b = r.randn(4);
  ok(a[0] !== b[0]);
  r.manualSeed(42);
  assertEquals(Array.from(r.randn(4)), Array.from(a));
  // uint64 seeds: the high word is part of the key.
  ok(new PhiloxRng(1n << 32n).randn(1)[0] !== new PhiloxRng(0).randn(1)[0]);
});

Deno.test("TorchCpuRng reproduces torch.randn on CPU (seed 42)", () => {
  // torch.manual_seed(42); torch.randn(5) (scalar path, n < 16) and torch.randn(16) (vectorised path).
  assertEquals(round4(new TorchCpuRng(42).randn(5)), [0.3367, 0.1288, 0.2345, 0.2303, -1.1229]);
  assertEquals(round4(new TorchCpuRng(42).randn(16)).slice(0, 8), [
    1.9269,
    1.4873,
    0.9007,
    -2.1055,
    0.6784,
    -1.2345,
    -0.0431,
    -1.6047,
  ]);
});

/**
 * Replays recorded calls (one array per randn call, in order) on `rng`; every value must be within 4 ulps
 * (2^-21 relative, 2^-24 absolute near 0). Returns how many values there were and how many were exact.
 */
function replay(rng: Rng, calls: readonly number[][], what: string): { total: number; exact: number } {
  let total = 0, exact = 0;
  for (const want of calls) {
    const got = rng.randn(want.length);
    for (let i = 0; i < want.length; i++) {
      const w = Math.fround(want[i]);
      total++;
      if (got[i] === w) exact++;
      else {
        ok(
          Math.abs(got[i] - w) <= Math.max(Math.abs(w) * 2 ** -21, 2 ** -24),
          `${what}, call of ${want.length}, value ${i}: ${got[i]} vs ${w}`,
        );
      }
    }
  }
  return { total, exact };
}

/**
 * testdata/torch_cpu_randn.json: torch.randn on the CPU (tools/torch_cpu_randn.py, PyTorch 1.13), the
 * generator of sd.cpp's `--rng cpu`. The scalar path (n < 16, double arithmetic) is bit-exact; the
 * 16-wide path takes log/cos/sin of float arguments, which PyTorch's AVX2 kernels (SLEEF, 1-ulp
 * functions) round differently from sd.cpp's libm calls and from V8's (measured here: 17 % of those
 * values differ, by at most 1.9 ulps).
 */
Deno.test("TorchCpuRng (--rng cpu) reproduces torch.randn on the CPU call after call", async () => {
  const ref: { cases: { seed: string; calls: number[][] }[] } = JSON.parse(
    await Deno.readTextFile(new URL("./testdata/torch_cpu_randn.json", import.meta.url)),
  );
  let total = 0, exact = 0;
  for (const c of ref.cases) {
    const r = replay(createRng("cpu", BigInt(c.seed)), c.calls, `seed ${c.seed}`);
    total += r.total;
    exact += r.exact;
  }
  ok(total > 1000 && exact / total > 0.75, `${exact}/${total} exact`);
});

/**
 * testdata/std_default_rng.json: printed by a C++ program built with g++ 12 (Debian, libstdc++) that seeds
 * std::default_random_engine (= std::minstd_rand0) or std::mt19937 with (unsigned int)seed and draws each
 * call with a fresh std::normal_distribution<float>(0, 1), as sd.cpp's STDDefaultRNG does.
 * Bound: glibc's logf is not correctly rounded (and picks an FMA variant at run time on CPUs that have
 * FMA), so about 0.3 % of values differ by a few ulps (checked locally over 8M values against g++ output:
 * 0.32 % differ, by at most 4.8e-7 absolute); everything else is bit-identical.
 */
Deno.test("StdDefaultRng matches libstdc++ (g++ output)", async () => {
  const ref: { cases: { engine: "minstd_rand0" | "mt19937"; seed: string; calls: number[][] }[] } = JSON.parse(
    await Deno.readTextFile(new URL("./testdata/std_default_rng.json", import.meta.url)),
  );
  let total = 0, exact = 0;
  for (const c of ref.cases) {
    const r = replay(new StdDefaultRng(BigInt(c.seed), c.engine), c.calls, `${c.engine} ${c.seed}`);
    total += r.total;
    exact += r.exact;
  }
  ok(exact / total > 0.99, `${exact}/${total} exact`);
});

Deno.test("createRng kinds, determinism, seeding", () => {
  for (const kind of ["cuda", "std_default", "cpu"] as const) {
    const a = createRng(kind, 7).randn(100), b = createRng(kind, 7).randn(100);
    assertEquals(Array.from(a), Array.from(b));
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    ok(Math.abs(mean) < 0.4 && a.every(Number.isFinite), kind);
  }
  let threw = false;
  try {
    createRng("cuda", -1);
  } catch {
    threw = true;
  }
  ok(threw);
});
