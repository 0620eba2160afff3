/**
 * MERGE_LOW_RANK (y = w + up @ down + dense, rounded once to w's dtype) against a float64
 * TypeScript reference, under every ISA this CPU has, on shapes that leave partial row, column
 * and rank blocks (R = 100, I = 1100, K = 300 against 48 x 512 tiles and rank blocks of 256).
 *
 * Bound per element: the float64 value's rounding to the dtype can flip next to a rounding
 * boundary, and ΔW's float32 sum over K terms errs by at most K·2⁻²⁴·Σ|terms| (the classic
 * recursive-summation bound), so |y - ref| ≤ ulp_dtype(ref) + K·2⁻²⁴·(Σ_k |up·down| + |dense|).
 */

import assert from "node:assert";
import { type Backend, loadBackend, PlanWriter, SDF_DTYPE, SDF_OP } from "./mod.ts";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "./float16.ts";
import { assertBackendError, randn, rng } from "./test_helpers.ts";

const ALL = ["scalar", "avx2", "avx512"] as const;
const probe = await loadBackend("cpu", { threads: 2 });
const ISAS = ALL.filter((i) => probe.info.isas.includes(i));

type Dt = "f32" | "f16" | "bf16";
const encode = (v: Float32Array, dt: Dt): Float32Array | Uint16Array =>
  dt === "f32" ? v : Uint16Array.from(v, (x) => dt === "f16" ? f32ToF16Bits(x) : f32ToBf16Bits(x));
const decode = (v: Uint16Array | Float32Array, dt: Dt): Float64Array =>
  Float64Array.from(
    v as ArrayLike<number>,
    (x) => dt === "f32" ? x : dt === "f16" ? f16BitsToF32(x) : bf16BitsToF32(x),
  );
/** Spacing of the dtype's values at |v|. */
function ulp(v: number, dt: Dt): number {
  const e = Math.floor(Math.log2(Math.abs(v) || 2 ** -126));
  if (dt === "f16") return 2 ** (Math.max(e, -14) - 10);
  return 2 ** (Math.max(e, -126) - (dt === "bf16" ? 7 : 23));
}

/** Runs one MERGE_LOW_RANK op; w and the factors in binding 0, y in binding 1. */
async function merge(
  be: Backend,
  dt: Dt,
  w: Float32Array | Uint16Array,
  up: Float32Array,
  down: Float32Array,
  dense: Float32Array | undefined,
  [R, I, K]: number[],
): Promise<Float32Array | Uint16Array> {
  const plan = new PlanWriter(2);
  const parts = [w, up, down, ...(dense ? [dense] : [])];
  const offsets: number[] = [];
  let bytes = 0;
  for (const p of parts) {
    offsets.push(bytes);
    bytes += Math.ceil(p.byteLength / 64) * 64;
  }
  const code = SDF_DTYPE[dt];
  const ins = [
    plan.tensor(0, code, offsets[0], [R, I]),
    plan.tensor(0, SDF_DTYPE.f32, offsets[1], [R, K]),
    plan.tensor(0, SDF_DTYPE.f32, offsets[2], [K, I]),
    ...(dense ? [plan.tensor(0, SDF_DTYPE.f32, offsets[3], [R, I])] : []),
  ];
  const y = plan.tensor(1, code, 0, [R, I]);
  plan.op(SDF_OP.MERGE_LOW_RANK, ins, [y]);
  const compiled = be.compile(plan.finish());
  const host = be.alloc(bytes);
  const out = be.alloc(w.byteLength);
  try {
    parts.forEach((p, i) => host.write(offsets[i], p));
    await compiled.run([host, out]);
    return out.readInto(0, dt === "f32" ? new Float32Array(R * I) : new Uint16Array(R * I));
  } finally {
    compiled.free();
    host.free();
    out.free();
  }
}

Deno.test("MERGE_LOW_RANK matches float64 w + up@down + dense, rounded to f32 / f16 / bf16", async (t) => {
  const [R, I, K] = [100, 1100, 300];
  const r = rng(7);
  const w32 = randn(r, R * I);
  const up = randn(r, R * K, -0.05, 0.05);
  const down = randn(r, K * I, -0.05, 0.05);
  const dense = randn(r, R * I, -0.01, 0.01);
  for (const isa of ISAS) {
    const be = await loadBackend("cpu", { threads: 2, isa });
    for (const dt of ["f32", "f16", "bf16"] as const) {
      await t.step(`${isa} ${dt}`, async () => {
        const w = encode(w32, dt);
        const wv = decode(w, dt);
        for (const withDense of [false, true]) {
          const got = decode(await merge(be, dt, w, up, down, withDense ? dense : undefined, [R, I, K]), dt);
          for (let i = 0; i < R; i++) {
            for (let j = 0; j < I; j += 7) {
              let sum = 0, abs = 0;
              for (let k = 0; k < K; k++) {
                const p = up[i * K + k] * down[k * I + j];
                sum += p;
                abs += Math.abs(p);
              }
              if (withDense) {
                sum += dense[i * I + j];
                abs += Math.abs(dense[i * I + j]);
              }
              const want = wv[i * I + j] + sum;
              const bound = ulp(want, dt) + K * 2 ** -24 * abs;
              const e = Math.abs(got[i * I + j] - want);
              assert.ok(e <= bound, `[${i}, ${j}]: ${got[i * I + j]} vs ${want} (bound ${bound})`);
            }
          }
        }
      });
    }
  }
});

Deno.test("MERGE_LOW_RANK refuses operands that do not fit, naming the op", async () => {
  const be = probe;
  const bad = (build: (p: PlanWriter) => void) => () => {
    const p = new PlanWriter(1);
    build(p);
    return be.compile(p.finish());
  };
  await assertBackendError(
    bad((p) => {
      const w = p.tensor(0, SDF_DTYPE.f16, 0, [4, 8]);
      const up = p.tensor(0, SDF_DTYPE.f32, 64, [4, 2]);
      const down = p.tensor(0, SDF_DTYPE.f32, 128, [3, 8]);
      p.op(SDF_OP.MERGE_LOW_RANK, [w, up, down], [p.tensor(0, SDF_DTYPE.f16, 256, [4, 8])]);
    }),
    /MERGE_LOW_RANK: w \[4, 8\], up \[4, 2\], down \[3, 8\] do not fit/,
  );
  await assertBackendError(
    bad((p) => {
      const w = p.tensor(0, SDF_DTYPE.f16, 0, [4, 8]);
      const up = p.tensor(0, SDF_DTYPE.f32, 64, [4, 2]);
      const down = p.tensor(0, SDF_DTYPE.f32, 128, [2, 8]);
      p.op(SDF_OP.MERGE_LOW_RANK, [w, up, down], [p.tensor(0, SDF_DTYPE.f32, 256, [4, 8])]);
    }),
    /one float dtype/,
  );
});
