/** The example node plugin loads through a graph's "plugins" list and runs. */

import assert from "node:assert/strict";
import type { Image } from "../../../models/types.ts";
import { graph, planPipeline, runPipeline, validateGraph } from "../../../dsl/mod.ts";
import { defineNode } from "../../../plugins/node.ts";
import { grayscale, invert } from "./mod.ts";

// Test-only source and sink so the test needs neither the PNG codec nor image files.
const source = defineNode({
  type: "t_image",
  description: "test: one 2x1 RGBA image",
  inputs: {},
  outputs: { image: "IMAGE" },
  run: () =>
    Promise.resolve({
      image: [{ width: 2, height: 1, channels: 4, data: new Uint8Array([255, 0, 0, 9, 0, 0, 255, 7]) } as Image],
    }),
});
let seen: readonly Image[] = [];
const sink = defineNode({
  type: "t_sink",
  description: "test: keeps what it gets",
  inputs: { images: { type: "IMAGE" } },
  outputs: {},
  sideEffects: true,
  run: ({ images }) => {
    seen = images;
    return Promise.resolve({});
  },
});

Deno.test("node plugin: listed in a graph, its nodes validate and run", async () => {
  const p = await validateGraph({
    version: 1,
    plugins: ["./mod.ts"],
    nodes: {
      src: { type: "t_image" },
      gray: { type: "grayscale", inputs: { images: { from: "src.image" } } },
      inv: { type: "invert", inputs: { images: { from: "gray.images" } } },
      out: { type: "t_sink", inputs: { images: { from: "inv.images" } } },
    },
  }, { base: import.meta.url, nodes: [source, sink] });
  assert.equal(p.plugins.length, 1);
  assert.deepEqual(p.plugins[0].nodes.map((n) => n.type), ["grayscale", "invert"]);
  await runPipeline(p);
  // Rec. 709 luma of pure red is 54, of pure blue 18; inverted: 201 and 237. Alpha kept.
  assert.deepEqual([...seen[0].data], [201, 201, 201, 9, 237, 237, 237, 7]);
  const plan = await planPipeline(p);
  assert.equal(plan.steps.find((s) => s.id === "gray")!.ops[0].op, "grayscale");
});

Deno.test("node plugin: its inputs are validated by the generated schema", async () => {
  await assert.rejects(
    () =>
      validateGraph({
        version: 1,
        plugins: ["./mod.ts"],
        nodes: {
          src: { type: "t_image" },
          gray: { type: "grayscale", inputs: { images: { from: "src.image" }, amount: 2 } },
        },
      }, { base: import.meta.url, nodes: [source] }),
    /node "gray" input "amount": must be <= 1, got 2 \(at \/nodes\/gray\/inputs\/amount\)/,
  );
});

Deno.test("node plugin: the typed builder knows its nodes", () => {
  const g = graph({ nodes: [grayscale, invert], plugins: ["./mod.ts"] });
  const img = g.load_image({ path: "in.png" });
  const gray = g.grayscale({ images: img.image, amount: 0.5 });
  g.save_image({ images: g.invert({ images: gray }) });
  // @ts-expect-error a LATENT is not an IMAGE
  g.invert({ images: g.empty_latent({}) });
  assert.deepEqual(g.toJSON().plugins, ["./mod.ts"]);
  assert.deepEqual(g.toJSON().nodes.invert.inputs, { images: { from: "grayscale.images" } });
});
