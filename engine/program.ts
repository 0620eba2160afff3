/**
 * A compiled program: the planned graph bound to one backend, with its
 * buffers allocated and weights mapped. `run` feeds inputs, runs the step
 * plan (and, the first time, the constant plan) and returns the outputs.
 */

import type { Backend, BackendBuffer, BackendPlan } from "../backends/backend.ts";
import { type Graph, GraphError, numel } from "./graph.ts";
import { rootOf } from "./memory.ts";
import {
  type BindingSpec,
  type CompiledPlan,
  plan,
  type PlannedOp,
  type PlanOptions,
  type Side,
  SLOT_ARENA,
  type Transfer,
} from "./plan.ts";

export type InputData = Float32Array | Int32Array;

/**
 * One activation arena shared by programs that never run at the same time
 * (a checkpoint's text encoder, UNet and VAE): memory is the largest
 * program's peak, not the sum.
 */
export class SharedArena {
  #buffer?: BackendBuffer;
  #fallbackArena?: SharedArena;
  constructor(private readonly backend: Backend) {}

  /** The arena, grown (contents discarded) if it is smaller than `bytes`. */
  acquire(bytes: number): BackendBuffer {
    if (!this.#buffer || this.#buffer.size < bytes) {
      this.#buffer?.free();
      this.#buffer = undefined;
      this.#buffer = this.backend.alloc(Math.max(bytes, 64));
    }
    return this.#buffer;
  }

  /** The matching arena on the backend's fallback (for programs with ops placed there). */
  get fallback(): SharedArena | undefined {
    if (!this.backend.fallback) return undefined;
    this.#fallbackArena ??= new SharedArena(this.backend.fallback);
    return this.#fallbackArena;
  }

  get bytes(): number {
    return this.#buffer?.size ?? 0;
  }

  dispose(): void {
    this.#buffer?.free();
    this.#buffer = undefined;
    this.#fallbackArena?.dispose();
  }
}

/** Compiled segments of a program whose ops are split between its backend and the fallback. */
interface PlacedRun {
  fallbackBuffers: BackendBuffer[];
  constSegments: { side: Side; plan: BackendPlan; before: Transfer[] }[];
  stepSegments: { side: Side; plan: BackendPlan; before: Transfer[] }[];
  /** Slots bound to a caller's buffer on the primary backend: copied to the fallback on the first run. */
  bufferSlots: number[];
}

export interface ProgramOptions extends PlanOptions {
  /** Share this arena instead of allocating one for the program. */
  arena?: SharedArena;
}

/** Wall time of one op in the last run, for `--profile`. */
export interface OpProfile extends PlannedOp {
  ms: number;
}

export class Program {
  readonly plan: CompiledPlan;
  private readonly backend: Backend;
  private readonly buffers: BackendBuffer[];
  private readonly sharedArena?: SharedArena;
  private readonly constPlan?: BackendPlan;
  private readonly stepPlan?: BackendPlan;
  private readonly placed?: PlacedRun;
  private constantsReady = false;
  private disposed = false;

  constructor(backend: Backend, compiled: CompiledPlan, arena?: SharedArena) {
    this.backend = backend;
    this.plan = compiled;
    this.sharedArena = arena;
    const buffers: BackendBuffer[] = [];
    try {
      for (const b of compiled.bindings) {
        // A shared arena is bound at run time; slot 0 holds a placeholder until then.
        if (b.kind === "arena" && arena) buffers.push(arena.acquire(b.bytes));
        else if (b.kind === "file") buffers.push(mapWeights(backend, b));
        else if (b.kind === "buffer") buffers.push(b.buffer);
        else buffers.push(backend.alloc(Math.max(b.bytes, 64)));
        if (b.kind === "data") {
          for (const part of b.parts) {
            const src = compiled.lowered.tensors[part.tensor].source;
            if (src?.kind === "data") buffers[buffers.length - 1].write(part.offset, src.data);
          }
        }
      }
      if (compiled.placement) {
        this.placed = this.#place(backend, compiled, arena);
      } else {
        this.constPlan = compiled.constPlan ? backend.compile(compiled.constPlan) : undefined;
        this.stepPlan = backend.compile(compiled.stepPlan);
      }
    } catch (e) {
      for (const [i, b] of buffers.entries()) if (this.#owns(compiled, i, arena)) b.free();
      this.constPlan?.free();
      throw e;
    }
    this.buffers = buffers;
  }

  /** Buffers and plans on the fallback backend for the ops placed there. */
  #place(backend: Backend, compiled: CompiledPlan, arena?: SharedArena): PlacedRun {
    const fb = backend.fallback;
    if (!fb) throw new GraphError(`internal: ops placed on a fallback, but ${backend.name} has none`);
    const placement = compiled.placement!;
    const run: PlacedRun = { fallbackBuffers: [], constSegments: [], stepSegments: [], bufferSlots: [] };
    try {
      compiled.bindings.forEach((b: BindingSpec, i) => {
        let buf: BackendBuffer;
        if (b.kind === "arena" && arena?.fallback) buf = arena.fallback.acquire(b.bytes);
        else if (b.kind === "file") buf = mapWeights(fb, b);
        else buf = fb.alloc(Math.max(b.bytes, 64));
        run.fallbackBuffers.push(buf);
        if (b.kind === "data") {
          for (const part of b.parts) {
            const src = compiled.lowered.tensors[part.tensor].source;
            if (src?.kind === "data") buf.write(part.offset, src.data);
          }
        }
        if (b.kind === "buffer") run.bufferSlots.push(i);
      });
      const compileSeg = (s: { side: Side; plan: Uint8Array; before: Transfer[] }) => ({
        side: s.side,
        plan: (s.side === "primary" ? backend : fb).compile(s.plan),
        before: s.before,
      });
      run.constSegments = placement.constSegments.map(compileSeg);
      run.stepSegments = placement.stepSegments.map(compileSeg);
      return run;
    } catch (e) {
      for (const s of [...run.constSegments, ...run.stepSegments]) s.plan.free();
      run.fallbackBuffers.forEach((b, i) => {
        if (!(i === SLOT_ARENA && arena)) b.free();
      });
      throw e;
    }
  }

  /** Whether binding `i` is this program's to free (not a shared arena, not a caller's buffer). */
  #owns(compiled: CompiledPlan, i: number, arena: SharedArena | undefined): boolean {
    if (i === SLOT_ARENA && arena) return false;
    return compiled.bindings[i]?.kind !== "buffer";
  }

  get stats(): CompiledPlan["stats"] {
    return this.plan.stats;
  }

  /** Runs the program. Inputs are keyed by graph input name; outputs likewise. */
  async run(inputs: Record<string, InputData>): Promise<Record<string, Float32Array>> {
    if (this.disposed) throw new GraphError("program was disposed");
    const { lowered, locations } = this.plan;
    for (const name of Object.keys(inputs)) {
      if (!lowered.inputs.has(name)) {
        throw new GraphError(`unknown input "${name}" (inputs: ${[...lowered.inputs.keys()].join(", ")})`);
      }
    }
    if (this.sharedArena) this.buffers[SLOT_ARENA] = this.sharedArena.acquire(this.plan.bindings[SLOT_ARENA].bytes);
    const arena = this.buffers[SLOT_ARENA];
    for (const [name, id] of lowered.inputs) {
      const t = lowered.tensors[id];
      const data = inputs[name];
      if (!data) throw new GraphError(`missing input "${name}" [${t.shape.join(", ")}] ${t.dtype}`);
      const want = t.dtype === "i32" ? Int32Array : Float32Array;
      if (!(data instanceof want) || data.length !== numel(t.shape)) {
        throw new GraphError(
          `input "${name}": expected ${numel(t.shape)} ${t.dtype} values for [${
            t.shape.join(", ")
          }], got ${data.length} ${data.constructor.name}`,
        );
      }
      const loc = locations.get(rootOf(lowered.tensors, id));
      if (loc) arena.write(loc.offset, data);
    }
    if (this.placed) await this.#runPlaced(this.placed);
    else {
      if (!this.constantsReady && this.constPlan) await this.constPlan.run(this.buffers);
      this.constantsReady = true;
      await this.stepPlan!.run(this.buffers);
    }
    const out: Record<string, Float32Array> = {};
    for (const [name, id] of lowered.outputs) {
      const loc = locations.get(rootOf(lowered.tensors, id));
      if (!loc) throw new GraphError(`internal: output "${name}" has no location`);
      const n = numel(lowered.tensors[id].shape);
      const bytes = await this.buffers[loc.slot].readAsync(loc.offset, n * 4);
      out[name] = new Float32Array(bytes.buffer, bytes.byteOffset, n);
    }
    return out;
  }

  /** Runs the segments in order, copying tensors between the backends where the placement says. */
  async #runPlaced(placed: PlacedRun): Promise<void> {
    const placement = this.plan.placement!;
    const sides = { primary: this.buffers, fallback: placed.fallbackBuffers };
    if (this.sharedArena?.fallback) {
      placed.fallbackBuffers[SLOT_ARENA] = this.sharedArena.fallback.acquire(this.plan.bindings[SLOT_ARENA].bytes);
    }
    const copy = async (transfers: readonly Transfer[]): Promise<void> => {
      for (const t of transfers) {
        const from = t.to === "primary" ? sides.fallback : sides.primary;
        const data = await from[t.slot].readAsync(t.offset, t.bytes);
        sides[t.to][t.slot].write(t.offset, data);
      }
    };
    if (!this.constantsReady) {
      for (const slot of placed.bufferSlots) {
        const src = this.buffers[slot];
        placed.fallbackBuffers[slot].write(0, await src.readAsync(0, src.size));
      }
      for (const s of placed.constSegments) {
        await copy(s.before);
        await s.plan.run(sides[s.side]);
      }
      await copy(placement.afterConst);
      this.constantsReady = true;
    }
    for (const s of placed.stepSegments) {
      await copy(s.before);
      await s.plan.run(sides[s.side]);
    }
    await copy(placement.afterStep);
  }

  /** Per-op wall times of the last run of the step plan. */
  profile(): OpProfile[] {
    const ns = this.stepPlan
      ? this.stepPlan.profile()
      : BigUint64Array.from(this.placed!.stepSegments.flatMap((s) => [...s.plan.profile()]));
    return this.plan.stepOps.map((op, i) => ({ ...op, ms: Number(ns[i] ?? 0) / 1e6 }));
  }

  /**
   * Lets the backend drop its resident copy of this program's mapped weights
   * (they come back from the file on the next run). For networks that sit idle
   * while another runs, e.g. the UNet during VAE decoding.
   */
  evictWeights(): void {
    this.plan.bindings.forEach((b, i) => {
      if (b.kind === "file") this.buffers[i].evict();
    });
  }

  /** Ops of the step plan completed by the run in progress. */
  progress(): number {
    if (this.stepPlan) return this.stepPlan.progress();
    // Segments run in order: those before the running one are complete.
    let done = 0;
    for (const s of this.placed!.stepSegments) {
      const p = s.plan.progress();
      done += p;
      if (p < s.plan.nOps) break;
    }
    return done;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.constPlan?.free();
    this.stepPlan?.free();
    for (const [i, b] of this.buffers.entries()) if (this.#owns(this.plan, i, this.sharedArena)) b.free();
    if (this.placed) {
      for (const s of [...this.placed.constSegments, ...this.placed.stepSegments]) s.plan.free();
      this.placed.fallbackBuffers.forEach((b, i) => {
        if (!(i === SLOT_ARENA && this.sharedArena)) b.free();
      });
    }
  }

  get backendName(): string {
    return this.backend.name;
  }
}

/** Maps a file binding; one past the resident budget is marked for streaming (PlanOptions.residentWeightBytes). */
function mapWeights(backend: Backend, b: Extract<BindingSpec, { kind: "file" }>): BackendBuffer {
  const buf = backend.fromFile(b.path, b.offset, b.bytes);
  if (b.stream) buf.adviseStream?.();
  return buf;
}

/**
 * Plans `g` for `backend` (its capabilities choose the conv lowering and the
 * alignment; ops it lacks go to its fallback) and binds it.
 */
export function compile(g: Graph, backend: Backend, opts: ProgramOptions = {}): Program {
  const compiled = plan(g, { capabilities: backend.capabilities, fallback: backend.fallback !== undefined, ...opts });
  return new Program(backend, compiled, opts.arena);
}
