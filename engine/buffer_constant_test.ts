/**
 * Constants backed by a caller's backend buffer (ConstantSource kind "buffer"): two programs bind the
 * same buffer at their own offsets, read it as the weight (y = x·Wᵀ checked against a direct product,
 * exact for these small integers), and disposing them leaves the buffer to its owner.
 */

import assert from "node:assert/strict";
import { loadBackend } from "../backends/mod.ts";
import { compile, Graph, GraphError } from "./mod.ts";

Deno.test("buffer constants: shared by programs, read at their offset, not freed by them", async () => {
  const backend = await loadBackend("cpu", { threads: 1 });
  // Two 2x3 weights in one buffer: W1 at byte 0, W2 at byte 64.
  const w1 = new Float32Array([1, 2, 3, 4, 5, 6]);
  const w2 = new Float32Array([-1, 0, 2, 3, -2, 1]);
  const buffer = backend.alloc(128);
  buffer.write(0, w1);
  buffer.write(64, w2);
  const x = new Float32Array([1, -1, 2]);
  const expect = (w: Float32Array) => [0, 1].map((o) => x[0] * w[3 * o] + x[1] * w[3 * o + 1] + x[2] * w[3 * o + 2]);
  try {
    for (const [offset, w] of [[0, w1], [64, w2]] as const) {
      const g = new Graph();
      const xi = g.input("x", [1, 3]);
      const wt = g.constant("w", [2, 3], "f32", { kind: "buffer", buffer, offset, bytes: 24 });
      g.output("y", g.linear(xi, wt));
      const p = compile(g, backend);
      assert.deepEqual([...(await p.run({ x })).y], expect(w));
      p.dispose();
      assert.ok(!buffer.freed, "a program does not free a buffer it did not allocate");
    }
    const g = new Graph();
    assert.throws(
      () => g.constant("w", [2, 3], "f32", { kind: "buffer", buffer, offset: 120, bytes: 24 }),
      GraphError,
    );
  } finally {
    buffer.free();
  }
});
