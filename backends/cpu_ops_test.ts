/**
 * Numerics of the CPU backend's own kernels against straightforward float64
 * TypeScript references, under every ISA this CPU has (scalar, avx2, avx512;
 * a missing one is reported, not failed), with 2 threads, and of the OpenCL
 * backend's kernels under the same bounds (step "opencl", "ignored" when this
 * machine has no OpenCL device or cannot build the backend).
 *
 * Bounds (|got - want| <= atol + rtol * |want|, stated per op):
 *  - data movement (concat, slice, permute, upsample, gather, copy) and
 *    binary ops: exact (binary results are single correctly rounded f32 ops);
 *  - attention: rtol 2e-5, atol 2e-6 (outputs are convex mixes of v in
 *    [-1, 1]; error comes from ~1-2 ulp exp and f32 sums);
 *  - bmm: rtol 1e-5, atol 1e-6 * K (f32 accumulation over K terms);
 *  - group/layer norm, softmax, unary, geglu, timestep embedding: rtol 1e-5
 *    and a small atol (1e-6, or 1e-5 for norms with outputs ~N(0, 1)).
 */

import assert from "node:assert";
import {
  loadNativeBackend,
  type NativeBackend as Backend,
  PlanWriter,
  SDF_BINARY,
  SDF_DTYPE,
  SDF_OP,
  SDF_UNARY,
} from "./mod.ts";
import { optionalBackend, randn, rng, runOp } from "./test_helpers.ts";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "./float16.ts";
import { assertClose } from "../tests/assert.ts";

const ALL = ["scalar", "avx2", "avx512"] as const;
type Isa = typeof ALL[number];

const probe = await loadNativeBackend("cpu", { threads: 2 });
const ISAS: Isa[] = ALL.filter((i) => probe.info.isas.includes(i));
for (const i of ALL) {
  if (!ISAS.includes(i)) console.log(`note: this CPU lacks ${i}; its kernels are not tested here`);
}

const backends = new Map<string, Backend>();
async function be(isa: Isa, threads = 2): Promise<Backend> {
  const key = `${isa}/${threads}`;
  let b = backends.get(key);
  if (!b) {
    b = await loadNativeBackend("cpu", { threads, isa });
    assert.strictEqual(b.info.isa, isa);
    backends.set(key, b);
  }
  return b;
}

const opencl = await optionalBackend("opencl");
if (!opencl.backend) console.log(`cpu_ops_test: opencl ignored: ${opencl.why}`);

/** Runs fn on every CPU ISA, then on the OpenCL backend (same bounds) when there is one. */
function forEachIsa(name: string, fn: (b: Backend, isa: Isa | "opencl") => Promise<void>): void {
  Deno.test(name, async (t) => {
    for (const isa of ISAS) await t.step(isa, async () => fn(await be(isa), isa));
    await t.step("opencl", async () => {
      if (!opencl.backend) return console.log(`ignored (${opencl.why})`);
      await fn(opencl.backend, "opencl");
    });
  });
}

const prod = (d: number[]) => d.reduce((a, b) => a * b, 1);

// ---- float64 references --------------------------------------------------------

/** erf to ~1e-15: Taylor series below 2.5, continued fraction for erfc above. */
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let term = x, sum = x;
    for (let n = 1; n < 60; n++) {
      term *= -x * x / n;
      sum += term / (2 * n + 1);
    }
    return sum * 2 / Math.sqrt(Math.PI);
  }
  let f = 0;
  for (let n = 80; n >= 1; n--) f = (n / 2) / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return x > 0 ? 1 - erfc : erfc - 1;
}

const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const UNARY_REF: Record<keyof typeof SDF_UNARY, (x: number) => number> = {
  silu: (x) => x * sigmoid(x),
  gelu,
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  quick_gelu: (x) => x * sigmoid(1.702 * x),
  relu: (x) => Math.max(x, 0),
  leaky_relu: (x) => x > 0 ? x : 0.2 * x,
  sigmoid,
  tanh: Math.tanh,
};

function attentionRef(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  B: number,
  Nq: number,
  Nk: number,
  H: number,
  D: number,
  causal: boolean,
  scale: number,
): Float64Array {
  const HD = H * D, out = new Float64Array(B * Nq * HD);
  const s = new Float64Array(Nk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < Nq; i++) {
        const nk = causal ? Math.min(Nk, i + 1) : Nk;
        let m = -Infinity;
        for (let j = 0; j < nk; j++) {
          let acc = 0;
          for (let c = 0; c < D; c++) acc += q[(b * Nq + i) * HD + h * D + c] * k[(b * Nk + j) * HD + h * D + c];
          s[j] = acc * scale;
          m = Math.max(m, s[j]);
        }
        let sum = 0;
        for (let j = 0; j < nk; j++) sum += s[j] = Math.exp(s[j] - m);
        for (let c = 0; c < D; c++) {
          let acc = 0;
          for (let j = 0; j < nk; j++) acc += s[j] * v[(b * Nk + j) * HD + h * D + c];
          out[(b * Nq + i) * HD + h * D + c] = acc / sum;
        }
      }
    }
  }
  return out;
}

// ---- attention and bmm -----------------------------------------------------------

const ATTN_CASES: [number, number, number, number, number, boolean, number?][] = [
  // B, Nq, Nk, heads, D, causal, scale
  [1, 37, 77, 2, 40, false], // cross-attention to 77 keys, SD head dim 40
  [2, 77, 77, 2, 64, true], // CLIP: causal, head dim 64
  [1, 33, 19, 1, 80, false],
  [1, 20, 20, 1, 160, true],
  [1, 70, 300, 1, 160, false, 0.05], // several key blocks, explicit scale
  [1, 45, 45, 3, 40, true],
  [1, 10, 30, 2, 16, true], // causal with Nq < Nk (top-left aligned)
  [1, 40, 12, 2, 24, true], // causal with Nq > Nk
  [1, 40, 50, 1, 512, false], // VAE: one head of 512
  [1, 5, 3, 1, 7, false], // tiny, odd head dim
  [1, 150, 300, 2, 40, true], // causal over several query and key blocks
  [1, 200, 140, 1, 33, true], // causal with Nq > Nk over several blocks, odd head dim
  [2, 70, 77, 1, 1, false], // head dim 1
];

forEachIsa("attention matches softmax(QK^T)V (causal, Nq != Nk, head dims 40/64/80/160/512)", async (b) => {
  const r = rng(1);
  for (const [B, Nq, Nk, H, D, causal, scale] of ATTN_CASES) {
    const HD = H * D;
    const q = randn(r, B * Nq * HD), k = randn(r, B * Nk * HD), v = randn(r, B * Nk * HD);
    const sc = scale ?? 1 / Math.sqrt(D);
    const [o] = await runOp(
      b,
      SDF_OP.ATTENTION,
      [{ dims: [B, Nq, HD], data: q }, { dims: [B, Nk, HD], data: k }, { dims: [B, Nk, HD], data: v }],
      [[B, Nq, HD]],
      [H, causal ? 1 : 0],
      scale === undefined ? [] : [scale],
    );
    const want = attentionRef(q, k, v, B, Nq, Nk, H, D, causal, sc);
    assertClose(`attention ${[B, Nq, Nk, H, D, causal]}`, o, want, 2e-5, 2e-6);
  }
});

forEachIsa("bmm matches a float64 product (trans_b, alpha, several blocks)", async (b) => {
  const r = rng(2);
  for (
    const [B, M, K, N, tb, alpha] of [
      [2, 33, 70, 45, 0, 1],
      [2, 33, 70, 45, 1, 0.5],
      [1, 3, 300, 1100, 0, 2],
      [
        1,
        37,
        260,
        300,
        1,
        1,
      ],
      [3, 1, 1, 1, 0, 1],
      [1, 5, 17, 9, 1, -1],
    ]
  ) {
    const a = randn(r, B * M * K), bb = randn(r, B * K * N);
    const [y] = await runOp(
      b,
      SDF_OP.BMM,
      [{ dims: [B, M, K], data: a }, { dims: tb ? [B, N, K] : [B, K, N], data: bb }],
      [[B, M, N]],
      [tb],
      [alpha],
    );
    const want = new Float64Array(B * M * N);
    for (let z = 0; z < B; z++) {
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let acc = 0;
          for (let l = 0; l < K; l++) {
            acc += a[(z * M + i) * K + l] * (tb ? bb[(z * N + j) * K + l] : bb[(z * K + l) * N + j]);
          }
          want[(z * M + i) * N + j] = alpha * acc;
        }
      }
    }
    assertClose(`bmm ${[B, M, K, N, tb, alpha]}`, y, want, 1e-5, 1e-6 * K);
  }
});

// ---- norms and softmax -----------------------------------------------------------

forEachIsa("group_norm (+SiLU) matches float64, including large means", async (b) => {
  const r = rng(3);
  for (
    const [dims, g, silu, offset] of [[[2, 32, 5, 7], 8, 0, 0], [[2, 32, 5, 7], 8, 1, 40], [[1, 64, 9, 9], 32, 1, -3], [
      [2, 6, 10],
      3,
      0,
      0,
    ], [[1, 4, 33, 1], 1, 0, 100]] as [number[], number, number, number][]
  ) {
    const n = prod(dims), C = dims[1], S = n / dims[0] / C, cpg = C / g;
    const x = randn(r, n, offset - 2, offset + 2);
    const gamma = randn(r, C, 0.5, 1.5), beta = randn(r, C, -0.5, 0.5);
    const eps = 1e-5;
    const [y] = await runOp(
      b,
      SDF_OP.GROUP_NORM,
      [{ dims, data: x }, { dims: [C], data: gamma }, { dims: [C], data: beta }],
      [dims],
      [g, silu],
      [eps],
    );
    const want = new Float64Array(n);
    for (let s = 0; s < dims[0]; s++) {
      for (let gi = 0; gi < g; gi++) {
        const base = (s * C + gi * cpg) * S, cnt = cpg * S;
        let mean = 0, v = 0;
        for (let i = 0; i < cnt; i++) mean += x[base + i];
        mean /= cnt;
        for (let i = 0; i < cnt; i++) v += (x[base + i] - mean) ** 2;
        const rstd = 1 / Math.sqrt(v / cnt + eps);
        for (let i = 0; i < cnt; i++) {
          const c = gi * cpg + Math.floor(i / S);
          const t = (x[base + i] - mean) * rstd * gamma[c] + beta[c];
          want[base + i] = silu ? t * sigmoid(t) : t;
        }
      }
    }
    assertClose(`group_norm ${dims} g${g} silu${silu}`, y, want, 1e-5, 1e-5);
  }
});

forEachIsa("layer_norm matches float64", async (b) => {
  const r = rng(4);
  for (
    const [dims, offset] of [[[3, 7, 77], 0], [[5, 320], 30], [[1, 1], 0], [[2, 3, 768], -5]] as [number[], number][]
  ) {
    const n = prod(dims), C = dims[dims.length - 1];
    const x = randn(r, n, offset - 3, offset + 3), gamma = randn(r, C, 0.5, 1.5), beta = randn(r, C);
    const [y] = await runOp(
      b,
      SDF_OP.LAYER_NORM,
      [{ dims, data: x }, { dims: [C], data: gamma }, { dims: [C], data: beta }],
      [dims],
      [],
      [1e-5],
    );
    const want = new Float64Array(n);
    for (let row = 0; row < n / C; row++) {
      let mean = 0, v = 0;
      for (let i = 0; i < C; i++) mean += x[row * C + i];
      mean /= C;
      for (let i = 0; i < C; i++) v += (x[row * C + i] - mean) ** 2;
      const rstd = 1 / Math.sqrt(v / C + 1e-5);
      for (let i = 0; i < C; i++) want[row * C + i] = (x[row * C + i] - mean) * rstd * gamma[i] + beta[i];
    }
    assertClose(`layer_norm ${dims}`, y, want, 1e-5, 1e-5);
  }
});

forEachIsa("softmax matches float64 (scale, large logits, odd widths)", async (b) => {
  const r = rng(5);
  for (
    const [dims, scale, range] of [[[6, 77], 1, 5], [[3, 4096], 0.125, 50], [[2, 2, 17], 2, 40], [[1, 1], 1, 1]] as [
      number[],
      number,
      number,
    ][]
  ) {
    const n = prod(dims), C = dims[dims.length - 1];
    const x = randn(r, n, -range, range);
    const [y] = await runOp(b, SDF_OP.SOFTMAX, [{ dims, data: x }], [dims], [], [scale]);
    const want = new Float64Array(n);
    for (let row = 0; row < n / C; row++) {
      let m = -Infinity, s = 0;
      for (let i = 0; i < C; i++) m = Math.max(m, x[row * C + i] * scale);
      for (let i = 0; i < C; i++) s += Math.exp(x[row * C + i] * scale - m);
      for (let i = 0; i < C; i++) want[row * C + i] = Math.exp(x[row * C + i] * scale - m) / s;
    }
    assertClose(`softmax ${dims} scale ${scale}`, y, want, 1e-5, 1e-9);
  }
});

// ---- elementwise -------------------------------------------------------------------

forEachIsa("unary: every kind matches float64 (incl. tails and extreme inputs)", async (b) => {
  const r = rng(6);
  const x = new Float32Array([...randn(r, 1000, -10, 10), 0, -0, 100, -100, 30, -30, 1e-3, -1e-3, 88, -88, 5, -5, 3]);
  for (const [kind, code] of Object.entries(SDF_UNARY)) {
    const [y] = await runOp(b, SDF_OP.UNARY, [{ dims: [x.length], data: x }], [[x.length]], [code]);
    const ref = UNARY_REF[kind as keyof typeof SDF_UNARY];
    assertClose(`unary ${kind}`, y, Array.from(x, ref), 1e-5, 1e-6);
  }
});

forEachIsa("geglu matches x[:C] * gelu(x[C:])", async (b) => {
  const r = rng(7);
  const C = 45, rows = 6;
  const x = randn(r, rows * 2 * C, -4, 4);
  const [y] = await runOp(b, SDF_OP.GEGLU, [{ dims: [2, 3, 2 * C], data: x }], [[2, 3, C]]);
  const want = new Float64Array(rows * C);
  for (let i = 0; i < rows; i++) {
    for (let c = 0; c < C; c++) want[i * C + c] = x[i * 2 * C + c] * gelu(x[i * 2 * C + C + c]);
  }
  assertClose("geglu", y, want, 1e-5, 1e-6);
});

forEachIsa("binary broadcasting (same shape, per-channel, trailing, both sides, 6-d) is exact", async (b) => {
  const r = rng(8);
  const cases: [number[], number[], number[]][] = [
    [[3, 4, 5], [3, 4, 5], [3, 4, 5]],
    [[2, 3, 4, 5], [1, 3, 1, 1], [2, 3, 4, 5]],
    [[2, 7, 9], [9], [2, 7, 9]],
    [[4, 1, 6], [1, 5, 1], [4, 5, 6]],
    [[1], [3, 2], [3, 2]],
    [[5, 1], [5, 8], [5, 8]],
    [[2, 1, 3, 1, 2, 2], [1, 2, 1, 2, 1, 2], [2, 2, 3, 2, 2, 2]],
    [[2, 3, 1], [2, 3, 1], [2, 3, 1]],
  ];
  for (const [da, db, dy] of cases) {
    const a = randn(r, prod(da), -3, 3), bv = randn(r, prod(db), 0.5, 3);
    for (const [kind, code] of Object.entries(SDF_BINARY)) {
      const [y] = await runOp(b, SDF_OP.BINARY, [{ dims: da, data: a }, { dims: db, data: bv }], [dy], [code]);
      const want = new Float32Array(prod(dy));
      const idx = new Array(dy.length).fill(0);
      const at = (d: number[], i: number[]) => {
        let off = 0;
        for (let k = 0; k < d.length; k++) off = off * d[k] + (d[k] === 1 ? 0 : i[dy.length - d.length + k]);
        return off;
      };
      for (let e = 0; e < want.length; e++) {
        let rem = e;
        for (let k = dy.length - 1; k >= 0; k--) {
          idx[k] = rem % dy[k];
          rem = Math.floor(rem / dy[k]);
        }
        const va = a[at(da, idx)], vb = bv[at(db, idx)];
        want[e] = kind === "add" ? va + vb : kind === "sub" ? va - vb : kind === "mul" ? va * vb : va / vb;
      }
      assert.deepStrictEqual(y, want, `binary ${kind} ${da} ${db}`);
    }
  }
});

forEachIsa("scale: y = x * f0 + f1", async (b) => {
  const x = randn(rng(9), 1001, -5, 5);
  const [y] = await runOp(b, SDF_OP.SCALE, [{ dims: [7, 11, 13], data: x }], [[1001]], [], [0.18215, -0.5]);
  const s = Math.fround(0.18215), t = Math.fround(-0.5);
  assertClose("scale", y, Array.from(x, (v) => Math.fround(Math.fround(v * s) + t)), 1e-7, 0);
});

// ---- layout ------------------------------------------------------------------------

forEachIsa("concat (any axis, 3 inputs), slice, permute, upsample are exact", async (b) => {
  const r = rng(10);
  // concat [2,3,4] + [2,5,4] + [2,1,4] on axis 1; and on axes 0 / -1
  for (
    const [axis, shapes] of [[1, [[2, 3, 4], [2, 5, 4], [2, 1, 4]]], [0, [[1, 3], [2, 3]]], [-1, [[2, 2, 3], [
      2,
      2,
      1,
    ]]]] as [
      number,
      number[][],
    ][]
  ) {
    const datas = shapes.map((s) => randn(r, prod(s)));
    const ax = axis < 0 ? shapes[0].length + axis : axis;
    const out = [...shapes[0]];
    out[ax] = shapes.reduce((s, d) => s + d[ax], 0);
    const [y] = await runOp(b, SDF_OP.CONCAT, shapes.map((dims, i) => ({ dims, data: datas[i] })), [out], [axis]);
    const outer = prod(out.slice(0, ax));
    const want: number[] = [];
    for (let o = 0; o < outer; o++) {
      shapes.forEach((s, i) => {
        const part = prod(s.slice(ax));
        want.push(...datas[i].subarray(o * part, (o + 1) * part));
      });
    }
    assert.deepStrictEqual(Array.from(y), want, `concat axis ${axis}`);
  }
  // slice
  const x = randn(r, 3 * 10 * 4);
  for (const [axis, start, len] of [[1, 3, 5], [0, 1, 2], [2, 0, 1], [-1, 2, 2]]) {
    const dims = [3, 10, 4];
    const ax = axis < 0 ? 3 + axis : axis;
    const od = [...dims];
    od[ax] = len;
    const [y] = await runOp(b, SDF_OP.SLICE, [{ dims, data: x }], [od], [axis, start]);
    const want: number[] = [];
    for (let i = 0; i < od[0]; i++) {
      for (let j = 0; j < od[1]; j++) {
        for (let k = 0; k < od[2]; k++) {
          const c = [i, j, k];
          c[ax] += start;
          want.push(x[(c[0] * 10 + c[1]) * 4 + c[2]]);
        }
      }
    }
    assert.deepStrictEqual(Array.from(y), want, `slice ${axis} ${start} ${len}`);
  }
  // permute
  const pd = [2, 3, 4, 5];
  const px = randn(r, prod(pd));
  for (const perm of [[0, 2, 1, 3], [3, 1, 0, 2], [0, 1, 2, 3], [1, 0, 3, 2]]) {
    const od = perm.map((p) => pd[p]);
    const [y] = await runOp(b, SDF_OP.PERMUTE, [{ dims: pd, data: px }], [od], perm);
    const want = new Float32Array(prod(od));
    const strides = [60, 20, 5, 1];
    let e = 0;
    for (let i0 = 0; i0 < od[0]; i0++) {
      for (let i1 = 0; i1 < od[1]; i1++) {
        for (let i2 = 0; i2 < od[2]; i2++) {
          for (let i3 = 0; i3 < od[3]; i3++) {
            const ii = [i0, i1, i2, i3];
            want[e++] = px[ii.reduce((s, v, k) => s + v * strides[perm[k]], 0)];
          }
        }
      }
    }
    assert.deepStrictEqual(y, want, `permute ${perm}`);
  }
  // upsample nearest
  for (const s of [2, 3, 1]) {
    const ud = [2, 3, 4, 5];
    const ux = randn(r, prod(ud));
    const [y] = await runOp(b, SDF_OP.UPSAMPLE_NEAREST, [{ dims: ud, data: ux }], [[2, 3, 4 * s, 5 * s]], [s]);
    const want = new Float32Array(y.length);
    for (let p = 0; p < 6; p++) {
      for (let i = 0; i < 4 * s; i++) {
        for (let j = 0; j < 5 * s; j++) {
          want[(p * 4 * s + i) * 5 * s + j] = ux[(p * 4 + Math.floor(i / s)) * 5 + Math.floor(j / s)];
        }
      }
    }
    assert.deepStrictEqual(y, want, `upsample x${s}`);
  }
});

// ---- conversions -------------------------------------------------------------------

forEachIsa("copy converts every f16 and bf16 bit pattern (subnormals, inf, nan) and i32 exactly", async (b) => {
  const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const [h] = await runOp(b, SDF_OP.COPY, [{ dims: [256, 256], dtype: "f16", data: bits }], [[65536]]);
  for (let i = 0; i < 65536; i++) {
    const want = f16BitsToF32(i);
    if (!(Object.is(h[i], want) || (Number.isNaN(want) && Number.isNaN(h[i])))) {
      throw new Error(`f16 0x${i.toString(16)}: got ${h[i]}, want ${want}`);
    }
  }
  const [bf] = await runOp(b, SDF_OP.COPY, [{ dims: [65536], dtype: "bf16", data: bits }], [[65536]]);
  const u = new Uint32Array(bf.buffer);
  for (let i = 0; i < 65536; i++) assert.strictEqual(u[i], i << 16 >>> 0, `bf16 0x${i.toString(16)}`);
  const ints = new Int32Array([0, 1, -1, 2 ** 24 + 1, -(2 ** 31), 2 ** 31 - 1, 12345]);
  const [fi] = await runOp(b, SDF_OP.COPY, [{ dims: [7], data: ints }], [[7]]);
  assert.deepStrictEqual(Array.from(fi), Array.from(ints, (v) => Math.fround(v)));
});

forEachIsa("gather_rows from f32, f16 and bf16 tables", async (b) => {
  const r = rng(12);
  const V = 50, D = 13;
  const tab = randn(r, V * D, -4, 4);
  const idx = Int32Array.from({ length: 12 }, () => Math.floor(r() * V));
  idx[0] = 0;
  idx[1] = V - 1;
  const tables: [string, Float32Array | Uint16Array, (i: number) => number][] = [
    ["f32", tab, (i) => tab[i]],
    ["f16", Uint16Array.from(tab, f32ToF16Bits), (i) => f16BitsToF32(f32ToF16Bits(tab[i]))],
    [
      "bf16",
      Uint16Array.from(tab, f32ToBf16Bits),
      (i) => bf16BitsToF32(f32ToBf16Bits(tab[i])),
    ],
  ];
  for (const [dtype, data, val] of tables) {
    const [y] = await runOp(
      b,
      SDF_OP.GATHER_ROWS,
      [{ dims: [V, D], dtype: dtype as "f32", data }, { dims: [2, 6], data: idx }],
      [[2, 6, D]],
    );
    const want = new Float32Array(12 * D);
    for (let n = 0; n < 12; n++) for (let d = 0; d < D; d++) want[n * D + d] = val(idx[n] * D + d);
    assert.deepStrictEqual(y, want, `gather ${dtype}`);
  }
});

forEachIsa("timestep_embedding matches ldm timestep_embedding (cos|sin, flip, odd dim)", async (b) => {
  const t = new Float32Array([0, 1, 999, 500.5, 37]);
  for (const [dim, flip, maxPeriod] of [[320, 0, 10000], [320, 1, 10000], [7, 0, 10000], [64, 1, 100]]) {
    const [y] = await runOp(
      b,
      SDF_OP.TIMESTEP_EMBEDDING,
      [{ dims: [5], data: t }],
      [[5, dim]],
      [dim, flip],
      [maxPeriod],
    );
    const half = Math.floor(dim / 2);
    const want = new Float64Array(5 * dim);
    for (let n = 0; n < 5; n++) {
      for (let i = 0; i < half; i++) {
        const arg = t[n] * Math.exp(-Math.log(maxPeriod) * i / half);
        want[n * dim + i] = flip ? Math.sin(arg) : Math.cos(arg);
        want[n * dim + half + i] = flip ? Math.cos(arg) : Math.sin(arg);
      }
    }
    assertClose(`timestep_embedding ${dim} flip ${flip}`, y, want, 1e-6, 1e-6);
  }
});

// ---- executor -----------------------------------------------------------------------

/** A plan mixing independent and dependent ops; returns every output region. */
async function mixedPlan(b: Backend): Promise<Float32Array> {
  const r = rng(13);
  const w = new PlanWriter(1);
  const F = SDF_DTYPE.f32;
  let at = 0;
  const t = (dims: number[]) => {
    const i = w.tensor(0, F, at, dims);
    at += prod(dims) * 4;
    return i;
  };
  const x = t([1, 96, 160]), q = t([1, 96, 160]);
  const gamma = t([96]), beta = t([96]);
  const inputsEnd = at;
  const gn = t([1, 96, 160]);
  const att = t([1, 96, 160]);
  const op0 = w.op(SDF_OP.GROUP_NORM, [x, gamma, beta], [gn], [32, 1], [1e-5]);
  const op1 = w.op(SDF_OP.ATTENTION, [q, gn, gn], [att], [2, 0], [], [op0]);
  const many: number[] = [];
  const outs: number[] = [];
  for (let i = 0; i < 24; i++) {
    const o = t([1, 96, 160]);
    outs.push(o);
    many.push(w.op(SDF_OP.SOFTMAX, [i % 2 ? att : x], [o], [], [0.5 + i / 8], i % 2 ? [op1] : []));
  }
  let acc = outs[0], last = many[0];
  for (let i = 1; i < 24; i++) {
    const s = t([1, 96, 160]);
    last = w.op(SDF_OP.BINARY, [acc, outs[i]], [s], [SDF_BINARY.add], [], [last, many[i]]);
    acc = s;
  }
  const y = t([1, 96, 96]);
  w.op(SDF_OP.BMM, [acc, att], [y], [1], [0.25], [last, op1]);
  const plan = b.compile(w.finish());
  const buf = b.alloc(at);
  try {
    buf.write(0, randn(r, inputsEnd / 4));
    await plan.run([buf]);
    await plan.run([buf]); // a second run of the same plan gives the same bytes
    assert.strictEqual(plan.progress(), plan.nOps);
    return buf.readInto(inputsEnd, new Float32Array((at - inputsEnd) / 4));
  } finally {
    plan.free();
    buf.free();
  }
}

Deno.test("threads 1 and 2 give bit-identical results; the ready queue runs a wide DAG", async (t) => {
  for (const isa of ISAS) {
    await t.step(isa, async () => {
      const one = await mixedPlan(await be(isa, 1));
      const two = await mixedPlan(await be(isa, 2));
      assert.strictEqual(one.length, two.length);
      assert.ok(one.every((v, i) => Object.is(v, two[i])), "threads 1 vs 2 differ");
      assert.ok(one.every(Number.isFinite));
    });
  }
  // The OpenCL backend maps the same DAG to events on its queue: each op waits only for its dependencies.
  await t.step("opencl", async () => {
    if (!opencl.backend) return console.log(`ignored (${opencl.why})`);
    const got = await mixedPlan(opencl.backend);
    const want = await mixedPlan(await be(ISAS[ISAS.length - 1], 2));
    // group_norm -> attention -> 24 softmaxes summed -> bmm over K = 160: f32 rounding of two implementations
    assertClose("mixed DAG opencl vs cpu", got, want, 1e-4, 1e-6);
  });
});
