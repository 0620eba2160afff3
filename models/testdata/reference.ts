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

/** Max |a - b| and max |b|; throws with both when |a - b| > atol + rtol * max|b|. */
export function assertClose(name: string, a: Float32Array, b: Float32Array, atol: number, rtol: number): number {
  if (a.length !== b.length) throw new Error(`${name}: ${a.length} values, reference has ${b.length}`);
  let maxErr = 0;
  let maxRef = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    if (!(e <= maxErr)) maxErr = Number.isNaN(e) ? Infinity : e;
    maxRef = Math.max(maxRef, Math.abs(b[i]));
  }
  const bound = atol + rtol * maxRef;
  if (!(maxErr <= bound)) throw new Error(`${name}: max |error| ${maxErr} exceeds ${bound} (max |ref| ${maxRef})`);
  return maxErr;
}
