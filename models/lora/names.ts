/**
 * LoRA tensor names → the checkpoint weights they change.
 *
 * LoRA files name a layer in one of several conventions:
 * - kohya / LyCORIS: `lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight`,
 *   `lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha`, SDXL `lora_te1_…`, `lora_te2_…`
 *   and ldm-style UNet names `lora_unet_input_blocks_4_1_…`; LoCon adds the ResNet convolutions
 *   (`…_resnets_0_conv1`);
 * - diffusers: `unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight`,
 *   attention processors `….attn1.processor.to_q_lora.down.weight`, `lora_linear_layer.up.weight`;
 * - PEFT: `….to_q.lora_A.weight` / `lora_B.weight` (optionally `.default`, `base_model.model.`).
 *
 * Rather than re-deriving ldm names from each convention, this module indexes the checkpoint's
 * own weights under every name a LoRA may use for them (ldm and diffusers paths, with `.` and `_`
 * folded together, per component), then looks a LoRA's layer key up in that index. A layer the
 * model does not have is then simply not found, and reported.
 */

import { ldmToDiffusersNames, type ModelFamily } from "../weights/names.ts";
import type { RowRange } from "../patch.ts";

/** Which network a LoRA layer belongs to: the UNet, the (first) text encoder, SDXL's second. */
export type LoraComponent = "unet" | "te1" | "te2";

/** What a LoRA tensor is to its layer. */
export type LoraPart = "down" | "up" | "mid" | "alpha" | "scale" | "diff";

/** A checkpoint weight a LoRA layer changes. */
export interface LoraTarget {
  readonly component: LoraComponent;
  /** ldm name of the weight. */
  readonly name: string;
  /** The LoRA layer covers only these rows (a q/k/v third of a fused OpenCLIP in_proj_weight). */
  readonly rows?: RowRange;
}

/** Tensor-name suffixes, longest first: what the tensor is to its layer. */
const SUFFIXES: readonly [string, LoraPart][] = [
  [".lora_linear_layer.down.weight", "down"],
  [".lora_linear_layer.up.weight", "up"],
  [".lora_A.default.weight", "down"],
  [".lora_B.default.weight", "up"],
  [".lora_down.weight", "down"],
  [".lora_up.weight", "up"],
  [".lora_mid.weight", "mid"],
  [".lora.down.weight", "down"],
  [".lora.up.weight", "up"],
  [".lora.mid.weight", "mid"],
  ["_lora.down.weight", "down"],
  ["_lora.up.weight", "up"],
  [".lora_A.weight", "down"],
  [".lora_B.weight", "up"],
  [".alpha", "alpha"],
  [".scale", "scale"],
  [".diff", "diff"],
];

/** Name prefixes that say which network a layer is in, after the file-level prefixes are gone. */
const COMPONENT_PREFIXES: readonly [string, LoraComponent][] = [
  ["unet_", "unet"],
  ["unet.", "unet"],
  ["model.diffusion_model.", "unet"],
  ["diffusion_model.", "unet"],
  ["te1_", "te1"],
  ["te2_", "te2"],
  ["te_", "te1"],
  ["te1.", "te1"],
  ["te2.", "te2"],
  ["te.", "te1"],
  ["text_encoder_2.", "te2"],
  ["text_encoder.", "te1"],
  ["cond_stage_model.transformer.", "te1"],
  ["conditioner.embedders.0.transformer.", "te1"],
];

/** Prefixes of a whole file's names (kohya's `lora_`, LyCORIS's `lycoris_`, PEFT's `base_model.model.`). */
const FILE_PREFIXES = ["lora_", "lycoris_", "lora.", "lycoris.", "base_model.model."];

/** UNet paths written without a component prefix (PEFT's UNet-only files). */
const BARE_UNET =
  /^(down_blocks|mid_block|up_blocks|conv_in|conv_out|time_embedding|conv_norm_out|input_blocks|middle_block|output_blocks)[._]/;

/** `.` and `_` folded together: kohya's `down_blocks_0_attentions_0` and diffusers' `down_blocks.0.attentions.0` meet. */
const fold = (path: string): string => path.replace(/\./g, "_");

/** A LoRA tensor's layer key (component + folded path) and part, or undefined when the name is not a LoRA tensor's. */
export function parseLoraName(tensorName: string): { key: string; part: LoraPart } | undefined {
  const suffix = SUFFIXES.find(([s]) => tensorName.endsWith(s));
  if (!suffix) return undefined;
  let path = tensorName.slice(0, tensorName.length - suffix[0].length);
  for (const p of FILE_PREFIXES) {
    if (path.startsWith(p)) {
      path = path.slice(p.length);
      break;
    }
  }
  let component: LoraComponent | undefined;
  for (const [p, c] of COMPONENT_PREFIXES) {
    if (path.startsWith(p)) {
      component = c;
      path = path.slice(p.length);
      break;
    }
  }
  if (!component) {
    if (BARE_UNET.test(path)) component = "unet";
    else if (path.startsWith("text_model")) component = "te1";
    else return undefined;
  }
  // diffusers attention processors: `attn1.processor.to_out_lora` is the layer `attn1.to_out.0`.
  path = path.replace(/\.processor\./, ".").replace(/(^|[._])to_out$/, "$1to_out_0");
  return { key: `${component}:${fold(path)}`, part: suffix[1] };
}

/** Checkpoint weights by every layer key a LoRA may use for them. */
export type LoraTargetIndex = ReadonlyMap<string, LoraTarget>;

/**
 * Indexes a model's weights by LoRA layer key: each UNet weight under its ldm path and its diffusers
 * path, each text encoder weight under its Hugging Face path (an OpenCLIP in_proj_weight under its
 * q, k and v paths, each with its rows).
 *
 * @param unet UNet weights (ldm name → shape), names starting `model.diffusion_model.`
 * @param text text encoder weights (ldm name → shape)
 */
export function buildTargetIndex(
  family: ModelFamily,
  unet: ReadonlyMap<string, readonly number[]>,
  text: ReadonlyMap<string, readonly number[]>,
): LoraTargetIndex {
  const index = new Map<string, LoraTarget>();
  const put = (key: string, t: LoraTarget) => {
    if (!index.has(key)) index.set(key, t);
  };
  const UNET = "model.diffusion_model.";
  for (const name of unet.keys()) {
    if (!name.endsWith(".weight") || !name.startsWith(UNET)) continue;
    put(`unet:${fold(name.slice(UNET.length, -".weight".length))}`, { component: "unet", name });
    for (const d of ldmToDiffusersNames(name, family)) {
      if (d.startsWith("unet.") && d.endsWith(".weight")) {
        put(`unet:${fold(d.slice("unet.".length, -".weight".length))}`, { component: "unet", name });
      }
    }
  }
  for (const [name, shape] of text) {
    const diffusers = ldmToDiffusersNames(name, family);
    diffusers.forEach((d, i) => {
      const m = /^(text_encoder|text_encoder_2)\.(.+)\.weight$/.exec(d);
      if (!m) return;
      // SD 2.x keeps its one (OpenCLIP) encoder in diffusers' `text_encoder`; SDXL's OpenCLIP is `text_encoder_2`.
      const component: LoraComponent = m[1] === "text_encoder_2" ? "te2" : "te1";
      const rows = diffusers.length > 1
        ? { start: (i * shape[0]) / diffusers.length, count: shape[0] / diffusers.length }
        : undefined;
      put(`${component}:${fold(m[2])}`, { component, name, ...(rows ? { rows } : {}) });
    });
  }
  return index;
}
