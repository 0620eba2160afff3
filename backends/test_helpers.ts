/**
 * Helpers for the backend tests: a seeded PRNG, a one-op runner over a
 * single buffer, and a check of backend errors.
 */

import {
  type BackendConfig,
  BackendError,
  loadNativeBackend as loadBackend,
  type NativeBackend as Backend,
  PlanWriter,
  SDF_DTYPE,
} from "./mod.ts";
import { BackendBuildError } from "./build.ts";

/** mulberry32: a small deterministic PRNG in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n values uniform in [lo, hi), rounded to f32. */
export function randn(r: () => number, n: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

export type Data = Float32Array | Int32Array | Uint16Array;

export interface TensorSpec {
  dims: number[];
  /** Default f32 (or i32 for an Int32Array). */
  dtype?: keyof typeof SDF_DTYPE;
  data?: Data;
}

/** Runs one op on `be`; inputs and outputs share one buffer. Returns the outputs. */
export async function runOp(
  be: Backend,
  opcode: number,
  ins: TensorSpec[],
  outs: number[][],
  p: number[] = [],
  f: number[] = [],
): Promise<Float32Array[]> {
  const w = new PlanWriter(1);
  let offset = 0;
  const place = (bytes: number) => {
    const at = offset;
    offset += Math.ceil(bytes / 64) * 64 + 64;
    return at;
  };
  const inIdx: number[] = [];
  const writes: [number, Data][] = [];
  for (const t of ins) {
    const dtype = t.dtype ?? (t.data instanceof Int32Array ? "i32" : "f32");
    const n = t.dims.reduce((a, b) => a * b, 1);
    const at = place(n * (dtype === "f16" || dtype === "bf16" ? 2 : 4));
    inIdx.push(w.tensor(0, SDF_DTYPE[dtype], at, t.dims));
    if (t.data) writes.push([at, t.data]);
  }
  const outAt: [number, number][] = [];
  const outIdx = outs.map((dims) => {
    const n = dims.reduce((a, b) => a * b, 1);
    const at = place(n * 4);
    outAt.push([at, n]);
    return w.tensor(0, SDF_DTYPE.f32, at, dims);
  });
  w.op(opcode, inIdx, outIdx, p, f, []);
  const plan = be.compile(w.finish());
  const buf = be.alloc(offset);
  try {
    for (const [at, d] of writes) buf.write(at, d);
    await plan.run([buf]);
    return outAt.map(([at, n]) => buf.readInto(at, new Float32Array(n)));
  } finally {
    plan.free();
    buf.free();
  }
}

/** Asserts that `fn` rejects/throws a BackendError whose message matches `re`. */
export async function assertBackendError(fn: () => unknown, re: RegExp): Promise<BackendError> {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof BackendError)) throw new Error(`expected a BackendError, got ${e}`);
    if (!re.test(e.message)) throw new Error(`BackendError message "${e.message}" does not match ${re}`);
    return e;
  }
  throw new Error(`expected a BackendError matching ${re}, nothing was thrown`);
}

/**
 * Backend `name` for tests that run on every available backend, or the reason
 * it is not available here (no OpenCL headers/loader to build it, no platform
 * or device to run it): the caller prints "ignored" with it.
 */
export async function optionalBackend(
  name: string,
  config: BackendConfig = {},
): Promise<{ backend?: Backend; why?: string }> {
  try {
    return { backend: await loadBackend(name, config) };
  } catch (e) {
    if (e instanceof BackendError || e instanceof BackendBuildError) return { why: e.message };
    throw e;
  }
}
