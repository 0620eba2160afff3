/** The typed builder: JSON it writes, ids, and compile-time wiring checks. */

import assert from "node:assert/strict";
import { graph } from "./builder.ts";
import { validateGraph } from "./validate.ts";

Deno.test("builder: writes named references and validates like a JSON graph", async () => {
  const g = graph();
  const ckpt = g.checkpoint({ path: "m.safetensors" });
  const pos = g.clip_encode({ clip: ckpt.clip, text: "a cat" });
  const neg = g.clip_encode({ clip: ckpt.clip });
  const latent = g.empty_latent({ width: 256, height: 256 });
  const s = g.sampler({ model: ckpt.model, positive: pos, negative: neg.conditioning, latent, seed: 3 }, "sampler");
  g.save_image({ images: g.vae_decode({ vae: ckpt.vae, latent: s }) });
  const json = g.toJSON();
  assert.deepEqual(Object.keys(json.nodes), [
    "checkpoint",
    "clip_encode",
    "clip_encode_2",
    "empty_latent",
    "sampler",
    "vae_decode",
    "save_image",
  ]);
  assert.deepEqual(json.nodes.sampler.inputs, {
    model: { from: "checkpoint.model" },
    positive: { from: "clip_encode.conditioning" },
    negative: { from: "clip_encode_2.conditioning" },
    latent: { from: "empty_latent.latent" },
    seed: 3,
  });
  const p = await validateGraph(json);
  assert.equal(p.order.at(-1), "save_image");
});

Deno.test("builder: a duplicate id is an error naming it", () => {
  const g = graph();
  g.empty_latent({}, "l");
  assert.throws(() => g.empty_latent({}, "l"), /node "l": duplicate node id/);
});

Deno.test("builder: miswiring is a compile-time error (deno check of testdata/miswired_graph.ts)", async () => {
  const file = new URL("./testdata/miswired_graph.ts", import.meta.url);
  const check = (path: string | URL) =>
    new Deno.Command(Deno.execPath(), {
      args: ["check", "-q", path instanceof URL ? path.pathname : path],
      stderr: "piped",
    })
      .output();
  // With the @ts-expect-error lines, it checks: each marks a real type error.
  const ok = await check(file);
  assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
  // Without the first one, the VAE-into-CONDITIONING line fails to compile.
  const src = await Deno.readTextFile(file);
  const tmp = new URL("./testdata/miswired_graph.tmp.ts", import.meta.url);
  await Deno.writeTextFile(tmp, src.replace("// @ts-expect-error VAE wired into a CONDITIONING input\n", ""));
  try {
    const bad = await check(tmp);
    const err = new TextDecoder().decode(bad.stderr);
    assert.notEqual(bad.code, 0);
    assert.match(err, /"VAE"' is not assignable to type '"CONDITIONING"'/);
  } finally {
    await Deno.remove(tmp);
  }
});
