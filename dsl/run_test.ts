/** Runner: order, concurrency, the output cache, overrides, progress, errors. */

import assert from "node:assert/strict";
import { testGraph, testNodes } from "./testdata/test_nodes.ts";
import { NodeRunError, OutputCache, runPipeline } from "./run.ts";
import { validateGraph } from "./validate.ts";
import { defineNode } from "../plugins/node.ts";

Deno.test("runner: every node runs after its inputs, in one topological order", async () => {
  const { nodes, probe } = testNodes();
  const p = await validateGraph(testGraph(), { nodes });
  assert.deepEqual(p.order, ["load", "pos", "neg", "sample", "sample2", "decode"]);
  const r = await runPipeline(p, { concurrency: 1 });
  assert.deepEqual(probe.started, p.order);
  assert.deepEqual(r.executed, p.order);
  assert.equal(r.outputs.get("decode")!.out, "img(model:m+clip:m|a cat@1)");
});

Deno.test("runner: independent branches run concurrently, up to the limit", async () => {
  const { nodes, probe } = testNodes(20);
  const p = await validateGraph(testGraph(), { nodes });
  await runPipeline(p, { concurrency: 2 });
  assert.equal(probe.maxActive, 2, "pos/neg and sample/sample2 overlap");
  const t = testNodes(5);
  await runPipeline(await validateGraph(testGraph(), { nodes: t.nodes }), { concurrency: 1 });
  assert.equal(t.probe.maxActive, 1);
});

Deno.test("runner: changing only the seed reruns the sampler and what follows, nothing before", async () => {
  const { nodes, probe } = testNodes();
  const cache = new OutputCache();
  const first = await runPipeline(await validateGraph(testGraph(1), { nodes }), { cache });
  assert.deepEqual(probe.runs, { t_load: 1, t_encode: 2, t_sample: 2, t_decode: 1 });
  assert.deepEqual(first.cached, []);

  const second = await runPipeline(await validateGraph(testGraph(1), { nodes, overrides: ["sample.seed=2"] }), {
    cache,
  });
  assert.deepEqual(probe.runs, { t_load: 1, t_encode: 2, t_sample: 3, t_decode: 2 });
  assert.deepEqual([...second.executed].sort(), ["decode", "sample"]);
  assert.deepEqual([...second.cached].sort(), ["load", "neg", "pos", "sample2"]);
  assert.equal(second.outputs.get("decode")!.out, "img(model:m+clip:m|a cat@2)");
  assert.notEqual(first.keys.get("decode"), second.keys.get("decode"));
  assert.equal(first.keys.get("pos"), second.keys.get("pos"));

  // Changing the prompt re-encodes that prompt only, and reruns what depends on it.
  const third = await runPipeline(await validateGraph(testGraph(2), { nodes, overrides: ["pos.text=a dog"] }), {
    cache,
  });
  assert.deepEqual([...third.executed].sort(), ["decode", "pos", "sample"]);
  assert.equal(probe.runs.t_load, 1);
});

Deno.test("runner: a node that is not cacheable (random seed) always runs, and so does what follows", async () => {
  const { nodes, probe } = testNodes();
  const cache = new OutputCache();
  const p = await validateGraph(testGraph(-1), { nodes });
  await runPipeline(p, { cache });
  await runPipeline(p, { cache });
  assert.equal(probe.runs.t_sample, 3); // "sample" twice, "sample2" (seed 5) once
  assert.equal(probe.runs.t_decode, 2);
  assert.equal(probe.runs.t_load, 1);
});

Deno.test("runner: overrides are parsed by the input's type and reach the node", async () => {
  const { nodes } = testNodes();
  const p = await validateGraph(testGraph(), {
    nodes,
    overrides: ["sample.steps=7", "load.name=x", "decode.latent=sample2.latent"],
  });
  assert.equal(p.nodes.get("sample")!.values.steps, 7);
  assert.deepEqual(p.nodes.get("decode")!.refs.latent, { node: "sample2", output: "latent" });
  const r = await runPipeline(p);
  assert.equal(r.outputs.get("decode")!.out, "img(model:x+clip:x|@5)");
});

Deno.test("runner: progress, logs and published facts reach the reporter and downstream nodes", async () => {
  const { nodes } = testNodes();
  const events: string[] = [];
  const r = await runPipeline(await validateGraph(testGraph(), { nodes }), {
    concurrency: 1,
    reporter: {
      nodeStart: (id) => events.push(`start ${id}`),
      progress: (id, d, t) => events.push(`${id} ${d}/${t}`),
      nodeEnd: (id, i) => events.push(`end ${id}${i.cached ? " cached" : ""}`),
    },
  });
  assert.ok(events.includes("sample 3/3"));
  assert.ok(events.indexOf("start sample") < events.indexOf("sample 1/3"));
  assert.ok(events.indexOf("sample 3/3") < events.indexOf("end sample"));
  assert.deepEqual(r.meta.get("sample"), { seed: 1 });
});

Deno.test("runner: a failing node stops the run with an error naming the node", async () => {
  const { nodes } = testNodes();
  const g = testGraph() as { nodes: Record<string, unknown> };
  g.nodes.bad = { type: "t_fail", inputs: { after: { from: "sample.latent" } } };
  const p = await validateGraph(g, { nodes });
  await assert.rejects(() => runPipeline(p), (e: NodeRunError) => {
    assert.ok(e instanceof NodeRunError);
    assert.equal(e.message, 'node "bad" (t_fail): boom');
    return true;
  });
});

Deno.test("runner: a missing checkpoint says where the weights are and how to override the path", async () => {
  const p = await validateGraph({
    version: 1,
    nodes: { ckpt: { type: "checkpoint", inputs: { path: "no/such.safetensors" } } },
  });
  await assert.rejects(() => runPipeline(p), (e: Error) => {
    assert.match(e.message, /^node "ckpt" input "path": model file not found: no\/such.safetensors/);
    assert.match(e.message, /huggingface\.co\/stable-diffusion-v1-5/);
    assert.match(e.message, /--set ckpt\.path=/);
    assert.match(e.message, /graphs\/demo\.json/);
    return true;
  });
});

// Resources behind outputs (a loaded checkpoint): released when their cache entry goes, or the run ends.
function disposalNodes(log: string[]) {
  const resource = defineNode({
    type: "t_resource",
    description: "test: a loaded resource that must be disposed",
    inputs: { name: { schema: { type: "string" } }, cacheable: { schema: { type: "boolean", default: true } } },
    outputs: { handle: "T_HANDLE" },
    cacheable: (v) => v.cacheable !== false,
    run: ({ name }, ctx) => {
      log.push(`load ${name}`);
      ctx.onDispose(() => log.push(`dispose ${name}`));
      return Promise.resolve({ handle: { name } });
    },
  });
  const use = defineNode({
    type: "t_use",
    description: "test: uses a handle, and can fail",
    inputs: { handle: { type: "T_HANDLE" }, fail: { schema: { type: "boolean", default: false } } },
    outputs: {},
    sideEffects: true,
    run: ({ handle, fail }) => {
      log.push(`use ${(handle as { name: string }).name}`);
      if (fail) return Promise.reject(new Error("boom"));
      return Promise.resolve({});
    },
  });
  return [resource, use];
}

Deno.test("runner: a cached resource is disposed when evicted or cleared, not while a run uses it", async () => {
  const log: string[] = [];
  const nodes = disposalNodes(log);
  const graph = (name: string) =>
    validateGraph({
      version: 1,
      nodes: {
        r: { type: "t_resource", inputs: { name } },
        u: { type: "t_use", inputs: { handle: { from: "r.handle" } } },
      },
    }, { nodes });
  const cache = new OutputCache({ maxEntries: 1 });
  await runPipeline(await graph("a"), { cache });
  assert.deepEqual(log, ["load a", "use a"]);
  await runPipeline(await graph("a"), { cache }); // from the cache: neither loaded nor disposed
  assert.deepEqual(log, ["load a", "use a", "use a"]);
  log.length = 0;
  await runPipeline(await graph("b"), { cache }); // b evicts a (one entry)
  assert.deepEqual(log, ["load b", "dispose a", "use b"]);
  log.length = 0;
  cache.clear();
  assert.deepEqual(log, ["dispose b"]);
  assert.equal(cache.size, 0);
});

Deno.test("runner: an entry evicted during the run that uses it is disposed when that run ends", async () => {
  const log: string[] = [];
  const nodes = disposalNodes(log);
  const p = await validateGraph({
    version: 1,
    nodes: {
      r1: { type: "t_resource", inputs: { name: "one" } },
      r2: { type: "t_resource", inputs: { name: "two" } },
      u1: { type: "t_use", inputs: { handle: { from: "r1.handle" } } },
      u2: { type: "t_use", inputs: { handle: { from: "r2.handle" } } },
    },
  }, { nodes });
  const cache = new OutputCache({ maxEntries: 1 });
  await runPipeline(p, { cache, concurrency: 1 });
  // r2 evicted r1 mid-run, but u1 still used it: "dispose one" comes only at the end.
  assert.deepEqual(log, ["load one", "load two", "use one", "use two", "dispose one"]);
  cache.clear();
  assert.deepEqual(log.at(-1), "dispose two");
});

Deno.test("runner: uncached resources, and those of a run without a cache, are disposed when the run ends", async () => {
  const log: string[] = [];
  const nodes = disposalNodes(log);
  const doc = (cacheable: boolean, fail = false) => ({
    version: 1,
    nodes: {
      r: { type: "t_resource", inputs: { name: "x", cacheable } },
      u: { type: "t_use", inputs: { handle: { from: "r.handle" }, fail } },
    },
  });
  const cache = new OutputCache();
  await runPipeline(await validateGraph(doc(false), { nodes }), { cache });
  assert.deepEqual(log, ["load x", "use x", "dispose x"]);
  assert.equal(cache.size, 0);

  log.length = 0;
  await runPipeline(await validateGraph(doc(true), { nodes }));
  assert.deepEqual(log, ["load x", "use x", "dispose x"]);

  // A failing run releases too.
  log.length = 0;
  await assert.rejects(async () => runPipeline(await validateGraph(doc(true, true), { nodes })), /boom/);
  assert.deepEqual(log, ["load x", "use x", "dispose x"]);
});

/** A resource that reports its memory, and a node whose output holds it (as a LoRA's patched model does). */
function memoryNodes(log: string[]) {
  const resource = defineNode({
    type: "t_model",
    description: "test: a loaded model of some bytes",
    inputs: { name: { schema: { type: "string" } }, bytes: { schema: { type: "integer" } } },
    outputs: { model: "T_MODEL" },
    run: ({ name, bytes }, ctx) => {
      log.push(`load ${name}`);
      let live = true;
      ctx.onDispose(() => {
        live = false;
        log.push(`dispose ${name}`);
      }, { bytes });
      return Promise.resolve({ model: { name, alive: () => live } });
    },
  });
  const wrap = defineNode({
    type: "t_wrap",
    description: "test: wraps a model (its output holds the upstream model)",
    inputs: { model: { type: "T_MODEL" } },
    outputs: { model: "T_MODEL" },
    run: ({ model }) => {
      const m = model as { name: string; alive: () => boolean };
      log.push(`wrap ${m.name}`);
      return Promise.resolve({ model: { name: `wrapped ${m.name}`, alive: m.alive } });
    },
  });
  const use = defineNode({
    type: "t_run",
    description: "test: runs a model, which must not be disposed",
    inputs: { model: { type: "T_MODEL" }, seed: { schema: { type: "integer", default: 0 } } },
    outputs: { value: "T_VALUE" },
    run: ({ model, seed }) => {
      const m = model as { name: string; alive: () => boolean };
      if (!m.alive()) return Promise.reject(new Error(`${m.name} was disposed`));
      log.push(`run ${m.name} ${seed}`);
      return Promise.resolve({ value: new Float32Array(4).fill(seed as number) });
    },
  });
  return [resource, wrap, use];
}

Deno.test("runner: models are kept within the byte budget, least recently used evicted; data entries do not count", async () => {
  const log: string[] = [];
  const nodes = memoryNodes(log);
  const graph = (name: string, seed = 0) =>
    validateGraph({
      version: 1,
      nodes: {
        m: { type: "t_model", inputs: { name, bytes: 600 } },
        r: { type: "t_run", inputs: { model: { from: "m.model" }, seed } },
      },
    }, { nodes });
  const evicted: unknown[] = [];
  const cache = new OutputCache({
    maxBytes: 1000,
    onEvict: (e) => evicted.push((e.outputs.model as { name: string }).name),
  });
  await runPipeline(await graph("a"), { cache });
  await runPipeline(await graph("a", 1), { cache }); // only the seed changed: the model stays
  assert.deepEqual(log, ["load a", "run a 0", "run a 1"]);
  assert.deepEqual(cache.stats().residentBytes, 600);
  log.length = 0;
  await runPipeline(await graph("b"), { cache }); // a + b = 1200 > 1000: a goes
  assert.deepEqual(log, ["load b", "dispose a", "run b 0"]);
  assert.deepEqual({ ...cache.stats(), entries: 0 }, {
    entries: 0,
    resident: 1,
    residentBytes: 600,
    maxBytes: 1000,
    evictions: 1,
  });
  assert.deepEqual(evicted, ["a"]);
  // Three data entries (the runs' values) stay: the budget is of bytes, the count is of the others.
  assert.deepEqual(cache.size, 4);
  log.length = 0;
  await runPipeline(await graph("b", 1), { cache });
  await runPipeline(await graph("a", 1), { cache }); // its value is cached; a is loaded for nothing else
  assert.deepEqual(log, ["run b 1", "load a", "dispose b"]);

  // Two of 400 bytes fit beside each other; a third evicts the least recently used.
  log.length = 0;
  const small = new OutputCache({ maxBytes: 1000 });
  const g = (name: string) =>
    validateGraph({
      version: 1,
      nodes: {
        m: { type: "t_model", inputs: { name, bytes: 400 } },
        r: { type: "t_run", inputs: { model: { from: "m.model" } } },
      },
    }, { nodes });
  for (const n of ["x", "y", "x", "z"]) await runPipeline(await g(n), { cache: small });
  assert.deepEqual(log, ["load x", "run x 0", "load y", "run y 0", "load z", "dispose y", "run z 0"]);
  small.clear();
  cache.clear();
});

Deno.test("runner: an output holding an evicted model is not reused once the model is loaded again", async () => {
  const log: string[] = [];
  const nodes = memoryNodes(log);
  const graph = (name: string, seed: number) =>
    validateGraph({
      version: 1,
      nodes: {
        m: { type: "t_model", inputs: { name, bytes: 600 } },
        w: { type: "t_wrap", inputs: { model: { from: "m.model" } } },
        r: { type: "t_run", inputs: { model: { from: "w.model" }, seed } },
      },
    }, { nodes });
  const cache = new OutputCache({ maxBytes: 1000 });
  await runPipeline(await graph("a", 0), { cache });
  await runPipeline(await graph("a", 1), { cache }); // model and wrapper from the cache
  await runPipeline(await graph("b", 0), { cache }); // evicts a
  log.length = 0;
  // a again, a new seed: the cached wrapper holds the disposed a, so it is made again from the new a.
  const r = await runPipeline(await graph("a", 2), { cache });
  assert.deepEqual(log, ["load a", "dispose b", "wrap a", "run wrapped a 2"]);
  assert.deepEqual(r.executed, ["m", "w", "r"]);
  // And that new wrapper is reused while a stays.
  log.length = 0;
  await runPipeline(await graph("a", 3), { cache });
  assert.deepEqual(log, ["run wrapped a 3"]);
  cache.clear();
});
