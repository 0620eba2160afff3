/**
 * ControlNet tensor names: the original (lllyasviel / ldm) layout the network builder reads
 * (`input_hint_block.0.weight`, `zero_convs.3.0.bias`, the UNet encoder's `input_blocks.*`), from
 * a file in that layout (optionally under `control_model.`) or in the diffusers layout
 * (`controlnet_cond_embedding.*`, `controlnet_down_blocks.N`, `controlnet_mid_block`, and the UNet
 * encoder's diffusers names `conv_in`, `time_embedding`, `add_embedding`, `down_blocks`, `mid_block`),
 * as stable-diffusion.cpp's name conversion maps them.
 */

import { diffusersToLdmName } from "../weights/names.ts";
import type { TensorInfo } from "../weights/mod.ts";

const UNET = "model.diffusion_model.";

/** diffusers ControlNet-only prefixes → original ones. */
const CONTROLNET_ONLY: readonly [string, string][] = [
  ["controlnet_cond_embedding.conv_in.", "input_hint_block.0."],
  ...[0, 1, 2, 3, 4, 5].map((
    i,
  ): [string, string] => [`controlnet_cond_embedding.blocks.${i}.`, `input_hint_block.${2 * i + 2}.`]),
  ["controlnet_cond_embedding.conv_out.", "input_hint_block.14."],
  ["controlnet_mid_block.", "middle_block_out.0."],
];

/** The layout of a ControlNet file, from its tensor names. */
export type ControlNetLayout = "original" | "diffusers";

/** Which layout `names` are in, or undefined when they are not a ControlNet's. */
export function controlNetLayout(names: Iterable<string>): { layout: ControlNetLayout; prefix: string } | undefined {
  for (const n of names) {
    if (n === "control_model.input_hint_block.0.weight") return { layout: "original", prefix: "control_model." };
    if (n === "input_hint_block.0.weight") return { layout: "original", prefix: "" };
    if (n === "controlnet_cond_embedding.conv_in.weight") return { layout: "diffusers", prefix: "" };
  }
  return undefined;
}

/** The original name of one diffusers ControlNet tensor, or undefined when it has none. */
export function diffusersControlNetName(name: string): string | undefined {
  for (const [from, to] of CONTROLNET_ONLY) if (name.startsWith(from)) return to + name.slice(from.length);
  const m = /^controlnet_down_blocks\.(\d+)\.(.+)$/.exec(name);
  if (m) return `zero_convs.${m[1]}.0.${m[2]}`;
  // The encoder: the UNet's names (no up blocks in a ControlNet, so no context is needed for them).
  const ldm = diffusersToLdmName(`unet.${name}`, { family: "sd1", upBlocksWithAttention: new Set() });
  return ldm && !ldm.part && !ldm.reshape && ldm.name.startsWith(UNET) ? ldm.name.slice(UNET.length) : undefined;
}

/**
 * The file's tensors by original name (no prefix). Throws an Error listing the tensors of a
 * diffusers-layout file that have no original name (not a ControlNet's, or a kind not supported).
 */
export function controlNetTensors(
  tensors: ReadonlyMap<string, TensorInfo>,
  layout: ControlNetLayout,
  prefix: string,
): Map<string, TensorInfo> {
  const out = new Map<string, TensorInfo>();
  if (layout === "original") {
    for (const [n, t] of tensors) if (n.startsWith(prefix)) out.set(n.slice(prefix.length), t);
    return out;
  }
  const unknown: string[] = [];
  for (const [n, t] of tensors) {
    const name = diffusersControlNetName(n);
    if (name === undefined) unknown.push(n);
    else out.set(name, t);
  }
  if (unknown.length > 0) {
    const shown = unknown.slice(0, 3).join(", ") + (unknown.length > 3 ? ` and ${unknown.length - 3} more` : "");
    throw new Error(`tensors with no ControlNet meaning: ${shown}`);
  }
  return out;
}
