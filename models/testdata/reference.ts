/**
 * The committed PyTorch references for the tiny checkpoints (make_reference.py,
 * make_reference_sdxl.py) and the tiny checkpoints they were computed from, for model tests.
 */

import { type TinyArch, tinyCheckpointBytes } from "../tiny/mod.ts";
import { parseSafetensors, type Safetensors } from "./helpers.ts";

/**
 * The reference fixture of the tiny SD 1.x (`tiny_reference.safetensors`) or SD 2.x
 * (`tiny_sd2_reference.safetensors`) model, and the tiny checkpoint (seed and dtype from the fixture's metadata).
 */
export function loadTinyReference(
  arch: TinyArch = "sd1",
): { ref: Safetensors; ckpt: Safetensors; ckptBytes: Uint8Array } {
  const file = arch === "sd2" ? "./tiny_sd2_reference.safetensors" : "./tiny_reference.safetensors";
  const ref = parseSafetensors(Deno.readFileSync(new URL(file, import.meta.url)));
  const seed = Number(ref.metadata.checkpoint_seed);
  const dtype = ref.metadata.checkpoint_dtype as "f32" | "f16";
  const ckptBytes = tinyCheckpointBytes({ seed, dtype, arch });
  return { ref, ckpt: parseSafetensors(ckptBytes), ckptBytes };
}

/** The tiny SDXL model's reference fixture (make_reference_sdxl.py) and the checkpoint's bytes. */
export function loadTinySdxlReference(): { ref: Safetensors; ckptBytes: Uint8Array } {
  const ref = parseSafetensors(Deno.readFileSync(new URL("./tiny_sdxl_reference.safetensors", import.meta.url)));
  const seed = Number(ref.metadata.checkpoint_seed);
  const dtype = ref.metadata.checkpoint_dtype as "f32" | "f16";
  return { ref, ckptBytes: tinyCheckpointBytes({ seed, dtype, arch: "sdxl" }) };
}
