/**
 * Nodes cannot corrupt each other's data (issue 13): a plugin node that edits its input in place
 * changes only its own copy, never the cached output it was given nor a sibling's; and a
 * `NodeInputError` thrown from another copy of plugins/node.ts still names its input.
 */

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type AnyNodeDef, defineNode, isNodeInputError, NodeInputError } from "../plugins/node.ts";
import { isolate, NodeRunError, OutputCache, runPipeline } from "./run.ts";
import { validateGraph } from "./validate.ts";

/** A source of one 2x1 RGB image, a plugin-style node that brightens its input IN PLACE, and a sink. */
function nodes(): { defs: AnyNodeDef[]; runs: Record<string, number> } {
  const runs: Record<string, number> = { source: 0, brighten: 0 };
  const source = defineNode({
    type: "t_image_source",
    description: "test: one fixed image",
    inputs: {},
    outputs: { images: "IMAGE" },
    run: () => {
      runs.source++;
      return Promise.resolve({
        images: [{ width: 2, height: 1, channels: 3 as const, data: new Uint8Array(6).fill(10) }],
      });
    },
  });
  const brighten = defineNode({
    type: "t_brighten_in_place",
    description: "test: adds `by` to every pixel of its input, in place (what a careless plugin does)",
    inputs: { images: { type: "IMAGE" }, by: { schema: { type: "integer", default: 5 } } },
    outputs: { images: "IMAGE" },
    // Not cacheable: it must really run again and see its input a second time.
    cacheable: false,
    run: ({ images, by }) => {
      runs.brighten++;
      for (const im of images) for (let i = 0; i < im.data.length; i++) im.data[i] += by;
      return Promise.resolve({ images });
    },
  });
  return { defs: [source, brighten], runs };
}

const GRAPH = {
  version: 1,
  nodes: {
    src: { type: "t_image_source", inputs: {} },
    a: { type: "t_brighten_in_place", inputs: { images: { from: "src.images" }, by: 5 } },
    b: { type: "t_brighten_in_place", inputs: { images: { from: "src.images" }, by: 100 } },
  },
};

type Images = { data: Uint8Array }[];

Deno.test("runner: a node editing its input in place corrupts neither the cache nor a sibling's input", async () => {
  const { defs, runs } = nodes();
  const cache = new OutputCache();
  const p = await validateGraph(GRAPH, { nodes: defs });
  const first = await runPipeline(p, { cache, concurrency: 1 });
  assert.deepEqual([...(first.outputs.get("a")!.images as Images)[0].data], [15, 15, 15, 15, 15, 15]);
  // b read the source's pixels, not a's edited ones.
  assert.deepEqual([...(first.outputs.get("b")!.images as Images)[0].data], [110, 110, 110, 110, 110, 110]);
  assert.deepEqual([...(first.outputs.get("src")!.images as Images)[0].data], [10, 10, 10, 10, 10, 10]);

  // Second run: the source comes from the cache, the brighteners run again on unchanged pixels.
  const second = await runPipeline(p, { cache, concurrency: 2 });
  assert.deepEqual(second.cached, ["src"]);
  assert.equal(runs.source, 1);
  assert.equal(runs.brighten, 4);
  assert.deepEqual([...(second.outputs.get("a")!.images as Images)[0].data], [15, 15, 15, 15, 15, 15]);
  assert.deepEqual([...(second.outputs.get("b")!.images as Images)[0].data], [110, 110, 110, 110, 110, 110]);
  cache.clear();
});

Deno.test("isolate: copies plain data deeply (cycles too), shares class instances", () => {
  class Model {
    weights = new Float32Array([1, 2]);
  }
  const model = new Model();
  const shared = new Float32Array([1, 2, 3, 4]).subarray(1, 3);
  const v: Record<string, unknown> = { model, a: [shared, shared], m: new Map([["k", { x: [1] }]]), s: new Set([1]) };
  v.self = v;
  const c = isolate(v);
  assert.notEqual(c, v);
  assert.equal(c.self, c, "a cycle stays a cycle");
  assert.equal(c.model, model, "a class instance (a loaded model) is shared");
  const [x, y] = c.a as Float32Array[];
  assert.equal(x, y, "two references to one array stay one array");
  assert.notEqual(x, shared);
  assert.deepEqual([...x], [2, 3], "a subarray copies only its view");
  x[0] = 99;
  assert.equal(shared[0], 2);
  (c.m as Map<string, { x: number[] }>).get("k")!.x.push(2);
  assert.deepEqual((v.m as Map<string, { x: number[] }>).get("k")!.x, [1]);
  assert.notEqual(c.s, v.s);
});

Deno.test("NodeInputError from another copy of plugins/node.ts still names its input", async () => {
  // A plugin written against another checkout of sdflow: its own copy of node.ts, its own classes.
  const dir = await Deno.makeTempDir({ prefix: "sdflow-foreign-" });
  try {
    const here = dirname(fileURLToPath(import.meta.url));
    await Deno.copyFile(join(here, "../plugins/node.ts"), join(dir, "node.ts"));
    await Deno.writeTextFile(
      join(dir, "foreign.ts"),
      `import { defineNode, NodeInputError } from "./node.ts";
export const ForeignError = NodeInputError;
export default {
  nodes: [defineNode({
    type: "t_foreign_fail",
    description: "test: rejects its strength",
    inputs: { strength: { schema: { type: "number", default: 2 } } },
    outputs: {},
    run: ({ strength }) => { throw new NodeInputError("strength", "must be at most 1, got " + strength); },
  })],
};
`,
    );
    const foreign = await import(`file://${dir}/foreign.ts`);
    assert.notEqual(foreign.ForeignError, NodeInputError, "the plugin really has another class");
    const err = new foreign.ForeignError("strength", "x");
    assert.ok(err instanceof NodeInputError, "instanceof recognises the other copy");
    assert.ok(isNodeInputError(err));
    assert.ok(!isNodeInputError(new Error("plain")));
    assert.ok(!(new Error("plain") instanceof NodeInputError));
    class Sub extends NodeInputError {}
    assert.ok(!(new NodeInputError("x", "y") instanceof Sub), "subclasses keep ordinary instanceof");
    assert.ok(new Sub("x", "y") instanceof NodeInputError);

    const p = await validateGraph(
      { version: 1, plugins: ["./foreign.ts"], nodes: { f: { type: "t_foreign_fail", inputs: {} } } },
      { base: `file://${dir}/` },
    );
    const e = await runPipeline(p).then(() => undefined, (e) => e);
    assert.ok(e instanceof NodeRunError, String(e));
    assert.equal(e.input, "strength");
    assert.equal(e.message, `node "f" input "strength": must be at most 1, got 2`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
