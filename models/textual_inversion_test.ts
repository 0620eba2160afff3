/**
 * Textual-inversion embeddings end to end on the tiny checkpoint (models/tiny): files loaded by
 * `loadCheckpoint`, names found in prompts, vectors spliced into the text encoder.
 *
 * The precise check: an embedding whose vectors are the vocabulary rows of two real tokens ("cat",
 * "dog") must give the same conditioning as the prompt with those two tokens written out. Both go
 * through the same layers after the embedding lookup, and `e + 1 * (v - e)` with v = e is exactly e, so
 * the bound is 0 (bit equality); a wrong table row, position or chunk changes whole rows by O(1).
 */

import { assert, assertEquals } from "../tests/assert.ts";
import { EmbeddingError, loadCheckpoint, makeTinyCheckpoint } from "./mod.ts";
import { ClipTokenizer } from "./clip/tokenizer.ts";
import { TINY } from "./tiny/mod.ts";
import { encodeSafetensors, openWeights, readTensorF32 } from "./weights/mod.ts";
import type { Checkpoint, Conditioning } from "./types.ts";

const WIDTH = TINY.clip.width;
const FIXTURE = new URL("./clip/testdata/tiny-ti.pt", import.meta.url).pathname;
const TOKEN_TABLE = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight";

const dir = await Deno.makeTempDir({ prefix: "sdflow-ti-test-" });
const ckptPath = await makeTinyCheckpoint(`${dir}/tiny.safetensors`, { seed: 11 });

async function writeEmbedding(path: string, count: number, data: Float32Array): Promise<string> {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  await Deno.writeFile(
    path,
    encodeSafetensors([{ name: "emb_params", dtype: "F32", shape: [count, WIDTH], data: bytes }]),
  );
  return path;
}

// The vocabulary rows of "cat" and "dog" (one token each) as the tiny text encoder sees them.
const tokenizer = await ClipTokenizer.load();
const [cat] = tokenizer.encode("cat"), [dog] = tokenizer.encode("dog");
assertEquals([tokenizer.encode("cat").length, tokenizer.encode("dog").length], [1, 1]);
const weights = await openWeights(ckptPath);
const table = readTensorF32(weights.get(TOKEN_TABLE));
weights.close();
const catDog = new Float32Array(2 * WIDTH);
catDog.set(table.subarray(cat * WIDTH, (cat + 1) * WIDTH), 0);
catDog.set(table.subarray(dog * WIDTH, (dog + 1) * WIDTH), WIDTH);

// Folder: "alpha" (3 arbitrary vectors) sorts first, so "petpair" sits at rows 3-4 of the custom table;
// a wide (SD 1.x, 768) embedding and a non-embedding file are skipped with warnings.
const embd = `${dir}/embeddings`;
await Deno.mkdir(embd);
await writeEmbedding(`${embd}/alpha.safetensors`, 3, new Float32Array(3 * WIDTH).map((_, i) => Math.sin(i) * 0.5));
await writeEmbedding(`${embd}/petpair.safetensors`, 2, catDog);
await Deno.writeFile(
  `${embd}/sd15-style.safetensors`,
  encodeSafetensors([{ name: "emb_params", dtype: "F32", shape: [1, 768], data: new Uint8Array(768 * 4) }]),
);
await Deno.writeTextFile(`${embd}/notes.txt`, "not an embedding");

const warnings: string[] = [];
const withTi = await loadCheckpoint(ckptPath, { threads: 1, embeddingDir: embd, onWarning: (m) => warnings.push(m) });
const plain = await loadCheckpoint(ckptPath, { threads: 1 });
globalThis.addEventListener("unload", () => {
  withTi.dispose();
  plain.dispose();
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // best effort
  }
});

const encode = (ck: Checkpoint, prompt: string): Promise<Conditioning> => ck.textEncoder.encode(prompt);

function assertSame(a: Conditioning, b: Conditioning, what: string): void {
  assertEquals(a.context.shape, b.context.shape, what);
  let worst = 0;
  for (let i = 0; i < a.context.data.length; i++) {
    worst = Math.max(worst, Math.abs(a.context.data[i] - b.context.data[i]));
  }
  assert(worst === 0, `${what}: max |difference| ${worst}, expected 0`);
}

function differs(a: Conditioning, b: Conditioning): boolean {
  return a.context.shape.join() !== b.context.shape.join() || a.context.data.some((v, i) => v !== b.context.data[i]);
}

Deno.test("embeddings folder: unusable files are skipped with a warning naming them", () => {
  assertEquals(warnings.length, 1, warnings.join(" | "));
  assert(warnings[0].includes(`${embd}/sd15-style.safetensors`) && warnings[0].includes("width 768"), warnings[0]);
});

Deno.test("an embedding of the vocabulary rows of 'cat dog' conditions exactly as the words 'cat dog'", async () => {
  assertSame(await encode(withTi, "a petpair photo"), await encode(withTi, "a cat dog photo"), "plain");
  assertSame(await encode(withTi, "a petpair photo"), await encode(plain, "a cat dog photo"), "other checkpoint");
  // Emphasis applies to the embedding's positions like to any token's.
  assertSame(await encode(withTi, "(petpair:1.3), photo"), await encode(withTi, "(cat dog:1.3), photo"), "emphasis");
  // Case-insensitive whole word, next to punctuation; twice in one prompt; together with another embedding.
  assertSame(
    await encode(withTi, "PetPair,petpair alpha"),
    await encode(withTi, "cat dog,cat dog alpha"),
    "twice",
  );
});

Deno.test("an embedding in the second 77-token window of a long prompt", async () => {
  const long = Array.from({ length: 80 }, (_, i) => (i % 2 ? "red" : "blue")).join(" ");
  const a = await encode(withTi, `${long} petpair`);
  assertEquals(a.context.shape, [1, 2 * 77, WIDTH]);
  assertSame(a, await encode(withTi, `${long} cat dog`), "long");
});

Deno.test("a prompt naming an embedding differs from the same prompt without it; others are untouched", async () => {
  const custom = await encode(withTi, "a alpha photo");
  const asWord = await encode(plain, "a alpha photo");
  assert(differs(custom, asWord), "the embedding must change the conditioning");
  assert(custom.context.data.every(Number.isFinite));
  // Prompts without embeddings run the plain graph and give the plain checkpoint's bytes, before and
  // after prompts with embeddings (the two programs alternate without interfering).
  const before = await encode(withTi, "a photo of a cat");
  await encode(withTi, "a alpha photo");
  assertSame(before, await encode(plain, "a photo of a cat"), "plain prompt");
  assertSame(await encode(withTi, "a photo of a cat"), before, "after an embedding prompt");
  assertSame(await encode(withTi, "a alpha photo"), custom, "embedding prompt again");
  // "alphabet" is another word, not the embedding.
  assertSame(await encode(withTi, "alphabet"), await encode(plain, "alphabet"), "whole words only");
});

Deno.test("LoadOptions.embeddings: an sd-webui .pt gives the same conditioning as its vectors in safetensors", async () => {
  const ptVectors = new Float32Array(2 * WIDTH).map((_, i) => i / 128 - 0.5); // make_embedding_fixture.py
  const copy = await writeEmbedding(`${dir}/ti-copy.safetensors`, 2, ptVectors);
  const ck = await loadCheckpoint(ckptPath, { threads: 1, embeddings: [FIXTURE, copy] });
  try {
    const pt = await encode(ck, "a tiny-ti photo");
    assertSame(pt, await encode(ck, "a ti-copy photo"), ".pt vs .safetensors");
    assert(differs(pt, await encode(plain, "a tiny-ti photo")));
  } finally {
    ck.dispose();
  }
});

Deno.test("LoadOptions.embeddings: a file of the wrong width or format fails the load, naming it", async () => {
  for (const [file, text] of [[`${embd}/sd15-style.safetensors`, "width 768"], [`${embd}/notes.txt`, ".txt"]]) {
    try {
      (await loadCheckpoint(ckptPath, { threads: 1, embeddings: [file] })).dispose();
      throw new Error(`${file} should be refused`);
    } catch (e) {
      assert(e instanceof EmbeddingError, String(e));
      assert(e.message.includes(file) && e.message.includes(text), e.message);
    }
  }
  try {
    (await loadCheckpoint(ckptPath, { threads: 1, embeddings: [FIXTURE, FIXTURE] })).dispose();
    throw new Error("a name given twice should be refused");
  } catch (e) {
    assert(e instanceof EmbeddingError && e.message.includes('two embeddings are named "tiny-ti"'), String(e));
  }
});
