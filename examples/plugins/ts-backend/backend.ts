/**
 * A third-party backend written in TypeScript: it runs a few elementwise ops
 * (unary, scale, binary on same-shape tensors) on the host in plain JS, and
 * says so in its capabilities; the planner places every other op on the CPU
 * backend, with explicit transfers. A template for a backend over another
 * runtime (WebNN, a remote device, …).
 *
 * @example
 * ```ts
 * import { registerBackend, loadBackend } from "../../../backends/mod.ts";
 * import { jsBackendFactory } from "./backend.ts";
 * registerBackend(jsBackendFactory);
 * const be = await loadBackend("js-example"); // be.fallback is the CPU backend
 * ```
 */

import {
  type Backend,
  type BackendBuffer,
  type BackendCapabilities,
  BackendError,
  type BackendFactory,
  type BackendInfo,
  type BackendPlan,
  SDF_DTYPE,
  SDF_STATUS,
} from "../../../backends/mod.ts";
import { type ParsedPlan, type PlanOp, readPlan } from "../../../backends/plan_reader.ts";

const OPS = ["unary", "scale", "binary"];

class JsBuffer implements BackendBuffer {
  readonly readOnly: boolean;
  bytes: Uint8Array<ArrayBuffer> | null;
  constructor(readonly backend: JsBackend, readonly size: number, readOnly = false) {
    this.bytes = new Uint8Array(size);
    this.readOnly = readOnly;
  }
  get freed(): boolean {
    return this.bytes === null;
  }
  #live(): Uint8Array<ArrayBuffer> {
    if (!this.bytes) throw new BackendError(SDF_STATUS.E_STATE, "js-example: buffer was freed");
    return this.bytes;
  }
  write(offset: number, data: ArrayBufferView): void {
    const b = this.#live();
    if (offset < 0 || offset + data.byteLength > b.length) {
      throw new BackendError(SDF_STATUS.E_INVALID, `js-example: write outside the ${b.length}-byte buffer`);
    }
    b.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
  }
  read(offset: number, bytes: number): Uint8Array<ArrayBuffer> {
    const b = this.#live();
    if (offset < 0 || offset + bytes > b.length) {
      throw new BackendError(SDF_STATUS.E_INVALID, `js-example: read outside the ${b.length}-byte buffer`);
    }
    return b.slice(offset, offset + bytes);
  }
  readAsync(offset: number, bytes: number): Promise<Uint8Array<ArrayBuffer>> {
    return Promise.resolve(this.read(offset, bytes));
  }
  evict(): void {}
  free(): void {
    this.bytes = null;
  }
}

const SIGMOID = (x: number) => 1 / (1 + Math.exp(-x));
/** erfc by Numerical Recipes' Chebyshev fit (fractional error < 1.2e-7). */
function erfc(z: number): number {
  const a = Math.abs(z);
  const t = 1 / (1 + 0.5 * a);
  const r = t * Math.exp(
    -a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 +
                          t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
  );
  return z >= 0 ? r : 2 - r;
}
const UNARY: ((x: number) => number)[] = [
  (x) => x * SIGMOID(x),
  (x) => 0.5 * x * erfc(-x * Math.SQRT1_2),
  (x) => 0.5 * x * (1 + Math.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))),
  (x) => x * SIGMOID(1.702 * x),
  (x) => Math.max(x, 0),
  (x) => (x < 0 ? 0.2 * x : x),
  SIGMOID,
  Math.tanh,
];

class JsPlan implements BackendPlan {
  #done = 0;
  constructor(readonly backend: JsBackend, readonly plan: ParsedPlan) {}
  get nOps(): number {
    return this.plan.ops.length;
  }
  run(bindings: readonly BackendBuffer[]): Promise<void> {
    const view = (t: number): Float32Array => {
      const d = this.plan.tensors[t];
      const b = bindings[d.binding];
      if (!(b instanceof JsBuffer) || !b.bytes) throw new BackendError(SDF_STATUS.E_INVALID, "js-example: bad binding");
      return new Float32Array(b.bytes.buffer, d.offset, d.count);
    };
    this.#done = 0;
    for (const op of this.plan.ops) {
      const x = view(op.ins[0]);
      const y = view(op.outs[0]);
      if (op.kind === "unary") { for (let i = 0; i < y.length; i++) y[i] = UNARY[op.p[0]](x[i]); }
      else if (op.kind === "scale") { for (let i = 0; i < y.length; i++) y[i] = Math.fround(x[i] * op.f[0]) + op.f[1]; }
      else {
        const w = view(op.ins[1]);
        const f = [(a: number, b: number) => a + b, (a: number, b: number) => a - b, (a: number, b: number) => a * b, (
          a: number,
          b: number,
        ) => a / b][op.p[0]];
        for (let i = 0; i < y.length; i++) y[i] = f(x[i], w[i]);
      }
      this.#done++;
    }
    return Promise.resolve();
  }
  progress(): number {
    return this.#done;
  }
  profile(): BigUint64Array {
    return new BigUint64Array(this.nOps);
  }
  free(): void {}
}

function check(i: number, op: PlanOp, plan: ParsedPlan): void {
  const fail = (m: string): never => {
    throw new BackendError(SDF_STATUS.E_UNSUPPORTED, `js-example: op ${i} (${op.kind}): ${m}`);
  };
  if (!OPS.includes(op.kind)) fail("not implemented");
  const ts = [...op.ins, ...op.outs].map((t) => plan.tensors[t]);
  if (ts.some((t) => t.dtype !== SDF_DTYPE.f32 || t.count !== ts[0].count)) fail("only same-shape f32 tensors");
}

export class JsBackend implements Backend {
  readonly name = "js-example";
  readonly path = "js-example";
  fallback?: Backend;
  readonly capabilities: BackendCapabilities = {
    ops: new Set(OPS),
    dtypes: new Set(["f32"]),
    conv: { kind: "direct" },
    alignment: 64,
    memoryBytes: 2 ** 30,
    deviceMemory: false,
    maxTensorBytes: Infinity,
    maxBufferBytes: Infinity,
  };
  readonly info: BackendInfo = {
    name: this.name,
    abi: 1,
    isa: "js",
    isas: [],
    threads: 1,
    dtypes: ["f32"],
    ops: OPS,
  };
  alloc(bytes: number): BackendBuffer {
    return new JsBuffer(this, bytes);
  }
  fromFile(path: string, offset: number, bytes: number): BackendBuffer {
    const b = new JsBuffer(this, bytes, true);
    const f = Deno.openSync(path);
    try {
      f.seekSync(offset, Deno.SeekMode.Start);
      for (let got = 0; got < bytes;) {
        const n = f.readSync(b.bytes!.subarray(got));
        if (!n) throw new BackendError(SDF_STATUS.E_IO, `js-example: ${path} ended early`);
        got += n;
      }
    } finally {
      f.close();
    }
    return b;
  }
  compile(planBytes: Uint8Array): BackendPlan {
    const plan = readPlan(planBytes, "js-example");
    plan.ops.forEach((op, i) => check(i, op, plan));
    return new JsPlan(this, plan);
  }
}

/** Register with `registerBackend(jsBackendFactory)` (a plugin's `tsBackends`). */
export const jsBackendFactory: BackendFactory = {
  name: "js-example",
  description: "example TypeScript backend: unary, scale and same-shape binary ops in plain JS",
  create: () => Promise.resolve(new JsBackend()),
};
