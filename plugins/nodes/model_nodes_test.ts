/** Built-in nodes that run the model layer, on the tiny random-weight checkpoint. */

import assert from "node:assert/strict";
import { loadCheckpoint } from "../../models/mod.ts";
import type { Image, Latent, Vae } from "../../models/types.ts";
import { OutputCache, runPipeline } from "../../dsl/run.ts";
import { validateGraph } from "../../dsl/validate.ts";
import { defineNode } from "../node.ts";
import { tinyCheckpointPath } from "./checkpoint.ts";

const picture: Image = {
  width: 64,
  height: 64,
  channels: 3,
  data: Uint8Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 31 + (i >> 7)) & 255),
};
const source = defineNode({
  type: "t_picture",
  description: "test: one 64x64 image",
  inputs: {},
  outputs: { image: "IMAGE" },
  run: () => Promise.resolve({ image: [picture] }),
});

Deno.test("vae_encode: with a seed the posterior is sampled with that seed's noise (as sd.cpp); without, its mean", async () => {
  const graph = (encode: Record<string, unknown>) => ({
    version: 1,
    nodes: {
      checkpoint: { type: "tiny_checkpoint", inputs: { seed: 0 } },
      image: { type: "t_picture" },
      encode: {
        type: "vae_encode",
        inputs: { vae: { from: "checkpoint.vae" }, image: { from: "image.image" }, ...encode },
      },
    },
  });
  const cache = new OutputCache();
  let vae: Vae | undefined;
  const run = async (encode: Record<string, unknown>): Promise<Latent> => {
    const p = await validateGraph(graph(encode), { nodes: [source] });
    const r = await runPipeline(p, { cache });
    vae = r.outputs.get("checkpoint")!.vae as Vae;
    return r.outputs.get("encode")!.latent as Latent;
  };
  try {
    const mean = await run({});
    const cuda = await run({ seed: 42 });
    const std = await run({ seed: 42, rng: "std_default" });
    const other = await run({ seed: 43 });

    const ckpt = await loadCheckpoint(await tinyCheckpointPath(0));
    try {
      const direct = (o?: { seed?: number; rng?: "cuda" | "std_default" }) => ckpt.vae.encode([picture], o);
      // Bit-identical to the model layer's own calls: the node passes seed and rng through unchanged.
      assert.deepEqual(mean.data, (await direct()).data);
      assert.deepEqual(cuda.data, (await direct({ seed: 42, rng: "cuda" })).data);
      assert.deepEqual(std.data, (await direct({ seed: 42, rng: "std_default" })).data);
    } finally {
      ckpt.dispose();
    }
    assert.deepEqual(cuda.shape, [1, 4, 8, 8]);
    assert.notDeepEqual(cuda.data, mean.data);
    assert.notDeepEqual(cuda.data, std.data);
    assert.notDeepEqual(cuda.data, other.data);
  } finally {
    cache.clear();
  }
  // Clearing the cache disposed the checkpoint it held: its networks can no longer run.
  await assert.rejects(() => vae!.encode([picture]));
});
