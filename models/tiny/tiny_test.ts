import { detectArch } from "../arch.ts";
import { assert, assertEquals } from "../../tests/assert.ts";
import { parseSafetensors } from "../testdata/helpers.ts";
import { loadTinyReference } from "../testdata/reference.ts";
import { makeTinyCheckpoint, TINY, tinyCheckpointBytes, tinySpec } from "./mod.ts";

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("tiny checkpoint: the generator still writes the bytes the PyTorch reference was made from", async () => {
  const { ref, ckptBytes } = loadTinyReference();
  assertEquals(await sha256(ckptBytes), ref.metadata.checkpoint_sha256);
});

Deno.test("tiny checkpoint: written to disk, sorted names, sane values, f16 is the rounded f32", async () => {
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    await makeTinyCheckpoint(path, { seed: 7, dtype: "f16" });
    const f16 = parseSafetensors(await Deno.readFile(path));
    const f32 = parseSafetensors(tinyCheckpointBytes({ seed: 7, dtype: "f32" }));
    const names = f16.tensors.map((t) => t.name);
    assertEquals(names, tinySpec().map((i) => i.name));
    assertEquals(names.slice().sort(), names);
    const w = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight";
    const a = f32.f32(w);
    const b = f16.f32(w);
    for (let i = 0; i < a.length; i++) assert(Math.abs(a[i] - b[i]) <= Math.abs(a[i]) * 2 ** -11 + 1e-7, w);
    // weights ~ N(0, 1/fan_in), norm weights ~ 1
    let ss = 0;
    for (const v of a) ss += v * v;
    const std = Math.sqrt(ss / a.length);
    assert(Math.abs(std - 1 / Math.sqrt(32 * 9)) < 0.01, `std ${std}`);
    const nw = f32.f32("first_stage_model.decoder.norm_out.weight");
    assert(nw.every((v) => Math.abs(v - 1) < 0.08));
    const ids = f32.tensors.find((t) => t.name.endsWith("position_ids"))!;
    assertEquals([ids.dtype, ids.shape], ["I64", [1, 77]]);
    assertEquals(detectArch(f16.tensors, f16.metadata).unet!.numHeads, TINY.unet.heads);
    // another seed gives other values
    const other = parseSafetensors(tinyCheckpointBytes({ seed: 8, dtype: "f32" }));
    assert(other.f32(w)[0] !== a[0]);
  } finally {
    await Deno.remove(path);
  }
});
