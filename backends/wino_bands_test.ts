/**
 * The CPU backend's two optional Winograd extensions, checked through whole
 * plans written with PlanWriter, under every ISA this CPU has, 2 threads:
 *
 *  - fused filter transform: WINO_GEMM p[1] = 1 takes the raw weight
 *    w[Co,Ci,3,3] (f32, f16, bf16) instead of u. Compared with the hoisted
 *    chain (WINO_FILTER + WINO_GEMM) on the same plan: max |y_fused - y| <=
 *    tol * max |y|, tol = 1e-5 for F(2,3), 5e-5 for F(4,3), 1e-4 for F(6,3)
 *    (the fused transform runs in f32, WINO_FILTER in f64; both stay within
 *    the Winograd contract bounds against a direct conv);
 *  - row bands: WINO_INPUT / WINO_OUTPUT p[3] = row0, p[4] = rows (tile
 *    rows). The bands of one conv run as independent op chains (so they may
 *    run concurrently) into one y. With hoisted u each band computes exactly
 *    the unbanded arithmetic, so the result must be bit-identical; fused
 *    bands use the fused tolerance above.
 *  - prepare(): out-of-range bands and mismatched shapes are rejected with
 *    messages naming the problem.
 */

import assert from "node:assert";
import { loadNativeBackend, type NativeBackend as Backend, PlanWriter, SDF_DTYPE, SDF_OP } from "./mod.ts";
import { assertBackendError, randn, rng } from "./test_helpers.ts";
import { f32ToBf16Bits, f32ToF16Bits } from "./float16.ts";

const ALL = ["scalar", "avx2", "avx512"] as const;
type Isa = typeof ALL[number];

const probe = await loadNativeBackend("cpu", { threads: 2 });
const ISAS: Isa[] = ALL.filter((i) => probe.info.isas.includes(i));

const backends = new Map<Isa, Backend>();
async function be(isa: Isa): Promise<Backend> {
  let b = backends.get(isa);
  if (!b) {
    b = await loadNativeBackend("cpu", { threads: 2, isa });
    assert.strictEqual(b.info.isa, isa);
    backends.set(isa, b);
  }
  return b;
}

const prod = (d: number[]) => d.reduce((a, b) => a * b, 1);
const cdiv = (a: number, b: number) => Math.ceil(a / b);
const TOL: Record<number, number> = { 2: 1e-5, 4: 5e-5, 6: 1e-4 };

type WDtype = "f32" | "f16" | "bf16";

/** One buffer; tensors placed one after another, 64-byte aligned. */
class Layout {
  readonly w = new PlanWriter(1);
  bytes = 0;
  tensor(dims: number[], dtype: WDtype = "f32"): { idx: number; at: number; n: number } {
    const at = this.bytes, n = prod(dims);
    this.bytes += Math.ceil((n * (dtype === "f32" ? 4 : 2)) / 64) * 64 + 64;
    return { idx: this.w.tensor(0, SDF_DTYPE[dtype], at, dims), at, n };
  }
}

interface Case {
  m: number;
  N: number;
  Ci: number;
  Co: number;
  H: number;
  W: number;
  pad: number;
  wdt: WDtype;
  /** band sizes in tile rows, summing to tiles_h */
  bands: number[];
}

/** Runs hoisted, fused, hoisted-banded and fused-banded versions of one conv
 * (with bias and residual) in a single plan; returns the four outputs. */
async function runCase(b: Backend, c: Case, seed: number): Promise<Float32Array[]> {
  const { m, N, Ci, Co, H, W, pad } = c;
  const A = m + 2, OH = H + 2 * pad - 2, OW = W + 2 * pad - 2;
  const th = cdiv(OH, m), tw = cdiv(OW, m), T = N * th * tw;
  const r = rng(seed);
  const L = new Layout();
  const x = L.tensor([N, Ci, H, W]);
  const w = L.tensor([Co, Ci, 3, 3], c.wdt);
  const bias = L.tensor([Co]);
  const res = L.tensor([N, Co, OH, OW]);
  const u = L.tensor([A * A, Co, Ci]);
  const ys = [0, 1, 2, 3].map(() => L.tensor([N, Co, OH, OW]));
  const P = L.w;
  const filter = P.op(SDF_OP.WINO_FILTER, [w.idx], [u.idx], [m]);
  const chain = (fused: boolean, y: number, row0: number, rows: number) => {
    const tb = N * rows * tw;
    const v = L.tensor([A * A, Ci, tb]).idx, mm = L.tensor([A * A, Co, tb]).idx;
    const band = rows === th && row0 === 0 ? [] : [row0, rows];
    const i = P.op(SDF_OP.WINO_INPUT, [x.idx], [v], [m, pad, pad, ...band]);
    const g = P.op(
      SDF_OP.WINO_GEMM,
      [fused ? w.idx : u.idx, v],
      [mm],
      [m, fused ? 1 : 0],
      [],
      fused ? [i] : [
        i,
        filter,
      ],
    );
    P.op(SDF_OP.WINO_OUTPUT, [mm, bias.idx, res.idx], [y], [m, 1, 1, ...band], [], [g]);
  };
  chain(false, ys[0].idx, 0, th);
  chain(true, ys[1].idx, 0, th);
  for (let fused = 0; fused < 2; fused++) {
    let row0 = 0;
    for (const rows of c.bands) {
      chain(fused === 1, ys[2 + fused].idx, row0, rows);
      row0 += rows;
    }
  }
  assert.strictEqual(T, N * th * tw);
  const plan = b.compile(P.finish());
  const buf = b.alloc(L.bytes);
  try {
    buf.write(x.at, randn(r, x.n));
    const wf = randn(r, w.n, -1 / Math.sqrt(9 * Ci), 1 / Math.sqrt(9 * Ci));
    if (c.wdt === "f32") buf.write(w.at, wf);
    else buf.write(w.at, Uint16Array.from(wf, c.wdt === "f16" ? f32ToF16Bits : f32ToBf16Bits));
    buf.write(bias.at, randn(r, bias.n, -0.1, 0.1));
    buf.write(res.at, randn(r, res.n));
    for (const y of ys) buf.write(y.at, new Float32Array(y.n).fill(NaN)); // unwritten shows
    await plan.run([buf]);
    return ys.map((y) => buf.readInto(y.at, new Float32Array(y.n)));
  } finally {
    plan.free();
    buf.free();
  }
}

function relMax(got: Float32Array, want: Float32Array): number {
  let md = 0, mw = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= md)) md = d; // NaN propagates
    mw = Math.max(mw, Math.abs(want[i]));
  }
  return md / mw;
}

/** Random band split of th tile rows: 1-row bands, random sizes, the rest. */
function split(r: () => number, th: number): number[] {
  const out: number[] = [];
  let left = th;
  while (left > 0) {
    const rows = Math.min(left, r() < 0.35 ? 1 : 1 + Math.floor(r() * th));
    out.push(rows);
    left -= rows;
  }
  return out;
}

const CASES: Case[] = [];
{
  const r = rng(7);
  const dts: WDtype[] = ["f32", "f16", "bf16"];
  for (let i = 0; i < 9; i++) {
    const m = [2, 4, 6][i % 3];
    const H = 3 + Math.floor(r() * 22), W = 3 + Math.floor(r() * 14), pad = i % 4 === 3 ? 0 : 1;
    const OH = H + 2 * pad - 2;
    CASES.push({
      m,
      N: 1 + (i % 3),
      Ci: 1 + Math.floor(r() * 45),
      Co: 1 + Math.floor(r() * 30),
      H,
      W,
      pad,
      wdt: dts[Math.floor(i / 3)],
      bands: split(r, cdiv(OH, m)),
    });
  }
  // several Ci / Co blocks of the fused GEMM, one band per tile row
  CASES.push({ m: 6, N: 1, Ci: 300, Co: 130, H: 9, W: 7, pad: 1, wdt: "f16", bands: [1, 1] });
}

for (const isa of ISAS) {
  Deno.test(`wino fused GEMM and row bands match the unfused / unbanded conv (${isa})`, async () => {
    const b = await be(isa);
    for (const [i, c] of CASES.entries()) {
      const [y, yf, yb, yfb] = await runCase(b, c, 100 + i);
      const what = `F(${c.m},3) N${c.N} Ci${c.Ci} Co${c.Co} ${c.H}x${c.W} pad${c.pad} ${c.wdt} bands ${c.bands}`;
      assert.ok(y.every(Number.isFinite), `${what}: hoisted output has non-finite values`);
      const ef = relMax(yf, y), efb = relMax(yfb, y);
      assert.ok(ef <= TOL[c.m], `${what}: fused error ${ef} > ${TOL[c.m]}`);
      assert.ok(efb <= TOL[c.m], `${what}: fused banded error ${efb} > ${TOL[c.m]}`);
      for (let j = 0; j < y.length; j++) {
        if (!Object.is(yb[j], y[j])) assert.fail(`${what}: banded element ${j} is ${yb[j]}, unbanded ${y[j]}`);
      }
    }
  });
}

Deno.test("wino fused / banded prepare() errors", async () => {
  const b = await be(ISAS[ISAS.length - 1]);
  // x [2,8,10,10], pad 1, F(2,3): tiles 5 x 5; a band of 2 rows has T = 20
  const plan = (fn: (P: PlanWriter, t: (d: number[], dt?: number) => number) => void) => {
    const P = new PlanWriter(1);
    let at = 0;
    const t = (d: number[], dt: number = SDF_DTYPE.f32) => {
      const i = P.tensor(0, dt, at, d);
      at += prod(d) * 4 + 64;
      return i;
    };
    fn(P, t);
    return () => b.compile(P.finish());
  };
  const x = [2, 8, 10, 10], v20 = [16, 8, 20], m20 = [16, 4, 20], y = [2, 4, 10, 10], w = [4, 8, 3, 3];
  await assertBackendError(
    plan((P, t) => P.op(SDF_OP.WINO_INPUT, [t(x)], [t(v20)], [2, 1, 1, 4, 2])),
    /op 0.*row band row0 4 \+ rows 2 must lie within the 5 tile rows/,
  );
  await assertBackendError(
    plan((P, t) => P.op(SDF_OP.WINO_INPUT, [t(x)], [t(v20)], [2, 1, 1, 0, 3])),
    /WINO_INPUT v must be \[16,8,30\] \(T = N 2 \* rows 3 \* tiles_w 5\)/,
  );
  await assertBackendError(
    plan((P, t) => P.op(SDF_OP.WINO_INPUT, [t(x)], [t(v20)], [2, 1, 1, 2, 0])),
    /row0 \(p\[3\]\) = 2 needs rows \(p\[4\]\) >= 1/,
  );
  await assertBackendError(
    plan((P, t) => P.op(SDF_OP.WINO_OUTPUT, [t(m20)], [t(y)], [2, 0, 0, -1, 2])),
    /WINO_OUTPUT: row band row0 -1/,
  );
  await assertBackendError(
    plan((P, t) => P.op(SDF_OP.WINO_OUTPUT, [t(m20)], [t(y)], [2, 0, 0, 0, 1])),
    /WINO_OUTPUT m_ must be \[16,4,10\]/,
  );
  await assertBackendError(
    plan((P, t) => P.op(SDF_OP.WINO_GEMM, [t(w), t(v20)], [t(m20)], [2, 2])),
    /fused \(p\[1\]\) must be 0 or 1, got 2/,
  );
  await assertBackendError(
    plan((P, t) => P.op(SDF_OP.WINO_GEMM, [t(w), t(v20)], [t(m20)], [2, 0])),
    /a rank-4 weight needs fused, p\[1\] = 1/,
  );
  await assertBackendError(
    plan((P, t) => P.op(SDF_OP.WINO_GEMM, [t([16, 4, 8]), t(v20)], [t(m20)], [2, 1])),
    /fused WINO_GEMM: in\[0\] must be the weight w\[Co,Ci,3,3\]/,
  );
  await assertBackendError(
    plan((P, t) => P.op(SDF_OP.WINO_GEMM, [t(w), t([16, 7, 20])], [t(m20)], [2, 1])),
    /WINO_GEMM v must be \[16,8,T\]/,
  );
  await assertBackendError(
    plan((P, t) => P.op(SDF_OP.WINO_GEMM, [t(w, SDF_DTYPE.i32), t(v20)], [t(m20)], [2, 1])),
    /weight dtype 3 unsupported/,
  );
  // the valid band plan compiles
  plan((P, t) => {
    P.op(SDF_OP.WINO_INPUT, [t(x)], [t(v20)], [2, 1, 1, 3, 2]);
    P.op(SDF_OP.WINO_GEMM, [t(w), t(v20)], [t(m20)], [2, 1]);
  })().free();
});
