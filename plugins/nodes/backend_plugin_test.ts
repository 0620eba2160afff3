/**
 * A graph's plugins can register a backend (examples/plugins/backend-plugin: the portable C reference
 * backend `sdflow-ref-example`, built from its sources when its library is missing or stale), and the
 * loader nodes' `backend` input — or `deno task gen --backend NAME` — picks it by name. That backend
 * implements no convolution: the planner places the convs on the CPU backend (issue 9), so a graph with conv2d
 * runs, and gives the picture it gives on the CPU.
 */

import assert from "node:assert/strict";
import { runPipeline } from "../../dsl/run.ts";
import { validateGraph } from "../../dsl/validate.ts";

const PLUGIN = new URL("../../examples/plugins/backend-plugin/plugin.ts", import.meta.url).href;
const root = new URL("../../", import.meta.url).pathname;

/** Decodes an empty latent with the tiny model's VAE: the decoder starts with a 3x3 conv2d. */
const decodeGraph = (backend?: string) => ({
  version: 1,
  plugins: [PLUGIN],
  nodes: {
    checkpoint: { type: "tiny_checkpoint", inputs: backend ? { backend } : {} },
    latent: { type: "empty_latent", inputs: { width: 64, height: 64 } },
    decode: { type: "vae_decode", inputs: { vae: { from: "checkpoint.vae" }, latent: { from: "latent.latent" } } },
  },
});

Deno.test("a graph listing the example backend plugin validates and registers its backend", async () => {
  const p = await validateGraph(decodeGraph("sdflow-ref-example"));
  assert.deepEqual(p.registry.backends().map((b) => b.name), ["sdflow-ref-example"]);
  assert.deepEqual(p.nodes.get("checkpoint")!.values.backend, "sdflow-ref-example");
});

Deno.test("the plugin's backend, selected by name, runs a graph with conv2d: the convs go to the CPU", async () => {
  const decode = async (backend?: string) => {
    const p = await validateGraph(decodeGraph(backend));
    const r = await runPipeline(p);
    const image = r.outputs.get("decode")!.image as { data: Uint8Array } | { data: Uint8Array }[];
    return Array.isArray(image) ? image[0].data : image.data;
  };
  const mine = await decode("sdflow-ref-example");
  const cpu = await decode();
  let worst = 0;
  for (let i = 0; i < cpu.length; i++) worst = Math.max(worst, Math.abs(mine[i] - cpu[i]));
  // Other kernels (the reference backend's portable C) in another order: at most one level off after rounding.
  assert(worst <= 1, `pixels differ by ${worst} levels`);
});

Deno.test("gen --backend NAME picks a backend that the graph's plugins register (its missing ops on the CPU)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/graph.json`, JSON.stringify(decodeGraph()));
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "cli/gen.ts", `${dir}/graph.json`, "--backend", "sdflow-ref-example"],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const stderr = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, stderr);
    assert.doesNotMatch(stderr, /^error: /m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
