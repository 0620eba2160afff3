/** Built-in nodes that run the model layer, on the tiny random-weight checkpoint. */

import assert from "node:assert/strict";
import { loadCheckpoint } from "../../models/mod.ts";
import { encodeSafetensors } from "../../models/weights/mod.ts";
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

Deno.test("checkpoint: embeddings_dir makes its embeddings usable in prompts; skipped files are logged", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-embd-node-" });
  try {
    const width = 64; // the tiny model's text encoder
    const vec = new Float32Array(2 * width).map((_, i) => Math.cos(i) * 0.5);
    const file = (shape: number[], data: Float32Array) =>
      encodeSafetensors([{ name: "emb_params", dtype: "F32", shape, data: new Uint8Array(data.buffer) }]);
    await Deno.writeFile(`${dir}/mystyle.safetensors`, file([2, width], vec));
    await Deno.writeFile(`${dir}/sd15only.safetensors`, file([1, 768], new Float32Array(768)));
    const path = await tinyCheckpointPath(0);
    const graph = (embd?: string) => ({
      version: 1,
      nodes: {
        checkpoint: { type: "checkpoint", inputs: { path, ...(embd ? { embeddings_dir: embd } : {}) } },
        text: { type: "clip_encode", inputs: { clip: { from: "checkpoint.clip" }, text: "a mystyle photo" } },
      },
    });
    const run = async (embd?: string) => {
      const logs: string[] = [];
      const r = await runPipeline(await validateGraph(graph(embd)), { reporter: { log: (_, m) => logs.push(m) } });
      const c = r.outputs.get("text")!.conditioning as { context: { data: Float32Array } };
      return { data: c.context.data, logs };
    };
    const withTi = await run(dir);
    const without = await run();
    assert.notDeepEqual(withTi.data, without.data);
    assert.equal(withTi.logs.filter((l) => l.includes(`${dir}/sd15only.safetensors`)).length, 1, withTi.logs.join());
    await assert.rejects(
      async () => await runPipeline(await validateGraph(graph(`${dir}/absent`))),
      /embeddings_dir.*embedding folder not found/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
