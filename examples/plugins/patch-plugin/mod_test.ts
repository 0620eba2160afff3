/**
 * The example patch plugin, through a graph's "plugins" list, on the tiny random checkpoint: its
 * rank-1 patch changes the sampled latent, merged and run-time application agree (bound: max
 * |Δ| ≤ 1e-3 of latents of size ~1; merging rounds the f16 weights once more), strength 0 is the
 * plain model exactly, and the plain branch of the same checkpoint is untouched by the patched one.
 */

import assert from "node:assert/strict";
import type { Latent } from "../../../models/types.ts";
import { runPipeline, validateGraph } from "../../../dsl/mod.ts";
import { defineNode } from "../../../plugins/node.ts";
import { rank1Deltas, unitVector } from "./mod.ts";

const seen = new Map<string, Latent>();
const sink = defineNode({
  type: "t_latent_sink",
  description: "test: keeps the latent it gets, by node id",
  inputs: { latent: { type: "LATENT" } },
  outputs: {},
  sideEffects: true,
  run: ({ latent }, ctx) => {
    seen.set(ctx.nodeId, latent);
    return Promise.resolve({});
  },
});

const maxDiff = (a: Latent, b: Latent) => a.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b.data[i])), 0);

Deno.test("patch plugin: rank1_delta patches the UNet, merged and at run time alike; the plain branch is untouched", async () => {
  const sampler = (model: string) => ({
    type: "sampler",
    inputs: {
      model: { from: model },
      positive: { from: "positive.conditioning" },
      negative: { from: "negative.conditioning" },
      latent: { from: "latent.latent" },
      seed: 7,
      steps: 2,
      sampler: "euler",
    },
  });
  const nudge = (strength: number, apply_mode: string) => ({
    type: "rank1_delta",
    inputs: { model: { from: "checkpoint.model" }, pattern: "attn[12]\\.to_[kv]\\.weight$", strength, apply_mode },
  });
  const p = await validateGraph({
    version: 1,
    plugins: ["./mod.ts"],
    nodes: {
      checkpoint: { type: "tiny_checkpoint", inputs: { seed: 3 } },
      positive: { type: "clip_encode", inputs: { clip: { from: "checkpoint.clip" }, text: "a cat" } },
      negative: { type: "clip_encode", inputs: { clip: { from: "checkpoint.clip" }, text: "" } },
      latent: { type: "empty_latent", inputs: { width: 64, height: 64 } },
      merged: nudge(2, "merge"),
      runtime: nudge(2, "runtime"),
      zero: nudge(0, "merge"),
      s_plain: sampler("checkpoint.model"),
      s_merged: sampler("merged.model"),
      s_runtime: sampler("runtime.model"),
      s_zero: sampler("zero.model"),
      o_plain: { type: "t_latent_sink", inputs: { latent: { from: "s_plain.latent" } } },
      o_merged: { type: "t_latent_sink", inputs: { latent: { from: "s_merged.latent" } } },
      o_runtime: { type: "t_latent_sink", inputs: { latent: { from: "s_runtime.latent" } } },
      o_zero: { type: "t_latent_sink", inputs: { latent: { from: "s_zero.latent" } } },
    },
  }, { base: import.meta.url, nodes: [sink] });
  await runPipeline(p, { settings: { threads: 1 } });
  const [plain, merged, runtime, zero] = ["o_plain", "o_merged", "o_runtime", "o_zero"].map((k) => seen.get(k)!);
  assert.equal(maxDiff(plain, zero), 0, "strength 0 is the plain model");
  const effect = maxDiff(plain, merged);
  assert.ok(effect > 1e-2, `the patch changes the latent (max |Δ| ${effect})`);
  const modes = maxDiff(merged, runtime);
  assert.ok(modes <= 1e-3, `merged vs run time: max |Δ| ${modes}`);
});

Deno.test("patch plugin: rank1Deltas builds unit-vector factors of the right shapes for matching weights only", () => {
  const weights = new Map([
    ["a.attn2.to_k.weight", [6, 4]],
    ["b.conv.weight", [5, 3, 3, 3]],
    ["c.attn1.to_q.weight", [4, 4]],
  ]);
  const d = rank1Deltas(weights, /attn2|conv/, 0.5, 1);
  assert.deepEqual(d.map((x) => x.target), ["a.attn2.to_k.weight", "b.conv.weight"]);
  const conv = d[1];
  assert.ok(conv.kind === "low_rank");
  assert.deepEqual([conv.up.shape, conv.down.shape], [[5, 1], [1, 3, 3, 3]]);
  const v = unitVector(27, 9);
  assert.ok(Math.abs(v.reduce((s, x) => s + x * x, 0) - 1) < 1e-6);
});
