// Compile-time wiring checks of the typed builder: every @ts-expect-error line
// must be a type error, or `deno check` fails with "Unused '@ts-expect-error' directive".
import { graph } from "../mod.ts";

const g = graph();
const ckpt = g.checkpoint({ path: "model.safetensors" });
const pos = g.clip_encode({ clip: ckpt.clip, text: "a cat" });
const neg = g.clip_encode({ clip: ckpt.clip, text: "" });
const latent = g.empty_latent({ width: 512, height: 512 });

// A VAE is not conditioning.
// @ts-expect-error VAE wired into a CONDITIONING input
g.sampler({ model: ckpt.model, positive: ckpt.vae, negative: neg, latent });

// A prompt must be a string.
// @ts-expect-error number given to a string input
g.clip_encode({ clip: ckpt.clip, text: 42 });

// Enums are checked.
// @ts-expect-error "eulr" is not a sampling method
g.sampler({ model: ckpt.model, positive: pos, negative: neg, latent, sampler: "eulr" });

// Required inputs are required.
// @ts-expect-error missing "latent"
g.sampler({ model: ckpt.model, positive: pos, negative: neg });

// Unknown node types do not exist on the builder.
// @ts-expect-error no such node type
g.no_such_node({});

// Correct wiring compiles: outputs by name, or a one-output node passed whole.
const s = g.sampler({ model: ckpt.model, positive: pos.conditioning, negative: neg, latent: latent.latent, seed: 1 });
g.save_image({ images: g.vae_decode({ vae: ckpt.vae, latent: s }) });

export default g;
