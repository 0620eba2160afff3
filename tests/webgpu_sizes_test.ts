/**
 * WebGPU at SD 1.5's real sizes, where the op fixtures (a few keys each) do not reach: attention over
 * hundreds to a thousand keys. On lavapipe (Mesa's llvmpipe) a shader invocation stops every loop once
 * 65535 loop iterations have run in total, silently; a one-dispatch flash-attention kernel runs about
 * 2·D per key, so the VAE's mid-block attention (D = 512) broke from 64 keys on and the UNet's 32x32
 * self-attention (D = 40, 1024 keys) too: rel. error ~1 where the CPU agrees to 1e-7. The kernels now
 * split the keys into dispatches that each stay within the budget (backends/webgpu/wgsl.ts LOOP_BUDGET).
 *
 * Each case runs on both WebGPU kernel families (register kernels, as CPU-emulated adapters use, and
 * workgroup-memory tiles) against a float64 reference, with the op suite's attention bound
 * (|got - want| <= 1e-5 * max|want|, tests/ops_test.ts). Only a few query rows of each shape run (rows are
 * independent), so the cases take seconds on lavapipe. Ignored (with the reason) where there is no adapter.
 */

import { assert } from "./assert.ts";
import { type Backend, loadBackend } from "../backends/mod.ts";
import { compile, Graph } from "../engine/mod.ts";
import { randn, rng } from "../backends/test_helpers.ts";

const REL_BOUND = 1e-5;

const families: { name: string; backend?: Backend; why?: string }[] = [];
for (const [name, gemm] of [["registers", "registers"], ["tiled", "tiled"]] as const) {
  const backend = await loadBackend("webgpu", { webgpu: { gemm } }).catch((e: Error) => e.message);
  families.push(typeof backend === "string" ? { name, why: backend } : { name, backend });
}

interface Case {
  what: string;
  batch: number;
  nq: number;
  nk: number;
  heads: number;
  d: number;
  causal?: boolean;
}

const CASES: Case[] = [
  { what: "VAE mid-block attention at a 32x32 latent (1 head, D 512)", batch: 1, nq: 16, nk: 1024, heads: 1, d: 512 },
  { what: "VAE mid-block attention at an 8x8 latent (64 keys)", batch: 1, nq: 64, nk: 64, heads: 1, d: 512 },
  { what: "UNet self-attention at a 32x32 latent (8 heads, D 40)", batch: 2, nq: 8, nk: 1024, heads: 8, d: 40 },
  { what: "UNet self-attention at a 16x16 latent (8 heads, D 80)", batch: 1, nq: 8, nk: 256, heads: 8, d: 80 },
  {
    what: "causal, queries spanning several key chunks (2 heads, D 64)",
    batch: 1,
    nq: 600,
    nk: 600,
    heads: 2,
    d: 64,
    causal: true,
  },
];

/** softmax(scale q kᵀ [causal]) v per head, in float64. */
function attentionF64(c: Case, q: Float32Array, k: Float32Array, v: Float32Array): Float64Array {
  const { batch, nq, nk, heads, d } = c;
  const row = heads * d;
  const scale = 1 / Math.sqrt(d);
  const out = new Float64Array(batch * nq * row);
  const s = new Float64Array(nk);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < nq; i++) {
        const qo = (b * nq + i) * row + h * d;
        const n = c.causal ? Math.min(nk, i + 1) : nk;
        let mx = -Infinity;
        for (let j = 0; j < n; j++) {
          const ko = (b * nk + j) * row + h * d;
          let dot = 0;
          for (let e = 0; e < d; e++) dot += q[qo + e] * k[ko + e];
          s[j] = dot * scale;
          mx = Math.max(mx, s[j]);
        }
        let sum = 0;
        for (let j = 0; j < n; j++) sum += s[j] = Math.exp(s[j] - mx);
        for (let j = 0; j < n; j++) {
          const vo = (b * nk + j) * row + h * d;
          const w = s[j] / sum;
          for (let e = 0; e < d; e++) out[qo + e] += w * v[vo + e];
        }
      }
    }
  }
  return out;
}

for (const { name, backend, why } of families) {
  Deno.test({
    name: `webgpu (${name}) attention at SD 1.5 sizes matches float64${why ? ` (ignored: ${why})` : ""}`,
    ignore: !backend,
    async fn(t) {
      for (const c of CASES) {
        await t.step(`${c.what}: [${c.batch}, ${c.nq}|${c.nk}, ${c.heads}x${c.d}]`, async () => {
          const r = rng(c.nq * 7919 + c.nk * 31 + c.d);
          const row = c.heads * c.d;
          // Scores of a few units (N(0,1)-like q and k, scaled by 1/sqrt(D)): the softmax is neither flat nor one-hot.
          const q = randn(r, c.batch * c.nq * row, -1.7, 1.7);
          const k = randn(r, c.batch * c.nk * row, -1.7, 1.7);
          const v = randn(r, c.batch * c.nk * row);
          const g = new Graph();
          const [tq, tk, tv] = [["q", c.nq], ["k", c.nk], ["v", c.nk]].map(([n, len]) =>
            g.input(n as string, [c.batch, len as number, row])
          );
          g.output("y", g.attention(tq, tk, tv, { heads: c.heads, causal: c.causal }));
          const program = compile(g, backend!);
          try {
            const got = (await program.run({ q, k, v })).y;
            const want = attentionF64(c, q, k, v);
            let ref = 0, err = 0;
            for (let i = 0; i < want.length; i++) {
              ref = Math.max(ref, Math.abs(want[i]));
              err = Math.max(err, Math.abs(got[i] - want[i]));
            }
            assert(err <= REL_BOUND * ref, `max |diff| ${err.toExponential(2)} > ${REL_BOUND} x max|want| ${ref}`);
          } finally {
            program.dispose();
          }
        });
      }
    },
  });
}
