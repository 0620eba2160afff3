/**
 * `-M convert` through the CLI (`deno run -A cli/gen.ts -M convert …`, what `deno task convert` runs; in a
 * subprocess for a conversion and a refused --type, the other cases through gen's `main` in this process):
 *
 * - a safetensors file to q8_0: exit 0, the output loads, tensors typed by sd.cpp's rule, values of the
 *   kept tensors unchanged; that q8_0 GGUF converted again to f16; a PyTorch checkpoint (the ckpt
 *   fixture, with f32/f16/bf16/i64 tensors and a scalar) to GGUF with each tensor's values unchanged
 *   (i64 stored as i32, as sd.cpp does); an SD 2.x diffusers folder to GGUF: ldm names, q/k/v pieces
 *   joined into the fused in_proj, each tensor equal to the single file's conversion;
 * - bad input (an unsupported --type, a truncated GGUF, rows that are not whole blocks, an unknown
 *   type id, a NaN block scale, a .safetensors output): exit code 2 (command line) or 1 (model), ONE
 *   line on stderr naming the problem, and nothing written (no output, no partial file).
 */

import { assert, assertEquals, assertMatch } from "../tests/assert.ts";
import { main as genMain } from "./gen.ts";
import { makeTinyCheckpoint } from "../models/mod.ts";
import { TINY_SD2, tinyCheckpointBytes } from "../models/tiny/mod.ts";
import { parseSafetensors } from "../models/testdata/helpers.ts";
import {
  encodeGguf,
  encodeSafetensors,
  ldmToDiffusersNames,
  openWeights,
  quantize,
  readTensorF32,
  takesWeightType,
} from "../models/weights/mod.ts";

const root = new URL("../", import.meta.url).pathname;
const dec = new TextDecoder();
const dir = await Deno.makeTempDir({ prefix: "sdflow-convert-test-" });
const tiny = await makeTinyCheckpoint(`${dir}/tiny.safetensors`, { seed: 3, dtype: "f16" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

/** `deno run -A cli/gen.ts -M convert …` in a subprocess: exit code and stderr. */
async function convertCli(...args: string[]): Promise<{ code: number; stderr: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/gen.ts", "-M", "convert", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: r.code, stderr: dec.decode(r.stderr) };
}

/**
 * The same command through gen's `main` in this process (what cli/gen.ts runs, minus the process start):
 * its return value is the exit code, its console.error lines the stderr.
 */
async function convert(...args: string[]): Promise<{ code: number; stderr: string }> {
  const lines: string[] = [];
  const error = console.error;
  console.error = (...a: unknown[]) => lines.push(a.map(String).join(" "));
  try {
    const code = await genMain(["-M", "convert", ...args]);
    return { code, stderr: lines.map((l) => l + "\n").join("") };
  } finally {
    console.error = error;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

/** Exit `code`, one line on stderr matching `re`, and neither `out` nor its partial file exist. */
async function assertRefused(r: { code: number; stderr: string }, code: number, re: RegExp, out: string) {
  const lines = r.stderr.trim().split("\n");
  assertEquals([r.code, lines.length], [code, 1], r.stderr);
  assertMatch(lines[0], re);
  assert(!(await exists(out)) && !(await exists(`${out}.sdflow-partial`)), `${out} was written`);
}

Deno.test("convert: safetensors -> q8_0 -> f16 GGUF, tensors typed by sd.cpp's rule", async () => {
  const q8 = `${dir}/tiny-q8_0.gguf`;
  const r = await convertCli("-m", tiny, "-o", q8, "--type", "q8_0");
  assertEquals(r.code, 0, r.stderr);
  assertMatch(r.stderr, /wrote .*tiny-q8_0\.gguf: \d+ tensors \(\d+ f16, \d+ q8_0\)/);
  const src = await openWeights(tiny), out = await openWeights(q8);
  try {
    // position_ids is dropped as sd.cpp drops it; nothing else is.
    assertEquals([...out.tensors.keys()], [...src.tensors.keys()].filter((n) => !n.endsWith("position_ids")).sort());
    for (const [name, t] of out.tensors) {
      const s = src.tensors.get(name)!;
      assertEquals(t.shape, s.shape, name);
      assertEquals(t.dtype, takesWeightType(name, s.shape, "q8_0") ? "q8_0" : "f16", name);
      if (t.dtype === "f16") assertEquals(readTensorF32(t), readTensorF32(s), name);
    }
  } finally {
    src.close();
    out.close();
  }
  const f16 = `${dir}/tiny-back.gguf`;
  assertEquals((await convert("-m", q8, "-o", f16, "--type", "f16")).code, 0);
  const back = await openWeights(f16), q = await openWeights(q8);
  try {
    for (const [name, t] of back.tensors) {
      assertEquals(t.dtype, takesWeightType(name, t.shape, "f16") ? "f16" : "f16", name);
      if (q.tensors.get(name)!.dtype === "q8_0") {
        // dequantized q8_0 values, rounded to f16
        const a = readTensorF32(t), b = readTensorF32(q.tensors.get(name)!);
        for (let i = 0; i < a.length; i++) assert(Math.abs(a[i] - b[i]) <= Math.abs(b[i]) * 2 ** -11, name);
      }
    }
  } finally {
    back.close();
    q.close();
  }
});

Deno.test("convert: a PyTorch checkpoint to GGUF keeps every value (i64 as i32, as sd.cpp)", async () => {
  const pt = new URL("../models/weights/testdata/tiny.pt", import.meta.url).pathname;
  const out = `${dir}/tiny-pt.gguf`;
  const r = await convert("-m", pt, "-o", out);
  assertEquals(r.code, 0, r.stderr);
  const src = await openWeights(pt), g = await openWeights(out);
  try {
    for (const [name, s] of src.tensors) {
      const t = g.tensors.get(name)!;
      assertEquals(t.dtype, s.dtype === "i64" ? "i32" : s.dtype, name);
      assertEquals(readTensorF32(t), readTensorF32(s), name);
    }
  } finally {
    src.close();
    g.close();
  }
});

Deno.test("convert: a diffusers folder (SD 2.x: q/k/v pieces) to GGUF = the single file's tensors", async () => {
  // The tiny SD 2.x checkpoint in the diffusers layout (as models/tiny/sd2_diffusers_test.ts writes it).
  const ckpt = parseSafetensors(tinyCheckpointBytes({ seed: 5, arch: "sd2" }));
  const lastLayer = `cond_stage_model.model.transformer.resblocks.${TINY_SD2.clip.layers - 1}.`;
  const parts = new Map<string, { name: string; dtype: string; shape: number[]; data: Uint8Array }[]>();
  const put = (full: string, shape: number[], data: Float32Array) => {
    const [component, ...rest] = full.split(".");
    const list = parts.get(component) ?? [];
    list.push({
      name: rest.join("."),
      dtype: "F32",
      shape,
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    parts.set(component, list);
  };
  for (const t of ckpt.tensors) {
    if (t.dtype !== "F32" || t.name.startsWith(lastLayer)) continue;
    const names = ldmToDiffusersNames(t.name, "sd2");
    const values = ckpt.f32(t.name);
    const per = values.length / names.length;
    names.forEach((n, j) =>
      put(n, [t.shape[0] / names.length, ...t.shape.slice(1)], values.slice(j * per, (j + 1) * per))
    );
  }
  const folder = `${dir}/sd2-diffusers`;
  await Deno.mkdir(folder);
  await Deno.writeTextFile(`${folder}/model_index.json`, JSON.stringify({ _class_name: "StableDiffusionPipeline" }));
  for (
    const [component, file] of [["unet", "diffusion_pytorch_model"], ["vae", "diffusion_pytorch_model"], [
      "text_encoder",
      "model",
    ]]
  ) {
    await Deno.mkdir(`${folder}/${component}`);
    await Deno.writeFile(`${folder}/${component}/${file}.safetensors`, encodeSafetensors(parts.get(component)!));
  }
  const single = `${dir}/sd2.safetensors`;
  await Deno.writeFile(single, tinyCheckpointBytes({ seed: 5, arch: "sd2" }));
  for (const [input, out] of [[folder, `${dir}/sd2-folder.gguf`], [single, `${dir}/sd2-single.gguf`]]) {
    const r = await convert("-m", input, "-o", out, "--type", "q8_0");
    assertEquals(r.code, 0, r.stderr);
  }
  const a = await openWeights(`${dir}/sd2-folder.gguf`), b = await openWeights(`${dir}/sd2-single.gguf`);
  try {
    let fused = 0;
    for (const [name, t] of a.tensors) {
      const u = b.tensors.get(name);
      assert(u, `${name} is not in the single file's conversion`);
      assertEquals([t.dtype, t.shape], [u.dtype, u.shape], name);
      assertEquals(readTensorF32(t), readTensorF32(u), name);
      if (name.endsWith("attn.in_proj_weight")) fused++;
    }
    assertEquals(fused, TINY_SD2.clip.layers - 1, "the text encoder's fused in_proj weights, from q/k/v pieces");
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("convert: bad input is one line, exit 1 or 2, and nothing is written", async () => {
  const out = `${dir}/bad.gguf`;
  await assertRefused(
    await convertCli("-m", tiny, "-o", out, "--type", "q3_k"),
    2,
    /^error: --type must be one of f32, f16, q8_0, q5_1, q5_0, q4_1, q4_0, got "q3_k"$/,
    out,
  );
  await assertRefused(await convert("-m", tiny), 2, /^error: -M convert needs the output file/, out);
  await assertRefused(
    await convert("-m", tiny, "-o", `${dir}/x.safetensors`, "--type", "q8_0"),
    1,
    /sdflow converts to GGUF only; name the output \.gguf/,
    `${dir}/x.safetensors`,
  );

  const q = quantize("q8_0", Float32Array.from({ length: 128 }, (_, i) => Math.cos(i)));
  const good = encodeGguf({}, [{ name: "w", type: 8, shape: [4, 32], data: q }]);
  const write = async (
    name: string,
    bytes: Uint8Array,
  ) => (await Deno.writeFile(`${dir}/${name}`, bytes), `${dir}/${name}`);

  const truncated = await write("truncated.gguf", good.subarray(0, good.length - 40));
  await assertRefused(
    await convert("-m", truncated, "-o", out, "--type", "f16"),
    1,
    /^error: .*truncated\.gguf is truncated: tensor w ends at byte \d+ but the file has \d+ bytes/,
    out,
  );
  const partial = await write("partial.gguf", encodeGguf({}, [{ name: "w", type: 8, shape: [2, 48], data: q }]));
  await assertRefused(
    await convert("-m", partial, "-o", out),
    1,
    /tensor w rows of 48 do not split into 32-element blocks; the file is corrupt$/,
    out,
  );
  const unknown = await write("unknown.gguf", encodeGguf({}, [{ name: "w", type: 77, shape: [4], data: q }]));
  await assertRefused(
    await convert("-m", unknown, "-o", out),
    1,
    /tensor w is type id 77, which sdflow cannot convert to GGUF$/,
    out,
  );
  const nan = q.slice();
  nan[34 * 2 + 1] = 0x7e; // block 2's scale: f16 NaN
  const nanFile = await write("nan.gguf", encodeGguf({}, [{ name: "w", type: 8, shape: [4, 32], data: nan }]));
  await assertRefused(
    await convert("-m", nanFile, "-o", out, "--type", "f16"),
    1,
    /tensor w \(Q8_0\) block 2 has a NaN or infinite scale; the file is corrupt$/,
    out,
  );
});
