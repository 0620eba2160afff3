/**
 * `deno task bench <conv|attention|gemm|gen|decoders> [--threads N] [--runs N] [--json] [--only TEXT]`
 * (gen: also `--arch sd15|sdxl`, `--sizes`, `--steps`, `--model`; see bench/gen.ts)
 *
 * Prints medians measured in one process with one thread count, so ratios
 * within a run are comparable even on a noisy shared machine.
 */

import { parseArgs } from "node:util";
import { type Backend, loadBackend } from "../backends/mod.ts";
import { f32ArrayToBf16Bits, f32ArrayToF16Bits } from "../backends/float16.ts";
import { median } from "../cli/progress.ts";
import { compile, convFlops, type DType, Graph, type PlanOptions } from "../engine/mod.ts";
import { ATTENTION_SHAPES, type ConvShape, LINEAR_SHAPES, UNET_CONVS, VAE_DECODER_CONVS } from "./shapes.ts";
import { benchGen } from "./gen.ts";
import { benchDecoders } from "./decoders.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    threads: { type: "string" },
    runs: { type: "string", default: "5" },
    json: { type: "boolean", default: false },
    only: { type: "string" },
    dtype: { type: "string", default: "f32" },
    isa: { type: "string", default: "auto" },
    // gen (bench/gen.ts reads these itself)
    arch: { type: "string" },
    sizes: { type: "string" },
    steps: { type: "string" },
    model: { type: "string" },
    "hoist-mib": { type: "string" },
    lora: { type: "string" },
    "lora-mode": { type: "string" },
    // decoders (bench/decoders.ts reads these itself)
    big: { type: "string" },
    taesd: { type: "string" },
    esrgan: { type: "string" },
  },
});

const suite = positionals[0] ?? "conv";
const runs = Math.max(1, Number(values.runs));
const threads = values.threads ? Number(values.threads) : undefined;
const json = values.json;
const only = values.only;

function randomData(n: number, scale: number, seed: number): Float32Array {
  // xorshift: fast, deterministic; the values only need SD-like magnitudes.
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
}

async function timeProgram(
  g: Graph,
  backend: Backend,
  opts: PlanOptions,
  inputs: Record<string, Float32Array>,
): Promise<{ ms: number; opMs: number; path: string }> {
  const program = compile(g, backend, opts);
  try {
    await program.run(inputs); // warm-up; also runs the constant plan (filter transforms)
    const times: number[] = [];
    const opTimes: number[] = [];
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now();
      await program.run(inputs);
      times.push(performance.now() - t0);
      // The op alone, without copying inputs in and outputs back to JavaScript (single-op graphs).
      opTimes.push(program.profile().reduce((a, op) => a + op.ms, 0));
    }
    const wino = program.plan.lowered.ops.find((o) => o.kind === "wino_output");
    const path = wino ? `F(${wino.attrs.m},3)` : "im2col";
    return { ms: median(times), opMs: median(opTimes), path };
  } finally {
    program.dispose();
  }
}

function convGraph(s: ConvShape, dtype: DType): Graph {
  const g = new Graph();
  const x = g.input("x", [s.batch, s.cin, s.h, s.w]);
  const wData = randomData(s.cout * s.cin * 9, 1 / Math.sqrt(s.cin * 9), 7);
  const w = g.constant(
    "w",
    [s.cout, s.cin, 3, 3],
    dtype,
    { kind: "data", data: dtype === "f16" ? f32ArrayToF16Bits(wData) : wData },
  );
  const b = g.constant("b", [s.cout], "f32", { kind: "data", data: randomData(s.cout, 0.1, 9) });
  g.output("y", g.conv2d(x, w, b, { padding: 1 }));
  return g;
}

async function benchConv(backend: Backend): Promise<void> {
  const t = backend.info.threads;
  const shapes = [...UNET_CONVS, ...VAE_DECODER_CONVS].filter((s) => !only || s.name.includes(only));
  if (!json) {
    console.log(`conv 3x3 pad 1, ${t} thread(s), isa ${backend.info.isa}, weights ${values.dtype}, median of ${runs}`);
    console.log(
      "winograd: the planner's default path (filter transform fused into the products); hoisted: the transformed " +
        "filter computed once and kept; speedup and GFLOP/s (direct-conv FLOPs / time) are for the winograd column",
    );
    console.log(
      "shape".padEnd(22) + "batch".padStart(6) + "path".padStart(8) + "winograd ms".padStart(13) +
        "hoisted ms".padStart(12) + "im2col ms".padStart(11) + "speedup".padStart(9) + "GFLOP/s".padStart(9) +
        "im2col GFLOP/s".padStart(16),
    );
  }
  for (const s of shapes) {
    const g = convGraph(s, values.dtype as DType);
    const x = randomData(s.batch * s.cin * s.h * s.w, 1.5, 3);
    const wino = await timeProgram(g, backend, { winograd: "auto" }, { x });
    // The same with the transformed filter computed once and kept (the constant plan).
    const hoisted = await timeProgram(g, backend, { winograd: "auto", hoistBudgetBytes: Infinity }, { x });
    const im2col = await timeProgram(g, backend, { winograd: "off", conv: "im2col" }, { x });
    const flops = convFlops(s.batch, s.cout, s.h, s.w, s.cin, 3, 3);
    const row = {
      name: s.name,
      cin: s.cin,
      cout: s.cout,
      h: s.h,
      w: s.w,
      batch: s.batch,
      threads: t,
      path: wino.path,
      winograd_ms: round(wino.ms),
      hoisted_ms: round(hoisted.ms),
      im2col_ms: round(im2col.ms),
      speedup: round(im2col.ms / wino.ms),
      gflops: round(flops / wino.ms / 1e6),
      im2col_gflops: round(flops / im2col.ms / 1e6),
    };
    if (json) console.log(JSON.stringify(row));
    else {
      console.log(
        s.name.padEnd(22) + String(s.batch).padStart(6) + row.path.padStart(8) +
          row.winograd_ms.toFixed(2).padStart(13) + row.hoisted_ms.toFixed(2).padStart(12) +
          row.im2col_ms.toFixed(2).padStart(11) + `${row.speedup.toFixed(2)}x`.padStart(9) +
          row.gflops.toFixed(1).padStart(9) + row.im2col_gflops.toFixed(1).padStart(16),
      );
    }
  }
}

async function benchAttention(backend: Backend): Promise<void> {
  if (!json) {
    console.log(`fused attention, ${backend.info.threads} thread(s), median of ${runs}`);
    console.log(
      "run ms: program.run() including copying q/k/v in and o out; op ms and GFLOP/s: the attention op alone",
    );
    console.log("shape".padEnd(26) + "run ms".padStart(10) + "op ms".padStart(10) + "GFLOP/s".padStart(10));
  }
  for (const s of ATTENTION_SHAPES.filter((s) => !only || s.name.includes(only))) {
    const c = s.heads * s.headDim;
    const g = new Graph();
    const q = g.input("q", [s.batch, s.nq, c]);
    const k = g.input("k", [s.batch, s.nk, c]);
    const v = g.input("v", [s.batch, s.nk, c]);
    g.output("o", g.attention(q, k, v, { heads: s.heads }));
    const inputs = {
      q: randomData(s.batch * s.nq * c, 1, 1),
      k: randomData(s.batch * s.nk * c, 1, 2),
      v: randomData(s.batch * s.nk * c, 1, 3),
    };
    const { ms, opMs } = await timeProgram(g, backend, {}, inputs);
    const flops = 4 * s.batch * s.nq * s.nk * c;
    const row = {
      name: s.name,
      batch: s.batch,
      nq: s.nq,
      nk: s.nk,
      heads: s.heads,
      head_dim: s.headDim,
      run_ms: round(ms),
      ms: round(opMs),
      gflops: round(flops / opMs / 1e6),
    };
    if (json) console.log(JSON.stringify({ ...row, threads: backend.info.threads }));
    else {
      console.log(
        s.name.padEnd(26) + row.run_ms.toFixed(2).padStart(10) + row.ms.toFixed(2).padStart(10) +
          row.gflops.toFixed(1).padStart(10),
      );
    }
  }
}

async function benchGemm(backend: Backend): Promise<void> {
  const dtypes: DType[] = ["f32", "f16", "bf16"];
  if (!json) {
    console.log(`linear y = x W^T + b, ${backend.info.threads} thread(s), median of ${runs}; GFLOP/s per weight dtype`);
    console.log("ms and GF/s: the matmul op alone (program.run() also copies x in and y out: *_run_ms in --json)");
    console.log(
      "shape".padEnd(28) + "M".padStart(6) + "K".padStart(6) + "N".padStart(7) +
        dtypes.map((d) => `${d} ms`.padStart(10) + `${d} GF/s`.padStart(11)).join(""),
    );
  }
  for (const s of LINEAR_SHAPES.filter((s) => !only || s.name.includes(only))) {
    const cells: string[] = [];
    const row: Record<string, unknown> = { name: s.name, m: s.m, k: s.k, n: s.n, threads: backend.info.threads };
    for (const dt of dtypes) {
      const g = new Graph();
      const x = g.input("x", [s.m, s.k]);
      const wf = randomData(s.n * s.k, 1 / Math.sqrt(s.k), 5);
      const data = dt === "f32" ? wf : dt === "f16" ? f32ArrayToF16Bits(wf) : f32ArrayToBf16Bits(wf);
      const w = g.constant("w", [s.n, s.k], dt, { kind: "data", data });
      g.output("y", g.linear(x, w));
      const { ms, opMs } = await timeProgram(g, backend, {}, { x: randomData(s.m * s.k, 1, 4) });
      const gf = (2 * s.m * s.k * s.n) / opMs / 1e6;
      row[`${dt}_ms`] = round(opMs);
      row[`${dt}_run_ms`] = round(ms);
      row[`${dt}_gflops`] = round(gf);
      cells.push(opMs.toFixed(2).padStart(10) + gf.toFixed(1).padStart(11));
    }
    if (json) console.log(JSON.stringify(row));
    else {console.log(
        s.name.padEnd(28) + String(s.m).padStart(6) + String(s.k).padStart(6) + String(s.n).padStart(7) +
          cells.join(""),
      );}
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

const suites: Record<string, (b: Backend) => Promise<void>> = {
  conv: benchConv,
  attention: benchAttention,
  gemm: benchGemm,
  gen: benchGen,
  decoders: () => benchDecoders(),
};

const run = suites[suite];
if (!run) {
  console.error(`unknown benchmark "${suite}": choose one of ${Object.keys(suites).join(", ")}`);
  Deno.exit(2);
}
const backend = await loadBackend("cpu", { threads, isa: values.isa as "auto" });
await run(backend);
