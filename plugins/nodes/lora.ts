/** `lora`: applies a LoRA file to a model's UNet and text encoder (ComfyUI's LoraLoader). */

import { defineNode, NodeInputError, type NodeValues } from "../node.ts";
import { applyPatches, loadLora, LoraError, PatchError } from "./model_layer.ts";

/** stable-diffusion.cpp's `--lora-apply-mode` values; sdflow has no quantized weights, so `auto` merges. */
export const LORA_APPLY_MODES = ["auto", "immediately", "at_runtime"] as const;

const strength = (what: string, comfy: string) =>
  ({
    schema: {
      type: "number",
      minimum: -100,
      maximum: 100,
      default: 1,
      description: `Multiplier of the LoRA's ${what} deltas (ComfyUI's ${comfy}; 0 leaves it unchanged).`,
    },
  }) as const;

/** Applies one LoRA; chain several for several LoRAs, each with its own strengths. */
export const lora = defineNode({
  type: "lora",
  category: "loaders",
  description: "Applies a LoRA (kohya, LyCORIS LoCon, diffusers or PEFT .safetensors/.ckpt file) to a model's UNet " +
    "and text encoder, each scaled by its strength. Chain several lora nodes to combine LoRAs.",
  inputs: {
    model: { type: "MODEL", description: "The UNet to patch (a checkpoint's or another lora's model output)." },
    clip: { type: "CLIP", description: "The text encoder to patch (a checkpoint's or another lora's clip output)." },
    path: {
      schema: {
        type: "string",
        minLength: 1,
        description: "Path of the LoRA file, relative to the working directory.",
        examples: ["models/loras/my-style.safetensors"],
      },
    },
    strength_model: strength("UNet", "strength_model"),
    strength_clip: strength("text encoder", "strength_clip"),
    apply_mode: {
      schema: {
        enum: LORA_APPLY_MODES,
        default: "auto",
        description: "As stable-diffusion.cpp's --lora-apply-mode: `immediately` merges the deltas into the " +
          "weights once (W + scale·up·down); `at_runtime` keeps the weights and adds scale·up(down(x)) in every " +
          "patched layer (no merged copies, a little more work per step); `auto` merges.",
      },
    },
  },
  outputs: { model: "MODEL", clip: "CLIP" },
  async fingerprint(values: NodeValues) {
    try {
      const st = await Deno.stat(String(values.path));
      return [st.size, st.mtime?.getTime() ?? 0];
    } catch {
      return null;
    }
  },
  async run({ model, clip, path, strength_model, strength_clip, apply_mode }, ctx) {
    if (!model.patchableWeights || !clip.patchableWeights) {
      throw new NodeInputError(!model.patchableWeights ? "model" : "clip", "this model cannot be patched");
    }
    let loaded;
    try {
      loaded = await loadLora(path, {
        family: model.family,
        unet: model.patchableWeights(),
        text: clip.patchableWeights(),
      }, {
        strengthModel: strength_model,
        strengthClip: strength_clip,
        mode: apply_mode === "at_runtime" ? "runtime" : "merge",
      });
    } catch (e) {
      if (e instanceof LoraError) throw new NodeInputError("path", e.message);
      throw e;
    }
    for (const w of loaded.warnings) ctx.log(`${ctx.nodeId}: ${w}`);
    const how = apply_mode === "at_runtime" ? "applied at run time" : "merged into the weights on first use";
    ctx.log(
      `${ctx.nodeId}: ${loaded.model.deltas.length} UNet and ${loaded.clip.deltas.length} text encoder layers, ${how}`,
    );
    try {
      const patchedModel = applyPatches(
        model,
        strength_model && loaded.model.deltas.length ? [loaded.model] : [],
        "MODEL",
      );
      const patchedClip = applyPatches(clip, strength_clip && loaded.clip.deltas.length ? [loaded.clip] : [], "CLIP");
      ctx.onDispose(() => {
        if (patchedModel !== model) patchedModel.release?.();
        if (patchedClip !== clip) patchedClip.release?.();
      });
      ctx.publish({ lora: path, lora_layers: loaded.applied });
      return { model: patchedModel, clip: patchedClip };
    } catch (e) {
      if (e instanceof PatchError) throw new NodeInputError("path", `${path}: ${e.message}`);
      throw e;
    }
  },
  async estimate({ model, clip, path, apply_mode }) {
    let bytes = 0;
    let note: string | undefined;
    try {
      bytes = (await Deno.stat(path)).size;
    } catch {
      note = `${path} is not present: size unknown`;
    }
    const how = apply_mode === "at_runtime"
      ? "factors memory-mapped; two thin products per patched layer and evaluation"
      : "each patched weight merged once (W + scale·up·down, rounded to its dtype) before first use";
    return {
      ops: [{ op: "lora_load", flops: 0, bytes, note: how }],
      outputs: { model: model ?? {}, clip: clip ?? {} },
      note,
    };
  },
});
