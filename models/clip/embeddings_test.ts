/**
 * Textual-inversion embedding files: every format reads its vectors exactly (the files hold f32 values,
 * compared bit for bit), widths are checked, and unusable files fail with one-line messages naming them.
 * tiny-ti.pt comes from PyTorch (testdata/make_embedding_fixture.py) in sd-webui's layout.
 */

import { assert, assertEquals } from "../../tests/assert.ts";
import { TINY } from "../tiny/mod.ts";
import { encodeSafetensors } from "../weights/mod.ts";
import { EmbeddingError, loadEmbedding, loadEmbeddingDir } from "./embeddings.ts";

const WIDTH = TINY.clip.width;
const FIXTURE = new URL("./testdata/tiny-ti.pt", import.meta.url).pathname;

/** Vectors `count` × `width` with distinct values (vector v, element j = v + j / 1024 - 0.25). */
function vectors(count: number, width: number, offset = 0): Float32Array {
  const out = new Float32Array(count * width);
  for (let v = 0; v < count; v++) for (let j = 0; j < width; j++) out[v * width + j] = offset + v + j / 1024 - 0.25;
  return out;
}

function f32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Writes a safetensors file of f32 tensors. */
async function writeSafetensors(path: string, tensors: Record<string, [number[], Float32Array]>): Promise<string> {
  const entries = Object.entries(tensors).map(([name, [shape, data]]) => ({
    name,
    dtype: "F32",
    shape,
    data: f32Bytes(data),
  }));
  await Deno.writeFile(path, encodeSafetensors(entries));
  return path;
}

async function rejects(fn: () => Promise<unknown>, ...includes: string[]): Promise<EmbeddingError> {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof EmbeddingError)) throw new Error(`expected an EmbeddingError, got ${e}`);
    for (const s of includes) assert(e.message.includes(s), `"${e.message}" should mention "${s}"`);
    assert(!e.message.includes("\n"), "one-line message");
    return e;
  }
  throw new Error("expected an EmbeddingError");
}

const dir = await Deno.makeTempDir({ prefix: "sdflow-embeddings-test-" });
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // best effort
  }
});

Deno.test("loadEmbedding: safetensors emb_params [2, width] → name from the file stem, exact vectors", async () => {
  const v = vectors(2, WIDTH);
  const path = await writeSafetensors(`${dir}/My-Style.safetensors`, { emb_params: [[2, WIDTH], v] });
  const e = await loadEmbedding(path, { width: WIDTH });
  assertEquals([e.name, e.count, e.width, e.tensor, e.path], ["My-Style", 2, WIDTH, "emb_params", path]);
  assertEquals(e.vectors, v);
});

Deno.test("loadEmbedding: sd-webui .pt (string_to_param['*'] via the restricted unpickler)", async () => {
  const e = await loadEmbedding(FIXTURE, { width: WIDTH });
  assertEquals([e.name, e.count, e.width, e.tensor], ["tiny-ti", 2, WIDTH, "string_to_param.*"]);
  // make_embedding_fixture.py: vector v, element j = (v * 64 + j) / 128 - 0.5 (exact in f32).
  const expect = new Float32Array(2 * WIDTH).map((_, i) => i / 128 - 0.5);
  assertEquals(e.vectors, expect);
});

Deno.test("loadEmbedding: SDXL clip_l / clip_g files use the tensor of the text encoder's width", async () => {
  const l = vectors(3, WIDTH), g = vectors(3, 2 * WIDTH, 10);
  const path = await writeSafetensors(`${dir}/xl.safetensors`, {
    clip_g: [[3, 2 * WIDTH], g],
    clip_l: [[3, WIDTH], l],
  });
  const el = await loadEmbedding(path, { width: WIDTH });
  assertEquals([el.tensor, el.count], ["clip_l", 3]);
  assertEquals(el.vectors, l);
  const eg = await loadEmbedding(path, { width: 2 * WIDTH });
  assertEquals([eg.tensor, eg.count, eg.width], ["clip_g", 3, 2 * WIDTH]);
  assertEquals(eg.vectors, g);
  await rejects(() => loadEmbedding(path, { width: 3 * WIDTH }), path, "clip_l [3, 64]", `width is ${3 * WIDTH}`);
});

Deno.test("loadEmbedding: a single-tensor file (diffusers learned_embeds) of one vector [width]", async () => {
  const v = vectors(1, WIDTH);
  const path = await writeSafetensors(`${dir}/cat-toy.safetensors`, { "<cat-toy>": [[WIDTH], v] });
  const e = await loadEmbedding(path, { width: WIDTH });
  assertEquals([e.name, e.count, e.width, e.tensor], ["cat-toy", 1, WIDTH, "<cat-toy>"]);
  assertEquals(e.vectors, v);
});

Deno.test("loadEmbedding: the wrong width is refused, naming the file and both widths", async () => {
  const path = await writeSafetensors(`${dir}/wide.safetensors`, { emb_params: [[2, 768], vectors(2, 768)] });
  const e = await rejects(() => loadEmbedding(path, { width: WIDTH }), path, "width 768", `width is ${WIDTH}`);
  assertEquals(e.path, path);
  // Without a width to check against, the file's own width is taken.
  assertEquals((await loadEmbedding(path)).width, 768);
});

Deno.test("loadEmbedding: unknown formats and non-embeddings fail with clear one-line errors", async () => {
  const txt = `${dir}/notes.txt`;
  await Deno.writeTextFile(txt, "not an embedding");
  await rejects(() => loadEmbedding(txt), txt, 'unsupported embedding format ".txt"', ".safetensors");
  const junk = `${dir}/junk.pt`;
  await Deno.writeTextFile(junk, "definitely not a checkpoint");
  await rejects(() => loadEmbedding(junk), junk, "not a safetensors, PyTorch checkpoint or GGUF file");
  const lora = await writeSafetensors(`${dir}/lora.safetensors`, {
    "lora_unet_a.lora_down.weight": [[2, WIDTH], vectors(2, WIDTH)],
    "lora_unet_a.lora_up.weight": [[2, WIDTH], vectors(2, WIDTH)],
  });
  await rejects(() => loadEmbedding(lora), lora, "not a textual-inversion embedding", "lora_unet_a.lora_down.weight");
  const truncated = `${dir}/cut.safetensors`;
  const whole = await Deno.readFile(
    await writeSafetensors(`${dir}/whole.safetensors`, {
      emb_params: [[2, WIDTH], vectors(2, WIDTH)],
    }),
  );
  await Deno.writeFile(truncated, whole.subarray(0, whole.length - 16));
  await rejects(() => loadEmbedding(truncated), truncated);
  const nan = vectors(1, WIDTH);
  nan[3] = NaN;
  const bad = await writeSafetensors(`${dir}/nan.safetensors`, { emb_params: [[1, WIDTH], nan] });
  await rejects(() => loadEmbedding(bad), bad, "non-finite");
  await rejects(() => loadEmbedding(`${dir}/absent.pt`), "embedding file not found", `${dir}/absent.pt`);
  // A hostile pickle is refused by the restricted unpickler, never run.
  const evil = new URL("../weights/testdata/evil_system.pt", import.meta.url).pathname;
  await rejects(() => loadEmbedding(evil), evil, "refusing to load", "posix.system");
});

Deno.test("loadEmbeddingDir: loads by name, sd.cpp's extension order on clashes, skips unusable files", async () => {
  const d = await Deno.makeTempDir({ dir, prefix: "embd-" });
  await Deno.copyFile(FIXTURE, `${d}/tiny-ti.pt`);
  await writeSafetensors(`${d}/tiny-ti.safetensors`, { emb_params: [[1, WIDTH], vectors(1, WIDTH)] });
  const b = vectors(3, WIDTH, 5);
  await writeSafetensors(`${d}/beta.safetensors`, { emb_params: [[3, WIDTH], b] });
  await writeSafetensors(`${d}/xl-only.safetensors`, { clip_g: [[1, 1280], vectors(1, 1280)] });
  await Deno.writeTextFile(`${d}/readme.txt`, "ignored");
  await Deno.mkdir(`${d}/sub.pt`);
  const r = await loadEmbeddingDir(d, { width: WIDTH });
  assertEquals(r.embeddings.map((e) => [e.name, e.count, e.path]), [
    ["beta", 3, `${d}/beta.safetensors`],
    ["tiny-ti", 2, `${d}/tiny-ti.pt`],
  ]);
  assertEquals(r.embeddings[0].vectors, b);
  assertEquals(r.skipped.map((s) => s.path).sort(), [`${d}/tiny-ti.safetensors`, `${d}/xl-only.safetensors`]);
  assert(r.skipped.every((s) => s.reason.includes(s.path)));
  await rejects(() => loadEmbeddingDir(`${d}/nowhere`), "embedding folder not found", `${d}/nowhere`);
  await rejects(() => loadEmbeddingDir(FIXTURE), "is not a folder");
});
