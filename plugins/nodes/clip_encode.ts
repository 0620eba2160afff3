/** `clip_encode`: turns a prompt into conditioning with the checkpoint's text encoder. */

import { defineNode, NodeInputError } from "../node.ts";
import { PromptWeightError } from "../../models/mod.ts";
import { estimateNetwork } from "./model_layer.ts";

/** Encodes a prompt (positive or negative) into cross-attention conditioning. */
export const clipEncode = defineNode({
  type: "clip_encode",
  category: "conditioning",
  description: "Encodes a text prompt with the checkpoint's CLIP text encoder into conditioning for the sampler " +
    "(SDXL: both encoders, and the pooled vector; an empty negative prompt gives a zero context, as sd.cpp).",
  inputs: {
    clip: { type: "CLIP", description: "The text encoder (a checkpoint's clip output)." },
    text: { schema: { type: "string", default: "", description: "The prompt. Empty for an unconditional prompt." } },
    clip_skip: {
      optional: true,
      schema: {
        type: "integer",
        minimum: 1,
        maximum: 12,
        description: "Which CLIP layer to take: 1 = last, 2 = penultimate (as sd-webui and stable-diffusion.cpp " +
          "count). Omitted: the model's default (1 for SD 1.x, 2 for SD 2.x and SDXL).",
      },
    },
  },
  outputs: { conditioning: "CONDITIONING" },
  async run({ clip, text, clip_skip }) {
    let conditioning;
    try {
      conditioning = await clip.encode(text, clip_skip === undefined ? {} : { clipSkip: clip_skip });
    } catch (e) {
      if (e instanceof PromptWeightError) throw new NodeInputError("text", e.message);
      throw e;
    }
    // The prompt travels with the conditioning (also when `text` is wired from another node's output),
    // so that a sampler can describe its pictures.
    return {
      conditioning: { ...conditioning, prompt: text, ...(clip_skip === undefined ? {} : { clipSkip: clip_skip }) },
    };
  },
  async estimate({ clip }) {
    if (!clip?.checkpoint) return { ops: [], note: "text encoder unknown" };
    const r = await estimateNetwork("text_encoder", { checkpoint: clip.checkpoint, tokens: 77 });
    return { ops: r.ops ?? [], note: r.note, outputs: { conditioning: { checkpoint: clip.checkpoint } } };
  },
});
