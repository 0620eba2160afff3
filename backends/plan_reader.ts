/**
 * The reader of backend plans (format: `sdflow_backend.h`, "Plan binary
 * layout"): what a backend written in TypeScript compiles from. Every count,
 * index and dependency is checked, so a malformed plan is one clear error.
 *
 * @example
 * ```ts
 * const plan = readPlan(new PlanWriter(1).finish());
 * plan.ops.length; // 0
 * ```
 */

import { SDF_DTYPE_BYTES, SDF_MAX_DIMS, SDF_OP, SDF_PLAN_MAGIC, SDF_PLAN_VERSION, SDF_STATUS } from "./abi.ts";
import { BackendError } from "./ffi.ts";

/** A tensor of a plan: a dense row-major view of a bound buffer. */
export interface PlanTensor {
  binding: number;
  /** SDF_DTYPE code. */
  dtype: number;
  offset: number;
  dims: number[];
  /** Element count and byte size. */
  count: number;
  bytes: number;
}

/** An op of a plan. */
export interface PlanOp {
  opcode: number;
  /** Engine op kind (`conv2d`, …), or `op<code>` for an unknown code. */
  kind: string;
  ins: number[];
  outs: number[];
  p: number[];
  f: number[];
  deps: number[];
}

export interface ParsedPlan {
  nBindings: number;
  tensors: PlanTensor[];
  ops: PlanOp[];
}

const KIND_OF: Record<number, string> = Object.fromEntries(
  Object.entries(SDF_OP).map(([name, code]) => [code, name.toLowerCase()]),
);

/** Parses and checks plan bytes; throws BackendError (INVALID) naming the problem. */
export function readPlan(bytes: Uint8Array, who = "plan"): ParsedPlan {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const fail = (msg: string): never => {
    throw new BackendError(SDF_STATUS.E_INVALID, `${who}: ${msg}`);
  };
  const need = (n: number, what: string) => {
    if (at + n > bytes.byteLength) fail(`plan truncated at byte ${at}: reading ${what}`);
  };
  const u32 = (what: string): number => {
    need(4, what);
    const x = v.getUint32(at, true);
    at += 4;
    return x;
  };
  const i64 = (what: string): number => {
    need(8, what);
    const x = v.getBigInt64(at, true);
    at += 8;
    if (x > BigInt(Number.MAX_SAFE_INTEGER) || x < -BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${x} is too large`);
    return Number(x);
  };
  if (u32("magic") !== SDF_PLAN_MAGIC) fail("not an sdflow plan (bad magic)");
  const version = u32("version");
  if (version !== SDF_PLAN_VERSION) fail(`plan version ${version}, this backend reads ${SDF_PLAN_VERSION}`);
  const nBindings = u32("n_bindings");
  const nTensors = u32("n_tensors");
  const nOps = u32("n_ops");
  if (nTensors > bytes.byteLength || nOps > bytes.byteLength) fail("tensor or op count exceeds the plan's size");
  const tensors: PlanTensor[] = [];
  for (let i = 0; i < nTensors; i++) {
    const binding = u32(`tensor ${i} binding`);
    const dtype = u32(`tensor ${i} dtype`);
    const offset = i64(`tensor ${i} offset`);
    const ndim = u32(`tensor ${i} ndim`);
    if (binding >= nBindings) fail(`tensor ${i}: binding ${binding} out of range (${nBindings} bindings)`);
    const size = SDF_DTYPE_BYTES[dtype];
    if (size === undefined) fail(`tensor ${i}: unknown dtype ${dtype}`);
    if (offset < 0) fail(`tensor ${i}: negative offset`);
    if (ndim > SDF_MAX_DIMS) fail(`tensor ${i}: ${ndim} dims exceed ${SDF_MAX_DIMS}`);
    const dims: number[] = [];
    for (let k = 0; k < ndim; k++) {
      const d = i64(`tensor ${i} dim ${k}`);
      if (d <= 0) fail(`tensor ${i}: dim ${k} is ${d}`);
      dims.push(d);
    }
    const count = dims.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(count * size)) fail(`tensor ${i}: too large`);
    tensors.push({ binding, dtype, offset, dims, count, bytes: count * size });
  }
  const ops: PlanOp[] = [];
  for (let i = 0; i < nOps; i++) {
    const [opcode, nIn, nOut, nP, nF, nDeps] = [0, 1, 2, 3, 4, 5].map(() => u32(`op ${i} header`));
    if (nIn + nOut > 8 || nP > 16 || nF > 16 || nDeps > nOps) fail(`op ${i}: bad counts`);
    const ids = (n: number, what: string) =>
      Array.from({ length: n }, () => {
        const t = u32(`op ${i} ${what}`);
        if (t >= nTensors) fail(`op ${i}: ${what} tensor ${t} out of range`);
        return t;
      });
    const ins = ids(nIn, "input");
    const outs = ids(nOut, "output");
    const p = Array.from({ length: nP }, () => i64(`op ${i} param`));
    const f = Array.from({ length: nF }, () => {
      need(8, `op ${i} float param`);
      const x = v.getFloat64(at, true);
      at += 8;
      return x;
    });
    const deps = Array.from({ length: nDeps }, () => {
      const d = u32(`op ${i} dep`);
      if (d >= i) fail(`op ${i}: dependency on op ${d}, not an earlier op`);
      return d;
    });
    ops.push({ opcode, kind: KIND_OF[opcode] ?? `op${opcode}`, ins, outs, p, f, deps });
  }
  if (at !== bytes.byteLength) fail(`${bytes.byteLength - at} trailing bytes after the last op`);
  return { nBindings, tensors, ops };
}
