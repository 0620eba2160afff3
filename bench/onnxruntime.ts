/**
 * onnxruntime as a peer of `deno task bench conv --vs onnxruntime`: one Conv node (3x3, pad 1) in a
 * model written here ({@link convModel}), run by onnxruntime-node on the CPU with the same input,
 * weights and thread count as sdflow's convolution, in the same run.
 *
 * onnxruntime-node is installed on demand, by npm, into `.cache/onnxruntime-node-<version>/` (~300 MB;
 * `--ignore-scripts`: its install script would fetch CUDA files), and loaded from there with
 * `createRequire`. It is deliberately not in deno.json's imports nor deno.lock: Deno installs every
 * package of the lockfile into node_modules/, so each user would download it. Its CPU convolution has
 * no f16 kernel, so it gets the f16 weights widened to f32 (the same values), and computes in f32 as
 * sdflow does.
 *
 * @module
 */

import { createRequire } from "node:module";
import { median } from "../cli/progress.ts";

/** The npm package and its pinned version. */
export const ONNXRUNTIME = { name: "onnxruntime-node", version: "1.30.0" } as const;

/** Where it is installed (inside the repository's ignored .cache/). */
const INSTALL_DIR = new URL(`../.cache/onnxruntime-node-${ONNXRUNTIME.version}/`, import.meta.url);

// ---- a minimal protobuf writer for the few ONNX messages a one-Conv model needs ----

type Field = Uint8Array;

function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n; // int64 negatives: two's complement, 10 bytes
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A varint field (wire type 0). */
function int(field: number, v: number): Field {
  return new Uint8Array([...varint(field << 3), ...varint(v)]);
}

/** A length-delimited field (wire type 2): bytes, a string or an embedded message. */
function bytes(field: number, v: Uint8Array | string | readonly Field[]): Field {
  const body = typeof v === "string" ? new TextEncoder().encode(v) : v instanceof Uint8Array ? v : concat(v);
  return concat([new Uint8Array([...varint((field << 3) | 2), ...varint(body.length)]), body]);
}

// ONNX field numbers (onnx/onnx.proto).
const FLOAT = 1; // TensorProto.DataType
const ATTR_INTS = 7; // AttributeProto.AttributeType

function intsAttribute(name: string, values: readonly number[]): Field {
  return bytes(5, [bytes(1, name), int(20, ATTR_INTS), ...values.map((v) => int(8, v))]);
}

function tensor(name: string, dims: readonly number[], data: Float32Array): Field {
  const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength); // little-endian, as ONNX wants
  return bytes(5, [...dims.map((d) => int(1, d)), int(2, FLOAT), bytes(8, name), bytes(9, raw)]);
}

function valueInfo(field: number, name: string, dims: readonly number[]): Field {
  const shape = bytes(2, dims.map((d) => bytes(1, [int(1, d)])));
  return bytes(field, [bytes(1, name), bytes(2, [bytes(1, [int(1, FLOAT), shape])])]);
}

/** Shapes of a 3x3, pad 1, stride 1 convolution. */
export interface ConvSpec {
  readonly batch: number;
  readonly cin: number;
  readonly cout: number;
  readonly h: number;
  readonly w: number;
}

/**
 * An ONNX model (IR 8, opset 17) of one Conv node: input `x` [batch, cin, h, w], initializers `w`
 * [cout, cin, 3, 3] and `b` [cout], output `y` [batch, cout, h, w].
 */
export function convModel(s: ConvSpec, weights: Float32Array, bias: Float32Array): Uint8Array {
  if (weights.length !== s.cout * s.cin * 9 || bias.length !== s.cout) {
    throw new RangeError(`conv weights/bias sizes do not match ${s.cout}x${s.cin}x3x3`);
  }
  const node = bytes(1, [
    bytes(1, "x"),
    bytes(1, "w"),
    bytes(1, "b"),
    bytes(2, "y"),
    bytes(3, "conv"),
    bytes(4, "Conv"),
    intsAttribute("kernel_shape", [3, 3]),
    intsAttribute("pads", [1, 1, 1, 1]),
    intsAttribute("strides", [1, 1]),
  ]);
  const graph = bytes(7, [
    node,
    bytes(2, "conv3x3"),
    tensor("w", [s.cout, s.cin, 3, 3], weights),
    tensor("b", [s.cout], bias),
    valueInfo(11, "x", [s.batch, s.cin, s.h, s.w]),
    valueInfo(12, "y", [s.batch, s.cout, s.h, s.w]),
  ]);
  return concat([int(1, 8), bytes(2, "sdflow-bench"), graph, bytes(8, [bytes(1, ""), int(2, 17)])]);
}

/** The parts of onnxruntime-node's API used here. */
interface Ort {
  InferenceSession: {
    create(model: Uint8Array, opts: Record<string, unknown>): Promise<Session>;
  };
  Tensor: new (type: "float32", data: Float32Array, dims: readonly number[]) => unknown;
  env: { versions?: Record<string, string> };
}
interface Session {
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: Float32Array }>>;
  release(): Promise<void>;
}

/** Loads onnxruntime-node, installing it with npm on first use; one clear error when that fails. */
export async function loadOnnxruntime(): Promise<{ ort: Ort; version: string }> {
  const spec = `${ONNXRUNTIME.name}@${ONNXRUNTIME.version}`;
  const pkg = new URL(`node_modules/${ONNXRUNTIME.name}/package.json`, INSTALL_DIR);
  const installed = await Deno.stat(pkg).then(() => true, () => false);
  if (!installed) {
    console.error(`installing ${spec} into ${INSTALL_DIR.pathname} with npm (~300 MB, once)…`);
    let out: Deno.CommandOutput;
    try {
      out = await new Deno.Command("npm", {
        args: [
          "install",
          "--prefix",
          INSTALL_DIR.pathname,
          "--ignore-scripts",
          "--no-save",
          "--no-audit",
          "--no-fund",
          spec,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new Error(`npm not found: it installs ${spec} for --vs onnxruntime`);
      throw e;
    }
    if (out.code !== 0) {
      const err = new TextDecoder().decode(out.stderr).split("\n").map((l) => l.trim()).filter(Boolean);
      throw new Error(`npm install ${spec} failed: ${err.find((l) => /ERR!/.test(l)) ?? err.at(-1) ?? out.code}`);
    }
  }
  try {
    const ort = createRequire(INSTALL_DIR)(ONNXRUNTIME.name) as Ort;
    return { ort, version: ort.env.versions?.node ?? ONNXRUNTIME.version };
  } catch (e) {
    throw new Error(
      `could not load ${spec} from ${INSTALL_DIR.pathname}: ${e instanceof Error ? e.message.split("\n")[0] : e}`,
    );
  }
}

/** A median-timed onnxruntime convolution; `output` is the last run's result. */
export async function timeOnnxConv(
  ort: Ort,
  s: ConvSpec,
  weights: Float32Array,
  bias: Float32Array,
  x: Float32Array,
  opts: { threads: number; runs: number },
): Promise<{ ms: number; output: Float32Array }> {
  const session = await ort.InferenceSession.create(convModel(s, weights, bias), {
    intraOpNumThreads: opts.threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all", // includes the NCHWc layout transform of its CPU convolution
  });
  try {
    const feeds = { x: new ort.Tensor("float32", x, [s.batch, s.cin, s.h, s.w]) };
    let out = await session.run(feeds); // warm-up: weight packing, thread pool start
    const ms: number[] = [];
    for (let r = 0; r < opts.runs; r++) {
      const t0 = performance.now();
      out = await session.run(feeds);
      ms.push(performance.now() - t0);
    }
    return { ms: median(ms), output: out.y.data };
  } finally {
    await session.release();
  }
}

/** Largest |a − b| over the largest |b|: how far two engines' outputs are apart, relative to their scale. */
export function relativeMaxError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new RangeError(`outputs differ in length: ${a.length} vs ${b.length}`);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return m > 0 ? d / m : d;
}

/** What the onnxruntime columns measure, for the line above a table. */
export function onnxNote(version: string, threads: number): string {
  return `onnxruntime-node ${version}: one Conv node, graph optimisation "all" (NCHWc), ${threads} intra-op ` +
    "thread(s), the same weight values in f32 (its CPU conv has no f16 kernel), session.run() timed; " +
    "ort÷sdflow > 1: sdflow faster; rel err: max |sdflow − ort| / max |ort|";
}
