import { assert, assertEquals } from "../../tests/assert.ts";
import { sharedTest, sharedUrl } from "../../tests/shared.ts";
import { CLIP_VOCAB_SIZE, ClipTokenizer } from "./tokenizer.ts";

const CLIP_TOKENS = "reference/clip_tokens.json";

Deno.test({
  ...sharedTest(
    "CLIP tokenizer matches OpenAI simple_tokenizer ids (../shared/reference/clip_tokens.json)",
    CLIP_TOKENS,
  ),
  fn: async () => {
    const ref: { vocab_size: number; cases: { text: string; ids: number[] }[] } = JSON.parse(
      await Deno.readTextFile(sharedUrl(CLIP_TOKENS)),
    );
    assert(ref.cases.length > 0, "the reference has no cases");
    const tok = await ClipTokenizer.load();
    assertEquals(tok.vocabSize, ref.vocab_size);
    for (const c of ref.cases) {
      assertEquals(tok.encodeWithSpecial(c.text), c.ids, `ids of ${JSON.stringify(c.text)}`);
    }
  },
});

Deno.test("CLIP tokenizer: vocabulary, cleaning, special tokens, decode", async () => {
  const tok = await ClipTokenizer.load();
  assertEquals(tok.vocabSize, CLIP_VOCAB_SIZE);
  // Whitespace runs collapse and case folds: same ids.
  assertEquals(tok.encode("  A   Lovely\n\tCAT "), tok.encode("a lovely cat"));
  assertEquals(tok.encode("a lovely cat"), [320, 2165, 2368]);
  // Literal special tokens map to their ids, as CLIP's pre-seeded BPE cache does.
  assertEquals(tok.encode("<|endoftext|>"), [49407]);
  assertEquals(tok.encode(""), []);
  assertEquals(tok.decode(tok.encode("a lovely cat")).trim(), "a lovely cat");
  assertEquals(tok.decode(tok.encode("日本の猫")).trim(), "日本の猫");
});

Deno.test("CLIP tokenizer: textual-inversion tokens get ids past the vocabulary", async () => {
  const tok = await ClipTokenizer.load();
  const ids = tok.registerToken("MyStyle", 3);
  assertEquals(ids, [49408, 49409, 49410]);
  assertEquals(tok.registerToken("mystyle", 3), ids);
  const other = tok.registerToken("neg-emb", 1);
  assertEquals(other, [49411]);
  assertEquals(tok.encode("a cat, mystyle"), [320, 2368, 267, 49408, 49409, 49410]);
  assertEquals(tok.encode("A cat in MYSTYLE."), [...tok.encode("a cat in"), ...ids, ...tok.encode(".")]);
  // Not inside another word.
  assertEquals(tok.encode("mystyles").includes(49408), false);
  assertEquals(tok.encode("neg-emb cat"), [49411, 2368]);
});
