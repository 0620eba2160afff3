import { assert as ok, assertEquals } from "../../tests/assert.ts";
import {
  applyTokenWeights,
  BREAK_WEIGHT,
  parsePromptAttention,
  type PromptTokenizer,
  tokenizeWeighted,
} from "./emphasis.ts";
import { ClipTokenizer } from "../clip/tokenizer.ts";

const f = Math.fround;
const w11 = f(1.1);
const wd11 = f(1 / f(1.1));

function pieces(text: string, breakKeyword = true) {
  return parsePromptAttention(text, { breakKeyword }).map((p) => [p.text, p.weight]);
}

Deno.test("parsePromptAttention: sd.cpp / sd-webui documented examples", () => {
  assertEquals(pieces("normal text"), [["normal text", 1]]);
  assertEquals(pieces("an (important) word"), [["an ", 1], ["important", w11], [" word", 1]]);
  assertEquals(pieces("(unbalanced"), [["unbalanced", w11]]);
  assertEquals(pieces("(unnecessary)(parens)"), [["unnecessaryparens", w11]]);
  // float32 products, in sd.cpp's order of multiplication.
  const house = f(f(f(1.3) * w11) * w11); // (((house:1.3)) : ×1.3 then ×1.1, the outer ( closes at the end ×1.1
  const sky = f(f(f(w11 * w11) * w11) * w11);
  assertEquals(pieces("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."), [
    ["a ", 1],
    ["house", house],
    [" ", w11],
    ["on", f(wd11 * w11)],
    [" a ", w11],
    ["hill", f(f(0.5) * w11)],
    [", sun, ", w11],
    ["sky", sky],
    [".", w11],
  ]);
  ok(Math.abs(house - 1.573) < 1e-6 && Math.abs(sky - 1.4641) < 1e-6);
  assertEquals(pieces("[word]"), [["word", wd11]]);
  assertEquals(pieces(""), [["", 1]]);
});

Deno.test("parsePromptAttention: escapes and stray brackets as sd.cpp", () => {
  // Only \( drops its backslash in sd.cpp; the other escapes stay literal text with the backslash.
  assertEquals(pieces("\\(literal\\]"), [["(literal\\]", 1]]);
  assertEquals(pieces("a \\\\ b"), [["a \\\\ b", 1]]);
  assertEquals(pieces("a) b]"), [["a) b]", 1]]);
  assertEquals(pieces("a:1.5) b"), [["a b", 1]]);
  assertEquals(pieces("(a:1.2.3)"), [["a", f(1.2)]]);
  assertEquals(pieces("(a:-1)"), [["a", -1]]);
  assertEquals(pieces("time: 12:30"), [["time: 12:30", 1]]);
});

Deno.test("parsePromptAttention: BREAK", () => {
  assertEquals(pieces("a cat BREAK a dog"), [["a cat ", 1], ["BREAK", BREAK_WEIGHT], [" a dog", 1]]);
  assertEquals(pieces("a cat BREAK a dog", false), [["a cat BREAK a dog", 1]]);
  assertEquals(pieces("Bob BREAKS"), [["Bob BREAKS", 1]]);
  // Matching restarts on the suffix, so \b sees its start as a boundary (sd.cpp's std::regex_search loop).
  assertEquals(pieces("xBREAK"), [["x", 1], ["BREAK", BREAK_WEIGHT]]);
  assertEquals(pieces("(BREAK)"), [["BREAK", f(-1 * w11)]]);
});

/** Token = char code, so chunk layout is easy to read. */
const fake: PromptTokenizer = {
  bosId: 49406,
  eosId: 49407,
  encode: (t: string) => [...t.replace(/\s+/g, "")].map((c) => c.charCodeAt(0)),
};

Deno.test("tokenizeWeighted: chunks of BOS + 75 + EOS, padded, weights carried", () => {
  const one = tokenizeWeighted("ab (c:1.5)", fake);
  assertEquals(one.chunks.length, 1);
  const c = one.chunks[0];
  assertEquals([...c.ids.slice(0, 6)], [49406, 97, 98, 99, 49407, 49407]);
  assertEquals(c.ids.length, 77);
  assertEquals([...c.weights.slice(0, 5)], [1, 1, 1, 1.5, 1]);
  // SD 2.x pads with 0 after EOS.
  const sd2 = tokenizeWeighted("ab", fake, { padId: 0 }).chunks[0];
  assertEquals([...sd2.ids.slice(0, 5)], [49406, 97, 98, 49407, 0]);
  assertEquals(sd2.ids[76], 0);
  // Empty prompt: one chunk.
  const empty = tokenizeWeighted("", fake, { padId: 0 }).chunks;
  assertEquals(empty.length, 1);
  assertEquals([...empty[0].ids.slice(0, 3)], [49406, 49407, 0]);
  // 75 tokens fit one chunk; 76 take two.
  const a75 = "a".repeat(75);
  assertEquals(tokenizeWeighted(a75, fake).chunks.length, 1);
  const two = tokenizeWeighted(a75 + "b", fake, { padId: 0 }).chunks;
  assertEquals(two.length, 2);
  assertEquals(two[0].ids[76], 49407);
  assertEquals([...two[1].ids.slice(0, 4)], [49406, 98, 49407, 0]);
});

Deno.test("tokenizeWeighted: BREAK pads to the next chunk with EOS", () => {
  const r = tokenizeWeighted("ab BREAK cd", fake, { padId: 0 }).chunks;
  assertEquals(r.length, 2);
  assertEquals([...r[0].ids.slice(0, 4)], [49406, 97, 98, 49407]);
  assertEquals(r[0].ids[75], 49407); // BREAK filler is EOS even with pad id 0
  assertEquals(r[0].ids[76], 49407);
  assertEquals([...r[1].ids.slice(0, 5)], [49406, 99, 100, 49407, 0]);
  // BREAK at a chunk boundary or at the start adds nothing.
  assertEquals(tokenizeWeighted("BREAK ab", fake).chunks.length, 1);
});

Deno.test("tokenizeWeighted with the CLIP tokenizer", async () => {
  const tok = await ClipTokenizer.load();
  const r = tokenizeWeighted("a (lovely:1.2) cat", tok);
  assertEquals([...r.chunks[0].ids.slice(0, 6)], [49406, 320, 2165, 2368, 49407, 49407]);
  assertEquals([...r.chunks[0].weights.slice(0, 5)], [1, 1, f(1.2), 1, 1]);
});

Deno.test("applyTokenWeights: scales rows, restores the mean", () => {
  const h = new Float32Array([1, 2, 3, 4, 5, 6]);
  applyTokenWeights(h, [1, 2, 1], 2);
  const mean = h.reduce((a, b) => a + b, 0) / h.length;
  ok(Math.abs(mean - 3.5) < 1e-6);
  const scale = 21 / 28;
  assertEquals(
    [...h].map((v) => Math.round(v * 1e5) / 1e5),
    [1, 2, 6, 8, 5, 6].map((v) => Math.round(f(v * scale) * 1e5) / 1e5),
  );
  const same = new Float32Array([1, 2]);
  applyTokenWeights(same, [1], 2);
  assertEquals([...same], [1, 2]);
});
