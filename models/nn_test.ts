/**
 * constantRows: views of a weight's rows, byte-exact for element and block formats (an OpenCLIP q/k/v third
 * of a packed in_proj weight or bias), and a clear error for a cut inside a block.
 */

import { assert, assertEquals, assertThrows } from "../tests/assert.ts";
import { Graph } from "../engine/graph.ts";
import { constantRows, WeightError } from "./nn.ts";

Deno.test("constantRows: file-range views of f16 rows, q8_0 rows and a 1-D q8_0 bias", () => {
  const g = new Graph();
  const file = (bytes: number) => ({ kind: "file" as const, path: "/w.gguf", offset: 1000, bytes });
  const f16 = g.constant("w16", [6, 4], "f16", file(6 * 4 * 2));
  const rows16 = constantRows(g, f16, 2, 3);
  assertEquals(rows16.shape, [3, 4]);
  assertEquals(rows16.source, { ...file(3 * 4 * 2), offset: 1000 + 2 * 4 * 2 });
  // q8_0: 32 elements in 34 bytes. A [3, 64] weight has rows of 2 blocks (68 bytes).
  const q = g.constant("wq", [3, 64], "q8_0", file(3 * 68));
  assertEquals(constantRows(g, q, 1, 2).source, { ...file(2 * 68), offset: 1000 + 68 });
  // A packed bias [96] in q8_0: thirds of 32 elements are whole blocks.
  const bias = g.constant("bq", [96], "q8_0", file(3 * 34));
  const third = constantRows(g, bias, 32, 32);
  assertEquals(third.shape, [32]);
  assertEquals(third.source, { ...file(34), offset: 1000 + 34 });
  const e = assertThrows(() => constantRows(g, bias, 0, 40), WeightError);
  assert(/do not fall on whole blocks/.test(e.message), e.message);
});

Deno.test("constantRows: in-memory bytes are sliced by bytes, typed arrays by elements", () => {
  const g = new Graph();
  const bytes = new Uint8Array(3 * 34).map((_, i) => i);
  const bias = g.constant("bq", [96], "q8_0", { kind: "data", data: bytes });
  const third = constantRows(g, bias, 64, 32);
  assertEquals([...(third.source as { data: Uint8Array }).data], [...bytes.subarray(68, 102)]);
  const f32 = g.constant("w", [4, 2], "f32", { kind: "data", data: new Float32Array([0, 1, 2, 3, 4, 5, 6, 7]) });
  assertEquals([...(constantRows(g, f32, 1, 2).source as { data: Float32Array }).data], [2, 3, 4, 5]);
});
