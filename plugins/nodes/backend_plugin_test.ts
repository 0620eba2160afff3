/**
 * A graph's plugins can register a backend (examples/plugins/backend-plugin: the portable C reference
 * backend `sdflow-ref-example`, built from its sources when its library is missing or stale), and the
 * loader nodes' `backend` input — or `deno task gen --backend NAME` — picks it by name. That backend
 * implements no convolution, so a graph with conv2d must fail with its own clear message.
 */

import assert from "node:assert/strict";
import { runPipeline } from "../../dsl/run.ts";
import { validateGraph } from "../../dsl/validate.ts";

const PLUGIN = new URL("../../examples/plugins/backend-plugin/plugin.ts", import.meta.url).href;
const root = new URL("../../", import.meta.url).pathname;
const CONV_MISSING = /sdflow-ref-example does not implement conv2d .*it implements matmul/;

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

Deno.test("selecting the plugin's backend by name for a graph with conv2d gives its 'does not implement conv2d' error", async () => {
  const p = await validateGraph(decodeGraph("sdflow-ref-example"));
  await assert.rejects(() => runPipeline(p), (e: Error) => {
    assert.match(e.message, /^node "decode" \(vae_decode\): /);
    assert.match(e.message, CONV_MISSING);
    return true;
  });
});

Deno.test("gen --backend NAME picks a backend that the graph's plugins register", async () => {
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
    assert.equal(r.code, 1, stderr);
    const errors = stderr.split("\n").filter((l) => l.startsWith("error: "));
    assert.equal(errors.length, 1, stderr);
    assert.match(errors[0], CONV_MISSING);
    assert.doesNotMatch(stderr, /^\s+at .+:\d+:\d+/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
