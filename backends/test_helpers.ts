/**
 * Helpers for the backend tests: a seeded PRNG, f16/bf16 encoders, a
 * one-op runner over a single buffer, and an error measure.
 */

import { type Backend, BackendError, PlanWriter, SDF_DTYPE } from "./mod.ts";

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

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float -> IEEE half bits, round to nearest even. */
export function toF16(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const ax = b & 0x7fffffff;
  if (ax >= 0x7f800000) return sign | (ax > 0x7f800000 ? 0x7e00 : 0x7c00);
  if (ax >= 0x477ff000) return sign | 0x7c00;
  const v = Math.abs(f32[0]);
  if (ax < 0x38800000) return sign | Math.round(v / 2 ** -24); // subnormal (ties to even via Math.round? see below)
  let h = (ax >>> 13) - (112 << 10);
  const rem = ax & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** IEEE half bits -> number. */
export function fromF16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** bf16 bits (truncation of f32 with round to nearest even). */
export function toBF16(x: number): number {
  f32[0] = x;
  const b = u32[0];
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function fromBF16(h: number): number {
  u32[0] = h << 16;
  return f32[0];
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

/** Largest |got - want| / (atol + rtol * |want|); <= 1 passes. NaN/inf must match exactly. */
export function errorRatio(got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol: number): number {
  if (got.length !== want.length) throw new Error(`length ${got.length} != ${want.length}`);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i], w = want[i];
    if (!Number.isFinite(w) || !Number.isFinite(g)) {
      if (!Object.is(g, w) && !(Number.isNaN(g) && Number.isNaN(w))) return Infinity;
      continue;
    }
    worst = Math.max(worst, Math.abs(g - w) / (atol + rtol * Math.abs(w)));
  }
  return worst;
}

/** Throws with the worst element when errorRatio exceeds 1. */
export function assertClose(
  what: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  rtol: number,
  atol: number,
): void {
  const r = errorRatio(got, want, rtol, atol);
  if (r <= 1) return;
  let wi = 0, wr = -1;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (atol + rtol * Math.abs(want[i]));
    if (!(e <= wr)) {
      wr = e;
      wi = i;
    }
  }
  throw new Error(
    `${what}: element ${wi} got ${got[wi]}, want ${want[wi]} (error ${
      r.toPrecision(3)
    }x the bound rtol ${rtol} atol ${atol})`,
  );
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
