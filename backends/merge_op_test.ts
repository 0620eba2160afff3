/**
 * MERGE_LOW_RANK (y = w + up @ down + dense, rounded once to w's dtype) against a float64
 * TypeScript reference, under every ISA this CPU has, on shapes that leave partial row, column
 * and rank blocks: R = 100, I = 1100, K = 300 (blocks of 84 rows, 512 columns, rank 256), and
 * R = 30, I = 9000, K = 8 (rows so wide that a block is the minimum of 12 rows), and R = 1000, I = 5,
 * K = 3 (rows so narrow that a block is the maximum of 384 rows).
 *
 * Bound per element: the float64 value's rounding to the dtype can flip next to a rounding
 * boundary, and ΔW's float32 sum over K terms errs by at most K·2⁻²⁴·Σ|terms| (the classic
 * recursive-summation bound), so |y - ref| ≤ ulp_dtype(ref) + K·2⁻²⁴·(Σ_k |up·down| + |dense|).
 */

import assert from "node:assert";
import {
  loadNativeBackend as loadBackend,
  type NativeBackend as Backend,
  PlanWriter,
  SDF_DTYPE,
  SDF_OP,
} from "./mod.ts";
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
  for (const [R, I, K] of [[100, 1100, 300], [30, 9000, 8], [1000, 5, 3]]) {
    const r = rng(7);
    const w32 = randn(r, R * I);
    const up = randn(r, R * K, -0.05, 0.05);
    const down = randn(r, K * I, -0.05, 0.05);
    const dense = randn(r, R * I, -0.01, 0.01);
    for (const isa of ISAS) {
      const be = await loadBackend("cpu", { threads: 2, isa });
      for (const dt of ["f32", "f16", "bf16"] as const) {
        await t.step(`${R}x${I} rank ${K}, ${isa} ${dt}`, async () => {
          const w = encode(w32, dt);
          const wv = decode(w, dt);
          for (const withDense of [false, true]) {
            const got = decode(await merge(be, dt, w, up, down, withDense ? dense : undefined, [R, I, K]), dt);
            for (let i = 0; i < R; i++) {
              for (let j = i % 7; j < I; j += 7) {
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

Deno.test("MERGE_LOW_RANK rounds w + dense exactly as float16.ts does (ties, subnormals, overflow, NaN), every ISA", async (t) => {
  // up = 0: the product is exactly 0, so y = round(fround(w + dense)) bit for bit, whatever the GEMM.
  const [R, I, K] = [3, 67, 1];
  const r = rng(11);
  const w32 = new Float32Array(R * I);
  const dense = new Float32Array(R * I);
  for (let i = 0; i < w32.length; i++) {
    const e = Math.floor(r() * 40) - 24; // magnitudes 2^-24 .. 2^15: f16 subnormals to overflow
    w32[i] = (r() - 0.5) * 2 ** e;
    // Half of the sums land on a tie of the f16 / bf16 grids (w's value plus half a unit).
    dense[i] = i % 2 ? 2 ** (e - 12) : (r() - 0.5) * 2 ** (e - 8);
  }
  dense[5] = NaN;
  dense[6] = Infinity;
  dense[7] = 70000;
  for (const isa of ISAS) {
    const be = await loadBackend("cpu", { threads: 2, isa });
    for (const dt of ["f32", "f16", "bf16"] as const) {
      await t.step(`${isa} ${dt}`, async () => {
        const w = encode(w32, dt);
        const wv = decode(w, dt);
        const want = encode(Float32Array.from(wv, (v, i) => Math.fround(v + dense[i])), dt);
        const got = await merge(be, dt, w, new Float32Array(R * K), new Float32Array(K * I), dense, [R, I, K]);
        for (let i = 0; i < want.length; i++) {
          const same = Object.is(got[i], want[i]) || (Number.isNaN(got[i]) && Number.isNaN(want[i]));
          assert.ok(same, `[${i}]: ${got[i]} vs ${want[i]} (w ${wv[i]} + ${dense[i]})`);
        }
      });
    }
  }
});

Deno.test("sdf_buffer_advise: huge pages keep a buffer's contents; file buffers are left alone; bad advice refused", async () => {
  const be = probe;
  const buf = be.alloc(6 << 20);
  const file = await Deno.makeTempFile();
  try {
    const data = randn(rng(3), (6 << 20) / 4);
    buf.write(0, data);
    buf.adviseHugePages();
    assert.deepStrictEqual(buf.readInto(0, new Float32Array(data.length)), data);
    Deno.writeFileSync(file, new Uint8Array(8192).fill(7));
    const mapped = be.fromFile(file, 0, 8192);
    mapped.adviseHugePages();
    assert.deepStrictEqual([...mapped.read(0, 4)], [7, 7, 7, 7]);
    mapped.free();
    await assertBackendError(
      () => be.check(be.symbols.sdf_buffer_advise!(buf.pointer, 9), "advise"),
      /unknown advice 9/,
    );
  } finally {
    buf.free();
    await Deno.remove(file);
  }
});
