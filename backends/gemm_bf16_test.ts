/**
 * The CPU backend's bf16 precision (`precision: "bf16"`): MATMUL, CONV2D (im2col and 1x1) and fused F(2,3)
 * WINO_GEMM products on both bf16 units (AMX tiles, AVX512-BF16 dot products), on random shapes with ragged
 * M, N and K (not multiples of 16 / 32, and K over one packed block), f32 / f16 / bf16 weights, 2 threads.
 *
 * Bound (derived, not tuned): operands are rounded to bf16 (8-bit significand, round to nearest even:
 * relative error <= u = 2^-8 each), a product of two bf16 values is exact in f32, and the K products
 * of an output are summed in f32 one at a time (relative error <= 2^-24 per addition, K additions
 * including the k-block carries, plus one for the bias). So, against a float64 reference of the f32
 * inputs, |y - ref| <= ((1 + u)^2 - 1 + (K + 1) * 2^-24 * 1.01) * sum_k |x_k| |w_k| + 2^-24 |bias|.
 * Also checked: the bf16 result differs from the f32 one (the bf16 path really ran), and asking for
 * bf16 where it cannot run fails with a clear error. Tests of a unit the CPU lacks are ignored.
 */

import assert from "node:assert";
import { loadNativeBackend, type NativeBackend, SDF_OP } from "./mod.ts";
import { assertBackendError, randn, rng, runOp, type TensorSpec } from "./test_helpers.ts";
import { f32ArrayToBf16Bits, f32ArrayToF16Bits, halfBitsToF32Array } from "./float16.ts";

const info = (await loadNativeBackend("cpu", { threads: 2 })).info;
const units = (info.bf16_units as string[] | undefined) ?? [];
const U = 2 ** -8;

function bound(k: number, absSum: number, bias: number): number {
  return ((1 + U) ** 2 - 1 + (k + 1) * 2 ** -24 * 1.01) * absSum + 2 ** -24 * Math.abs(bias);
}

type WDtype = "f32" | "f16" | "bf16";

/** The weight as the backend stores it, and the f32 values it stands for. */
function weight(r: () => number, n: number, dtype: WDtype): { spec: Omit<TensorSpec, "dims">; values: Float32Array } {
  const f = randn(r, n);
  if (dtype === "f32") return { spec: { data: f }, values: f };
  const bits = dtype === "f16" ? f32ArrayToF16Bits(f) : f32ArrayToBf16Bits(f);
  return { spec: { dtype, data: bits }, values: halfBitsToF32Array(bits, dtype) };
}

const MATMUL_SHAPES: [number, number, number, WDtype][] = [
  [1, 1, 1, "f32"],
  [7, 5, 3, "f16"],
  [33, 31, 17, "f32"],
  [77, 768, 320, "f16"],
  [64, 1000, 48, "bf16"],
  [100, 1100, 100, "f32"],
  [290, 40, 96, "f16"],
  [300, 320, 65, "f32"],
];

async function checkMatmul(be: NativeBackend, f32: NativeBackend, seed: number): Promise<void> {
  for (const [M, K, N, dt] of MATMUL_SHAPES) {
    const r = rng(seed + M * 7 + K * 13 + N);
    const x = randn(r, M * K);
    const w = weight(r, N * K, dt);
    const b = randn(r, N);
    const ins: TensorSpec[] = [{ dims: [M, K], data: x }, { dims: [N, K], ...w.spec }, { dims: [N], data: b }];
    const [y] = await runOp(be, SDF_OP.MATMUL, ins, [[M, N]]);
    const [y32] = await runOp(f32, SDF_OP.MATMUL, ins, [[M, N]]);
    let differs = false;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let ref = b[j], abs = 0;
        for (let k = 0; k < K; k++) {
          const p = x[i * K + k] * w.values[j * K + k];
          ref += p;
          abs += Math.abs(p);
        }
        const e = Math.abs(y[i * N + j] - ref), lim = bound(K, abs, b[j]);
        if (!(e <= lim)) {
          assert.fail(
            `MATMUL ${M}x${K}x${N} (${dt}) y[${i},${j}] = ${y[i * N + j]}, reference ${ref}: error ${e} > ${lim}`,
          );
        }
        if (y[i * N + j] !== y32[i * N + j]) differs = true;
      }
    }
    if (K >= 31) assert(differs, `MATMUL ${M}x${K}x${N}: bf16 result equals the f32 one (bf16 path did not run?)`);
  }
}

const CONV_SHAPES: { n: number; ci: number; h: number; w: number; co: number; k: number; s: number; p: number }[] = [
  { n: 1, ci: 4, h: 9, w: 11, co: 20, k: 3, s: 1, p: 1 }, // 4 -> 20, ragged everything
  { n: 2, ci: 37, h: 8, w: 8, co: 33, k: 1, s: 1, p: 0 }, // 1x1 (no im2col), batch 2
  { n: 1, ci: 64, h: 12, w: 10, co: 48, k: 3, s: 2, p: 1 }, // stride 2: K = 576, over one block
  { n: 1, ci: 70, h: 40, w: 30, co: 17, k: 1, s: 1, p: 0 }, // 1200 pixels: groups of columns
];

async function checkConv(be: NativeBackend, f32: NativeBackend, seed: number): Promise<void> {
  for (const c of CONV_SHAPES) {
    const r = rng(seed + c.ci * 31 + c.co);
    const oh = Math.floor((c.h + 2 * c.p - c.k) / c.s) + 1, ow = Math.floor((c.w + 2 * c.p - c.k) / c.s) + 1;
    const x = randn(r, c.n * c.ci * c.h * c.w);
    const w = weight(r, c.co * c.ci * c.k * c.k, "f16");
    const b = randn(r, c.co);
    const ins: TensorSpec[] = [
      { dims: [c.n, c.ci, c.h, c.w], data: x },
      { dims: [c.co, c.ci, c.k, c.k], ...w.spec },
      { dims: [c.co], data: b },
    ];
    const out = [[c.n, c.co, oh, ow]];
    const p = [c.s, c.s, c.p, c.p, 2]; // algo 2: im2col (the 1x1 one skips it)
    const [y] = await runOp(be, SDF_OP.CONV2D, ins, out, p);
    const [y32] = await runOp(f32, SDF_OP.CONV2D, ins, out, p);
    const K = c.ci * c.k * c.k;
    let differs = false;
    for (let n = 0; n < c.n; n++) {
      for (let co = 0; co < c.co; co++) {
        for (let oy = 0; oy < oh; oy++) {
          for (let ox = 0; ox < ow; ox++) {
            let ref = b[co], abs = 0;
            for (let ci = 0; ci < c.ci; ci++) {
              for (let kh = 0; kh < c.k; kh++) {
                for (let kw = 0; kw < c.k; kw++) {
                  const iy = oy * c.s - c.p + kh, ix = ox * c.s - c.p + kw;
                  if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
                  const pr = x[((n * c.ci + ci) * c.h + iy) * c.w + ix] *
                    w.values[((co * c.ci + ci) * c.k + kh) * c.k + kw];
                  ref += pr;
                  abs += Math.abs(pr);
                }
              }
            }
            const at = ((n * c.co + co) * oh + oy) * ow + ox;
            const e = Math.abs(y[at] - ref), lim = bound(K, abs, b[co]);
            if (!(e <= lim)) assert.fail(`CONV2D ${JSON.stringify(c)} y[${at}] = ${y[at]}, ref ${ref}: ${e} > ${lim}`);
            if (y[at] !== y32[at]) differs = true;
          }
        }
      }
    }
    assert(differs, `CONV2D ${JSON.stringify(c)}: bf16 result equals the f32 one`);
  }
}

for (const unit of ["amx", "avx512_bf16"] as const) {
  const ignore = !units.includes(unit);
  Deno.test({
    name: `bf16 MATMUL on ${unit}: within the bf16 bound of a float64 reference (ragged M, N, K)`,
    ignore,
    fn: async () => {
      const be = await loadNativeBackend("cpu", { threads: 2, precision: "bf16", bf16Unit: unit });
      assert.strictEqual(be.info.precision, "bf16");
      assert.strictEqual(be.info.bf16_unit, unit);
      await checkMatmul(be, await loadNativeBackend("cpu", { threads: 2 }), 1);
    },
  });
  Deno.test({
    name: `bf16 CONV2D (im2col, 1x1) on ${unit}: within the bf16 bound of a float64 reference`,
    ignore,
    fn: async () => {
      const be = await loadNativeBackend("cpu", { threads: 2, precision: "bf16", bf16Unit: unit });
      await checkConv(be, await loadNativeBackend("cpu", { threads: 2 }), 2);
    },
  });
}

Deno.test("bf16 precision: a clear error where it cannot run, and for unknown values", async () => {
  await assertBackendError(
    // deno-lint-ignore no-explicit-any
    () => loadNativeBackend("cpu", { precision: "f8" as any }),
    /unknown precision "f8" \(f32, bf16\)/,
  );
  if (info.isas.includes("avx2")) {
    await assertBackendError(
      () => loadNativeBackend("cpu", { isa: "avx2", precision: "bf16" }),
      units.length ? /precision "bf16" runs on the avx512 kernels, not isa "avx2"/ : /needs AVX512-BF16/,
    );
  }
  if (!units.includes("amx")) {
    await assertBackendError(
      () => loadNativeBackend("cpu", { precision: "bf16", bf16Unit: "amx" }),
      /precision "bf16" needs AMX-BF16, which this CPU \(or OS\) does not offer; use precision "f32"/,
    );
  }
  const f32 = await loadNativeBackend("cpu", { threads: 2 });
  assert.strictEqual(f32.info.precision, "f32");
});

/** gemm.h's f32 A format (6-row panels, K columns) as a row-major M x K matrix. */
function unpackA(src: Float32Array, off: number, M: number, K: number): Float64Array {
  const out = new Float64Array(M * K);
  for (let p0 = 0; p0 < M; p0 += 6) {
    const h = Math.min(6, M - p0);
    for (let k = 0; k < K; k++) for (let i = 0; i < h; i++) out[(p0 + i) * K + k] = src[off + p0 * K + k * h + i];
  }
  return out;
}

/** gemm.h's f32 B format (16-column panels, K rows) as a row-major K x N matrix. */
function unpackB(src: Float32Array, off: number, K: number, N: number): Float64Array {
  const out = new Float64Array(K * N);
  for (let q0 = 0; q0 < N; q0 += 16) {
    const w = Math.min(16, N - q0);
    for (let k = 0; k < K; k++) for (let j = 0; j < w; j++) out[k * N + q0 + j] = src[off + q0 * K + k * w + j];
  }
  return out;
}

// Fused WINO_GEMM, F(2,3) with T >= 256 tiles: m_k = U_k @ V_k with U_k transformed from w inside the op (f32), then rounded to
// bf16. Reference: U_k from WINO_FILTER on the f32 backend (the same f32 transform; an ulp apart at most, which
// the 8 * 2^-24 term covers), V_k as given, products in float64; bound as above with K = Ci.
// Fewer tiles, F(4,3) and F(6,3) stay f32 under bf16 (winograd_gemm.c says why): bit-equal to the f32 backend's.
const WINO_SHAPES = [
  { m: 2, co: 20, ci: 37, t: 257 },
  { m: 2, co: 30, ci: 520, t: 300 }, // Ci over one 512-deep block
  { m: 2, co: 20, ci: 37, t: 255 },
  { m: 4, co: 20, ci: 37, t: 300 },
  { m: 6, co: 20, ci: 37, t: 300 },
];
for (const unit of ["amx", "avx512_bf16"] as const) {
  Deno.test({
    name: `bf16 fused WINO_GEMM on ${unit}: F(2,3) >= 256 tiles within the bf16 bound of a float64 product; others f32`,
    ignore: !units.includes(unit),
    fn: async () => {
      const be = await loadNativeBackend("cpu", { threads: 2, precision: "bf16", bf16Unit: unit });
      const f32 = await loadNativeBackend("cpu", { threads: 2 });
      for (const s of WINO_SHAPES) {
        const AA = (s.m + 2) ** 2;
        const r = rng(s.co * 7 + s.ci);
        const w = weight(r, s.co * s.ci * 9, "f16");
        const v = randn(r, AA * s.ci * s.t);
        const wSpec: TensorSpec = { dims: [s.co, s.ci, 3, 3], ...w.spec };
        const [u] = await runOp(f32, SDF_OP.WINO_FILTER, [wSpec], [[AA, s.co, s.ci]], [s.m]);
        const ins: TensorSpec[] = [wSpec, { dims: [AA, s.ci, s.t], data: v }];
        const [mm] = await runOp(be, SDF_OP.WINO_GEMM, ins, [[AA, s.co, s.t]], [s.m, 1]);
        const [mm32] = await runOp(f32, SDF_OP.WINO_GEMM, ins, [[AA, s.co, s.t]], [s.m, 1]);
        if (s.m > 2 || s.t < 256) {
          assert.deepStrictEqual(mm, mm32, `WINO_GEMM m=${s.m} under bf16 must be the f32 product`);
          continue;
        }
        let differs = false;
        for (let k = 0; k < AA; k++) {
          const U = unpackA(u, k * s.co * s.ci, s.co, s.ci), V = unpackB(v, k * s.ci * s.t, s.ci, s.t);
          for (let i = 0; i < s.co; i++) {
            for (let j = 0; j < s.t; j++) {
              let ref = 0, abs = 0;
              for (let c = 0; c < s.ci; c++) {
                const p = U[i * s.ci + c] * V[c * s.t + j];
                ref += p;
                abs += Math.abs(p);
              }
              const at = (k * s.co + i) * s.t + j;
              const e = Math.abs(mm[at] - ref), lim = bound(s.ci, abs, 0) + 8 * 2 ** -24 * abs;
              if (!(e <= lim)) assert.fail(`WINO_GEMM ${JSON.stringify(s)} m_[${k},${i},${j}]: ${e} > ${lim}`);
              if (mm[at] !== mm32[at]) differs = true;
            }
          }
        }
        assert(differs, `WINO_GEMM ${JSON.stringify(s)}: bf16 result equals the f32 one`);
      }
    },
  });
}

// A block-quantized weight is dequantized while packing, then rounded like any other: MATMUL in bf16 on a
// q8_0 weight equals MATMUL in bf16 on its f32 dequantization (COPY), bit for bit.
Deno.test({
  name: "bf16 MATMUL on a q8_0 weight: bit-equal to bf16 MATMUL on the weight dequantized to f32",
  ignore: units.length === 0,
  fn: async () => {
    const be = await loadNativeBackend("cpu", { threads: 2, precision: "bf16" });
    const f32 = await loadNativeBackend("cpu", { threads: 2 });
    const [M, K, N] = [77, 1088, 50];
    const r = rng(9);
    const blocks = new Uint8Array((N * K / 32) * 34);
    const dv = new DataView(blocks.buffer);
    for (let b = 0; b < N * K / 32; b++) {
      dv.setUint16(b * 34, f32ArrayToF16Bits([0.002 + 0.01 * r()])[0], true);
      for (let i = 0; i < 32; i++) dv.setInt8(b * 34 + 2 + i, Math.floor(r() * 256) - 128);
    }
    const q: TensorSpec = { dims: [N, K], dtype: "q8_0", data: new Uint16Array(blocks.buffer) };
    const [wf] = await runOp(f32, SDF_OP.COPY, [q], [[N, K]]);
    const x = randn(r, M * K);
    const [yq] = await runOp(be, SDF_OP.MATMUL, [{ dims: [M, K], data: x }, q], [[M, N]]);
    const [yf] = await runOp(be, SDF_OP.MATMUL, [{ dims: [M, K], data: x }, { dims: [N, K], data: wf }], [[M, N]]);
    assert.deepStrictEqual(yq, yf);
  },
});
