/**
 * The tiny ControlNet of controlnet_reference.safetensors (its own weights from the fixture, the
 * encoder copied from the tiny UNet) as a file in the original layout (`control_model.*`), for tests.
 */

import { parseSafetensors, type Safetensors } from "../../testdata/helpers.ts";
import { loadTinyReference } from "../../testdata/reference.ts";
import { encodeSafetensors } from "../../weights/mod.ts";

/** The reference fixture (weights `w.*`, inputs, outputs). */
export function loadControlNetReference(): Safetensors {
  return parseSafetensors(Deno.readFileSync(new URL("./controlnet_reference.safetensors", import.meta.url)));
}

function bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * The tiny ControlNet's file bytes. `breakContext`: its cross-attention key weights made for a
 * wider context (96) than the tiny model's (64), i.e. a ControlNet for another model.
 */
export function tinyControlNetBytes(opts: { breakContext?: boolean } = {}): Uint8Array {
  const ref = loadControlNetReference();
  const { ckpt } = loadTinyReference();
  const entries: { name: string; dtype: string; shape: readonly number[]; data: Uint8Array }[] = [];
  for (const t of ref.tensors.filter((t) => t.name.startsWith("w."))) {
    entries.push({
      name: `control_model.${t.name.slice(2)}`,
      dtype: "F32",
      shape: t.shape,
      data: bytes(ref.f32(t.name)),
    });
  }
  for (const t of ckpt.tensors) {
    const m = /^model\.diffusion_model\.((time_embed|input_blocks|middle_block)\..*)$/.exec(t.name);
    if (!m) continue;
    if (opts.breakContext && /attn2\.to_[kv]\.weight$/.test(t.name)) {
      const shape = [t.shape[0], 96];
      entries.push({
        name: `control_model.${m[1]}`,
        dtype: "F32",
        shape,
        data: bytes(new Float32Array(shape[0] * 96)),
      });
    } else {
      entries.push({ name: `control_model.${m[1]}`, dtype: "F32", shape: t.shape, data: bytes(ckpt.f32(t.name)) });
    }
  }
  return encodeSafetensors(entries);
}
