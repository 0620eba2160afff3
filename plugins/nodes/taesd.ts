/** `taesd`: loads TAESD, the tiny autoencoder, as a VAE (fast decoding and encoding, live previews). */

import { defineNode, NodeInputError, type NodeValues } from "../node.ts";
import { BACKEND_INPUT, fileFingerprint, loadOptions } from "./checkpoint.ts";
import { loadTaesd } from "./model_layer.ts";

/** Loads a TAESD file; its `vae` output works wherever a checkpoint's VAE does. */
export const taesd = defineNode({
  type: "taesd",
  category: "loaders",
  description: "Loads TAESD, the tiny autoencoder (diffusers AutoencoderTiny `decoder.layers.*` / " +
    "`encoder.layers.*` names, or the original taesd_decoder / taesd_encoder files), as a VAE: wire its `vae` " +
    "into vae_decode / vae_encode in place of the checkpoint's (stable-diffusion.cpp's --taesd). It takes the " +
    "sampler's latents as they are (no scaling factor); its blocks are 64 channels wide (the full VAE's up " +
    "to 512), so it is much faster, at lower quality.",
  inputs: {
    path: {
      schema: {
        type: "string",
        minLength: 1,
        description: "Path of the TAESD file (.safetensors, .pth, .gguf).",
        examples: ["models/taesd.safetensors"],
      },
    },
    backend: BACKEND_INPUT,
  },
  outputs: { vae: "VAE" },
  fingerprint: (values: NodeValues) => fileFingerprint(values.path),
  async run({ path, backend }, ctx) {
    try {
      await Deno.stat(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new NodeInputError("path", `TAESD file not found: ${path}`);
      throw e;
    }
    let vae;
    try {
      vae = await loadTaesd(path, await loadOptions(ctx.settings, backend));
    } catch (e) {
      throw new NodeInputError("path", (e as Error).message);
    }
    ctx.onDispose(() => vae.dispose());
    return { vae };
  },
  async estimate({ path }) {
    let bytes = 0;
    try {
      bytes = (await Deno.stat(path)).size;
    } catch {
      return { ops: [], note: `${path} is not present: load size unknown`, outputs: { vae: { taesd: path } } };
    }
    return { ops: [{ op: "load_weights", flops: 0, bytes }], outputs: { vae: { taesd: path } } };
  },
});
