/**
 * The serializer of backend plans (format: `sdflow_backend.h`, "Plan binary
 * layout"). Tensors and ops are appended in order; `finish` returns the
 * little-endian bytes for `Backend.compile`.
 *
 * The writer checks what it can without knowing op contracts (indices,
 * counts, dims, dependency order), so a malformed plan fails here with a
 * clear message rather than in the backend.
 *
 * @example
 * ```ts
 * const w = new PlanWriter(1);
 * const x = w.tensor(0, SDF_DTYPE.f32, 0, [2, 8]);
 * const y = w.tensor(0, SDF_DTYPE.f32, 64, [2, 8]);
 * w.op(SDF_OP.SOFTMAX, [x], [y], [], [1.0], []);
 * const bytes = w.finish();
 * ```
 */

import {
  SDF_DTYPE_BLOCK,
  SDF_DTYPE_BYTES,
  SDF_MAX_DIMS,
  SDF_MAX_OP_PARAMS,
  SDF_MAX_OP_TENSORS,
  SDF_PLAN_MAGIC,
  SDF_PLAN_VERSION,
} from "./abi.ts";

/** A plan that cannot be written (bad index, dims, counts or dependency). */
export class PlanWriterError extends Error {
  override name = "PlanWriterError";
}

interface TensorRec {
  binding: number;
  dtype: number;
  offset: bigint;
  dims: bigint[];
}

interface OpRec {
  opcode: number;
  ins: number[];
  outs: number[];
  p: bigint[];
  f: number[];
  deps: number[];
}

function u32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new PlanWriterError(`${what} must be a u32, got ${v}`);
  return v;
}

function i64(v: number | bigint, what: string): bigint {
  if (typeof v === "number" && !Number.isSafeInteger(v)) {
    throw new PlanWriterError(`${what} must be an integer, got ${v}`);
  }
  const b = BigInt(v);
  if (b < -(1n << 63n) || b >= 1n << 63n) throw new PlanWriterError(`${what} does not fit in an i64: ${v}`);
  return b;
}

export class PlanWriter {
  readonly nBindings: number;
  private readonly tensors: TensorRec[] = [];
  private readonly ops: OpRec[] = [];

  /** `nBindings`: number of buffer slots the plan is run with. */
  constructor(nBindings: number) {
    this.nBindings = u32(nBindings, "nBindings");
  }

  /** Number of tensors and ops added so far. */
  get counts(): { tensors: number; ops: number } {
    return { tensors: this.tensors.length, ops: this.ops.length };
  }

  /**
   * Adds a tensor: a dense row-major view of `dims` elements of `dtype`
   * (an SDF_DTYPE code) at byte `offset` of binding slot `binding`.
   * Returns its index.
   */
  tensor(binding: number, dtype: number, offset: number | bigint, dims: readonly (number | bigint)[]): number {
    const i = this.tensors.length;
    u32(binding, `tensor ${i}: binding`);
    if (binding >= this.nBindings) {
      throw new PlanWriterError(`tensor ${i}: binding ${binding} out of range (plan has ${this.nBindings})`);
    }
    if (SDF_DTYPE_BYTES[dtype] === undefined && SDF_DTYPE_BLOCK[dtype] === undefined) {
      throw new PlanWriterError(`tensor ${i}: unknown dtype ${dtype}`);
    }
    const off = i64(offset, `tensor ${i}: offset`);
    if (off < 0n) throw new PlanWriterError(`tensor ${i}: offset ${offset} is negative`);
    if (dims.length > SDF_MAX_DIMS) {
      throw new PlanWriterError(`tensor ${i}: ${dims.length} dims exceed ${SDF_MAX_DIMS}`);
    }
    const d = dims.map((v, k) => {
      const b = i64(v, `tensor ${i}: dim ${k}`);
      if (b <= 0n) throw new PlanWriterError(`tensor ${i}: dim ${k} is ${v} (dims must be > 0)`);
      return b;
    });
    this.tensors.push({ binding, dtype, offset: off, dims: d });
    return i;
  }

  /**
   * Adds an op. `ins`/`outs`: tensor indices; `p`: int64 params; `f`: f64
   * params; `deps`: indices of earlier ops this one must wait for.
   * Returns the op's index.
   */
  op(
    opcode: number,
    ins: readonly number[],
    outs: readonly number[],
    p: readonly (number | bigint)[] = [],
    f: readonly number[] = [],
    deps: readonly number[] = [],
  ): number {
    const i = this.ops.length;
    u32(opcode, `op ${i}: opcode`);
    if (ins.length + outs.length > SDF_MAX_OP_TENSORS) {
      throw new PlanWriterError(
        `op ${i}: ${ins.length} inputs + ${outs.length} outputs exceed ${SDF_MAX_OP_TENSORS} tensors`,
      );
    }
    if (outs.length === 0) throw new PlanWriterError(`op ${i}: no outputs`);
    if (p.length > SDF_MAX_OP_PARAMS || f.length > SDF_MAX_OP_PARAMS) {
      throw new PlanWriterError(`op ${i}: more than ${SDF_MAX_OP_PARAMS} int or float params`);
    }
    for (const [k, t] of [...ins, ...outs].entries()) {
      u32(t, `op ${i}: tensor ${k}`);
      if (t >= this.tensors.length) {
        throw new PlanWriterError(`op ${i}: tensor index ${t} out of range (${this.tensors.length} tensors)`);
      }
    }
    for (const d of deps) {
      u32(d, `op ${i}: dependency`);
      if (d >= i) throw new PlanWriterError(`op ${i}: dependency on op ${d}, which is not an earlier op`);
    }
    for (const [k, v] of f.entries()) {
      if (typeof v !== "number") throw new PlanWriterError(`op ${i}: float param ${k} is not a number`);
    }
    this.ops.push({
      opcode,
      ins: [...ins],
      outs: [...outs],
      p: p.map((v, k) => i64(v, `op ${i}: param ${k}`)),
      f: [...f],
      deps: [...deps],
    });
    return i;
  }

  /** The plan's bytes. The writer may be used further afterwards. */
  finish(): Uint8Array {
    let size = 20;
    for (const t of this.tensors) size += 20 + 8 * t.dims.length;
    for (const o of this.ops) {
      size += 24 + 4 * (o.ins.length + o.outs.length) + 8 * (o.p.length + o.f.length) + 4 * o.deps.length;
    }
    const buf = new Uint8Array(size);
    const v = new DataView(buf.buffer);
    let at = 0;
    const w32 = (x: number) => {
      v.setUint32(at, x, true);
      at += 4;
    };
    const w64 = (x: bigint) => {
      v.setBigInt64(at, x, true);
      at += 8;
    };
    w32(SDF_PLAN_MAGIC);
    w32(SDF_PLAN_VERSION);
    w32(this.nBindings);
    w32(this.tensors.length);
    w32(this.ops.length);
    for (const t of this.tensors) {
      w32(t.binding);
      w32(t.dtype);
      v.setBigUint64(at, t.offset, true);
      at += 8;
      w32(t.dims.length);
      for (const d of t.dims) w64(d);
    }
    for (const o of this.ops) {
      for (const n of [o.opcode, o.ins.length, o.outs.length, o.p.length, o.f.length, o.deps.length]) w32(n);
      for (const t of o.ins) w32(t);
      for (const t of o.outs) w32(t);
      for (const x of o.p) w64(x);
      for (const x of o.f) {
        v.setFloat64(at, x, true);
        at += 8;
      }
      for (const d of o.deps) w32(d);
    }
    return buf;
  }
}
