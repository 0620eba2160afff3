/**
 * Winograd F(2,3), F(4,3), F(6,3) — and the im2col and direct fallbacks —
 * against an independent float64 direct convolution (conv_reference.ts) on
 * random 3x3 stride-1 shapes from a seeded PRNG: odd and even sizes from 1
 * to 23 (many smaller than one output tile), padding 0 and 1, channel counts
 * that are mostly not multiples of 16 (1..70, a few around 128), batch 1-3,
 * with and without bias, f32, f16 and bf16 weights, and the fused residual
 * add. Bounds: WINOGRAD_REL_BOUND in conv_reference.ts (with the reasoning).
 * The same sweeps run on the OpenCL backend under the same bounds when this
 * machine has an OpenCL device ("ignored" otherwise).
 */

import { assert } from "./assert.ts";
import { compile, Graph, type Program } from "../engine/mod.ts";
import type { Backend } from "../backends/mod.ts";
import { optionalBackend } from "../backends/test_helpers.ts";
import { backendFor, listFixtures, loadFixture, machineIsas, toF32 } from "./fixtures.ts";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../backends/float16.ts";
import {
  compare,
  conv2dReference,
  convOutShape,
  type ConvShape,
  indexOf,
  Rng,
  WINOGRAD_REL_BOUND,
} from "./conv_reference.ts";

/** Direct and im2col convolution: plain f32 dot products of length <= 9*136 (see ops_test.ts conv2d). */
const FALLBACK_REL_BOUND = 1e-5;

const SEED = 0x5d1f_2024;
const N_SHAPES = 200;

type WDType = "f32" | "f16" | "bf16";

interface Case {
  id: number;
  shape: ConvShape;
  bias: boolean;
  x: Float32Array;
  /** Weights as the graph gets them (raw bits for f16/bf16)... */
  w: Float32Array | Uint16Array;
  wdtype: WDType;
  /** ...and their exact values for the reference. */
  wRef: Float32Array;
  b?: Float32Array;
  residual?: Float32Array;
  ref: Float64Array;
}

function describe(c: Case): string {
  const [n, ci, h, w] = c.shape.x;
  return `#${c.id} x[${n},${ci},${h},${w}] -> Co ${c.shape.w[0]}, pad ${c.shape.pad}, ` +
    `${c.bias ? "bias" : "no bias"}, ${c.wdtype} weights${c.residual ? ", + residual" : ""}`;
}

/** The random shapes, fixed by SEED. Costs are capped so the float64 reference stays quick. */
function shapes(): { n: number; ci: number; co: number; h: number; w: number; pad: number; bias: boolean }[] {
  const rng = new Rng(SEED);
  const chan = (): number => rng.next() < 0.08 ? rng.int(120, 136) : rng.int(1, 70);
  const out = [];
  for (let i = 0; i < N_SHAPES; i++) {
    const pad = rng.next() < 0.7 ? 1 : 0;
    let h = rng.int(pad ? 1 : 3, 23);
    let w = rng.int(pad ? 1 : 3, 23);
    const r = rng.next();
    let n = r < 0.6 ? 1 : r < 0.85 ? 2 : 3;
    const ci = chan();
    const co = chan();
    const bias = rng.next() < 0.5;
    // Keep each case under ~6M multiply-adds (the float64 reference runs in JS).
    while (n * ci * co * h * w * 9 > 6e6) {
      if (n > 1) n--;
      else if (h >= w && h > 3) h = Math.ceil(h * 0.75);
      else if (w > 3) w = Math.ceil(w * 0.75);
      else break;
    }
    out.push({ n, ci, co, h, w, pad, bias });
  }
  return out;
}

const SHAPES = shapes();

/** Builds case `i` with weights of `wdtype` (values from their own seeded stream). */
function makeCase(i: number, wdtype: WDType, withResidual = false): Case {
  const s = SHAPES[i];
  const rng = new Rng(SEED ^ (i * 0x9e3779b1) ^ (wdtype === "f32" ? 0 : wdtype === "f16" ? 0x1000 : 0x2000));
  const shape: ConvShape = { x: [s.n, s.ci, s.h, s.w], w: [s.co, s.ci, 3, 3], stride: 1, pad: s.pad };
  // SD-like activations: N(0,1)*k with a per-channel offset, and ~1 channel in 16 eight times larger.
  const k = rng.pick([0.5, 1, 2, 4]);
  const x = new Float32Array(s.n * s.ci * s.h * s.w);
  const offs = rng.normals(s.ci, 0.5 * k);
  const big = Array.from({ length: s.ci }, () => rng.next() < 1 / 16 ? 8 : 1);
  for (let b = 0; b < s.n; b++) {
    for (let c = 0; c < s.ci; c++) {
      for (let j = 0; j < s.h * s.w; j++) {
        x[(b * s.ci + c) * s.h * s.w + j] = (rng.normal() * k + offs[c]) * big[c];
      }
    }
  }
  const w32 = rng.normals(s.co * s.ci * 9, 1 / Math.sqrt(9 * s.ci));
  let w: Float32Array | Uint16Array = w32;
  let wRef = w32;
  if (wdtype !== "f32") {
    const bits = new Uint16Array(w32.length);
    for (let j = 0; j < w32.length; j++) bits[j] = wdtype === "f16" ? f32ToF16Bits(w32[j]) : f32ToBf16Bits(w32[j]);
    w = bits;
    wRef = toF32(bits, wdtype);
  }
  const b = s.bias ? rng.normals(s.co, 0.1) : undefined;
  const [, , oh, ow] = convOutShape(shape);
  const residual = withResidual ? rng.normals(s.n * s.co * oh * ow, 2) : undefined;
  const ref = conv2dReference(shape, x, wRef, b, residual);
  return { id: i, shape, bias: s.bias, x, w, wdtype, wRef, b, residual, ref };
}

/** `hoisted`: the transformed filter is computed once (constant plan); else it is fused into the products. */
type Algo = { winograd: 2 | 4 | 6; hoisted?: boolean } | { conv: "direct" | "im2col" };

/** Compiles case `c` with `algo` forced, checks that the plan really used it, and runs it. */
async function runCase(backend: Backend, c: Case, algo: Algo): Promise<Float32Array> {
  const g = new Graph();
  const x = g.input("x", c.shape.x);
  const w = g.constant("w", c.shape.w, c.wdtype, { kind: "data", data: c.w });
  const b = c.b ? g.constant("b", [c.b.length], "f32", { kind: "data", data: c.b }) : undefined;
  let y = g.conv2d(x, w, b, { padding: c.shape.pad });
  const feeds: Record<string, Float32Array> = { x: c.x };
  if (c.residual) {
    const r = g.input("r", y.shape);
    feeds.r = c.residual;
    y = g.add(y, r);
  }
  g.output("y", y);
  const program: Program = "winograd" in algo
    ? compile(g, backend, { winograd: algo.winograd, hoistBudgetBytes: algo.hoisted ? Infinity : 0 })
    : compile(g, backend, { winograd: "off", conv: algo.conv });
  try {
    const ops = program.plan.lowered.ops;
    if ("winograd" in algo) {
      const gemm = ops.find((o) => o.kind === "wino_gemm");
      const filter = ops.find((o) => o.kind === "wino_filter");
      const how = algo.hoisted ? "a hoisted" : "a fused";
      assert(
        gemm && gemm.attrs.m === algo.winograd && (algo.hoisted ? filter !== undefined : gemm.attrs.fused === 1),
        `${describe(c)}: plan did not lower to F(${algo.winograd},3) with ${how} filter transform`,
      );
      if (c.residual) {
        const o = ops.find((o) => o.kind === "wino_output");
        assert(o && o.attrs.has_residual === 1, `${describe(c)}: residual add was not fused`);
      }
    } else {
      const conv = ops.find((o) => o.kind === "conv2d");
      const want = algo.conv === "direct" ? 1 : 2;
      assert(conv && conv.attrs.algo === want, `${describe(c)}: plan conv algo ${conv?.attrs.algo}, want ${want}`);
    }
    const out = await program.run(feeds);
    return out.y;
  } finally {
    program.dispose();
  }
}

/** Runs `cases` under `algo` and fails listing every case past `bound`; returns the worst error seen. */
async function sweep(backend: Backend, isa: string, cases: Case[], algo: Algo, bound: number): Promise<number> {
  const name = "winograd" in algo ? `F(${algo.winograd},3)${algo.hoisted ? " hoisted" : ""}` : algo.conv;
  let worst = 0;
  let worstCase = "";
  const failures: string[] = [];
  for (const c of cases) {
    const got = await runCase(backend, c, algo);
    const r = compare(got, c.ref, bound);
    if (r.rel > worst) {
      worst = r.rel;
      worstCase = describe(c);
    }
    if (r.failures > 0) {
      failures.push(
        `${describe(c)} [${isa} ${name}]: max err / max|ref| = ${r.rel.toExponential(3)} > ${bound}; ` +
          `${r.failures} values out; worst at ${indexOf(convOutShape(c.shape), r.worst)}: got ${r.got} want ${r.want}`,
      );
    }
  }
  console.log(
    `  ${name} [${isa}] ${cases.length} cases: worst max err / max|ref| ${worst.toExponential(2)} ` +
      `(bound ${bound}) at ${worstCase}`,
  );
  if (failures.length) {
    throw new Error(`${failures.length} of ${cases.length} cases failed:\n` + failures.slice(0, 12).join("\n"));
  }
  return worst;
}

const ISAS = await machineIsas();
const BEST = ISAS[ISAS.length - 1];

Deno.test("conv reference agrees with the PyTorch conv2d fixtures", () => {
  let n = 0;
  for (const name of listFixtures()) {
    const f = loadFixture(name);
    if (f.op !== "conv2d") continue;
    const [x, w, b] = f.inputs;
    const s: ConvShape = { x: x.shape, w: w.shape, stride: f.attrs.stride as number, pad: f.attrs.padding as number };
    const ref = conv2dReference(s, x.data as Float32Array, toF32(w.data, w.dtype), b?.data as Float32Array);
    // Both are float64 results rounded to f32: they may differ by the rounding only.
    const r = compare(ref, f.outputs[0].data as Float32Array, 0, 2 ** -23);
    assert(r.failures === 0, `${name}: reference differs from PyTorch by ${r.rel} at ${r.worst}`);
    n++;
  }
  assert(n >= 15, `only ${n} conv fixtures`);
  assert(f16BitsToF32(f32ToF16Bits(0.1)) === 0.0999755859375 && bf16BitsToF32(f32ToBf16Bits(0.1)) === 0.10009765625);
});

Deno.test("the shape set covers what it claims", () => {
  const has = (p: (s: typeof SHAPES[number]) => boolean, what: string, min = 3) => {
    const k = SHAPES.filter(p).length;
    assert(k >= min, `only ${k} shapes with ${what}`);
  };
  has((s) => s.h % 2 === 1 && s.w % 2 === 1, "odd H and W");
  has((s) => s.h % 2 === 0 && s.w % 2 === 0, "even H and W");
  has((s) => s.h < 6 || s.w < 6, "a side smaller than an F(6,3) tile", 20);
  has((s) => s.h <= 2 || s.w <= 2, "a side smaller than an F(2,3) tile", 5);
  has((s) => s.pad === 0, "padding 0", 30);
  has((s) => s.pad === 1, "padding 1", 30);
  has((s) => s.ci >= 120 || s.co >= 120, "channels around 128");
  has((s) => s.ci % 16 !== 0 && s.co % 16 !== 0, "Ci and Co not multiples of 16", 150);
  has((s) => s.n > 1, "batch > 1", 30);
  has((s) => s.bias, "bias", 50);
  has((s) => !s.bias, "no bias", 50);
});

const F32_CASES = SHAPES.map((_, i) => makeCase(i, "f32"));

for (const m of [2, 4, 6] as const) {
  Deno.test(`Winograd F(${m},3) vs float64 direct: ${N_SHAPES} shapes, f32 weights [${BEST}]`, async () => {
    const backend = await backendFor(BEST);
    await sweep(backend, BEST, F32_CASES, { winograd: m }, WINOGRAD_REL_BOUND[m]);
    await sweep(backend, BEST, F32_CASES, { winograd: m, hoisted: true }, WINOGRAD_REL_BOUND[m]);
  });
}

Deno.test("Winograd with f16 and bf16 weights (40 shapes each)", async () => {
  const backend = await backendFor(BEST);
  for (const wdtype of ["f16", "bf16"] as const) {
    const cases = SHAPES.slice(0, 40).map((_, i) => makeCase(i, wdtype));
    for (const m of [2, 4, 6] as const) await sweep(backend, BEST, cases, { winograd: m }, WINOGRAD_REL_BOUND[m]);
  }
});

Deno.test("Winograd with the residual add fused (25 shapes)", async () => {
  const backend = await backendFor(BEST);
  const cases = SHAPES.slice(40, 65).map((_, i) => makeCase(40 + i, "f32", true));
  for (const m of [2, 4, 6] as const) {
    await sweep(backend, BEST, cases, { winograd: m }, WINOGRAD_REL_BOUND[m]);
    await sweep(backend, BEST, cases, { winograd: m, hoisted: true }, WINOGRAD_REL_BOUND[m]);
  }
});

Deno.test("direct and im2col convolution (60 shapes, f32 and f16 weights)", async () => {
  const backend = await backendFor(BEST);
  const cases = [...F32_CASES.slice(100, 140), ...SHAPES.slice(140, 160).map((_, i) => makeCase(140 + i, "f16"))];
  for (const conv of ["direct", "im2col"] as const) await sweep(backend, BEST, cases, { conv }, FALLBACK_REL_BOUND);
});

for (const isa of ISAS.filter((i) => i !== BEST)) {
  Deno.test(`Winograd, direct and im2col on the ${isa} kernels (${N_SHAPES} shapes, 40 with f16 weights)`, async () => {
    const backend = await backendFor(isa);
    const f16 = SHAPES.slice(0, 40).map((_, i) => makeCase(i, "f16"));
    for (const m of [2, 4, 6] as const) {
      await sweep(backend, isa, F32_CASES, { winograd: m }, WINOGRAD_REL_BOUND[m]);
      await sweep(backend, isa, f16, { winograd: m }, WINOGRAD_REL_BOUND[m]);
    }
    const fallback = F32_CASES.slice(100, 160);
    for (const conv of ["direct", "im2col"] as const) {
      await sweep(backend, isa, fallback, { conv }, FALLBACK_REL_BOUND);
      await sweep(backend, isa, f16, { conv }, FALLBACK_REL_BOUND);
    }
  });
}

Deno.test("Winograd (hoisted and fused, f32/f16/bf16 weights, residual), direct and im2col on the opencl backend", async () => {
  const { backend, why } = await optionalBackend("opencl");
  if (!backend) return console.log(`ignored: opencl (${why})`);
  // Every shape once per tile size (half with the filter transform hoisted, half fused), to keep CI time down.
  const f16 = SHAPES.slice(0, 20).map((_, i) => makeCase(i, "f16"));
  const bf16 = SHAPES.slice(20, 40).map((_, i) => makeCase(20 + i, "bf16"));
  const residual = SHAPES.slice(40, 65).map((_, i) => makeCase(40 + i, "f32", true));
  for (const m of [2, 4, 6] as const) {
    const bound = WINOGRAD_REL_BOUND[m];
    await sweep(backend, "opencl", F32_CASES.slice(0, 100), { winograd: m, hoisted: true }, bound);
    await sweep(backend, "opencl", F32_CASES.slice(100), { winograd: m }, bound);
    await sweep(backend, "opencl", [...f16, ...bf16], { winograd: m }, bound);
    await sweep(backend, "opencl", residual, { winograd: m, hoisted: m !== 4 }, bound);
  }
  const fallback = [...F32_CASES.slice(100, 120), ...SHAPES.slice(140, 150).map((_, i) => makeCase(140 + i, "f16"))];
  for (const conv of ["direct", "im2col"] as const) {
    await sweep(backend, "opencl", fallback, { conv }, FALLBACK_REL_BOUND);
  }
});
