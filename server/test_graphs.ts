/** The txt2img graph on the tiny random-weight checkpoint that the server tests send (one definition for all). */

export interface TinyGraphOptions {
  prompt?: string;
  seed?: number;
  steps?: number;
  size?: number;
  path?: string;
  /** The tiny checkpoint's weight seed (another seed: another model). */
  checkpointSeed?: number;
}

/** tiny_checkpoint → clip_encode ×2 → empty_latent → sampler (euler) → vae_decode → save_image. */
export function tinyGraph(o: TinyGraphOptions = {}) {
  const size = o.size ?? 64;
  return {
    version: 1,
    nodes: {
      checkpoint: {
        type: "tiny_checkpoint",
        inputs: o.checkpointSeed === undefined ? {} : { seed: o.checkpointSeed },
      },
      positive: { type: "clip_encode", inputs: { clip: { from: "checkpoint.clip" }, text: o.prompt ?? "a cat" } },
      negative: { type: "clip_encode", inputs: { clip: { from: "checkpoint.clip" }, text: "" } },
      latent: { type: "empty_latent", inputs: { width: size, height: size } },
      sampler: {
        type: "sampler",
        inputs: {
          model: { from: "checkpoint.model" },
          positive: { from: "positive.conditioning" },
          negative: { from: "negative.conditioning" },
          latent: { from: "latent.latent" },
          seed: o.seed ?? 42,
          steps: o.steps ?? 2,
          sampler: "euler",
        },
      },
      decode: { type: "vae_decode", inputs: { vae: { from: "checkpoint.vae" }, latent: { from: "sampler.latent" } } },
      save: { type: "save_image", inputs: { images: { from: "decode.image" }, path: o.path ?? "out.png" } },
    },
  };
}
