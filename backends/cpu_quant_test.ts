/**
 * The CPU backend's block-quantized weights (q4_0, q4_1, q5_0, q5_1, q8_0), under every ISA this CPU
 * has, 2 threads, on random blocks whose scales include the f16 edge values (0, -0, subnormals,
 * ±65504) and whose quants cover every code:
 *
 *  - COPY and GATHER_ROWS dequantize bit-exactly: compared with a reference written here straight
 *    from ggml's formulas (one f32 product, one f32 add; no fused multiply-add); the K-quants (q2_K..q6_K,
 *    256-element super-blocks) too; and COPY of every format equals ggml's own dequantize_row_* on the
 *    fixtures of models/weights/testdata/ggml_dequant/ (made with ggml);
 *  - MATMUL, CONV2D (im2col and direct), WINO_FILTER and fused WINO_GEMM with a quantized weight
 *    give bit-identical results to the same op on the dequantized weight stored as f32 (the packers
 *    and filter transforms widen to the same floats, then run the same f32 kernels), and MATMUL is
 *    also within 2e-5 * sum_k |x_k w_k| of a float64 reference;
 *  - prepare() refuses quantized rows that are not whole blocks, and layout ops on quantized tensors.
 */

import assert from "node:assert";
import {
  loadNativeBackend as loadBackend,
  type NativeBackend as Backend,
  PlanWriter,
  SDF_DTYPE,
  SDF_OP,
} from "./mod.ts";
import { assertBackendError, randn, rng } from "./test_helpers.ts";
import { f16BitsToF32 } from "./float16.ts";

const ALL = ["scalar", "avx2", "avx512"] as const;
type Isa = typeof ALL[number];
type Q = "q4_0" | "q4_1" | "q5_0" | "q5_1" | "q8_0";
type K = "q2_k" | "q3_k" | "q4_k" | "q5_k" | "q6_k";
const FORMATS: Q[] = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"];
const K_FORMATS: K[] = ["q2_k", "q3_k", "q4_k", "q5_k", "q6_k"];
const BLOCK_BYTES: Record<Q | K, number> = {
  q4_0: 18,
  q4_1: 20,
  q5_0: 22,
  q5_1: 24,
  q8_0: 34,
  q2_k: 84,
  q3_k: 110,
  q4_k: 144,
  q5_k: 176,
  q6_k: 210,
};
/** Where each K-quant keeps its f16 super-scale (and minimum scale). */
const K_SCALES: Record<K, number[]> = { q2_k: [80, 82], q3_k: [108], q4_k: [0, 2], q5_k: [0, 2], q6_k: [208] };

const probe = await loadBackend("cpu", { threads: 2 });
const ISAS: Isa[] = ALL.filter((i) => probe.info.isas.includes(i));
const backends = new Map<Isa, Backend>();
async function be(isa: Isa): Promise<Backend> {
  let b = backends.get(isa);
  if (!b) backends.set(isa, b = await loadBackend("cpu", { threads: 2, isa }));
  return b;
}

// ---- random blocks and the reference dequantization ------------------------------------------

const EDGE_SCALES = [0x0000, 0x8000, 0x0001, 0x83ff, 0x7bff, 0xfbff, 0x3c00, 0x0400];

/** nb random blocks of `q`; scales (and minimums) finite f16, every 16th block an edge value. */
function randomBlocks(q: Q, nb: number, seed: number): Uint8Array {
  const r = rng(seed);
  const bs = BLOCK_BYTES[q];
  const out = new Uint8Array(nb * bs);
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(r() * 256);
  const finite = (h: number) => ((h & 0x7c00) === 0x7c00 ? h & 0xbfff : h);
  for (let b = 0; b < nb; b++) {
    for (const at of q === "q4_1" || q === "q5_1" ? [0, 2] : [0]) {
      // Mostly modest scales (so products stay meaningful), some edge values, some raw random bits.
      const k = Math.floor(r() * 16);
      const h = k === 0
        ? EDGE_SCALES[Math.floor(r() * EDGE_SCALES.length)]
        : k === 1
        ? finite(out[b * bs + at] | (out[b * bs + at + 1] << 8))
        : (Math.floor(r() * 0x0c00) + 0x1c00) | (r() < 0.5 ? 0x8000 : 0);
      out[b * bs + at] = h & 0xff;
      out[b * bs + at + 1] = h >>> 8;
    }
  }
  return out;
}

/** ggml's dequantization formulas, element by element. */
function refDequant(q: Q, blocks: Uint8Array, n: number): Float32Array {
  const f = Math.fround, bs = BLOCK_BYTES[q];
  const half = (o: number) => f16BitsToF32(blocks[o] | (blocks[o + 1] << 8));
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const b = Math.floor(i / 32) * bs, j = i % 32, lowHalf = j < 16, jj = j % 16;
    const d = half(b);
    const nib = (o: number) => (lowHalf ? blocks[o + jj] & 15 : blocks[o + jj] >> 4);
    const bit5 = (o: number) => (((blocks[o + (j >> 3)] >> (j & 7)) & 1) << 4); // bit j of the u32 qh
    switch (q) {
      case "q8_0":
        y[i] = f(((blocks[b + 2 + j] ^ 0x80) - 0x80) * d);
        break;
      case "q4_0":
        y[i] = f((nib(b + 2) - 8) * d);
        break;
      case "q4_1":
        y[i] = f(f(nib(b + 4) * d) + half(b + 2));
        break;
      case "q5_0":
        y[i] = f(((nib(b + 6) | bit5(b + 2)) - 16) * d);
        break;
      case "q5_1":
        y[i] = f(f((nib(b + 8) | bit5(b + 4)) * d) + half(b + 2));
        break;
    }
  }
  return y;
}

/** nb random K-quant blocks: random bytes, super-scales set to modest finite f16 values. */
function randomKBlocks(k: K, nb: number, seed: number): Uint8Array {
  const r = rng(seed);
  const bs = BLOCK_BYTES[k];
  const out = new Uint8Array(nb * bs);
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(r() * 256);
  for (let b = 0; b < nb; b++) {
    for (const at of K_SCALES[k]) {
      const h = b % 7 === 3
        ? EDGE_SCALES[b % EDGE_SCALES.length]
        : (Math.floor(r() * 0x0c00) + 0x1800) | (r() < 0.5 ? 0x8000 : 0);
      out[b * bs + at] = h & 0xff;
      out[b * bs + at + 1] = h >>> 8;
    }
  }
  return out;
}

/** ggml's dequantize_row_q*_K, element by element: element e of a 256-element super-block. */
function refDequantK(k: K, blocks: Uint8Array, n: number): Float32Array {
  const f = Math.fround, bs = BLOCK_BYTES[k];
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const p = Math.floor(i / 256) * bs, e = i % 256;
    const b = (o: number) => blocks[p + o];
    const half = (o: number) => f16BitsToF32(b(o) | (b(o + 1) << 8));
    if (k === "q2_k" || k === "q3_k") {
      // 2 halves of 128; in each, 4 shifts x 2 groups of 16 (one sub-scale per group)
      const nh = e >> 7,
        w = e & 127,
        j = w >> 5,
        h = (w >> 4) & 1,
        l = w & 15,
        kk = 16 * h + l,
        is = 8 * nh + 2 * j + h;
      if (k === "q2_k") {
        const q = (b(16 + 32 * nh + kk) >> (2 * j)) & 3;
        const dl = f(half(80) * (b(is) & 15)), ml = f(half(82) * (b(is) >> 4));
        y[i] = f(f(dl * q) - ml);
      } else {
        const lo = is < 8 ? b(96 + is) & 15 : b(96 + is - 8) >> 4;
        const hi = (b(104 + (is % 4)) >> (2 * Math.floor(is / 4))) & 3;
        const q = ((b(32 + 32 * nh + kk) >> (2 * j)) & 3) - ((b(kk) >> (4 * nh + j)) & 1 ? 0 : 4);
        y[i] = f(f(half(108) * ((lo | (hi << 4)) - 32)) * q);
      }
    } else if (k === "q4_k" || k === "q5_k") {
      // 4 groups of 64: the low nibbles (sub-block 2g), then the high nibbles (2g + 1), of 32 bytes
      const g = e >> 6, upper = (e >> 5) & 1, l = e & 31, is = 2 * g + upper;
      const sm = (j: number): [number, number] =>
        j < 4
          ? [b(4 + j) & 63, b(8 + j) & 63]
          : [(b(8 + j) & 15) | ((b(j) >> 6) << 4), (b(8 + j) >> 4) | ((b(4 + j) >> 6) << 4)];
      const [sc, m] = sm(is);
      const byte = b((k === "q5_k" ? 48 : 16) + 32 * g + l);
      const q = (upper ? byte >> 4 : byte & 15) + (k === "q5_k" && (b(16 + l) >> is) & 1 ? 16 : 0);
      y[i] = f(f(f(half(0) * sc) * q) - f(half(2) * m));
    } else {
      // 2 halves of 128; quarter c of a half: ql low/high nibbles of bytes l or l + 32, qh bits 2c
      const nh = e >> 7, c = (e >> 5) & 3, l = e & 31;
      const qlb = b(64 * nh + l + (c & 1 ? 32 : 0));
      const q = ((c < 2 ? qlb & 15 : qlb >> 4) | (((b(128 + 32 * nh + l) >> (2 * c)) & 3) << 4)) - 32;
      const sc = (b(192 + 8 * nh + (l >> 4) + 2 * c) << 24) >> 24;
      y[i] = f(f(half(208) * sc) * q);
    }
  }
  return y;
}

// ---- plans ----------------------------------------------------------------------------------

type Data = Float32Array | Int32Array | Uint8Array;
interface T {
  idx: number;
  at: number;
  n: number;
}

/** A plan over one buffer: tensors placed one after another, data written before the run. */
class Plan {
  readonly w = new PlanWriter(1);
  private offset = 0;
  private writes: [number, Data][] = [];
  t(dims: number[], dtype: keyof typeof SDF_DTYPE = "f32", data?: Data): T {
    const n = dims.reduce((a, b) => a * b, 1);
    const bytes = dtype.startsWith("q") ? (n / (dtype.endsWith("_k") ? 256 : 32)) * BLOCK_BYTES[dtype as Q] : n * 4;
    const at = this.offset;
    this.offset += Math.ceil(bytes / 64) * 64 + 64;
    if (data) this.writes.push([at, data]);
    return { idx: this.w.tensor(0, SDF_DTYPE[dtype], at, dims), at, n };
  }
  async run(b: Backend, outs: T[]): Promise<Float32Array[]> {
    const plan = b.compile(this.w.finish());
    const buf = b.alloc(this.offset);
    try {
      for (const [at, d] of this.writes) buf.write(at, d);
      await plan.run([buf]);
      return outs.map((o) => buf.readInto(o.at, new Float32Array(o.n)));
    } finally {
      plan.free();
      buf.free();
    }
  }
}

function forEachIsa(name: string, fn: (b: Backend) => Promise<void>): void {
  Deno.test(name, async (t) => {
    for (const isa of ISAS) await t.step(isa, async () => fn(await be(isa)));
  });
}

function assertBitEqual(got: Float32Array, want: Float32Array, what: string): void {
  assert.strictEqual(got.length, want.length, `${what}: length`);
  const gi = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const wi = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < got.length; i++) {
    // NaN is never produced here (finite scales); compare bits so -0 and 0 differ too.
    if (gi[i] !== wi[i]) assert.fail(`${what}: element ${i} is ${got[i]}, want ${want[i]}`);
  }
}

// ---- tests ------------------------------------------------------------------------------------

forEachIsa("COPY and GATHER_ROWS dequantize every format bit-exactly (ggml's formulas)", async (b) => {
  for (const [k, q] of FORMATS.entries()) {
    const n = 32 * 203;
    const blocks = randomBlocks(q, n / 32, 11 + k);
    const want = refDequant(q, blocks, n);
    const p = new Plan();
    const x = p.t([203, 32], q, blocks), y = p.t([203, 32]);
    p.w.op(SDF_OP.COPY, [x.idx], [y.idx], [], [], []);
    const [got] = await p.run(b, [y]);
    assertBitEqual(got, want, `copy ${q}`);

    // an embedding table [V=29, D=224]: rows start mid-way through the flattened blocks' runs
    const V = 29, D = 224, idx = new Int32Array([28, 0, 5, 5, 17, 3]);
    const tb = randomBlocks(q, (V * D) / 32, 21 + k);
    const tw = refDequant(q, tb, V * D);
    const g = new Plan();
    const tab = g.t([V, D], q, tb), ix = g.t([idx.length], "i32", idx), gy = g.t([idx.length, D]);
    g.w.op(SDF_OP.GATHER_ROWS, [tab.idx, ix.idx], [gy.idx], [], [], []);
    const [rows] = await g.run(b, [gy]);
    const wantRows = new Float32Array(idx.length * D);
    idx.forEach((r, i) => wantRows.set(tw.subarray(r * D, (r + 1) * D), i * D));
    assertBitEqual(rows, wantRows, `gather_rows ${q}`);
  }
});

forEachIsa("K-quants: COPY bit-exact (ggml's formulas), MATMUL = MATMUL on the f32 dequantization", async (b) => {
  const r = rng(77);
  for (const [i, k] of K_FORMATS.entries()) {
    const n = 256 * 13;
    const blocks = randomKBlocks(k, n / 256, 90 + i);
    const want = refDequantK(k, blocks, n);
    const p = new Plan();
    const x = p.t([13, 256], k, blocks), y = p.t([13, 256]);
    p.w.op(SDF_OP.COPY, [x.idx], [y.idx], [], [], []);
    assertBitEqual((await p.run(b, [y]))[0], want, `copy ${k}`);

    const M = 5, N = 19, K = 512;
    const xs = randn(r, M * K);
    const wq = randomKBlocks(k, (N * K) / 256, 190 + i);
    const outs: Float32Array[] = [];
    for (const [dt, data] of [[k, wq], ["f32", refDequantK(k, wq, N * K)]] as const) {
      const m = new Plan();
      const xt = m.t([M, K], "f32", xs), wt = m.t([N, K], dt, data), yt = m.t([M, N]);
      m.w.op(SDF_OP.MATMUL, [xt.idx, wt.idx], [yt.idx], [], [], []);
      outs.push((await m.run(b, [yt]))[0]);
    }
    assertBitEqual(outs[0], outs[1], `matmul ${k}`);
  }
});

forEachIsa("COPY of every format = ggml's own dequantize_row_* (fixtures made with ggml)", async (b) => {
  const dir = new URL("../models/weights/testdata/ggml_dequant/", import.meta.url);
  for (const q of [...FORMATS, ...K_FORMATS]) {
    const blocks = await Deno.readFile(new URL(`${q}.blocks`, dir));
    const bytes = await Deno.readFile(new URL(`${q}.f32`, dir));
    const want = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    const p = new Plan();
    const x = p.t([want.length], q, blocks), y = p.t([want.length]);
    p.w.op(SDF_OP.COPY, [x.idx], [y.idx], [], [], []);
    assertBitEqual((await p.run(b, [y]))[0], want, `copy ${q} vs ggml`);
  }
});

forEachIsa("MATMUL with a quantized weight = MATMUL on its f32 dequantization (bit-identical)", async (b) => {
  const r = rng(5);
  for (const [k, q] of FORMATS.entries()) {
    // K spans several GEMM k-blocks and a partial one; N has a narrow last panel.
    for (const [M, N, K] of [[7, 37, 96], [33, 50, 1088]]) {
      const x = randn(r, M * K);
      const wq = randomBlocks(q, (N * K) / 32, 31 + k * 7 + K);
      const wf = refDequant(q, wq, N * K);
      const bias = randn(r, N);
      const outs: Float32Array[] = [];
      for (const [dt, data] of [[q, wq], ["f32", wf]] as const) {
        const p = new Plan();
        const xt = p.t([M, K], "f32", x), wt = p.t([N, K], dt, data), bt = p.t([N], "f32", bias), y = p.t([M, N]);
        p.w.op(SDF_OP.MATMUL, [xt.idx, wt.idx, bt.idx], [y.idx], [], [], []);
        outs.push((await p.run(b, [y]))[0]);
      }
      assertBitEqual(outs[0], outs[1], `matmul ${q} ${M}x${N}x${K}`);
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let s = bias[j], mag = Math.abs(bias[j]);
          for (let kk = 0; kk < K; kk++) {
            s += x[i * K + kk] * wf[j * K + kk];
            mag += Math.abs(x[i * K + kk] * wf[j * K + kk]);
          }
          const err = Math.abs(outs[0][i * N + j] - s);
          if (!(err <= 2e-5 * mag)) assert.fail(`matmul ${q} [${i},${j}]: ${outs[0][i * N + j]} vs ${s}`);
        }
      }
    }
  }
});

forEachIsa(
  "CONV2D (im2col, direct) and Winograd with a quantized weight = the same on f32 (bit-identical)",
  async (b) => {
    const r = rng(9);
    const N = 1, Ci = 32, Co = 13, H = 9, W = 11;
    const x = randn(r, N * Ci * H * W);
    for (const [k, q] of FORMATS.entries()) {
      const wq = randomBlocks(q, (Co * Ci * 9) / 32, 41 + k);
      // modest weights so Winograd sums stay well scaled
      const wf = refDequant(q, wq, Co * Ci * 9);
      for (const algo of [1, 2]) {
        const outs: Float32Array[] = [];
        for (const [dt, data] of [[q, wq], ["f32", wf]] as const) {
          const p = new Plan();
          const xt = p.t([N, Ci, H, W], "f32", x), wt = p.t([Co, Ci, 3, 3], dt, data), y = p.t([N, Co, H, W]);
          p.w.op(SDF_OP.CONV2D, [xt.idx, wt.idx], [y.idx], [1, 1, 1, 1, algo], [], []);
          outs.push((await p.run(b, [y]))[0]);
        }
        assertBitEqual(outs[0], outs[1], `conv2d algo ${algo} ${q}`);
      }
      for (const m of [2, 4, 6]) {
        const A = m + 2, T = 19;
        const v = randn(r, A * A * Ci * T);
        const outs: Float32Array[][] = [];
        for (const [dt, data] of [[q, wq], ["f32", wf]] as const) {
          const p = new Plan();
          const wt = p.t([Co, Ci, 3, 3], dt, data), u = p.t([A * A, Co, Ci]);
          const vt = p.t([A * A, Ci, T], "f32", v), mm = p.t([A * A, Co, T]);
          p.w.op(SDF_OP.WINO_FILTER, [wt.idx], [u.idx], [m], [], []);
          p.w.op(SDF_OP.WINO_GEMM, [wt.idx, vt.idx], [mm.idx], [m, 1], [], []);
          outs.push(await p.run(b, [u, mm]));
        }
        assertBitEqual(outs[0][0], outs[1][0], `wino_filter m=${m} ${q}`);
        assertBitEqual(outs[0][1], outs[1][1], `fused wino_gemm m=${m} ${q}`);
      }
    }
  },
);

Deno.test("quantized weights: rows that are not whole blocks and layout ops are refused at compile", async () => {
  const b = await be(ISAS[ISAS.length - 1]);
  const compile = (fn: (p: Plan) => void) => () => {
    const p = new Plan();
    fn(p);
    b.compile(p.w.finish()).free();
  };
  await assertBackendError(
    compile((p) => p.w.op(SDF_OP.MATMUL, [p.t([2, 48]).idx, p.t([2, 48], "q8_0").idx], [p.t([2, 2]).idx], [], [], [])),
    /do not fill whole blocks of 32|rows of 48 do not split into blocks of 32/,
  );
  await assertBackendError(
    compile((p) => p.w.op(SDF_OP.MATMUL, [p.t([3, 48]).idx, p.t([4, 48], "q4_0").idx], [p.t([3, 4]).idx], [], [], [])),
    /MATMUL: a q4_0 weight's rows of 48 do not split into blocks of 32/,
  );
  await assertBackendError(
    compile((p) =>
      p.w.op(
        SDF_OP.CONV2D,
        [p.t([1, 4, 5, 5]).idx, p.t([32, 4, 3, 3], "q8_0").idx],
        [p.t([1, 32, 3, 3]).idx],
        [
          1,
          1,
          0,
          0,
          2,
        ],
        [],
        [],
      )
    ),
    /CONV2D: a q8_0 weight's rows \(Ci\*KH\*KW = 36\) do not split into blocks of 32/,
  );
  await assertBackendError(
    compile((p) => p.w.op(SDF_OP.PERMUTE, [p.t([32, 2], "q8_0").idx], [p.t([2, 32], "q8_0").idx], [1, 0], [], [])),
    /permute: input 0 is q8_0; layout ops take element dtypes only/,
  );
});
