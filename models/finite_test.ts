/** Non-finite checks (issue 13): NaN and ±Infinity are found wherever they are; prompt weights that overflow are refused. */

import assert from "node:assert/strict";
import { assertFinite, firstNonFinite, NonFiniteError } from "./finite.ts";
import { applyTokenWeights, PromptWeightError, tokenizeWeighted } from "./prompt/mod.ts";

Deno.test("firstNonFinite finds NaN, Infinity and -Infinity at any index, and nothing in finite data", () => {
  const data = Float32Array.from({ length: 1000 }, (_, i) => (i - 500) * 1e35);
  assert.equal(firstNonFinite(data), -1, "large but finite float32 values are fine");
  assert.equal(firstNonFinite(new Float32Array([3.4028234663852886e38, -3.4028234663852886e38, 0, -0])), -1);
  for (const bad of [NaN, Infinity, -Infinity]) {
    for (const at of [0, 499, 999]) {
      const d = data.slice();
      d[at] = bad;
      assert.equal(firstNonFinite(d), at);
      assert.throws(() => assertFinite(d, "the unet's output"), (e: Error) => {
        assert.ok(e instanceof NonFiniteError);
        assert.equal(e.message.split("\n").length, 1);
        assert.match(e.message, new RegExp(`^the unet's output is not finite \\(${bad} at element ${at}\\)`));
        return true;
      });
    }
  }
});

const tokenizer = { bosId: 1, eosId: 2, encode: (t: string) => [...t].filter((c) => c !== " ").map(() => 5) };

Deno.test("a prompt weight that overflows float32 (directly or through nesting) is a PromptWeightError", () => {
  for (const prompt of [`(cat:1${"0".repeat(40)})`, `a ${"(".repeat(13)}cat${":1000)".repeat(13)}`]) {
    assert.throws(() => tokenizeWeighted(prompt, tokenizer), (e: Error) => {
      assert.ok(e instanceof PromptWeightError, String(e));
      assert.match(e.message, /the weight of "cat" is Infinity: it overflows float32/);
      return true;
    });
  }
  // Large finite weights are sd.cpp's business: they parse.
  assert.equal(tokenizeWeighted("(cat:1000)", tokenizer).chunks.length, 1);
});

Deno.test("weights that make the embedding overflow are refused instead of giving NaN", () => {
  const dim = 4;
  const hidden = Float32Array.from({ length: 3 * dim }, (_, i) => 1 + i);
  assert.throws(() => applyTokenWeights(hidden, [1, 1e38, 1], dim), (e: Error) => {
    assert.ok(e instanceof PromptWeightError);
    assert.match(e.message, /prompt weights up to 1e\+38 make the text embedding overflow float32/);
    return true;
  });
  const ok = Float32Array.from({ length: 3 * dim }, (_, i) => 1 + i);
  applyTokenWeights(ok, [1, 2, 1], dim);
  assert.equal(firstNonFinite(ok), -1);
});
