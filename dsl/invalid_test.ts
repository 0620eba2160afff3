/**
 * Every kind of invalid graph gives exactly one clear diagnostic naming the
 * node and field (where there is one) and the JSON pointer, and no stack trace.
 */

import assert from "node:assert/strict";
import { type Diagnostic, formatDiagnostic, GraphError } from "./errors.ts";
import { validateGraph, type ValidateOptions } from "./validate.ts";

const PLUGINS = new URL("./testdata/plugins/", import.meta.url);

function base(extra: Record<string, unknown> = {}, top: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: 1,
    ...top,
    nodes: {
      checkpoint: { type: "checkpoint", inputs: { path: "m.safetensors" } },
      positive: { type: "clip_encode", inputs: { clip: { from: "checkpoint.clip" }, text: "a cat" } },
      negative: { type: "clip_encode", inputs: { clip: { from: "checkpoint.clip" }, text: "" } },
      latent: { type: "empty_latent", inputs: { width: 512, height: 512 } },
      sampler: {
        type: "sampler",
        inputs: {
          model: { from: "checkpoint.model" },
          positive: { from: "positive.conditioning" },
          negative: { from: "negative.conditioning" },
          latent: { from: "latent.latent" },
          seed: 1,
          steps: 20,
        },
      },
      decode: { type: "vae_decode", inputs: { vae: { from: "checkpoint.vae" }, latent: { from: "sampler.latent" } } },
      save: { type: "save_image", inputs: { images: { from: "decode.image" } } },
      ...extra,
    },
  };
}

/** The graph with one node's inputs patched (null deletes an input). */
function patch(node: string, inputs: Record<string, unknown>): Record<string, unknown> {
  const g = base() as { nodes: Record<string, { type: string; inputs: Record<string, unknown> }> };
  const n = g.nodes[node];
  for (const [k, v] of Object.entries(inputs)) {
    if (v === null) delete n.inputs[k];
    else n.inputs[k] = v;
  }
  return g;
}

async function diagnose(input: unknown, opts: ValidateOptions = {}): Promise<Diagnostic> {
  try {
    await validateGraph(typeof input === "string" ? input : input, { source: "graph.json", base: PLUGINS, ...opts });
  } catch (e) {
    assert.ok(e instanceof GraphError, `expected a GraphError, got ${e}`);
    assert.equal(e.diagnostics.length, 1, `expected one diagnostic, got:\n${e.message}`);
    const line = formatDiagnostic(e.diagnostics[0]);
    assert.equal(e.message, line);
    assert.ok(!/\n\s+at /.test(e.message), "no stack trace in the message");
    return e.diagnostics[0];
  }
  throw new Error("the graph was accepted");
}

interface Case {
  name: string;
  graph: unknown;
  opts?: ValidateOptions;
  node?: string;
  input?: string;
  field?: string;
  pointer?: string;
  match: RegExp;
  line?: number;
}

const cases: Case[] = [
  { name: "bad JSON", graph: '{ "version": 1,\n  "nodes": { ] }', match: /invalid JSON/, line: 2 },
  { name: "empty file", graph: "  ", match: /empty/ },
  { name: "comments in JSON", graph: '{ // no\n "version": 1 }', match: /comments are not allowed/, line: 1 },
  { name: "graph not an object", graph: "[1, 2]", match: /must be a JSON object/ },
  { name: "bad version", graph: base({}, { version: 2 }), field: "version", pointer: "/version", match: /version 2/ },
  {
    name: "missing version",
    graph: { nodes: (base() as { nodes: unknown }).nodes },
    field: "version",
    match: /"version": 1/,
  },
  { name: "missing nodes", graph: { version: 1 }, field: "nodes", pointer: "/nodes", match: /needs "nodes"/ },
  { name: "empty nodes", graph: { version: 1, nodes: {} }, field: "nodes", match: /no nodes/ },
  {
    name: "unknown top-level field",
    graph: base({}, { layout: { x: 1 } }),
    field: "layout",
    pointer: "/layout",
    match: /unknown top-level field.*no layout data/,
  },
  {
    name: "plugins not an array",
    graph: base({}, { plugins: "x.ts" }),
    field: "plugins",
    pointer: "/plugins",
    match: /must be array/,
  },
  {
    name: "unknown node type",
    graph: base({ extra: { type: "clip_encoder", inputs: {} } }),
    node: "extra",
    field: "type",
    pointer: "/nodes/extra/type",
    match: /unknown node type "clip_encoder" \(did you mean "clip_encode"\?\)/,
  },
  {
    name: "node without type",
    graph: base({ extra: { inputs: {} } }),
    node: "extra",
    field: "type",
    match: /missing required field "type"/,
  },
  {
    name: "unknown field in a node",
    graph: base({ extra: { type: "empty_latent", input: {} } }),
    node: "extra",
    field: "input",
    match: /unknown field \(did you mean "inputs"\?\)/,
  },
  {
    name: "invalid node id",
    graph: base({ "my node": { type: "empty_latent" } }),
    node: "my node",
    pointer: "/nodes/my node",
    match: /invalid node id/,
  },
  {
    name: "unknown input",
    graph: patch("sampler", { stepz: 3 }),
    node: "sampler",
    input: "stepz",
    pointer: "/nodes/sampler/inputs/stepz",
    match: /unknown input for sampler \(did you mean "steps"\?\)/,
  },
  {
    name: "wrong value type",
    graph: patch("sampler", { steps: "20" }),
    node: "sampler",
    input: "steps",
    pointer: "/nodes/sampler/inputs/steps",
    match: /must be integer, got "20"/,
  },
  {
    name: "out-of-range number",
    graph: patch("sampler", { steps: 0 }),
    node: "sampler",
    input: "steps",
    pointer: "/nodes/sampler/inputs/steps",
    match: /must be >= 1, got 0/,
  },
  {
    name: "above maximum",
    graph: patch("sampler", { cfg: 1000 }),
    node: "sampler",
    input: "cfg",
    match: /must be <= 100, got 1000/,
  },
  {
    name: "value not in enum",
    graph: patch("sampler", { sampler: "eulr" }),
    node: "sampler",
    input: "sampler",
    pointer: "/nodes/sampler/inputs/sampler",
    match: /must be one of .*"euler_a".*got "eulr" \(did you mean "euler"\?\)/,
  },
  {
    name: "non-integer for integer",
    graph: patch("sampler", { steps: 2.5 }),
    node: "sampler",
    input: "steps",
    match: /must be integer, got 2.5/,
  },
  {
    name: "width not a multiple of 8",
    graph: patch("latent", { width: 513 }),
    node: "latent",
    input: "width",
    pointer: "/nodes/latent/inputs/width",
    match: /multiple of 8, got 513/,
  },
  {
    name: "empty string where one is required",
    graph: patch("checkpoint", { path: "" }),
    node: "checkpoint",
    input: "path",
    match: /must NOT have fewer than 1 characters/,
  },
  {
    name: "missing required socket input",
    graph: patch("sampler", { latent: null }),
    node: "sampler",
    input: "latent",
    pointer: "/nodes/sampler/inputs/latent",
    match: /missing required input: connect a LATENT output/,
  },
  {
    name: "missing required value input",
    graph: patch("checkpoint", { path: null }),
    node: "checkpoint",
    input: "path",
    pointer: "/nodes/checkpoint/inputs/path",
    match: /missing required input/,
  },
  {
    name: "literal given to a socket input",
    graph: patch("decode", { vae: "vae.safetensors" }),
    node: "decode",
    input: "vae",
    match: /expects a VAE output, written \{ "from": "<node>.<output>" \}; got "vae.safetensors"/,
  },
  {
    name: "dangling reference",
    graph: patch("decode", { vae: { from: "chekpoint.vae" } }),
    node: "decode",
    input: "vae",
    pointer: "/nodes/decode/inputs/vae",
    match: /unknown node "chekpoint" \(did you mean "checkpoint"\?\)/,
  },
  {
    name: "reference to a missing output",
    graph: patch("decode", { vae: { from: "checkpoint.vea" } }),
    node: "decode",
    input: "vae",
    match: /has no output "vea" \(did you mean "vae"\?\); its outputs are: model \(MODEL\), clip \(CLIP\), vae \(VAE\)/,
  },
  {
    name: "wrong output type",
    graph: patch("sampler", { positive: { from: "checkpoint.vae" } }),
    node: "sampler",
    input: "positive",
    pointer: "/nodes/sampler/inputs/positive",
    match: /expects CONDITIONING, but "checkpoint.vae" is VAE/,
  },
  {
    name: "socket output into a value input",
    graph: patch("positive", { text: { from: "checkpoint.clip" } }),
    node: "positive",
    input: "text",
    match: /expects STRING, but "checkpoint.clip" is CLIP/,
  },
  {
    name: "reference syntax error",
    graph: patch("decode", { vae: { from: "checkpoint" } }),
    node: "decode",
    input: "vae",
    pointer: "/nodes/decode/inputs/vae/from",
    match: /malformed reference "checkpoint"/,
  },
  {
    name: "reference object with an extra field",
    graph: patch("decode", { vae: { from: "checkpoint.vae", output: "vae" } }),
    node: "decode",
    input: "vae",
    match: /unknown field "output"/,
  },
  {
    name: "self-reference",
    graph: patch("sampler", { latent: { from: "sampler.latent" } }),
    node: "sampler",
    input: "latent",
    match: /refers to its own output "sampler.latent"/,
  },
  {
    name: "cycle",
    graph: base({
      a: { type: "vae_decode", inputs: { vae: { from: "checkpoint.vae" }, latent: { from: "c.latent" } } },
      b: { type: "vae_encode", inputs: { vae: { from: "checkpoint.vae" }, image: { from: "a.image" } } },
      c: {
        type: "sampler",
        inputs: {
          model: { from: "checkpoint.model" },
          positive: { from: "positive.conditioning" },
          negative: { from: "negative.conditioning" },
          latent: { from: "b.latent" },
        },
      },
    }),
    node: "a",
    input: "latent",
    match: /cycle: "a" needs "c" needs "b" needs "a"/,
  },
  {
    name: "duplicate node id",
    graph:
      '{\n  "version": 1,\n  "nodes": {\n    "l": { "type": "empty_latent" },\n    "l": { "type": "empty_latent" }\n  }\n}',
    node: "l",
    pointer: "/nodes/l",
    line: 5,
    match: /duplicate node id \(first defined at line 4\)/,
  },
  {
    name: "duplicate input",
    graph: '{ "version": 1, "nodes": { "l": { "type": "empty_latent", "inputs": { "width": 64, "width": 128 } } } }',
    node: "l",
    input: "width",
    pointer: "/nodes/l/inputs/width",
    match: /duplicate key "width"/,
  },
  {
    name: "unknown plugin",
    graph: base({}, { plugins: ["./nope.ts"] }),
    field: "plugins",
    pointer: "/plugins/0",
    match: /plugin "\.\/nope\.ts" not found/,
  },
  {
    name: "plugin that throws on load",
    graph: base({}, { plugins: ["./throws.ts"] }),
    field: "plugins",
    pointer: "/plugins/0",
    match: /threw while loading: this plugin is broken on purpose/,
  },
  {
    name: "plugin exporting a malformed node",
    graph: base({}, { plugins: ["./malformed.ts"] }),
    field: "plugins",
    match: /node "no_run": "run" must be a function/,
  },
  {
    name: "plugin node with a malformed socket type",
    graph: base({}, { plugins: ["./bad_socket.ts"] }),
    field: "plugins",
    match: /output "out": socket type must be an UPPER_SNAKE_CASE string, got string "latent"/,
  },
  {
    name: "two plugins defining the same type",
    graph: base({}, { plugins: ["./dup_a.ts", "./dup_b.ts"] }),
    field: "plugins",
    pointer: "/plugins/1",
    match: /node type "twin" from plugin "\.\/dup_b\.ts" is already defined by plugin "\.\/dup_a\.ts"/,
  },
  {
    name: "plugin redefining a built-in node",
    graph: base({}, { plugins: ["./builtin_clash.ts"] }),
    field: "plugins",
    match: /"sampler" .* already defined by the built-in catalog/,
  },
  {
    name: "--set to an unknown node",
    graph: base(),
    opts: { overrides: ["samplr.seed=3"] },
    node: "samplr",
    match: /no such node in the graph \(did you mean "sampler"\?\)/,
  },
  {
    name: "--set to an unknown input",
    graph: base(),
    opts: { overrides: ["sampler.sed=3"] },
    node: "sampler",
    input: "sed",
    match: /sampler has no such input \(did you mean "seed"\?\)/,
  },
  {
    name: "--set with the wrong type",
    graph: base(),
    opts: { overrides: ["sampler.steps=many"] },
    node: "sampler",
    input: "steps",
    match: /expected an integer, got "many"/,
  },
  {
    name: "--set without node.input=",
    graph: base(),
    opts: { overrides: ["seed=3"] },
    match: /expected node.input=value/,
  },
  {
    name: "--set out of range",
    graph: base(),
    opts: { overrides: ["sampler.cfg=-1"] },
    node: "sampler",
    input: "cfg",
    pointer: "/nodes/sampler/inputs/cfg",
    match: /must be >= 0, got -1/,
  },
];

for (const c of cases) {
  Deno.test(`invalid graph: ${c.name}`, async () => {
    const d = await diagnose(c.graph, c.opts);
    const line = formatDiagnostic(d);
    assert.match(line, c.match);
    assert.equal(d.node, c.node, `node in: ${line}`);
    assert.equal(d.input, c.input, `input in: ${line}`);
    if (c.field !== undefined) assert.equal(d.field, c.field, `field in: ${line}`);
    if (c.pointer !== undefined) assert.equal(d.pointer, c.pointer, `pointer in: ${line}`);
    if (c.line !== undefined) assert.equal(d.line, c.line, `line in: ${line}`);
    if (c.node !== undefined) assert.ok(line.includes(`node "${c.node}"`), line);
    if (c.opts?.overrides) assert.ok(line.startsWith("--set "), line);
    else assert.ok(line.startsWith("graph.json"), line);
  });
}

Deno.test("invalid graph: at least 25 kinds are covered", () => {
  assert.ok(cases.length >= 25);
});

Deno.test("invalid graph: independent problems are all reported, one line each", async () => {
  const g = patch("sampler", { steps: 0, sampler: "x" });
  await assert.rejects(() => validateGraph(g), (e: GraphError) => {
    assert.equal(e.diagnostics.length, 2);
    assert.equal(e.message.split("\n").length, 2);
    return true;
  });
});
