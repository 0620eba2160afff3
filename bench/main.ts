/**
 * `deno task bench <conv|attention|gemm|gen|readme|decoders|serve> [options]`
 *
 * - conv, attention, gemm: `[--backend cpu|opencl|webgpu|PATH] [--threads N] [--runs N] [--json] [--only TEXT]
 *   [--isa NAME] [--precision f32|bf16]`; on a backend that cannot time single ops (WebGPU) the op time is the whole run's. conv also
 *   `[--dtype f16|f32|bf16]` (weights; default f16, as real checkpoints hold them) and
 *   `[--vs onnxruntime]` (onnxruntime-node's convolution on the same data, in the same run).
 * - gen: whole generations through sdflow's CLI, optionally next to stable-diffusion.cpp (bench/gen.ts).
 * - readme: the README's speed table from a `gen` run, with the machine (bench/readme.ts).
 * - decoders: VAE vs TAESD decode, whole vs tiled, ESRGAN (bench/decoders.ts).
 * - serve: N concurrent clients against `deno task serve` on the tiny model, in-process and Redis queues
 *   side by side: throughput, p50/p99 latency, peak RSS (bench/serve.ts).
 *
 * Op suites print medians measured in one process with one thread count, so ratios within a run are
 * comparable even on a noisy shared machine.
 */

import { parseArgs } from "node:util";
import { type Backend, loadBackend, type Precision } from "../backends/mod.ts";
import { type DType, Graph } from "../engine/mod.ts";
import { measureConv, randomData, round, timeProgram } from "./conv.ts";
import { f32ArrayToBf16Bits, f32ArrayToF16Bits } from "../backends/float16.ts";
import { ATTENTION_SHAPES, LINEAR_SHAPES, UNET_CONVS, VAE_DECODER_CONVS } from "./shapes.ts";
import { benchGen } from "./gen.ts";
import { useCallerFolder } from "../cli/common.ts";
import { benchReadme } from "./readme.ts";
import { benchDecoders } from "./decoders.ts";
import { benchServe } from "./serve.ts";
import { loadOnnxruntime, onnxNote } from "./onnxruntime.ts";

const OPTIONS = {
  threads: { type: "string" },
  runs: { type: "string", default: "5" },
  json: { type: "boolean", default: false },
  only: { type: "string" },
  dtype: { type: "string", default: "f16" },
  isa: { type: "string", default: "auto" },
  precision: { type: "string", default: "f32" },
  vs: { type: "string" },
  backend: { type: "string", default: "cpu" },
} as const;
const suite = parseArgs({ args: Deno.args, allowPositionals: true, strict: false, options: OPTIONS }).positionals[0] ??
  "conv";
// gen and readme: relative paths (--model, --sdcpp, --lora) mean the folder `deno task bench` was started in
// (they make their own paths absolute); the other suites' default paths are relative to sdflow's root.
if (suite === "gen" || suite === "readme") useCallerFolder();
else Deno.env.delete("SDFLOW_CALLER_DIR");
// gen and readme read their own flags (strictly, themselves); the op suites share these.
const opSuite = suite === "conv" || suite === "attention" || suite === "gemm";
const { values } = (() => {
  try {
    return parseArgs({ args: Deno.args, allowPositionals: true, strict: opSuite, options: OPTIONS });
  } catch (e) {
    console.error(`bench ${suite}: ${(e as Error).message}`);
    Deno.exit(2);
  }
})();

function positiveIntFlag(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || !/^\d+$/.test(v) || Number(v) < 1) {
    console.error(`bench ${suite}: --${name} expects a positive integer, got "${v}"`);
    Deno.exit(2);
  }
  return Number(v);
}

const runs = positiveIntFlag("runs", values.runs)!;
const threads = positiveIntFlag("threads", values.threads);
const json = values.json === true;
const only = values.only as string | undefined;
if (opSuite && !["f32", "f16", "bf16"].includes(String(values.dtype))) {
  console.error(`bench ${suite}: --dtype must be f32, f16 or bf16, got "${values.dtype}"`);
  Deno.exit(2);
}
if (opSuite && !["f32", "bf16"].includes(String(values.precision))) {
  console.error(`bench ${suite}: --precision must be f32 or bf16, got "${values.precision}"`);
  Deno.exit(2);
}
if (values.vs !== undefined && suite !== "readme" && (suite !== "conv" || values.vs !== "onnxruntime")) {
  console.error(`bench ${suite}: --vs takes "onnxruntime", with the conv and readme suites only`);
  Deno.exit(2);
}

/** Where a suite runs: CPU threads, or the backend and its device. */
function where(backend: Backend): string {
  return backend.name === "cpu"
    ? `${backend.info.threads} thread(s)${
      backend.info.precision === "bf16" ? `, precision bf16 (${backend.info.bf16_unit})` : ""
    }`
    : `${backend.name} on ${backend.info.isa}`;
}

async function benchConv(backend: Backend): Promise<void> {
  const t = backend.info.threads;
  const dtype = values.dtype as DType;
  const shapes = [...UNET_CONVS, ...VAE_DECODER_CONVS].filter((s) => !only || s.name.includes(only));
  const onnx = values.vs === "onnxruntime" ? await loadOnnxruntime() : null;
  if (!json) {
    console.log(`conv 3x3 pad 1, ${where(backend)}, isa ${backend.info.isa}, weights ${dtype}, median of ${runs}`);
    console.log(
      "winograd: the planner's default path (filter transform fused into the products); hoisted: the transformed " +
        "filter computed once and kept; speedup and GFLOP/s (direct-conv FLOPs / time) are for the winograd column; " +
        "times are program.run() (thread wake-up and copies in and out included)",
    );
    if (onnx) console.log(onnxNote(onnx.version, t));
    console.log(
      "shape".padEnd(22) + "batch".padStart(6) + "path".padStart(8) + "winograd ms".padStart(13) +
        "hoisted ms".padStart(12) + "im2col ms".padStart(11) + "speedup".padStart(9) + "GFLOP/s".padStart(9) +
        "im2col GFLOP/s".padStart(16) +
        (onnx
          ? "ort ms".padStart(10) + "ort GFLOP/s".padStart(13) + "ort÷sdflow".padStart(12) + "rel err".padStart(10)
          : ""),
    );
  }
  for (const s of shapes) {
    // Backends that convolve directly have no Winograd/hoisted/im2col variants to compare.
    const direct = backend.capabilities.conv.kind === "direct";
    const row = await measureConv(backend, s, {
      dtype,
      runs,
      onnx: onnx?.ort,
      hoisted: direct ? false : undefined,
      im2col: direct ? false : undefined,
    });
    if (json) console.log(JSON.stringify(row));
    else {
      console.log(
        s.name.padEnd(22) + String(s.batch).padStart(6) + row.path.padStart(8) +
          row.winograd_ms.toFixed(2).padStart(13) + row.hoisted_ms.toFixed(2).padStart(12) +
          row.im2col_ms.toFixed(2).padStart(11) + `${row.speedup.toFixed(2)}x`.padStart(9) +
          row.gflops.toFixed(1).padStart(9) + row.im2col_gflops.toFixed(1).padStart(16) +
          (row.onnxruntime_ms !== undefined
            ? row.onnxruntime_ms.toFixed(2).padStart(10) + row.onnxruntime_gflops!.toFixed(1).padStart(13) +
              `${row.onnxruntime_ratio!.toFixed(2)}x`.padStart(12) +
              row.onnxruntime_rel_err!.toExponential(1).padStart(10)
            : ""),
      );
    }
  }
}

async function benchAttention(backend: Backend): Promise<void> {
  if (!json) {
    console.log(`fused attention, ${where(backend)}, median of ${runs}`);
    console.log(
      "run ms: program.run() as a network runs it: waking the threads, copying q/k/v in and o out, and the op; " +
        "op ms and GFLOP/s: the attention op alone (its first chunk claimed to its last done); " +
        "overhead ms: run − op",
    );
    console.log(
      "shape".padEnd(26) + "run ms".padStart(10) + "op ms".padStart(10) + "overhead ms".padStart(13) +
        "GFLOP/s".padStart(10) + "run GFLOP/s".padStart(13),
    );
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
    const { ms, opMs } = await timeProgram(g, backend, {}, inputs, runs);
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
      overhead_ms: round(ms - opMs),
      gflops: round(flops / opMs / 1e6),
      run_gflops: round(flops / ms / 1e6),
    };
    if (json) console.log(JSON.stringify({ ...row, threads: backend.info.threads }));
    else {
      console.log(
        s.name.padEnd(26) + row.run_ms.toFixed(2).padStart(10) + row.ms.toFixed(2).padStart(10) +
          row.overhead_ms.toFixed(2).padStart(13) + row.gflops.toFixed(1).padStart(10) +
          row.run_gflops.toFixed(1).padStart(13),
      );
    }
  }
}

async function benchGemm(backend: Backend): Promise<void> {
  const dtypes: DType[] = ["f32", "f16", "bf16"];
  if (!json) {
    console.log(`linear y = x W^T + b, ${where(backend)}, median of ${runs}; GFLOP/s per weight dtype`);
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
      const { ms, opMs } = await timeProgram(g, backend, {}, { x: randomData(s.m * s.k, 1, 4) }, runs);
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

const suites: Record<string, (b: Backend) => Promise<number | void>> = {
  conv: benchConv,
  attention: benchAttention,
  gemm: benchGemm,
  gen: (b) => benchGen(b, Deno.args),
  readme: (b) => benchReadme(b, Deno.args),
  decoders: () => benchDecoders(),
  serve: () => benchServe(Deno.args),
};

const run = suites[suite];
if (!run) {
  console.error(`unknown benchmark "${suite}": choose one of ${Object.keys(suites).join(", ")}`);
  Deno.exit(2);
}
try {
  const backend = await loadBackend(opSuite ? String(values.backend) : "cpu", {
    threads,
    isa: values.isa as "auto",
    precision: opSuite ? values.precision as Precision : undefined,
  });
  if (backend.info.name !== "cpu" && typeof backend.info.device === "string") {
    console.log(`backend ${backend.info.name}, device ${backend.info.device}`);
  }
  const code = await run(backend);
  if (typeof code === "number" && code !== 0) Deno.exit(code);
} catch (e) {
  console.error(`bench ${suite}: ${e instanceof Error ? e.message : e}`);
  Deno.exit(1);
}
