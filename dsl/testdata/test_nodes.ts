/** Test-only nodes that count their runs and record concurrency (never registered outside tests). */

import { type AnyNodeDef, defineNode } from "../../plugins/node.ts";

/** Counters and timing probes shared by one set of test nodes. */
export interface Probe {
  runs: Record<string, number>;
  active: number;
  maxActive: number;
  started: string[];
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Fresh test nodes: t_load → t_encode → t_sample → t_decode, with sockets T_MODEL, T_COND, T_LATENT. */
export function testNodes(delayMs = 0): { nodes: AnyNodeDef[]; probe: Probe } {
  const probe: Probe = { runs: {}, active: 0, maxActive: 0, started: [] };
  const wrap = async <T>(id: string, type: string, f: () => T): Promise<T> => {
    probe.runs[type] = (probe.runs[type] ?? 0) + 1;
    probe.started.push(id);
    probe.active++;
    probe.maxActive = Math.max(probe.maxActive, probe.active);
    try {
      await tick(delayMs);
      return f();
    } finally {
      probe.active--;
    }
  };
  const load = defineNode({
    type: "t_load",
    description: "test: loads a model",
    inputs: { name: { schema: { type: "string", default: "m" } } },
    outputs: { model: "T_MODEL", clip: "T_CLIP" },
    run: ({ name }, ctx) => wrap(ctx.nodeId, "t_load", () => ({ model: `model:${name}`, clip: `clip:${name}` })),
  });
  const encode = defineNode({
    type: "t_encode",
    description: "test: encodes text",
    inputs: { clip: { type: "T_CLIP" }, text: { schema: { type: "string", default: "" } } },
    outputs: { cond: "T_COND" },
    run: ({ clip, text }, ctx) => wrap(ctx.nodeId, "t_encode", () => ({ cond: `${clip}|${text}` })),
  });
  const sample = defineNode({
    type: "t_sample",
    description: "test: samples",
    inputs: {
      model: { type: "T_MODEL" },
      cond: { type: "T_COND" },
      seed: { schema: { type: "integer", default: 0 } },
      steps: { schema: { type: "integer", minimum: 1, default: 3 } },
    },
    outputs: { latent: "T_LATENT" },
    cacheable: (v) => (v.seed as number) >= 0,
    run: ({ model, cond, seed, steps }, ctx) =>
      wrap(ctx.nodeId, "t_sample", () => {
        for (let i = 1; i <= steps; i++) ctx.progress(i, steps);
        ctx.publish({ seed });
        return { latent: `${model}+${cond}@${seed}` };
      }),
  });
  const decode = defineNode({
    type: "t_decode",
    description: "test: decodes",
    inputs: { latent: { type: "T_LATENT" } },
    outputs: { out: "STRING" },
    run: ({ latent }, ctx) => wrap(ctx.nodeId, "t_decode", () => ({ out: `img(${latent})` })),
  });
  const fail = defineNode({
    type: "t_fail",
    description: "test: always fails",
    inputs: { after: { type: "T_LATENT", optional: true } },
    outputs: {},
    run: () => Promise.reject(new Error("boom")),
  });
  return { nodes: [load, encode, sample, decode, fail], probe };
}

/** A txt2img-shaped graph over the test nodes. */
export function testGraph(seed = 1): Record<string, unknown> {
  return {
    version: 1,
    nodes: {
      load: { type: "t_load", inputs: { name: "m" } },
      pos: { type: "t_encode", inputs: { clip: { from: "load.clip" }, text: "a cat" } },
      neg: { type: "t_encode", inputs: { clip: { from: "load.clip" }, text: "" } },
      sample: { type: "t_sample", inputs: { model: { from: "load.model" }, cond: { from: "pos.cond" }, seed } },
      sample2: { type: "t_sample", inputs: { model: { from: "load.model" }, cond: { from: "neg.cond" }, seed: 5 } },
      decode: { type: "t_decode", inputs: { latent: { from: "sample.latent" } } },
    },
  };
}
