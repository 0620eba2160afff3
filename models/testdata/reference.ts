/**
 * The committed PyTorch reference for the tiny checkpoint (make_reference.py)
 * and the tiny checkpoint it was computed from, for model tests.
 */

import { tinyCheckpointBytes } from "../tiny/mod.ts";
import { parseSafetensors, type Safetensors } from "./helpers.ts";

/** The reference fixture, and the tiny checkpoint (seed and dtype from the fixture's metadata). */
export function loadTinyReference(): { ref: Safetensors; ckpt: Safetensors; ckptBytes: Uint8Array } {
  const ref = parseSafetensors(Deno.readFileSync(new URL("./tiny_reference.safetensors", import.meta.url)));
  const seed = Number(ref.metadata.checkpoint_seed);
  const dtype = ref.metadata.checkpoint_dtype as "f32" | "f16";
  const ckptBytes = tinyCheckpointBytes({ seed, dtype });
  return { ref, ckpt: parseSafetensors(ckptBytes), ckptBytes };
}
