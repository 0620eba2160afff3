/**
 * Bounds on hostile graph files (issue 13): "did you mean" costs at most O(64²) per candidate
 * whatever the value's length, echoed values are clipped, and nesting is bounded before the
 * (recursive) JSON parser sees the text.
 */

import assert from "node:assert/strict";
import { clip, closest, editDistance, formatDiagnostic, GraphError } from "./errors.ts";
import { MAX_GRAPH_DEPTH, nestsDeeperThan, parseGraphText, tooDeepAt } from "./parse.ts";
import { validateGraph } from "./validate.ts";

/** The textbook full-table optimal string alignment distance, as the reference. */
function osaReference(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => i || j));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

Deno.test("editDistance (three rows) equals the full-table reference on random words", () => {
  let s = 7;
  const rand = (n: number) => (s = (s * 1103515245 + 12345) % 2 ** 31) % n;
  const word = () => Array.from({ length: rand(9) }, () => "abc"[rand(3)]).join("");
  for (let k = 0; k < 2000; k++) {
    const [a, b] = [word(), word()];
    assert.equal(editDistance(a, b), osaReference(a, b), `${a} / ${b}`);
  }
  assert.equal(editDistance("vea", "vae"), 1);
});

Deno.test("closest: no suggestion for a 50 MB word, found at once; near names still suggested", () => {
  const huge = "e".repeat(50_000_000);
  const t0 = performance.now();
  assert.equal(closest(huge, ["euler", "euler_a", "e".repeat(50_000_000)]), undefined);
  assert.ok(performance.now() - t0 < 5000, "no quadratic table");
  assert.equal(closest("eular_a", ["euler", "euler_a", "heun"]), "euler_a");
});

Deno.test("echoed values and names are clipped; a diagnostic stays one short line", () => {
  assert.equal(clip("abc"), "abc");
  assert.equal(clip("x".repeat(100)), `${"x".repeat(80)}… (100 characters)`);
  const line = formatDiagnostic({ source: "g.json", node: "n".repeat(10_000), message: "m".repeat(100_000) });
  assert.ok(line.length < 2000, `${line.length}`);
  assert.doesNotMatch(line, /\n/);
});

Deno.test("nesting: bounded before parsing, strings skipped, parsed documents too", () => {
  assert.equal(tooDeepAt("[".repeat(MAX_GRAPH_DEPTH) + "]".repeat(MAX_GRAPH_DEPTH), MAX_GRAPH_DEPTH), -1);
  assert.equal(tooDeepAt("[".repeat(MAX_GRAPH_DEPTH + 1), MAX_GRAPH_DEPTH), MAX_GRAPH_DEPTH);
  // Brackets inside strings (escaped quotes too) do not count.
  assert.equal(tooDeepAt(`{"a": "${"[".repeat(500)}\\"${"{".repeat(500)}"}`, MAX_GRAPH_DEPTH), -1);
  assert.throws(() => parseGraphText("[".repeat(100_000), "deep.json"), (e: Error) => {
    assert.ok(e instanceof GraphError);
    assert.match(e.message, /^deep\.json:1:65: nested more than 64 levels deep/);
    return true;
  });
  let deep: unknown = 1;
  for (let i = 0; i < 100_000; i++) deep = [deep];
  assert.ok(nestsDeeperThan(deep, MAX_GRAPH_DEPTH));
  assert.ok(!nestsDeeperThan({ a: [[{ b: 1 }]] }, 4));
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.ok(!nestsDeeperThan(cyclic, 4), "a cycle is not infinite depth");
});

Deno.test("a deep document given as an object (a TypeScript graph) is one diagnostic too", async () => {
  let deep: unknown = "x";
  for (let i = 0; i < 10_000; i++) deep = [deep];
  const doc = { version: 1, nodes: { a: { type: "checkpoint", inputs: { path: deep } } } };
  await assert.rejects(() => validateGraph(doc, { source: "graph.ts" }), (e: Error) => {
    assert.ok(e instanceof GraphError);
    assert.match(e.message, /^graph\.ts: nested more than 64 levels deep/);
    return true;
  });
});
