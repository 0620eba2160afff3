/**
 * graphs/sd21_768_v.json (SD 2.1 768-v) runs end to end on the tiny random-weight SD 2.x model at its own
 * 768x768 size, v-prediction, with the checkpoint path and step count overridden: everything else is the
 * graph as shipped.
 */

import assert from "node:assert/strict";
import { loadGraph, OutputCache, runPipeline } from "../dsl/mod.ts";
import { makeTinyCheckpoint } from "../models/mod.ts";
import { readPng } from "../plugins/image/mod.ts";

Deno.test("graphs/sd21_768_v.json runs at 768x768 with v-prediction on the tiny SD 2.x model", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-sd21-graph-" });
  try {
    const model = await makeTinyCheckpoint(`${dir}/tiny-sd2.safetensors`, { seed: 6, arch: "sd2" });
    const p = await loadGraph(new URL("sd21_768_v.json", import.meta.url).pathname, {
      overrides: [`checkpoint.path=${model}`, "sampler.steps=2", `save.path=${dir}/out.png`],
    });
    assert.equal(p.nodes.get("checkpoint")!.values.prediction, "v");
    const progress: string[] = [];
    const r = await runPipeline(p, {
      cache: new OutputCache(),
      reporter: { progress: (id, done, total) => progress.push(`${id} ${done}/${total}`) },
    });
    assert.deepEqual([...r.executed].sort(), [...p.order].sort());
    assert.ok(progress.includes("sampler 1/2") && progress.includes("sampler 2/2"), progress.join(", "));
    assert.ok(progress.some((l) => l.startsWith("decode ")), "decode reports progress");
    const png = await readPng(`${dir}/out.png`);
    assert.deepEqual([png.image.width, png.image.height], [768, 768]);
    assert.match(png.parameters ?? "", /Steps: 2, Sampler: Euler a, .*Size: 768x768/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
