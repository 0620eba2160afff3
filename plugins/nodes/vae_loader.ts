/** `vae_loader`: a VAE from its own file, for `vae_decode` / `vae_encode` in place of a checkpoint's. */

import { defineNode } from "../node.ts";
import { BACKEND_INPUT, loadOptions, requirePath, VAE_PATH_DESCRIPTION } from "./checkpoint.ts";
import { loadVae } from "./model_layer.ts";

export const vaeLoader = defineNode({
  type: "vae_loader",
  category: "loaders",
  description: "Loads a VAE on its own (ComfyUI's VAELoader). The checkpoint node's `vae` input does the same and " +
    "shares the checkpoint's memory; this node keeps its own.",
  inputs: {
    path: {
      schema: {
        type: "string",
        minLength: 1,
        description: VAE_PATH_DESCRIPTION,
        examples: ["models/sdxl-vae-fp16-fix.safetensors"],
      },
    },
    model: {
      type: "MODEL",
      optional: true,
      description: "The model whose latents the VAE decodes: its family sets the latent scaling factor " +
        "(SDXL 0.13025, SD 1.x/2.x 0.18215). Without it: SD 1.x/2.x.",
    },
    backend: BACKEND_INPUT,
  },
  outputs: { vae: "VAE" },
  async run({ path, model, backend }, ctx) {
    await requirePath("path", path, "VAE file");
    const opts = await loadOptions(ctx.settings, backend);
    const vae = await loadVae(path, { ...opts, ...(model ? { model: { family: model.family } } : {}) });
    ctx.onDispose(() => vae.dispose(), { bytes: vae.weightBytes });
    return { vae };
  },
  estimate({ path }) {
    return {
      ops: [{ op: "load_weights", flops: 0, bytes: 0, note: "mmap" }],
      outputs: { vae: { checkpoint: path } },
    };
  },
});
