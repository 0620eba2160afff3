/**
 * Backends beyond the CPU, end to end:
 * - the tiny SD 1.x checkpoint (models/tiny) generates on WebGPU (when an adapter is available) the same picture
 *   as on the CPU backend: latent within 1e-4 relative to its largest value (the CPU convolves by Winograd,
 *   WebGPU directly, and reduces in other orders: each op is within ~1e-5, tests/ops_test.ts, and a 3-step
 *   sampler with CFG 7 amplifies that by < 10);
 * - a third-party TypeScript backend (examples/plugins/ts-backend) with three ops runs a graph whose other ops
 *   are placed on the CPU (the plan says which and why), with the CPU's result to 1e-6 relative.
 * - bad input: an unknown backend, a backend without the ops and no fallback: one line naming backend and op;
 *   `precision: "bf16"` on a backend that does not offer it.
 */

import { assert, assertEquals } from "./assert.ts";
import { loadBackend, registerBackend } from "../backends/mod.ts";
import { compile, Graph, Program } from "../engine/mod.ts";
import { plan } from "../engine/plan.ts";
import { loadCheckpoint, makeTinyCheckpoint, sample } from "../models/mod.ts";
import { JsBackend, jsBackendFactory } from "../examples/plugins/ts-backend/backend.ts";
import { loadPlugin, NodeRegistry } from "../plugins/plugin.ts";

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let err = 0, ref = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    ref = Math.max(ref, Math.abs(b[i]));
  }
  return err / ref;
}

const webgpu = await loadBackend("webgpu").then(() => undefined, (e: Error) => e.message);

Deno.test({
  name: `tiny SD 1.x on webgpu matches the CPU backend${webgpu ? ` (ignored: ${webgpu})` : ""}`,
  ignore: webgpu !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "sdflow-backends-test-" });
    try {
      const path = await makeTinyCheckpoint(`${dir}/tiny.safetensors`, { seed: 11 });
      const run = async (backend: string) => {
        const ckpt = await loadCheckpoint(path, { threads: 1, backend });
        try {
          const positive = await ckpt.textEncoder.encode("a lovely cat");
          const negative = await ckpt.textEncoder.encode("");
          const latent = { shape: [1, 4, 8, 8], data: new Float32Array(256) };
          const out = await sample({
            denoiser: ckpt.denoiser,
            positive,
            negative,
            latent,
            batch: 1,
            seed: 42,
            steps: 3,
            cfgScale: 7,
            method: "euler",
            scheduler: "discrete",
            rng: "cuda",
          });
          const [image] = await ckpt.vae.decode(out);
          return { latent: out.data as Float32Array, image };
        } finally {
          ckpt.dispose();
        }
      };
      const cpu = await run("cpu");
      const gpu = await run("webgpu");
      const rel = maxRelDiff(gpu.latent, cpu.latent);
      console.log(`tiny SD latent: webgpu vs cpu max rel diff ${rel.toExponential(2)} (bound 1e-4)`);
      assert(rel <= 1e-4, `latent differs by ${rel} relative`);
      let maxPix = 0;
      for (let i = 0; i < cpu.image.data.length; i++) {
        maxPix = Math.max(maxPix, Math.abs(cpu.image.data[i] - gpu.image.data[i]));
      }
      assert(maxPix <= 1, `picture differs by ${maxPix} levels (bound 1: rounding of a pixel at a boundary)`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("a TypeScript backend with three ops: the rest is placed on the CPU with transfers, same result", async () => {
  registerBackend(jsBackendFactory);
  const js = await loadBackend("js-example", { threads: 1 });
  assertEquals(js.fallback?.name, "cpu");
  const cpu = await loadBackend("cpu", { threads: 1 });
  const g = new Graph();
  const x = g.input("x", [2, 8, 6, 6]);
  let r = 1;
  const rnd = () => ((r = (r * 16807) % 2147483647) / 2147483647) - 0.5;
  const w = g.constant("w", [8, 8, 3, 3], "f32", { kind: "data", data: Float32Array.from({ length: 576 }, rnd) });
  const gamma = g.constant("g", [8], "f32", { kind: "data", data: new Float32Array(8).fill(1) });
  const beta = g.constant("b", [8], "f32", { kind: "data", data: new Float32Array(8) });
  // An f16 constant widened once (a hoisted copy: on the CPU, which has the op) and added on js-example.
  const half = g.constant("h", [2, 8, 6, 6], "f16", {
    kind: "data",
    data: Uint16Array.from({ length: 576 }, (_, i) => 0x3c00 + (i % 64)),
  });
  const h = g.add(g.silu(g.scale(g.input("y", [2, 8, 6, 6]), 0.5, 1)), g.copy(half));
  const c = g.conv2d(g.add(x, h), w, undefined, { padding: 1 });
  g.output("out", g.silu(g.groupNorm(c, gamma, beta, { groups: 4 })));
  const compiled = plan(g, { capabilities: js.capabilities, fallback: true });
  assert(compiled.placement, "some ops are placed on the fallback");
  const kinds = compiled.stepOps.filter((o) => o.side === "fallback").map((o) => o.kind);
  assertEquals(kinds.sort(), ["conv2d", "group_norm"]);
  assert(compiled.stepOps.find((o) => o.kind === "conv2d")!.note!.includes("on the CPU: the backend has no conv2d"));
  assert(compiled.stats.transferBytes > 0);
  assertEquals(compiled.constOps.map((o) => o.kind), ["copy"]);
  assertEquals(compiled.placement.afterConst.map((t) => [t.to, t.bytes]), [["primary", 576 * 4]]);
  const feeds = {
    x: Float32Array.from({ length: 576 }, rnd),
    y: Float32Array.from({ length: 576 }, rnd),
  };
  const a = compile(g, js);
  const b = compile(g, cpu);
  try {
    const got = (await a.run(feeds)).out;
    const want = (await b.run(feeds)).out;
    const rel = maxRelDiff(got, want);
    assert(rel <= 1e-6, `js-example + cpu vs cpu: ${rel}`);
    // A second run reuses the placed plans (constants, transfers).
    assertEquals([...(await a.run(feeds)).out], [...got]);
  } finally {
    a.dispose();
    b.dispose();
  }
});

Deno.test("a plugin's TypeScript backend is registered by name when the plugin loads", async () => {
  const plugin = await loadPlugin(
    new URL("../examples/plugins/ts-backend/plugin.ts", import.meta.url).href,
    "file:///",
  );
  assertEquals(plugin.tsBackends.map((b) => b.name), ["js-example"]);
  new NodeRegistry().add(plugin);
  const be = await loadBackend("js-example");
  assertEquals([be.name, be.fallback?.name], ["js-example", "cpu"]);
  await assert_rejects(
    () =>
      loadPlugin(`data:text/javascript,export default { tsBackends: [{ name: "webgpu", create() {} }] }`, "file:///"),
    /"tsBackends\[0\]\.name" must be a new backend name/,
  );
});

Deno.test("bad backends: unknown name, missing op without a fallback — one line naming backend and op", async () => {
  await assert_rejects(() => loadBackend("no_such_backend"), /backend "no_such_backend" not found/);
  registerBackend(jsBackendFactory);
  const js = await loadBackend("js-example", { fallback: "none" });
  assertEquals(js.fallback, undefined);
  const g = new Graph();
  g.output("y", g.softmax(g.input("x", [2, 3])));
  let msg = "";
  try {
    compile(g, js);
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(/^js-example: op 0 \(softmax\): not implemented$/.test(msg), msg);
  // A backend that does not know the precision setting is refused, not run in f32 silently.
  await assert_rejects(
    () => loadBackend("js-example", { fallback: "none", precision: "bf16" }),
    /^backend "js-example" does not offer precision "bf16" \(the CPU backend does, on CPUs with AVX512-BF16/,
  );
});

async function assert_rejects(f: () => Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await f();
  } catch (e) {
    assert(re.test((e as Error).message), (e as Error).message);
    return;
  }
  throw new Error(`expected a rejection matching ${re}`);
}

const BROKEN_SOFTMAX = (op: string, code: string) => (op === "softmax" ? `${code}\nfn broken( {` : code);

Deno.test({
  name: `webgpu bad input: a kernel that fails to compile, a lost device, too much memory, no adapter${
    webgpu ? ` (ignored: ${webgpu})` : ""
  }`,
  ignore: webgpu !== undefined,
  async fn() {
    const warnings: string[] = [];
    // Asked to fall back: the softmax kernel is named once, and softmax runs on the CPU with the CPU's result.
    const gpu = await loadBackend("webgpu", { webgpu: { patchKernel: BROKEN_SOFTMAX, warn: (l) => warnings.push(l) } });
    assertEquals(warnings.length, 1);
    assert(/^webgpu: the softmax kernel failed to compile: .*; softmax runs on the CPU backend$/.test(warnings[0]));
    assert(!gpu.capabilities.ops.has("softmax"));
    const g = new Graph();
    g.output("y", g.softmax(g.silu(g.input("x", [3, 5]))));
    const x = Float32Array.from({ length: 15 }, (_, i) => Math.sin(i) * 3);
    const p = compile(g, gpu);
    const cpu = compile(g, await loadBackend("cpu", { threads: 1 }));
    try {
      assertEquals(p.plan.stepOps.map((o) => o.side ?? "primary"), ["primary", "fallback"]);
      const rel = maxRelDiff((await p.run({ x })).y, (await cpu.run({ x })).y);
      assert(rel <= 1e-6, `softmax on the CPU after silu on webgpu: ${rel}`);
    } finally {
      p.dispose();
      cpu.dispose();
    }
    // Not asked to fall back: creating the backend stops with that line.
    await assert_rejects(
      () => loadBackend("webgpu", { fallback: "none", webgpu: { patchKernel: BROKEN_SOFTMAX } }),
      /^webgpu: the softmax kernel failed to compile: /,
    );
    // Out of memory: a buffer past the device's largest.
    let msg = "";
    try {
      gpu.alloc(2 ** 40);
    } catch (e) {
      msg = (e as Error).message;
    }
    assert(/^webgpu: alloc: 1099511627776 bytes exceed the device's largest buffer/.test(msg), msg);
    // A device lost mid-session: the next run stops with one line, it does not hang or return garbage.
    const lost = await loadBackend("webgpu");
    const q = compile(g, lost);
    await q.run({ x });
    (lost as unknown as { destroy(): void }).destroy();
    await new Promise((r) => setTimeout(r, 50));
    await assert_rejects(() => q.run({ x }), /^webgpu: device lost \(destroyed/);
    // No adapter.
    const gpuApi = (navigator as unknown as { gpu: { requestAdapter: () => Promise<unknown> } }).gpu;
    const original = gpuApi.requestAdapter;
    gpuApi.requestAdapter = () => Promise.resolve(null);
    try {
      await assert_rejects(() => loadBackend("webgpu"), /^webgpu: no WebGPU adapter/);
    } finally {
      gpuApi.requestAdapter = original;
    }
  },
});

Deno.test({
  name: `webgpu: a file range is uploaded once for every program that maps it${webgpu ? ` (ignored: ${webgpu})` : ""}`,
  ignore: webgpu !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const path = `${dir}/w.bin`;
      const w = Float32Array.from({ length: 12 }, (_, i) => i - 5);
      await Deno.writeFile(path, new Uint8Array(w.buffer));
      const gpu = await loadBackend("webgpu");
      const build = (n: number) => {
        const g = new Graph();
        const x = g.input("x", [n, 4]);
        const wt = g.constant("w", [3, 4], "f32", { kind: "file", path, offset: 0, bytes: 48 });
        g.output("y", g.linear(x, wt));
        return g;
      };
      // Two shapes (two programs) of one network: one upload, and freeing one program keeps the other's weights.
      const a = compile(build(1), gpu);
      const b = compile(build(2), gpu);
      const fa = (a as unknown as { buffers: { gpu: unknown }[] }).buffers.at(-1)!;
      const fb = (b as unknown as { buffers: { gpu: unknown }[] }).buffers.at(-1)!;
      assert(fa.gpu === fb.gpu, "the two programs bind the same device buffer");
      a.dispose();
      const y = (await b.run({ x: new Float32Array([1, 0, 0, 0, 0, 1, 0, 0]) })).y;
      assertEquals([...y], [-5, -1, 3, -4, 0, 4]);
      b.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("weights of one file are bound in pieces no larger than the backend's largest buffer", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/w.bin`;
    const w = Float32Array.from({ length: 52 }, (_, i) => (i % 7) - 3);
    await Deno.writeFile(path, new Uint8Array(w.buffer));
    const g = new Graph();
    let y = g.input("x", [1, 4]);
    // Three [4, 4] weights at bytes 0, 64 and 128 (and one more unused range after them).
    for (let k = 0; k < 3; k++) {
      y = g.linear(y, g.constant(`w${k}`, [4, 4], "f32", { kind: "file", path, offset: 64 * k, bytes: 64 }));
    }
    g.output("y", y);
    const cpu = await loadBackend("cpu", { threads: 1 });
    const small = plan(g, { capabilities: { ...cpu.capabilities, maxBufferBytes: 128 } });
    assertEquals(small.bindings.filter((b) => b.kind === "file").map((b) => b.kind === "file" && [b.offset, b.bytes]), [
      [0, 128],
      [128, 64],
    ]);
    const one = plan(g, { capabilities: cpu.capabilities });
    assertEquals(one.bindings.filter((b) => b.kind === "file").length, 1);
    const x = new Float32Array([1, -2, 0.5, 3]);
    const a = new Program(cpu, small);
    const b = new Program(cpu, one);
    try {
      assertEquals([...(await a.run({ x })).y], [...(await b.run({ x })).y]);
    } finally {
      a.dispose();
      b.dispose();
    }
    let msg = "";
    try {
      plan(g, { capabilities: { ...cpu.capabilities, maxBufferBytes: 32 } });
    } catch (e) {
      msg = (e as Error).message;
    }
    assert(/^w0: 64 bytes exceed the backend's largest buffer \(32\)/.test(msg), msg);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a plan past the backend's memory budget is refused at planning, saying how much it needs", () => {
  const g = new Graph();
  g.output("y", g.silu(g.input("x", [64, 64])));
  const caps = { ...jsBackendFactoryCaps(), memoryBytes: 1000 };
  let msg = "";
  try {
    plan(g, { capabilities: caps });
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(/^the plan needs 32768 bytes of activations and kept constants, more than the backend's 1000$/.test(msg), msg);
});

function jsBackendFactoryCaps() {
  return new JsBackend().capabilities;
}
