/**
 * txt2img as a TypeScript graph: the same nodes as txt2img.json, wired with
 * the typed builder (a miswired input does not compile).
 *
 * Run: deno task gen graphs/txt2img.ts [--set sampler.seed=7]
 */

import { graph } from "../dsl/mod.ts";

const g = graph();
const checkpoint = g.checkpoint({ path: "models/v1-5-pruned-emaonly.safetensors" }, "checkpoint");
const positive = g.clip_encode(
  { clip: checkpoint.clip, text: "a photograph of an astronaut riding a horse" },
  "positive",
);
const negative = g.clip_encode({ clip: checkpoint.clip, text: "" }, "negative");
const latent = g.empty_latent({ width: 512, height: 512, batch: 1 }, "latent");
const sampled = g.sampler({
  model: checkpoint.model,
  positive: positive.conditioning,
  negative: negative.conditioning,
  latent: latent.latent,
  seed: 42,
  steps: 20,
  cfg: 7,
  sampler: "euler_a",
  scheduler: "discrete",
  rng: "cuda",
}, "sampler");
const image = g.vae_decode({ vae: checkpoint.vae, latent: sampled.latent }, "decode");
g.save_image({ images: image.image, path: "output.png" }, "save");

export default g;
