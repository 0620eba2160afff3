import assert from "node:assert/strict";
import { loadBackend } from "../backends/mod.ts";
import { compile, Graph, plan } from "./mod.ts";

/** Deterministic values at SD-like magnitudes. */
function values(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
}

/** A 3x3 conv with bias and a residual add, the shape of a ResBlock's second conv. */
function convGraph(n: number, c: number, h: number, w: number): Graph {
  const g = new Graph();
  const x = g.input("x", [n, c, h, w]);
  const wt = g.constant("w", [c, c, 3, 3], "f32", { kind: "data", data: values(c * c * 9, 7, 1 / Math.sqrt(9 * c)) });
  const b = g.constant("b", [c], "f32", { kind: "data", data: values(c, 9, 0.1) });
  g.output("y", g.add(g.conv2d(x, wt, b, { padding: 1 }), x));
  return g;
}

function maxRelError(got: Float32Array, want: Float32Array): number {
  let err = 0;
  let mag = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    mag = Math.max(mag, Math.abs(want[i]));
  }
  return err / mag;
}

// F(6,3) stays within 1e-4 of max |y| against a direct conv (tests/conv_reference.ts measures 1.8e-5).
const F6_BOUND = 1e-4;

Deno.test("planner: banded and fused Winograd convs equal the direct conv", async () => {
  const backend = await loadBackend("cpu");
  const [n, c, h, w] = [2, 24, 37, 29];
  const g = convGraph(n, c, h, w);
  const x = values(n * c * h * w, 3, 1.5);
  const direct = compile(g, backend, { winograd: "off", conv: "direct" });
  const want = (await direct.run({ x })).y;
  direct.dispose();
  const variants = [
    {
      name: "bands of one tile row",
      opts: { winograd: 6, bandBytes: 1, hoistBudgetBytes: Infinity } as const,
      bands: Math.ceil(h / 6),
    },
    { name: "fused filter transform", opts: { winograd: 6, hoistBudgetBytes: 0 } as const, bands: 1 },
    {
      name: "bands + fused",
      opts: { winograd: 6, bandBytes: 1, hoistBudgetBytes: 0 } as const,
      bands: Math.ceil(h / 6),
    },
  ];
  for (const v of variants) {
    const p = plan(g, v.opts);
    const outs = p.stepOps.filter((o) => o.kind === "wino_output").length;
    assert.equal(outs, v.bands, `${v.name}: ${outs} output stages`);
    const fused = p.lowered.ops.some((o) => o.kind === "wino_gemm" && o.attrs.fused === 1);
    assert.equal(fused, v.opts.hoistBudgetBytes === 0, `${v.name}: fused = ${fused}`);
    const program = compile(g, backend, v.opts);
    const got = (await program.run({ x })).y;
    program.dispose();
    const err = maxRelError(got, want);
    assert.ok(err <= F6_BOUND, `${v.name}: relative error ${err} > ${F6_BOUND}`);
  }
});

Deno.test("planner: banding bounds the Winograd intermediates and the arena", () => {
  const g = convGraph(1, 128, 256, 256);
  const whole = plan(g, { bandBytes: Infinity });
  const banded = plan(g, {});
  assert.equal(whole.stepOps.filter((o) => o.kind === "wino_output").length, 1);
  assert.ok(banded.stepOps.filter((o) => o.kind === "wino_output").length > 1);
  // x and y (32 MiB each) are live throughout; the intermediates of one band must fit the default 48 MiB.
  const io = 2 * 128 * 256 * 256 * 4;
  const bandBudget = 48 * 2 ** 20;
  assert.ok(banded.stats.arenaPeakBytes <= io + bandBudget, `banded arena ${banded.stats.arenaPeakBytes}`);
  assert.ok(whole.stats.arenaPeakBytes > io + 2 * bandBudget, `whole-conv arena ${whole.stats.arenaPeakBytes}`);
});
