/**
 * The tiny ControlNets of controlnet_reference.safetensors and controlnet_sdxl_reference.safetensors (their
 * own weights from the fixtures, the encoders copied from the tiny UNets) as files, for tests.
 */

import { parseSafetensors, type Safetensors } from "../../testdata/helpers.ts";
import { loadTinyReference, loadTinySdxlReference } from "../../testdata/reference.ts";
import { encodeSafetensors } from "../../weights/mod.ts";
import { ldmToDiffusersNames } from "../../weights/names.ts";

/** The reference fixture (weights `w.*`, inputs, outputs). */
export function loadControlNetReference(): Safetensors {
  return parseSafetensors(Deno.readFileSync(new URL("./controlnet_reference.safetensors", import.meta.url)));
}

function bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** A tensor of a ControlNet file being written (original name, no prefix). */
export interface ControlNetEntry {
  name: string;
  dtype: string;
  shape: readonly number[];
  data: Uint8Array;
}

/**
 * The tiny ControlNet's tensors (original names, no prefix). `breakContext`: its cross-attention key
 * weights made for a wider context (96) than the tiny model's (64), i.e. a ControlNet for another model.
 */
export function tinyControlNetTensors(opts: { breakContext?: boolean } = {}): ControlNetEntry[] {
  const ref = loadControlNetReference();
  const { ckpt } = loadTinyReference();
  const entries: ControlNetEntry[] = [];
  for (const t of ref.tensors.filter((t) => t.name.startsWith("w."))) {
    entries.push({ name: t.name.slice(2), dtype: "F32", shape: t.shape, data: bytes(ref.f32(t.name)) });
  }
  for (const t of ckpt.tensors) {
    const m = /^model\.diffusion_model\.((time_embed|input_blocks|middle_block)\..*)$/.exec(t.name);
    if (!m) continue;
    if (opts.breakContext && /attn2\.to_[kv]\.weight$/.test(t.name)) {
      const shape = [t.shape[0], 96];
      entries.push({ name: m[1], dtype: "F32", shape, data: bytes(new Float32Array(shape[0] * 96)) });
    } else {
      entries.push({ name: m[1], dtype: "F32", shape: t.shape, data: bytes(ckpt.f32(t.name)) });
    }
  }
  return entries;
}

/** The tiny ControlNet's file bytes in the original layout (`control_model.*`). */
export function tinyControlNetBytes(opts: { breakContext?: boolean } = {}): Uint8Array {
  return controlNetFileBytes(tinyControlNetTensors(opts), "control_model");
}

/** The SDXL reference fixture (make_controlnet_reference_sdxl.py: weights `w.*`, inputs, outputs). */
export function loadControlNetSdxlReference(): Safetensors {
  return parseSafetensors(Deno.readFileSync(new URL("./controlnet_sdxl_reference.safetensors", import.meta.url)));
}

/**
 * The tiny SDXL ControlNet's tensors in the original layout, without a prefix: its own weights from the
 * fixture, the encoder from the tiny SDXL UNet without transformer_blocks.1 (as the fixture's script makes it).
 */
export function tinySdxlControlNetTensors(): {
  name: string;
  dtype: string;
  shape: readonly number[];
  data: Uint8Array;
}[] {
  const ref = loadControlNetSdxlReference();
  const ckpt = parseSafetensors(loadTinySdxlReference().ckptBytes);
  const entries = ref.tensors.filter((t) => t.name.startsWith("w.")).map((t) => ({
    name: t.name.slice(2),
    dtype: "F32",
    shape: t.shape,
    data: bytes(ref.f32(t.name)),
  }));
  for (const t of ckpt.tensors) {
    const m = /^model\.diffusion_model\.((time_embed|label_emb|input_blocks|middle_block)\..*)$/.exec(t.name);
    if (!m || m[1].includes(".transformer_blocks.1.")) continue;
    entries.push({ name: m[1], dtype: "F32", shape: t.shape, data: bytes(ckpt.f32(t.name)) });
  }
  return entries;
}

/**
 * The diffusers name of an original-layout ControlNet tensor (no prefix): written here from diffusers'
 * ControlNetModel attribute names, the encoder through models/weights' ldm → diffusers UNet names.
 */
export function toDiffusersControlNetName(name: string): string {
  let m: RegExpMatchArray | null;
  if ((m = /^input_hint_block\.(\d+)\.(.+)$/.exec(name))) {
    const i = +m[1] / 2;
    const mod = i === 0 ? "conv_in" : i === 7 ? "conv_out" : `blocks.${i - 1}`;
    return `controlnet_cond_embedding.${mod}.${m[2]}`;
  }
  if ((m = /^zero_convs\.(\d+)\.0\.(.+)$/.exec(name))) return `controlnet_down_blocks.${m[1]}.${m[2]}`;
  if ((m = /^middle_block_out\.0\.(.+)$/.exec(name))) return `controlnet_mid_block.${m[1]}`;
  const [unet] = ldmToDiffusersNames(`model.diffusion_model.${name}`, "sdxl");
  if (!unet) throw new Error(`no diffusers name for ${name}`);
  return unet.slice("unet.".length);
}

/** Tensors (original names, no prefix) as safetensors bytes: prefixed with `control_model.`, or diffusers names. */
export function controlNetFileBytes(
  entries: readonly ControlNetEntry[],
  layout: "control_model" | "diffusers",
): Uint8Array {
  return encodeSafetensors(entries.map((e) => ({
    ...e,
    name: layout === "diffusers" ? toDiffusersControlNetName(e.name) : `control_model.${e.name}`,
  })));
}
