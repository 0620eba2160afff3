/** Every graph in graphs/ validates; the schema file is current; the demo runs end to end. */

import assert from "node:assert/strict";
import { loadGraph, OutputCache, runPipeline, validateGraph } from "../dsl/mod.ts";
import { readPng } from "../plugins/image/mod.ts";
import { schemaText } from "../cli/schema.ts";
import { makeTinyCheckpoint } from "../models/tiny/mod.ts";

const dir = new URL("./", import.meta.url);
const graphs = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
  /\.(json|ts)$/.test(n) && !n.endsWith("_test.ts")
)
  .sort();

Deno.test("graphs/: the expected graphs are present", () => {
  for (
    const g of [
      "demo.json",
      "img2img.json",
      "lora.json",
      "sdxl.json",
      "sdxl_turbo.json",
      "seed_sweep.json",
      "taesd.json",
      "txt2img.json",
      "txt2img.ts",
      "upscale.json",
    ]
  ) {
    assert.ok(graphs.includes(g), g);
  }
});

for (const name of graphs) {
  Deno.test(`graphs/${name} validates`, async () => {
    const p = await loadGraph(new URL(name, dir).pathname);
    assert.ok(p.order.length > 0);
  });
}

Deno.test("graphs/txt2img.ts and txt2img.json describe the same graph", async () => {
  const ts = await loadGraph(new URL("txt2img.ts", dir).pathname);
  const json = await loadGraph(new URL("txt2img.json", dir).pathname);
  assert.deepEqual(ts.order, json.order);
  for (const id of ts.order) {
    assert.deepEqual(ts.nodes.get(id)!.values, json.nodes.get(id)!.values, id);
    assert.deepEqual(ts.nodes.get(id)!.refs, json.nodes.get(id)!.refs, id);
  }
});

Deno.test("schema/graph.schema.json is up to date (deno task schema)", async () => {
  const current = await Deno.readTextFile(new URL("../schema/graph.schema.json", dir));
  assert.equal(current, await schemaText(), "run: deno task schema");
});

Deno.test({
  name: "graphs/demo.json runs end to end on the tiny random-weight model",
  async fn() {
    const out = await Deno.makeTempDir();
    try {
      const p = await loadGraph(new URL("demo.json", dir).pathname, { overrides: [`save.path=${out}/demo.png`] });
      const r = await runPipeline(p, { cache: new OutputCache() });
      assert.deepEqual([...r.executed].sort(), [...p.order].sort());
      const png = await readPng(`${out}/demo.png`);
      assert.deepEqual([png.image.width, png.image.height], [64, 64]);
      assert.match(
        png.parameters ?? "",
        /^a cat wearing a tiny hat\nSteps: 4, Sampler: Euler, Schedule type: Uniform, /,
      );
      assert.match(png.parameters ?? "", /Seed: 42, Size: 64x64, Model: "tiny \(random weights, seed 0\)", RNG: GPU/);
      // The graph chunk is the demo graph itself (defaults written out), with the output path as run.
      const stored = await validateGraph(png.graph);
      assert.deepEqual(stored.order, p.order);
      for (const [id, n] of p.nodes) assert.deepEqual(stored.nodes.get(id)!.values, n.values, id);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "graphs/sdxl_turbo.json runs end to end at 512x512 (cfg 1, sgm_uniform) on a tiny random SDXL, with progress",
  async fn() {
    const out = await Deno.makeTempDir();
    try {
      const ckpt = await makeTinyCheckpoint(`${out}/tiny-sdxl.safetensors`, { arch: "sdxl", dtype: "f16", seed: 3 });
      const r = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "cli/gen.ts",
          "graphs/sdxl_turbo.json",
          "--set",
          `checkpoint.path=${ckpt}`,
          "--set",
          "sampler.steps=4",
          "--set",
          `save.path=${out}/turbo.png`,
          "-v",
        ],
        cwd: new URL("../", import.meta.url),
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
      const log = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 0, log);
      for (let i = 1; i <= 4; i++) assert.match(log, new RegExp(`sampler: step ${i}/4`), log);
      assert.match(log, /decode \(decode\): /, log);
      const png = await readPng(`${out}/turbo.png`);
      assert.deepEqual([png.image.width, png.image.height], [512, 512]);
      assert.match(png.parameters ?? "", /Steps: 4, Sampler: Euler a, Schedule type: SGM Uniform, CFG scale: 1, /);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});
