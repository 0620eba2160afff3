import assert from "node:assert/strict";
import { Graph, GraphError } from "./graph.ts";
import { chooseWinograd, lower } from "./lower.ts";
import { planArena, rootOf } from "./memory.ts";
import { tensorBytes } from "./lower.ts";

/** Deterministic xorshift PRNG for random graphs. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** A random DAG of elementwise/concat/conv ops over [1, C, 8, 8] activations. */
function randomGraph(seed: number): Graph {
  const r = rng(seed);
  const g = new Graph();
  const vals = [g.input("x", [1, 8, 8, 8])];
  const w = g.constant("w", [8, 8, 3, 3], "f32", { kind: "data", data: new Float32Array(576) });
  const n = 10 + Math.floor(r() * 30);
  for (let i = 0; i < n; i++) {
    const a = vals[Math.floor(r() * vals.length)];
    const b = vals[Math.floor(r() * vals.length)];
    const k = r();
    if (k < 0.3) vals.push(g.add(a, b));
    else if (k < 0.5) vals.push(g.silu(a));
    else if (k < 0.7) vals.push(g.conv2d(a, w, undefined, { padding: 1 }));
    else if (k < 0.85) vals.push(g.reshape(g.scale(a, 2), [1, 8, 64]));
    else vals.push(g.mul(a, b));
    if (vals[vals.length - 1].shape.length === 3) {
      vals[vals.length - 1] = g.reshape(vals[vals.length - 1], [1, 8, 8, 8]);
    }
  }
  g.output("y", vals[vals.length - 1]);
  g.output("z", vals[Math.floor(vals.length / 2)]);
  return g;
}

Deno.test("arena: live tensors never share memory, and reuse waits for earlier readers", () => {
  for (let seed = 1; seed <= 60; seed++) {
    // Every third graph splits its Winograd convs into one-tile-row bands (several ops write one tensor).
    const lg = lower(randomGraph(seed), { winograd: seed % 2 ? "auto" : "off", bandBytes: seed % 3 ? undefined : 1 });
    const { tensors, ops } = lg;
    const root = (id: number) => rootOf(tensors, id);
    const pinned = new Set([...lg.inputs.values(), ...lg.outputs.values()].map(root));
    const isArena = (r: number) =>
      tensors[r].kind !== "constant" && !ops.some((o) => o.kind === "wino_filter" && root(o.outputs[0]) === r);
    // Filter transforms read only constants; treat them like the planner does (hoisted).
    const stepOps = ops.filter((o) => o.kind !== "wino_filter");
    const plan = planArena(stepOps, tensors, isArena, pinned);
    // Lifetimes in op positions.
    const first = new Map<number, number>();
    const last = new Map<number, number>();
    const touchers = new Map<number, number[]>();
    const writers = new Map<number, number[]>();
    stepOps.forEach((op, i) => {
      for (const t of op.outputs) if (op.kind !== "reshape") writers.set(root(t), [...(writers.get(root(t)) ?? []), i]);
      for (const t of [...op.inputs, ...op.outputs]) {
        const r = root(t);
        if (!plan.offsets.has(r)) continue;
        if (!first.has(r)) first.set(r, i);
        last.set(r, i);
        touchers.set(r, [...(touchers.get(r) ?? []), i]);
      }
    });
    for (const r of pinned) {
      if (!plan.offsets.has(r)) continue;
      first.set(r, -1);
      last.set(r, stepOps.length);
    }
    // Transitive closure of deps.
    const anc: Set<number>[] = [];
    stepOps.forEach((_, i) => {
      const s = new Set<number>();
      for (const d of plan.deps[i]) {
        s.add(d);
        for (const x of anc[d]) s.add(x);
      }
      anc.push(s);
    });
    const roots = [...plan.offsets.keys()];
    for (const a of roots) {
      for (const b of roots) {
        if (a >= b) continue;
        const [sa, sb] = [plan.offsets.get(a)!, plan.offsets.get(b)!];
        const overlap = sa < sb + tensorBytes(tensors[b]) && sb < sa + tensorBytes(tensors[a]);
        if (!overlap) continue;
        const [fa, la, fb, lb] = [first.get(a)!, last.get(a)!, first.get(b)!, last.get(b)!];
        assert(la < fb || lb < fa, `seed ${seed}: tensors ${a} and ${b} share memory while both live`);
        const [early, late] = la < fb ? [a, b] : [b, a];
        // Every op writing the later tenant (each Winograd band writes its part) waits for the earlier one's users.
        for (const producer of writers.get(late) ?? [first.get(late)!]) {
          for (const t of touchers.get(early) ?? []) {
            assert(
              anc[producer].has(t),
              `seed ${seed}: op ${producer} reuses memory of ${early} without waiting for op ${t}`,
            );
          }
        }
      }
    }
    assert(plan.peakBytes > 0);
  }
});

Deno.test("arena: every Winograd band that writes into reused memory carries the wait for the old tenant's readers", () => {
  // a = silu(x) is read last by b; the banded conv of x (not reading a) then lands in a's memory. A band's output op
  // may run as soon as its own product is ready, so each band (not only the first, which placed the tensor) must
  // itself wait for a's reader. (Missing edges raced in ESRGAN's banded 256x256 convs on 2 threads: wrong tiles.)
  const g = new Graph();
  const x = g.input("x", [1, 64, 24, 24]);
  const w = g.constant("w", [64, 64, 3, 3], "f32", { kind: "data", data: new Float32Array(64 * 64 * 9) });
  const a = g.silu(x);
  const b = g.scale(a, 2);
  const c = g.conv2d(x, w, undefined, { padding: 1 });
  g.output("b", b);
  g.output("d", g.silu(c));
  // F(2,3), 4 tile rows per band: each band's intermediates are larger than a, so only the output lands in its memory.
  const lg = lower(g, { winograd: 2, bandBytes: 4 * 98304 });
  const root = (id: number) => rootOf(lg.tensors, id);
  const stepOps = lg.ops.filter((o) => o.kind !== "wino_filter");
  const pinned = new Set([...lg.inputs.values(), ...lg.outputs.values()].map(root));
  const plan = planArena(stepOps, lg.tensors, (r) => lg.tensors[r].kind !== "constant", pinned);
  const bands = stepOps.flatMap((o, i) => (o.kind === "wino_output" ? [i] : []));
  assert.equal(bands.length, 3);
  assert.equal(plan.offsets.get(root(stepOps[bands[0]].outputs[0])), plan.offsets.get(root(a.id)), "c reuses a");
  // The first band placed c; its write-after-read edges (all but its own product) must be on every band.
  const war = [...plan.deps[bands[0]]].filter((d) => d !== bands[0] - 1);
  assert(war.length > 0);
  for (const band of bands) {
    for (const d of war) assert(plan.deps[band].has(d), `band op ${band} does not wait for op ${d}`);
  }
});

Deno.test("lowering picks Winograd tiles per shape and falls back where it does not pay", () => {
  // The backend's measured choices (batch 2): m=6 at 64², m=4 at 32² and 16², m=2 at 8².
  assert.deepEqual(chooseWinograd(2, 320, 320, 64, 64, "auto"), 6);
  assert.deepEqual(chooseWinograd(2, 640, 640, 32, 32, "auto"), 4);
  assert.deepEqual(chooseWinograd(2, 1280, 1280, 16, 16, "auto"), 4);
  assert.deepEqual(chooseWinograd(2, 1280, 1280, 8, 8, "auto"), 2);
  assert.deepEqual(chooseWinograd(2, 4, 320, 64, 64, "auto"), 0);
  assert.deepEqual(chooseWinograd(2, 320, 320, 64, 64, "off"), 0);
  assert.deepEqual(chooseWinograd(2, 320, 320, 64, 64, 2), 2);
  const g = new Graph();
  const x = g.input("x", [2, 32, 16, 16]);
  const w3 = g.constant("w3", [32, 32, 3, 3], "f32", { kind: "data", data: new Float32Array(32 * 32 * 9) });
  const w1 = g.constant("w1", [32, 32, 1, 1], "f32", { kind: "data", data: new Float32Array(32 * 32) });
  const h = g.conv2d(x, w3, undefined, { padding: 1 });
  const y = g.add(h, x); // residual: fused into the output transform
  const z = g.conv2d(y, w3, undefined, { padding: 1, stride: 2 });
  g.output("y", g.conv2d(z, w1));
  const lg = lower(g);
  assert.deepEqual(lg.ops.map((o) => o.kind), [
    "wino_filter",
    "wino_input",
    "wino_gemm",
    "wino_output",
    "conv2d",
    "conv2d",
  ]);
  assert.deepEqual(lg.ops[3].attrs.has_residual, 1);
  assert.deepEqual(lg.ops[3].inputs[1], x.id);
});

Deno.test("graph building rejects mismatched shapes with both shapes in the message", () => {
  const g = new Graph();
  const x = g.input("x", [1, 4, 8, 8]);
  const w = g.constant("w", [8, 3, 3, 3], "f32", { kind: "data", data: new Float32Array(216) });
  assert.throws(
    () => g.conv2d(x, w, undefined),
    (e: Error) => e instanceof GraphError && /4 channels.*\[8, 3, 3, 3\]/.test(e.message),
  );
  assert.throws(() => g.add(x, g.input("y", [1, 5, 8, 8])), /do not broadcast/);
  assert.throws(
    () => g.attention(g.input("q", [1, 7, 10]), g.input("k", [1, 7, 10]), g.input("v", [1, 7, 10]), { heads: 3 }),
    /heads/,
  );
  assert.throws(() => g.constant("c", [4], "f32", { kind: "data", data: new Float32Array(3) }), /needs 16 bytes/);
});
