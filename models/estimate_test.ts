/**
 * `estimateNetwork` (what `deno task plan` prints) on the tiny checkpoint, against FLOPs and bytes
 * worked out by hand from its architecture (models/tiny/make_tiny.ts: CLIP width 64, 2 layers, 2 heads,
 * MLP 256, vocabulary 49408; UNet 32 channels, mult [1, 2], attention at level 1, context 64) and the
 * cost conventions of engine/cost.ts (a matmul 2·rows·k·n, attention 4·b·nq·nk·c, other ops one FLOP per
 * output element; bytes: every input and output of the op). Exact: these are integer counts.
 */

import { assert, assertEquals, assertRejects } from "../tests/assert.ts";
import { estimateNetwork, type OpEstimate } from "./estimate.ts";
import { TINY, tinyCheckpointBytes } from "./tiny/mod.ts";

async function tinyFile(dtype: "f32" | "f16"): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  await Deno.writeFile(path, tinyCheckpointBytes({ seed: 0, dtype }));
  return path;
}

const byOp = (ops: readonly OpEstimate[]) => new Map(ops.map((o) => [o.op, o]));

Deno.test("estimate: tiny CLIP text encoder, every op group by hand", async () => {
  const path = await tinyFile("f32");
  try {
    const { width: d, layers, ffDim: ff, vocab, tokens: t } = TINY.clip;
    const ops = byOp(await estimateNetwork("text_encoder", { checkpoint: path, tokens: 77 }));
    const act = t * d; // one [77, 64] activation
    // Per layer: q, k, v and out projections (d x d) and the MLP's fc1 (d -> ff) and fc2 (ff -> d).
    const matmulFlops = layers * (4 * 2 * t * d * d + 2 * 2 * t * d * ff);
    // fc1 touches the most memory: input, weight, bias, output (f32).
    const fc1Bytes = 4 * (act + ff * d + ff + t * ff);
    const want: Record<string, { count?: number; flops: number; bytes: number }> = {
      // Token embedding lookup: the whole table, the ids (i32) and the output.
      "text_encoder.gather_rows": { count: 1, flops: act, bytes: 4 * (vocab * d + t + act) },
      // The position embedding add and two residual adds per layer.
      "text_encoder.binary": { count: 1 + 2 * layers, flops: act, bytes: 4 * 3 * act },
      // Two per layer and the final one: input, weight, bias, output.
      "text_encoder.layer_norm": { count: 2 * layers + 1, flops: act, bytes: 4 * (2 * act + 2 * d) },
      "text_encoder.matmul": { count: 6 * layers, flops: matmulFlops / (6 * layers), bytes: fc1Bytes },
      // Causal self-attention over all heads: 4·1·77·77·64; q, k, v and the output.
      "text_encoder.attention": { count: layers, flops: 4 * t * t * d, bytes: 4 * 4 * act },
      // quick_gelu on the MLP's hidden layer.
      "text_encoder.unary": { count: layers, flops: t * ff, bytes: 4 * 2 * t * ff },
    };
    for (const [op, w] of Object.entries(want)) {
      const got = ops.get(op);
      assert(got, `no ${op} in the estimate`);
      assertEquals({ count: got.count, flops: got.flops, bytes: got.bytes }, w, op);
    }
    assertEquals(ops.size, Object.keys(want).length + 1, `unexpected groups: ${[...ops.keys()]}`);
    // The activation arena holds at least fc1's input and output at once, and at most every activation.
    const arena = ops.get("text_encoder.activation_arena")!;
    assertEquals(arena.flops, 0);
    assert(arena.bytes >= 4 * (act + t * ff), `arena ${arena.bytes} smaller than fc1's activations`);
    assert(arena.bytes <= 4 * (layers * (12 * act + 2 * t * ff) + 3 * act), `arena ${arena.bytes} too large`);
    // Half-precision weights halve the embedding table's bytes; FLOPs do not change.
    const f16Path = await tinyFile("f16");
    try {
      const half = byOp(await estimateNetwork("text_encoder", { checkpoint: f16Path, tokens: 77 }));
      assertEquals(half.get("text_encoder.gather_rows")!.bytes, 2 * vocab * d + 4 * (t + act));
      assertEquals(half.get("text_encoder.matmul")!.flops, matmulFlops / (6 * layers));
      assert(half.get("text_encoder.matmul")!.bytes < fc1Bytes);
    } finally {
      await Deno.remove(f16Path);
    }
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("estimate: tiny UNet attention by hand (self- and cross-attention of 4 transformer blocks)", async () => {
  const path = await tinyFile("f32");
  try {
    const ops = byOp(await estimateNetwork("unet", { checkpoint: path, latentShape: [2, 4, 8, 8], tokens: 77 }));
    // Attention at level 1 only (8x8 latent halved: 4x4 = 16 positions, 64 channels): one transformer in
    // the input block, one in the middle, two in the output blocks (numResBlocks + 1); each has a
    // self-attention (16 keys) and a cross-attention (77 context tokens). Batch 2 (cond and uncond).
    const b = 2, n = 16, c = TINY.unet.modelChannels * TINY.unet.channelMult[1];
    const self = 4 * b * n * n * c, cross = 4 * b * n * 77 * c;
    const att = ops.get("unet.attention")!;
    assertEquals(att.count, 8);
    assertEquals(att.flops * 8, 4 * self + 4 * cross);
    // The cross-attention's inputs (q [2,16,64], k and v [2,77,64]) and output, f32.
    assertEquals(att.bytes, 4 * (2 * b * n * c + 2 * b * 77 * c));
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("estimate: a missing shape or file is an error naming it", async () => {
  const path = await tinyFile("f32");
  try {
    await assertRejects(() => estimateNetwork("unet", { checkpoint: path }), Error, "latent shape unknown");
  } finally {
    await Deno.remove(path);
  }
  await assertRejects(() => estimateNetwork("unet", { checkpoint: path, latentShape: [1, 4, 8, 8] }), Error, path);
});
