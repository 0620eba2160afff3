/**
 * A TypeScript graph in the documented form (docs/plugins.md: `graph({ nodes, plugins })`), run
 * through the real `gen` from the user's folder: its plugin's nodes register once, a plugin sampler's
 * pictures get their `parameters` (prompt wired from another node's output included, a seed per
 * picture), and the graph saved into the PNG runs again and remakes the picture.
 */

import assert from "node:assert/strict";
import { parseParameters, readPng } from "../plugins/image/png.ts";

const root = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const dec = new TextDecoder();

/** `sdflow gen …` as the installed command runs it, from `cwd` (no inherited INIT_CWD). */
async function gen(cwd: string, ...args: string[]) {
  const env: Record<string, string> = { ...Deno.env.toObject(), NO_COLOR: "1" };
  delete env.INIT_CWD;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", `${root}/deno.json`, `${root}/cli/main.ts`, "gen", ...args],
    cwd,
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A third party's plugin: a sampler of its own type (the built-in algorithm under another name) and a prompt maker. */
const PLUGIN = `import { defineNode } from "${root}/plugins/node.ts";
import { sampler } from "${root}/plugins/nodes/sampler.ts";

export const mySampler = defineNode({ ...sampler, type: "my_sampler", description: "A plugin's sampler." });

export const promptMaker = defineNode({
  type: "prompt_maker",
  description: "Makes a prompt from a subject.",
  inputs: { subject: { schema: { type: "string", default: "cat" } } },
  outputs: { text: "STRING" },
  run: ({ subject }) => Promise.resolve({ text: "a " + subject + " in a tiny hat" }),
});

export default { nodes: [mySampler, promptMaker] };
`;

/** The graph, as docs/plugins.md writes one: node definitions for the typed builder, and their module in plugins. */
const GRAPH = `import { graph } from "${root}/dsl/mod.ts";
import { mySampler, promptMaker } from "./my_nodes.ts";

const g = graph({ nodes: [mySampler, promptMaker], plugins: ["./my_nodes.ts"] });
const ckpt = g.tiny_checkpoint({ seed: 0 }, "checkpoint");
const words = g.prompt_maker({ subject: "dog" }, "words");
const positive = g.clip_encode({ clip: ckpt.clip, text: words.text }, "positive");
const negative = g.clip_encode({ clip: ckpt.clip, text: "blurry" }, "negative");
const latent = g.empty_latent({ width: 64, height: 64, batch: 2 }, "latent");
const sampled = g.my_sampler(
  { model: ckpt.model, positive, negative, latent, seed: 42, steps: 2, cfg: 7, sampler: "euler" },
  "sampler",
);
const image = g.vae_decode({ vae: ckpt.vae, latent: sampled }, "decode");
g.save_image({ images: image, path: "out/pic.png" }, "save");
export default g;
`;

Deno.test("gen: a TypeScript graph listing its plugins runs; its pictures carry parameters and a re-runnable graph", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-plugin-graph-" });
  try {
    await Deno.writeTextFile(`${dir}/my_nodes.ts`, PLUGIN);
    await Deno.writeTextFile(`${dir}/graph.ts`, GRAPH);
    const r = await gen(dir, "graph.ts");
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /already defined/);
    for (const [i, seed] of [[1, 42], [2, 43]]) {
      const png = await readPng(`${dir}/out/pic_${i}.png`);
      const p = parseParameters(png.parameters!);
      assert.equal(p.prompt, "a dog in a tiny hat", "the prompt wired from prompt_maker");
      assert.equal(p.negativePrompt, "blurry");
      assert.equal(p.fields.Seed, String(seed));
      assert.equal(p.fields.Steps, "2");
      assert.equal(p.fields.Sampler, "Euler");
      assert.equal(p.fields.Model, "tiny (random weights, seed 0)");
      const graph = png.graph as { plugins?: string[]; nodes: Record<string, { type: string }> };
      assert.deepEqual(graph.plugins, [`file://${dir}/my_nodes.ts`]);
      assert.equal(graph.nodes.sampler.type, "my_sampler");
    }

    // The graph stored in the picture runs again, from the JSON alone, and remakes the picture.
    const first = await readPng(`${dir}/out/pic_1.png`);
    const again = structuredClone(first.graph) as { nodes: { save: { inputs: { path: string } } } };
    again.nodes.save.inputs.path = "again/pic.png";
    await Deno.mkdir(`${dir}/elsewhere`);
    await Deno.writeTextFile(`${dir}/elsewhere/saved.json`, JSON.stringify(again));
    const re = await gen(`${dir}/elsewhere`, "saved.json");
    assert.equal(re.code, 0, re.stderr);
    const remade = await readPng(`${dir}/elsewhere/again/pic_1.png`);
    assert.deepEqual(remade.image, first.image);
    assert.equal(remade.parameters, first.parameters);

    // Node types given to the builder but in no plugin: refused, since saved pictures could not be re-run.
    await Deno.writeTextFile(`${dir}/unlisted.ts`, GRAPH.replace(`, plugins: ["./my_nodes.ts"]`, ""));
    const unlisted = await gen(dir, "unlisted.ts", "--dry-run");
    assert.equal(unlisted.code, 1);
    assert.match(
      unlisted.stderr,
      /node type "my_sampler" is given to graph\(\{ nodes \}\) but no module in its plugins/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
