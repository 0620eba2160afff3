/**
 * The example third-party backend (`sdflow-ref-example`) loads through its
 * manifest (and through the plugin API), runs engine-compiled graphs with the
 * same results as the CPU backend, and rejects what it cannot run with clear
 * errors.
 *
 * Error bound for ref vs cpu: |ref - cpu| <= 1e-5 * |cpu| + 1e-6 per element
 * (1e-5 relative; the 1e-6 absolute floor covers layer-norm outputs that
 * cross zero). Both accumulate in at least f32; ref in double.
 */

import assert from "node:assert/strict";
import {
  type BackendManifest,
  BackendManifestError,
  buildManifestLibrary,
  loadBackend,
  loadBackendFromManifest,
  loadBackendManifest,
  type NativeBackend,
  PlanWriter,
  SDF_DTYPE,
  SDF_OP,
  SDF_STATUS,
  selectLibrary,
} from "../../../backends/mod.ts";
import { assertBackendError, randn, rng } from "../../../backends/test_helpers.ts";
import { f32ToF16Bits } from "../../../backends/float16.ts";
import { assertClose } from "../../../tests/assert.ts";
import { compile, Graph } from "../../../engine/mod.ts";
import { type BackendManifest as PluginBackendManifest, loadPlugin } from "../../../plugins/plugin.ts";

const MANIFEST = new URL("./manifest.json", import.meta.url);
const F32: number = SDF_DTYPE.f32;
const IMPLEMENTED = ["matmul", "binary", "unary", "scale", "softmax", "layer_norm", "geglu", "copy"];

// The plugin API's manifest type is accepted as is by the loader (type-level check).
const _compatible = (m: PluginBackendManifest): BackendManifest => m;

let cached: Promise<NativeBackend> | undefined;
function ref(): Promise<NativeBackend> {
  cached ??= loadBackendManifest(MANIFEST).then(({ manifest, baseDir }) =>
    loadBackendFromManifest(manifest, baseDir, { threads: 1 })
  );
  return cached;
}

function constant(g: Graph, name: string, shape: number[], r: () => number, dtype: "f32" | "f16" = "f32") {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = randn(r, n);
  const data = dtype === "f16" ? Uint16Array.from(v, f32ToF16Bits) : v;
  return g.constant(name, shape, dtype, { kind: "data", data });
}

Deno.test("example backend: loads through its manifest, builds from source, reports exactly its ops", async () => {
  const { manifest, baseDir } = await loadBackendManifest(MANIFEST);
  assert.equal(manifest.name, "sdflow-ref-example");
  const { key } = selectLibrary(manifest);
  assert.equal(key, `${Deno.build.os}-${Deno.build.arch}`);
  const path = await buildManifestLibrary(manifest, baseDir);
  assert.ok((await Deno.stat(path)).isFile);
  const be = await ref();
  assert.equal(be.info.name, "sdflow-ref-example");
  assert.equal(be.info.abi, 1);
  assert.deepEqual(be.info.isas, ["scalar"]);
  assert.deepEqual([...be.info.ops].sort(), [...IMPLEMENTED].sort());
});

Deno.test("example backend: loads through the plugin API (plugin.ts)", async () => {
  const plugin = await loadPlugin("./plugin.ts", import.meta.url);
  assert.equal(plugin.backends.length, 1);
  const m = plugin.backends[0];
  assert.equal(m.name, "sdflow-ref-example");
  const be = await loadBackendFromManifest(m, new URL(".", plugin.url), { threads: 1 });
  assert.equal(be.info.name, "sdflow-ref-example");
});

Deno.test("example backend: linear + silu + broadcast add + layer norm (+ f16 linear, softmax, gelu) matches cpu", async () => {
  const r = rng(42);
  const g = new Graph();
  const x = g.input("x", [2, 3, 8]);
  const bias = g.input("bias", [3, 1]);
  let h = g.linear(x, constant(g, "w1", [16, 8], r), constant(g, "b1", [16], r));
  h = g.silu(h);
  h = g.add(h, bias); // [2,3,16] + [3,1]: broadcast over batch and features
  h = g.layerNorm(h, constant(g, "ln.g", [16], r), constant(g, "ln.b", [16], r), { eps: 1e-5 });
  g.output("y", h);
  const z = g.linear(h, constant(g, "w2", [12, 16], r, "f16")); // f16 weights, no bias
  g.output("p", g.softmax(g.scale(z, 0.5, 0.25), { scale: 2 }));
  g.output("q", g.geglu(g.gelu(z)));
  const inputs = { x: randn(r, 48, -2, 2), bias: randn(r, 3) };

  const cpu = compile(g, await loadBackend("cpu", { threads: 1 }));
  const mine = compile(g, await ref());
  try {
    assert.equal(mine.backendName, "sdflow-ref-example");
    const want = await cpu.run(inputs);
    const got = await mine.run(inputs);
    for (const k of ["y", "p", "q"]) assertClose(`output ${k}`, got[k], want[k], 1e-5, 1e-6);
    // A second run gives the same values (no state carried between runs).
    const again = await mine.run(inputs);
    assert.deepEqual(again.y, got.y);
    assert.equal(mine.progress(), mine.plan.stats.stepOps);
  } finally {
    cpu.dispose();
    mine.dispose();
  }
});

Deno.test("example backend: a graph with a conv2d is rejected at compile, naming the op", async () => {
  const r = rng(3);
  const g = new Graph();
  const x = g.input("x", [1, 3, 8, 8]);
  const y = g.conv2d(x, constant(g, "w", [4, 3, 3, 3], r), undefined, { padding: 1 });
  g.output("y", g.silu(y));
  const be = await ref();
  const e = await assertBackendError(
    () => compile(g, be),
    /sdflow-ref-example does not implement conv2d \(op 0\)/,
  );
  assert.equal(e.code, SDF_STATUS.E_UNSUPPORTED);
  assert.match(e.message, /it implements matmul, binary/);
});

function validPlan(): Uint8Array {
  const w = new PlanWriter(1);
  const x = w.tensor(0, F32, 0, [2, 4]);
  const wt = w.tensor(0, F32, 64, [3, 4]);
  const y = w.tensor(0, F32, 128, [2, 3]);
  const z = w.tensor(0, F32, 192, [2, 3]);
  w.op(SDF_OP.MATMUL, [x, wt], [y], [], [], []);
  w.op(SDF_OP.UNARY, [y], [z], [0], [], [0]);
  return w.finish();
}

Deno.test("example backend: malformed plans are errors naming the problem, never a crash", async () => {
  const be = await ref();
  const good = validPlan();
  be.compile(good).free();
  // truncated header, truncated body, bad magic, trailing bytes
  await assertBackendError(() => be.compile(good.subarray(0, 12)), /plan truncated: the header needs 20 bytes/);
  await assertBackendError(() => be.compile(good.subarray(0, good.length - 3)), /plan truncated at byte \d+/);
  const bad = good.slice();
  bad[0] ^= 0xff;
  await assertBackendError(() => be.compile(bad), /bad magic/);
  await assertBackendError(() => be.compile(new Uint8Array([...good, 0, 0, 0, 0])), /trailing bytes/);
  // an op whose input tensor index is out of range (first tensor index of op 0, patched)
  const oob = good.slice();
  const dv = new DataView(oob.buffer);
  let pos = 20; // after the header: skip the 4 tensors (20 bytes + 8 per dim each)
  for (let t = 0; t < 4; t++) pos += 20 + 8 * dv.getUint32(pos + 16, true);
  dv.setUint32(pos + 24, 99, true); // op 0, input 0
  await assertBackendError(() => be.compile(oob), /op 0 \(matmul\): input 0: tensor index 99 out of range/);
  // contract violations: K mismatch, broadcast mismatch, bad unary kind, dependency on a later op
  const w = new PlanWriter(1);
  const a = w.tensor(0, F32, 0, [2, 4]);
  const wt = w.tensor(0, F32, 64, [3, 5]);
  const y = w.tensor(0, F32, 192, [2, 3]);
  w.op(SDF_OP.MATMUL, [a, wt], [y], [], [], []);
  await assertBackendError(() => be.compile(w.finish()), /op 0 \(matmul\): input \[2, 4\] has 4 features/);
  const w2 = new PlanWriter(1);
  const b1 = w2.tensor(0, F32, 0, [2, 3]);
  const b2 = w2.tensor(0, F32, 64, [4]);
  const b3 = w2.tensor(0, F32, 128, [2, 3]);
  w2.op(SDF_OP.BINARY, [b1, b2], [b3], [0], [], []);
  await assertBackendError(
    () => be.compile(w2.finish()),
    /op 0 \(binary\): inputs \[2, 3\] and \[4\] do not broadcast/,
  );
  const w3 = new PlanWriter(1);
  const u1 = w3.tensor(0, F32, 0, [4]);
  w3.op(SDF_OP.UNARY, [u1], [u1], [42], [], []);
  const e = await assertBackendError(() => be.compile(w3.finish()), /op 0 \(unary\): unknown unary kind 42/);
  assert.equal(e.code, SDF_STATUS.E_UNSUPPORTED);
  // run-time: a buffer too small for the plan's tensors, and the wrong number of bindings
  const plan = be.compile(good);
  const small = be.alloc(100);
  try {
    await assertBackendError(
      () => plan.run([small]),
      /tensor \d+ f32 \[\d+, \d+\] needs bytes \[\d+, \d+\) of binding 0/,
    );
    await assertBackendError(() => plan.run([small, small]), /the plan has 1 bindings, 2 buffers were given/);
  } finally {
    plan.free();
    small.free();
  }
  // random corruption of a valid plan: always a clean accept or a BackendError
  const r = rng(9);
  for (let i = 0; i < 300; i++) {
    const c = good.slice();
    for (let k = 0; k < 3; k++) c[Math.floor(r() * c.length)] = Math.floor(r() * 256);
    try {
      be.compile(c).free();
    } catch (err) {
      assert.equal((err as Error).name, "BackendError", String(err));
    }
  }
});

Deno.test("example backend: buffers (alloc, write, read, from file) check their ranges", async () => {
  const be = await ref();
  const buf = be.alloc(16);
  try {
    buf.write(4, new Float32Array([1.5, -2]));
    assert.deepEqual([...buf.readInto(4, new Float32Array(2))], [1.5, -2]);
    await assertBackendError(() => buf.write(12, new Float32Array(2)), /bytes \[12, 20\) are outside the buffer/);
    await assertBackendError(() => buf.read(10, 8), /outside the buffer \(16 bytes\)/);
  } finally {
    buf.free();
  }
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/w.bin`;
    await Deno.writeFile(path, new Uint8Array(new Float32Array([0, 1, 2, 3, 4]).buffer));
    const fb = be.fromFile(path, 4, 12);
    try {
      assert.deepEqual([...fb.readInto(0, new Float32Array(3))], [1, 2, 3]);
      await assertBackendError(() => fb.write(0, new Float32Array(1)), /read-only/);
    } finally {
      fb.free();
    }
    await assertBackendError(() => be.fromFile(path, 8, 16), /outside the file \(20 bytes\)/);
    await assertBackendError(() => be.fromFile(`${dir}/nope.bin`, 0, 4), /cannot open/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("example backend: a manifest with no entry for this platform is a clear error", async () => {
  const other = Deno.build.os === "windows" ? "linux-x86_64" : "windows-x86_64";
  const m: BackendManifest = { name: "sdflow-ref-example", libraries: { [other]: "x.dll" } };
  await assert.rejects(
    () => loadBackendFromManifest(m, new URL(".", MANIFEST)),
    (e: unknown) =>
      e instanceof BackendManifestError &&
      e.message ===
        `backend "sdflow-ref-example" has no library for ${Deno.build.os}-${Deno.build.arch} (its manifest lists: ${other})`,
  );
});
