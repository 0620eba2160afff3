/** Built-in nodes that need no model: latents, image files and their metadata; the catalog's documentation. */

import assert from "node:assert/strict";
import type { Image } from "../../models/types.ts";
import { readPng } from "../image/png.ts";
import { runPipeline } from "../../dsl/run.ts";
import { validateGraph } from "../../dsl/validate.ts";
import { builtinNodes } from "../catalog.ts";
import { defineNode, type UpstreamNode } from "../node.ts";
import { samplerGeneration } from "./sampler.ts";
import { batchPath, describeGeneration } from "./save_image.ts";

const pixels = (w: number, h: number, seed: number): Image => ({
  width: w,
  height: h,
  channels: 3,
  data: Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 37 + seed) & 255),
});

// Test-only source and sink.
const source = defineNode({
  type: "t_pictures",
  description: "test: two images",
  inputs: {},
  outputs: { image: "IMAGE" },
  run: () => Promise.resolve({ image: [pixels(8, 4, 1), pixels(8, 4, 2)] }),
});
let got: readonly Image[] = [];
const sink = defineNode({
  type: "t_keep",
  description: "test: keeps images",
  inputs: { images: { type: "IMAGE" } },
  outputs: {},
  sideEffects: true,
  run: ({ images }) => {
    got = images;
    return Promise.resolve({});
  },
});

Deno.test("save_image writes a batch as name_1.png, name_2.png with parameters; load_image reads one back", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const save = await validateGraph({
      version: 1,
      nodes: {
        src: { type: "t_pictures" },
        save: { type: "save_image", inputs: { images: { from: "src.image" }, path: `${dir}/out/pic.png` } },
      },
    }, { nodes: [source] });
    await runPipeline(save);
    const second = await readPng(`${dir}/out/pic_2.png`);
    assert.deepEqual(second.image, pixels(8, 4, 2));
    assert.equal(second.parameters, "Size: 8x4, Version: sdflow");

    const load = await validateGraph({
      version: 1,
      nodes: {
        img: { type: "load_image", inputs: { path: `${dir}/out/pic_1.png` } },
        keep: { type: "t_keep", inputs: { images: { from: "img.image" } } },
      },
    }, { nodes: [sink] });
    await runPipeline(load);
    assert.deepEqual(got, [pixels(8, 4, 1)]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// A source with a seed input that, like the sampler, publishes the seed it drew for -1.
const seeded = defineNode({
  type: "t_seeded",
  description: "test: one image from a seed",
  inputs: {
    seed: { schema: { type: "integer", default: -1 } },
    label: { schema: { type: "string", default: "x" } },
  },
  outputs: { image: "IMAGE" },
  run: ({ seed }, ctx) => {
    ctx.publish({ seed: seed < 0 ? 77 : seed });
    return Promise.resolve({ image: [pixels(8, 8, 3)] });
  },
});

Deno.test("save_image stores the graph that made the image (sdflow-graph), with drawn seeds; metadata: false omits it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const doc = {
      version: 1,
      nodes: {
        src: { type: "t_seeded" },
        other: { type: "t_pictures" },
        save: { type: "save_image", inputs: { images: { from: "src.image" }, path: `${dir}/a/b/pic.png` } },
        bare: {
          type: "save_image",
          inputs: { images: { from: "src.image" }, path: `${dir}/bare.png`, metadata: false },
        },
      },
    };
    await runPipeline(await validateGraph(doc, { nodes: [seeded, source] }));
    const png = await readPng(`${dir}/a/b/pic.png`);
    const want = {
      version: 1,
      nodes: {
        src: { type: "t_seeded", inputs: { seed: 77, label: "x" } },
        save: {
          type: "save_image",
          inputs: { images: { from: "src.image" }, path: `${dir}/a/b/pic.png`, metadata: true, quality: 90 },
        },
      },
    };
    assert.deepEqual(png.graph, want);
    assert.equal(png.parameters, "Size: 8x8, Version: sdflow");
    // The stored graph is a valid graph that remakes the picture.
    await validateGraph(png.graph, { nodes: [seeded] });

    const bare = await readPng(`${dir}/bare.png`);
    assert.deepEqual(bare.text, {});
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("save_image: batch file names", () => {
  assert.equal(batchPath("a/out.png", 0, 1), "a/out.png");
  assert.equal(batchPath("a/out.png", 1, 3), "a/out_2.png");
  assert.equal(batchPath("a.b/out", 0, 2), "a.b/out_1");
});

Deno.test("sampler: its generation names the prompts, labels, model and one seed per picture", () => {
  const cond = (prompt: string, clipSkip?: number) => ({
    context: { shape: [1, 77, 768], data: new Float32Array(0) },
    prompt,
    ...(clipSkip ? { clipSkip } : {}),
  });
  const upstream: UpstreamNode[] = [
    { id: "ckpt", type: "checkpoint", values: {}, refs: {}, meta: { model: "v1-5.safetensors" } },
  ];
  const inputs = {
    positive: cond("a cat, sitting", 2),
    negative: cond("blurry"),
    steps: 20,
    cfg: 7,
    sampler: "euler_a",
    scheduler: "karras",
    rng: "cuda",
    denoise: 0.5,
  };
  assert.deepEqual(samplerGeneration(inputs, 1234, 3, upstream), {
    prompt: "a cat, sitting",
    negativePrompt: "blurry",
    steps: 20,
    sampler: "Euler a",
    scheduler: "Karras",
    cfgScale: 7,
    seeds: [1234, 1235, 1236],
    model: "v1-5.safetensors",
    clipSkip: 2,
    denoisingStrength: 0.5,
    rng: "GPU",
  });
});

Deno.test("save_image: parameters come from the nearest published generation, whatever the node's type", () => {
  const generation = {
    prompt: "a cat, sitting",
    negativePrompt: "blurry",
    steps: 20,
    sampler: "Euler a",
    scheduler: "Karras",
    cfgScale: 7,
    seeds: [1234, 1235],
    model: "v1-5.safetensors",
    rng: "GPU",
  };
  const upstream: UpstreamNode[] = [
    { id: "upscale", type: "my_upscale", values: {}, refs: {}, meta: {} },
    { id: "s", type: "my_plugin_sampler", values: { seed: -1 }, refs: {}, meta: { seed: 1234, generation } },
    { id: "older", type: "sampler", values: {}, refs: {}, meta: { generation: { ...generation, prompt: "no" } } },
  ];
  const tail = "Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 1235, Size: 64x32, " +
    "Model: v1-5.safetensors, RNG: GPU, Batch size: 2, Batch pos: 1, Version: sdflow";
  assert.equal(
    describeGeneration(upstream, pixels(64, 32, 0), 1, 2),
    `a cat, sitting\nNegative prompt: blurry\n${tail}`,
  );
  // Without a generating ancestor: the size only.
  assert.equal(describeGeneration(upstream.slice(0, 1), pixels(64, 32, 0), 0, 1), "Size: 64x32, Version: sdflow");
});

Deno.test("empty_latent: [batch, 4, h/8, w/8] of zeros", async () => {
  const p = await validateGraph({
    version: 1,
    nodes: { l: { type: "empty_latent", inputs: { width: 64, height: 128, batch: 2 } } },
  });
  const r = await runPipeline(p);
  const latent = r.outputs.get("l")!.latent as { shape: number[]; data: Float32Array };
  assert.deepEqual(latent.shape, [2, 4, 16, 8]);
  assert.ok(latent.data.every((v) => v === 0));
});

Deno.test("every built-in node is documented in docs/nodes.md", async () => {
  const doc = await Deno.readTextFile(new URL("../../docs/nodes.md", import.meta.url));
  for (const n of builtinNodes) {
    assert.ok(doc.includes(`### \`${n.type}\``), n.type);
    for (const input of Object.keys(n.inputs)) {
      assert.match(doc, new RegExp(`\\| \`${input}\` +\\|`), `${n.type}.${input}`);
    }
  }
});
