/**
 * The `Backend` interface: what the engine needs from any backend, whether a
 * native library loaded over FFI (`ffi.ts`: CPU, OpenCL, third-party
 * libraries) or a backend written in TypeScript (`webgpu/`, plugins).
 *
 * A backend runs plans in the binary format of `sdflow_backend.h` (one format
 * for both kinds), owns buffers the plan's binding slots point at, and states
 * its {@link BackendCapabilities} so lowering and planning can fit the plan to
 * it: which ops and weight dtypes it runs, how it wants 3x3 convolutions
 * lowered, how tensors must be aligned in its buffers, how much memory it has.
 *
 * @example
 * ```ts
 * import { loadBackend } from "./mod.ts";
 * const be = await loadBackend("webgpu");
 * console.log(be.capabilities.ops.has("attention"), be.capabilities.conv);
 * ```
 */

/** `info` of a backend: for native ones `sdf_backend_info()`, parsed. Backends may add fields. */
export interface BackendInfo {
  name: string;
  abi: number;
  isa: string;
  isas: string[];
  threads: number;
  dtypes: string[];
  ops: string[];
  [key: string]: unknown;
}

/** F(m,3) tile size for a 3x3 stride-1 conv, or 0 for "do not use Winograd here". */
export type WinogradTile = 0 | 2 | 4 | 6;

/**
 * How a backend wants eligible (3x3 stride-1) convolutions lowered.
 * - `winograd`: the four Winograd stages; `choose` is the backend's own cost
 *   model (per shape, 0 = run this one as a plain conv2d); `bandBytes` caps
 *   the Winograd intermediates per band of tile rows.
 * - `direct`: always a single conv2d op (the backend's own direct kernel).
 */
export type ConvLowering =
  | {
    kind: "winograd";
    tiles: readonly (2 | 4 | 6)[];
    choose(n: number, ci: number, co: number, oh: number, ow: number): WinogradTile;
    bandBytes: number;
  }
  | { kind: "direct" };

/** What a backend can do, as lowering and planning see it. */
export interface BackendCapabilities {
  /** Engine op kinds it runs (`conv2d`, `wino_gemm`, `attention`, …; `reshape` is a view and always fine). */
  readonly ops: ReadonlySet<string>;
  /** Tensor dtypes it reads (weights may be f16/bf16; activations are f32). */
  readonly dtypes: ReadonlySet<string>;
  readonly conv: ConvLowering;
  /** Byte alignment of every tensor the planner places in the backend's buffers (a power of two, >= 64). */
  readonly alignment: number;
  /**
   * Bytes of memory the backend may use (device memory, or the host's for the CPU); Infinity when the
   * device does not say. A plan whose activations and kept constants exceed it is refused at planning.
   */
  readonly memoryBytes: number;
  /** Whether buffers live in the backend's own device memory (transfers cost a copy over a bus). */
  readonly deviceMemory: boolean;
  /** Largest single tensor it can address, in bytes (a GPU's storage binding limit); Infinity if none. */
  readonly maxTensorBytes: number;
  /** Largest buffer it can allocate (weights of one file are bound in pieces no larger); Infinity if none. */
  readonly maxBufferBytes: number;
}

/** A block of backend memory. */
export interface BackendBuffer {
  readonly backend: Backend;
  readonly size: number;
  readonly readOnly: boolean;
  readonly freed: boolean;
  /** Copies `data` into the buffer at byte `offset`. */
  write(offset: number, data: ArrayBufferView): void;
  /**
   * Copies `bytes` bytes starting at `offset` out of the buffer, once every
   * run submitted before has finished (a GPU backend maps a staging copy).
   */
  readAsync(offset: number, bytes: number): Promise<Uint8Array<ArrayBuffer>>;
  /** A synchronous read, for buffers in host memory (native backends); absent for device memory. */
  read?(offset: number, bytes: number): Uint8Array<ArrayBuffer>;
  /** Hints that the buffer will not be read for a while (may drop a resident copy). */
  evict(): void;
  /** Hints that the buffer will be written front to back soon (huge pages on the CPU); absent where meaningless. */
  adviseHugePages?(): void;
  /**
   * Hints that each tensor of this file buffer is read by one op per run: a backend may drop a tensor's
   * resident copy after that op (weights streamed from the page cache); absent where meaningless.
   */
  adviseStream?(): void;
  /** Releases the memory. Idempotent. */
  free(): void;
}

/** A compiled plan. */
export interface BackendPlan {
  readonly backend: Backend;
  /** Number of ops in the plan. */
  readonly nOps: number;
  /** Runs the plan with one buffer per binding slot. */
  run(bindings: readonly BackendBuffer[]): Promise<void>;
  /** Ops completed by the run in progress (or the last run). */
  progress(): number;
  /** Per-op wall times of the last run, in nanoseconds (zeros where the backend cannot time ops). */
  profile(): BigUint64Array;
  /** Releases the plan. Idempotent. */
  free(): void;
}

/** A backend: native (FFI) or TypeScript. */
export interface Backend {
  /** The backend's name (`cpu`, `webgpu`, a plugin's name). */
  readonly name: string;
  /** A path or name identifying where it was loaded from (a library path for native backends). */
  readonly path: string;
  readonly info: BackendInfo;
  readonly capabilities: BackendCapabilities;
  /**
   * Where ops this backend lacks run (the CPU backend), with explicit
   * transfers between the two; undefined for a backend that runs every op.
   */
  fallback?: Backend;
  /** A new buffer of `bytes` bytes (contents undefined), aligned to `capabilities.alignment`. */
  alloc(bytes: number): BackendBuffer;
  /** A read-only buffer holding bytes [offset, offset+bytes) of a file. */
  fromFile(path: string, offset: number, bytes: number): BackendBuffer;
  /** Validates and compiles a plan (bytes from PlanWriter.finish). */
  compile(planBytes: Uint8Array): BackendPlan;
}

/** Every op kind the planner emits (besides `reshape`, a view). */
export const ALL_OPS: readonly string[] = [
  "conv2d",
  "wino_filter",
  "wino_input",
  "wino_gemm",
  "wino_output",
  "matmul",
  "bmm",
  "attention",
  "group_norm",
  "layer_norm",
  "unary",
  "geglu",
  "softmax",
  "binary",
  "scale",
  "concat",
  "upsample_nearest",
  "timestep_embedding",
  "permute",
  "gather_rows",
  "copy",
  "slice",
];

/** The ops of `all` that `caps` lacks (empty when the backend runs everything). */
export function missingOps(caps: BackendCapabilities, all: readonly string[] = ALL_OPS): string[] {
  return all.filter((o) => !caps.ops.has(o));
}
