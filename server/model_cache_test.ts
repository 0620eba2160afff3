/**
 * The server's model cache over real HTTP with two tiny checkpoints (weight seeds 1 and 2) and a budget that
 * holds one: alternating them unloads the other (GET /v1/stats counts it), pictures stay the same, and a
 * request that changes only the sampler's seed still reuses the loaded model.
 */

import assert from "node:assert/strict";
import { decodePngImage } from "../plugins/image/png.ts";
import { tinyCheckpointPath } from "../plugins/nodes/checkpoint.ts";
import { startServer } from "./server.ts";
import { tinyGraph } from "./test_graphs.ts";

interface JobJson {
  status: string;
  error?: string;
  result: { files: string[]; executed: string[]; cached: string[] };
}

Deno.test("serve: loaded models stay within --model-memory, least recently used unloaded", async () => {
  const size = (await Deno.stat(await tinyCheckpointPath(1))).size;
  assert.equal((await Deno.stat(await tinyCheckpointPath(2))).size, size);
  const outputDir = await Deno.makeTempDir({ prefix: "sdflow-model-cache-" });
  // One tiny model's weights fit (they are a little less than its file), two do not.
  const server = await startServer({ port: 0, hostname: "127.0.0.1", outputDir, modelMemoryBytes: size * 1.5 });
  const base = `http://127.0.0.1:${server.addr.port}`;
  const run = async (checkpointSeed: number, seed: number): Promise<JobJson & { pixels: Uint8Array }> => {
    const r = await fetch(`${base}/v1/graphs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(tinyGraph({ checkpointSeed, seed })),
    });
    const { id } = await r.json();
    assert.equal(r.status, 202);
    await server.queue.get(id)!.done;
    const job = await (await fetch(`${base}/v1/jobs/${id}`)).json() as JobJson;
    assert.equal(job.status, "succeeded", job.error);
    const png = new Uint8Array(await (await fetch(`${base}/v1/outputs/${job.result.files[0]}`)).arrayBuffer());
    return { ...job, pixels: decodePngImage(png).image.data as Uint8Array };
  };
  const stats = async () => (await (await fetch(`${base}/v1/stats`)).json()).models;
  try {
    const a1 = await run(1, 42);
    assert.ok(a1.result.executed.includes("checkpoint"));
    let s = await stats();
    assert.deepEqual(s.loaded.map((m: { model: string }) => m.model), ["tiny (random weights, seed 1)"]);
    assert.ok(s.bytes > size / 2 && s.bytes <= size, `${s.bytes} of a ${size}-byte file`);
    assert.deepEqual([s.budget_bytes, s.evictions], [size * 1.5, 0]);

    // Only the seed changes: the model (and the prompts' conditioning) come from the cache.
    const a2 = await run(1, 43);
    assert.deepEqual(a2.result.executed, ["sampler", "decode", "save"]);
    assert.ok(a2.result.cached.includes("checkpoint"));

    // The other checkpoint: it does not fit beside the first, which is unloaded.
    const b1 = await run(2, 42);
    assert.ok(b1.result.executed.includes("checkpoint"));
    assert.notDeepEqual(b1.pixels, a1.pixels);
    s = await stats();
    assert.deepEqual(s.loaded.map((m: { model: string }) => m.model), ["tiny (random weights, seed 2)"]);
    assert.equal(s.evictions, 1);

    // Back to the first: loaded again (the second unloaded), and the same picture as before.
    const a3 = await run(1, 42);
    assert.ok(a3.result.executed.includes("checkpoint"), JSON.stringify(a3.result));
    assert.deepEqual(a3.pixels, a1.pixels);
    s = await stats();
    assert.deepEqual(s.loaded.map((m: { model: string }) => m.model), ["tiny (random weights, seed 1)"]);
    assert.equal(s.evictions, 2);
    const b2 = await run(2, 42);
    assert.deepEqual(b2.pixels, b1.pixels);
    assert.equal((await stats()).evictions, 3);
  } finally {
    await server.shutdown();
    await Deno.remove(outputDir, { recursive: true });
  }
});

Deno.test("serve: --model-memory is checked (a positive number of MiB)", async () => {
  const { main } = await import("./main.ts");
  const errors: string[] = [];
  const orig = console.error;
  console.error = (m: string) => void errors.push(m);
  try {
    assert.equal(await main(["--model-memory", "0"]), 2);
    assert.equal(await main(["--model-memory", "lots"]), 2);
  } finally {
    console.error = orig;
  }
  assert.match(errors[0], /--model-memory expects an integer from 1/);
  assert.match(errors[1], /got "lots"/);
});
