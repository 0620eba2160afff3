/**
 * What the op benchmarks share (bench/main.ts, bench/readme.ts): deterministic data, weights rounded
 * to a dtype, timing one compiled single-op program, and one 3x3 convolution measured three ways
 * (Winograd, Winograd with the transformed filter kept, im2col) and, optionally, by onnxruntime.
 *
 * @module
 */

import type { Backend } from "../backends/mod.ts";
import { compile, convFlops, type DType, Graph, type PlanOptions } from "../engine/mod.ts";
import { f32ArrayToBf16Bits, f32ArrayToF16Bits, halfBitsToF32Array } from "../backends/float16.ts";
import { relativeMaxError, timeOnnxConv } from "./onnxruntime.ts";
import type { ConvShape } from "./shapes.ts";
import { median } from "../cli/progress.ts";

/** Deterministic values in [−scale, scale) (xorshift: fast; they only need SD-like magnitudes). */
export function randomData(n: number, scale: number, seed: number): Float32Array {
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

export function round(x: number, digits = 2): number {
  return Math.round(x * 10 ** digits) / 10 ** digits;
}

/**
 * Compiles `g`, runs it once (warm-up: also the constant plan, e.g. filter transforms), then `runs`
 * times: the median of program.run() (waking the threads, copying inputs in and outputs out, and the
 * ops) and of the ops alone (Program.profile(): first chunk claimed to last chunk done, summed).
 */
export async function timeProgram(
  g: Graph,
  backend: Backend,
  opts: PlanOptions,
  inputs: Record<string, Float32Array>,
  runs: number,
): Promise<{ ms: number; opMs: number; path: string; output: Float32Array }> {
  const program = compile(g, backend, opts);
  try {
    await program.run(inputs);
    const times: number[] = [];
    const opTimes: number[] = [];
    let out: Record<string, Float32Array> = {};
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now();
      out = await program.run(inputs);
      times.push(performance.now() - t0);
      opTimes.push(program.profile().reduce((a, op) => a + op.ms, 0));
    }
    const wino = program.plan.lowered.ops.find((o) => o.kind === "wino_output");
    const path = wino ? `F(${wino.attrs.m},3)` : backend.capabilities.conv.kind === "direct" ? "direct" : "im2col";
    // A backend that cannot time single ops (profile() all zeros: WebGPU) is timed by the whole run.
    const opMs = median(opTimes) || median(times);
    return { ms: median(times), opMs, path, output: Object.values(out)[0].slice() };
  } finally {
    program.dispose();
  }
}

/** A conv's weights: random f32 values rounded to `dtype`, and the f32 values that dtype holds. */
export function convWeights(s: ConvShape, dtype: DType): { data: Float32Array | Uint16Array; values: Float32Array } {
  const w = randomData(s.cout * s.cin * 9, 1 / Math.sqrt(s.cin * 9), 7);
  if (dtype === "f16" || dtype === "bf16") {
    // Rounded to nearest even, as PyTorch's `.half()` / `.bfloat16()` make checkpoints.
    const bits = dtype === "f16" ? f32ArrayToF16Bits(w) : f32ArrayToBf16Bits(w);
    return { data: bits, values: halfBitsToF32Array(bits, dtype) };
  }
  return { data: w, values: w };
}

function convGraph(s: ConvShape, dtype: DType, weights: Float32Array | Uint16Array, bias: Float32Array): Graph {
  const g = new Graph();
  const x = g.input("x", [s.batch, s.cin, s.h, s.w]);
  const w = g.constant("w", [s.cout, s.cin, 3, 3], dtype, { kind: "data", data: weights });
  const b = g.constant("b", [s.cout], "f32", { kind: "data", data: bias });
  g.output("y", g.conv2d(x, w, b, { padding: 1 }));
  return g;
}

/** One row of `bench conv` (one JSON line under `--json`). */
export interface ConvRow {
  name: string;
  cin: number;
  cout: number;
  h: number;
  w: number;
  batch: number;
  threads: number;
  dtype: DType;
  path: string;
  winograd_ms: number;
  winograd_op_ms: number;
  hoisted_ms: number;
  im2col_ms: number;
  speedup: number;
  gflops: number;
  im2col_gflops: number;
  onnxruntime_ms?: number;
  onnxruntime_gflops?: number;
  /** onnxruntime's time ÷ sdflow's Winograd time (> 1: sdflow faster). */
  onnxruntime_ratio?: number;
  /** max |sdflow − onnxruntime| / max |onnxruntime|. */
  onnxruntime_rel_err?: number;
}

/** The onnxruntime module (see bench/onnxruntime.ts), when comparing against it. */
export type OnnxPeer = Parameters<typeof timeOnnxConv>[0];

/** Measures one convolution shape (and onnxruntime's, when `onnx` is given) in this process. */
export async function measureConv(
  backend: Backend,
  s: ConvShape,
  opts: { dtype: DType; runs: number; onnx?: OnnxPeer; hoisted?: boolean; im2col?: boolean },
): Promise<ConvRow> {
  const runs = opts.runs;
  const weights = convWeights(s, opts.dtype);
  const bias = randomData(s.cout, 0.1, 9);
  const g = convGraph(s, opts.dtype, weights.data, bias);
  const x = randomData(s.batch * s.cin * s.h * s.w, 1.5, 3);
  const wino = await timeProgram(g, backend, { winograd: "auto" }, { x }, runs);
  // The same with the transformed filter computed once and kept (the constant plan).
  const hoisted = opts.hoisted === false
    ? null
    : await timeProgram(g, backend, { winograd: "auto", hoistBudgetBytes: Infinity }, { x }, runs);
  const im2col = opts.im2col === false
    ? null
    : await timeProgram(g, backend, { winograd: "off", conv: "im2col" }, { x }, runs);
  const flops = convFlops(s.batch, s.cout, s.h, s.w, s.cin, 3, 3);
  const t = backend.info.threads;
  const ort = opts.onnx ? await timeOnnxConv(opts.onnx, s, weights.values, bias, x, { threads: t, runs }) : null;
  return {
    name: s.name,
    cin: s.cin,
    cout: s.cout,
    h: s.h,
    w: s.w,
    batch: s.batch,
    threads: t,
    dtype: opts.dtype,
    path: wino.path,
    winograd_ms: round(wino.ms),
    winograd_op_ms: round(wino.opMs),
    hoisted_ms: hoisted ? round(hoisted.ms) : NaN,
    im2col_ms: im2col ? round(im2col.ms) : NaN,
    speedup: im2col ? round(im2col.ms / wino.ms) : NaN,
    gflops: round(flops / wino.ms / 1e6),
    im2col_gflops: im2col ? round(flops / im2col.ms / 1e6) : NaN,
    ...(ort
      ? {
        onnxruntime_ms: round(ort.ms),
        onnxruntime_gflops: round(flops / ort.ms / 1e6),
        onnxruntime_ratio: round(ort.ms / wino.ms),
        onnxruntime_rel_err: Number(relativeMaxError(wino.output, ort.output).toExponential(2)),
      }
      : {}),
  };
}
