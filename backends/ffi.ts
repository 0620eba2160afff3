/**
 * Loads an sdflow backend (a shared library with the C ABI of
 * `sdflow_backend.h`) through `Deno.dlopen` and wraps every ABI function.
 * Every failure of the C side becomes a `BackendError` carrying the status
 * code and the backend's message; a missing or corrupt library is reported,
 * never a crash.
 *
 * @example
 * ```ts
 * const be = await loadNativeBackend("cpu", { threads: 2 });
 * const buf = be.alloc(1024);
 * buf.write(0, new Float32Array([1, 2, 3]));
 * const plan = be.compile(planBytes);
 * await plan.run([buf]);
 * const out = buf.readInto(0, new Float32Array(3));
 * ```
 */

import { SDF_ABI_VERSION, SDF_STATUS, SDF_STATUS_NAME } from "./abi.ts";
import type { Backend, BackendBuffer, BackendCapabilities, BackendInfo, BackendPlan } from "./backend.ts";
import { nativeCapabilities } from "./native_capabilities.ts";
import { buildBackend, libraryFileName, repoRoot } from "./build.ts";

/** A failure reported by (or about) a backend library. */
export class BackendError extends Error {
  override name = "BackendError";
  /** An SDF_STATUS code (negative). */
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
  /** The status code's name, e.g. "INVALID". */
  get codeName(): string {
    return SDF_STATUS_NAME[this.code] ?? String(this.code);
  }
}

/** Options for `loadBackend`, passed to `sdf_init`. */
export interface BackendConfig {
  /** Worker threads; 0 or absent = physical cores. */
  threads?: number;
  /** Instruction set; "auto" (default) = the best this CPU has. `SDF_ISA` in the environment applies under "auto". */
  isa?: "auto" | "avx512" | "avx2" | "neon" | "scalar";
  /**
   * Precision of the GEMM ops (linear layers, im2col / 1x1 convolutions): "f32" (default) or "bf16" (operands
   * rounded to bf16, f32 accumulation; needs AVX512-BF16 or AMX-BF16, else loading fails with UNSUPPORTED).
   */
  precision?: Precision;
  /** Which bf16 unit a bf16 run uses: "auto" (AMX when usable, else AVX512-BF16), "amx" or "avx512_bf16". */
  bf16Unit?: "auto" | "amx" | "avx512_bf16";
}

/** Precision of a backend's GEMM ops. */
export type Precision = "f32" | "bf16";

/** The precisions `BackendConfig.precision` takes. */
export const PRECISIONS: readonly Precision[] = ["f32", "bf16"];

const SYMBOLS = {
  sdf_abi_version: { parameters: [], result: "i32" },
  sdf_backend_info: { parameters: [], result: "pointer" },
  sdf_init: { parameters: ["buffer"], result: "i32" },
  sdf_last_error: { parameters: [], result: "pointer" },
  sdf_last_status: { parameters: [], result: "i32", optional: true },
  sdf_buffer_alloc: { parameters: ["u64"], result: "pointer" },
  sdf_buffer_from_file: { parameters: ["buffer", "u64", "u64"], result: "pointer" },
  sdf_buffer_free: { parameters: ["pointer"], result: "void" },
  sdf_buffer_size: { parameters: ["pointer"], result: "u64" },
  sdf_buffer_write: { parameters: ["pointer", "u64", "buffer", "u64"], result: "i32" },
  sdf_buffer_read: { parameters: ["pointer", "u64", "buffer", "u64"], result: "i32" },
  sdf_plan_compile: { parameters: ["buffer", "u64"], result: "pointer" },
  sdf_plan_free: { parameters: ["pointer"], result: "void" },
  sdf_plan_run: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  /* the same function, run on a helper thread so JS stays free */
  sdf_plan_run_nonblocking: {
    name: "sdf_plan_run",
    parameters: ["pointer", "buffer", "u32"],
    result: "i32",
    nonblocking: true,
  },
  sdf_plan_progress: { parameters: ["pointer"], result: "u32" },
  sdf_plan_profile: { parameters: ["pointer", "buffer", "u32"], result: "u32" },
  sdf_plan_last_error: { parameters: ["pointer"], result: "pointer", optional: true },
  sdf_buffer_evict: { parameters: ["pointer"], result: "i32", optional: true },
  sdf_buffer_advise: { parameters: ["pointer", "i32"], result: "i32", optional: true },
} as const;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>;

/** One opened library, shared by every NativeBackend loaded from its path. */
interface LoadedLib {
  path: string;
  lib: Lib;
  /** Config key of the last successful sdf_init. */
  active?: string;
  /** Tail of the chain that serialises runs (the library runs one plan at a time). */
  queue: Promise<void>;
  running: number;
}

const libraries = new Map<string, LoadedLib>();
const encoder = new TextEncoder();

function cstr(s: string): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(encoder.encode(s).length + 1);
  encoder.encodeInto(s, b);
  return b;
}

function readCString(p: Deno.PointerValue): string {
  return p === null ? "" : Deno.UnsafePointerView.getCString(p);
}

function isPath(s: string): boolean {
  return s.includes("/") || s.includes("\\") || /\.(so|dylib|dll)$/.test(s);
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** Finds a backend library by name or path; builds the bundled `cpu` backend when needed. */
export async function resolveBackendPath(nameOrPath: string): Promise<string> {
  if (isPath(nameOrPath)) {
    if (!await exists(nameOrPath)) {
      throw new BackendError(SDF_STATUS.E_IO, `backend library ${nameOrPath} not found`);
    }
    return await Deno.realPath(nameOrPath);
  }
  if (!/^[A-Za-z0-9_-]+$/.test(nameOrPath)) {
    throw new BackendError(SDF_STATUS.E_INVALID, `invalid backend name "${nameOrPath}"`);
  }
  const root = repoRoot();
  // A backend bundled as source (the CPU backend) is built on first use and whenever its sources change.
  const hasSources = await Deno.stat(`${root}/backends/${nameOrPath}/src`).then((s) => s.isDirectory, () => false);
  if (hasSources) return await buildBackend(nameOrPath);
  const file = libraryFileName(nameOrPath);
  const candidates = [`${root}/.cache/lib/${file}`, `${root}/backends/${nameOrPath}/${file}`];
  for (const c of candidates) if (await exists(c)) return c;
  throw new BackendError(
    SDF_STATUS.E_IO,
    `backend "${nameOrPath}" not found (looked for ${candidates.join(", ")})`,
  );
}

function openLibrary(path: string): LoadedLib {
  const known = libraries.get(path);
  if (known) return known;
  // First only the version function: a library of another ABI may lack (or
  // change) the others, and deserves a version message, not a symbol error.
  let probe: Deno.DynamicLibrary<{ sdf_abi_version: { parameters: []; result: "i32" } }>;
  try {
    probe = Deno.dlopen(path, { sdf_abi_version: { parameters: [], result: "i32" } });
  } catch (e) {
    throw new BackendError(
      SDF_STATUS.E_IO,
      `cannot load backend library ${path}: ${(e as Error).message} (is it an sdflow backend built for this OS?)`,
    );
  }
  let version: number;
  try {
    version = probe.symbols.sdf_abi_version();
  } finally {
    probe.close();
  }
  if (version !== SDF_ABI_VERSION) {
    throw new BackendError(
      SDF_STATUS.E_UNSUPPORTED,
      `backend library ${path} has ABI version ${version}, this sdflow needs ${SDF_ABI_VERSION}`,
    );
  }
  let lib: Lib;
  try {
    lib = Deno.dlopen(path, SYMBOLS);
  } catch (e) {
    throw new BackendError(SDF_STATUS.E_IO, `backend library ${path} is incomplete: ${(e as Error).message}`);
  }
  const loaded: LoadedLib = { path, lib, queue: Promise.resolve(), running: 0 };
  libraries.set(path, loaded);
  return loaded;
}

/** A non-negative safe integer as a u64 argument, else a BackendError. */
function u64(v: number, what: string): bigint {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new BackendError(SDF_STATUS.E_INVALID, `${what} must be a non-negative integer, got ${v}`);
  }
  return BigInt(v);
}

function configJson(config: BackendConfig): string {
  const threads = config.threads ?? 0;
  if (!Number.isInteger(threads) || threads < 0) {
    throw new BackendError(SDF_STATUS.E_INVALID, `threads must be a non-negative integer, got ${threads}`);
  }
  const isa = config.isa ?? "auto";
  if (!["auto", "avx512", "avx2", "neon", "scalar"].includes(isa)) {
    throw new BackendError(SDF_STATUS.E_INVALID, `unknown isa "${isa}" (auto, avx512, avx2, neon, scalar)`);
  }
  const precision = config.precision ?? "f32";
  if (!PRECISIONS.includes(precision)) {
    throw new BackendError(SDF_STATUS.E_INVALID, `unknown precision "${precision}" (${PRECISIONS.join(", ")})`);
  }
  const bf16Unit = config.bf16Unit ?? "auto";
  if (!["auto", "amx", "avx512_bf16"].includes(bf16Unit)) {
    throw new BackendError(SDF_STATUS.E_INVALID, `unknown bf16Unit "${bf16Unit}" (auto, amx, avx512_bf16)`);
  }
  // f32 runs send exactly what they did before, so third-party libraries never see the new keys.
  return JSON.stringify(precision === "f32" ? { threads, isa } : { threads, isa, precision, bf16_unit: bf16Unit });
}

/**
 * Loads backend `nameOrPath` ("cpu", another name found in `.cache/lib/` or
 * `backends/<name>/`, or a library path), checks its ABI version and
 * initialises it with `config`.
 */
export async function loadNativeBackend(nameOrPath: string, config: BackendConfig = {}): Promise<NativeBackend> {
  const key = configJson(config);
  const path = await resolveBackendPath(nameOrPath);
  const loaded = openLibrary(path);
  const backend = new NativeBackend(loaded, key);
  // Wait for runs of other configurations of this library before re-initialising it.
  await loaded.queue;
  backend.activate();
  backend.refreshInfo();
  return backend;
}

/** Closes every library opened by loadNativeBackend (their Backends become unusable). */
export function closeAllBackends(): void {
  for (const l of libraries.values()) {
    if (l.running > 0) throw new BackendError(SDF_STATUS.E_STATE, `${l.path}: a plan is still running`);
  }
  for (const l of libraries.values()) l.lib.close();
  libraries.clear();
}

/** A backend library initialised with one configuration. */
export class NativeBackend implements Backend {
  readonly path: string;
  readonly config: string;
  /** Where ops this library lacks run (set by `loadBackend` when it lacks some). */
  fallback?: Backend;
  #lib: LoadedLib;
  #info!: BackendInfo;
  #capabilities?: BackendCapabilities;

  /** Use loadNativeBackend. */
  constructor(lib: LoadedLib, config: string) {
    this.#lib = lib;
    this.path = lib.path;
    this.config = config;
  }

  /** @internal */
  get symbols(): Lib["symbols"] {
    if (!libraries.has(this.#lib.path)) throw new BackendError(SDF_STATUS.E_STATE, `${this.path} was closed`);
    return this.#lib.lib.symbols;
  }

  /** @internal the library's shared state */
  get loaded(): LoadedLib {
    return this.#lib;
  }

  /** `sdf_backend_info()` as it was right after this NativeBackend's sdf_init. */
  get info(): BackendInfo {
    return this.#info;
  }

  get name(): string {
    return this.#info.name;
  }

  /** What the library runs, from its info (the CPU backend's cost model for Winograd). */
  get capabilities(): BackendCapabilities {
    this.#capabilities ??= nativeCapabilities(this.#info);
    return this.#capabilities;
  }

  /** @internal */
  refreshInfo(): void {
    const text = readCString(this.symbols.sdf_backend_info());
    try {
      this.#info = JSON.parse(text) as BackendInfo;
    } catch {
      throw new BackendError(SDF_STATUS.E_INTERNAL, `${this.path}: sdf_backend_info returned invalid JSON: ${text}`);
    }
  }

  /** The backend's message for the last failure on this thread. */
  lastError(): string {
    return readCString(this.symbols.sdf_last_error());
  }

  /**
   * The status code of the last failure on this thread of a function that returns NULL
   * (`sdf_last_status`), or `fallback` for a backend that does not export it (it is optional).
   */
  lastStatus(fallback: number): number {
    const sym = this.symbols.sdf_last_status;
    const code = sym ? sym() : fallback;
    return code < 0 ? code : fallback;
  }

  /** @internal throws a BackendError for a negative status. */
  check(rc: number, what: string): void {
    if (rc < 0) throw new BackendError(rc, this.lastError() || `${what} failed with status ${rc}`);
  }

  /** @internal makes this NativeBackend's configuration the library's current one. */
  activate(): void {
    if (this.#lib.active === this.config) return;
    this.check(this.symbols.sdf_init(cstr(this.config)), "sdf_init");
    this.#lib.active = this.config;
  }

  /** A new 64-byte aligned buffer of `bytes` bytes (contents undefined). */
  alloc(bytes: number): NativeBuffer {
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw new BackendError(SDF_STATUS.E_INVALID, `alloc: bytes must be a non-negative integer, got ${bytes}`);
    }
    const p = this.symbols.sdf_buffer_alloc(BigInt(bytes));
    if (p === null) {
      throw new BackendError(this.lastStatus(SDF_STATUS.E_NOMEM), this.lastError() || `alloc(${bytes}) failed`);
    }
    return new NativeBuffer(this, p, bytes, false);
  }

  /** A read-only buffer holding bytes [offset, offset+bytes) of a file (memory-mapped on the CPU backend). */
  fromFile(path: string, offset: number, bytes: number): NativeBuffer {
    for (const [n, v] of [["offset", offset], ["bytes", bytes]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) {
        throw new BackendError(SDF_STATUS.E_INVALID, `fromFile: ${n} must be a non-negative integer, got ${v}`);
      }
    }
    const p = this.symbols.sdf_buffer_from_file(cstr(path), BigInt(offset), BigInt(bytes));
    if (p === null) {
      throw new BackendError(this.lastStatus(SDF_STATUS.E_IO), this.lastError() || `fromFile(${path}) failed`);
    }
    return new NativeBuffer(this, p, bytes, true);
  }

  /** Validates and compiles a plan (bytes from PlanWriter.finish). */
  compile(planBytes: Uint8Array): NativePlan {
    if (this.#lib.running === 0) this.activate();
    const p = this.symbols.sdf_plan_compile(planBytes as Uint8Array<ArrayBuffer>, BigInt(planBytes.byteLength));
    if (p === null) {
      // The code comes from the backend (sdf_last_status), never guessed from the message.
      throw new BackendError(this.lastStatus(SDF_STATUS.E_INVALID), this.lastError() || "sdf_plan_compile failed");
    }
    const nOps = planBytes.byteLength >= 20
      ? new DataView(planBytes.buffer, planBytes.byteOffset, planBytes.byteLength).getUint32(16, true)
      : 0;
    return new NativePlan(this, p, nOps);
  }
}

/** A block of backend memory. */
export class NativeBuffer implements BackendBuffer {
  readonly backend: NativeBackend;
  readonly size: number;
  readonly readOnly: boolean;
  #ptr: Deno.PointerObject | null;
  /** @internal runs using this buffer */
  pins = 0;

  /** Use NativeBackend.alloc / NativeBackend.fromFile. */
  constructor(backend: NativeBackend, ptr: Deno.PointerObject, size: number, readOnly: boolean) {
    this.backend = backend;
    this.#ptr = ptr;
    this.size = size;
    this.readOnly = readOnly;
  }

  /** @internal */
  get pointer(): Deno.PointerObject {
    if (this.#ptr === null) throw new BackendError(SDF_STATUS.E_STATE, "buffer was freed");
    return this.#ptr;
  }

  get freed(): boolean {
    return this.#ptr === null;
  }

  /**
   * Hints that the buffer will not be read for a while: the CPU backend drops a
   * file mapping's resident pages (they fault back in from the file when next
   * read). A no-op for backends without `sdf_buffer_evict`.
   */
  evict(): void {
    const sym = this.backend.symbols.sdf_buffer_evict;
    if (sym) this.backend.check(sym(this.pointer), "sdf_buffer_evict");
  }

  /**
   * Hints that the buffer is large and about to be written through once (merged weights): the CPU
   * backend backs it with huge pages where the OS offers them. A no-op for backends without
   * `sdf_buffer_advise`.
   */
  adviseHugePages(): void {
    const sym = this.backend.symbols.sdf_buffer_advise;
    if (sym) this.backend.check(sym(this.pointer, 1), "sdf_buffer_advise");
  }

  /**
   * Hints that each tensor of this file buffer is read by one op per run (SDF_ADVICE_STREAM): the CPU
   * backend drops a tensor's pages once that op has run, so the process holds the buffer's weights one
   * op at a time. A no-op for backends without `sdf_buffer_advise` or that do not know the advice (a
   * hint: their SDF_E_INVALID is not an error here).
   */
  adviseStream(): void {
    this.backend.symbols.sdf_buffer_advise?.(this.pointer, 2);
  }

  /** Copies `data` into the buffer at byte `offset`. */
  write(offset: number, data: ArrayBufferView): void {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength) as Uint8Array<ArrayBuffer>;
    this.backend.check(
      this.backend.symbols.sdf_buffer_write(
        this.pointer,
        u64(offset, "write: offset"),
        bytes,
        BigInt(bytes.byteLength),
      ),
      "sdf_buffer_write",
    );
  }

  /** Copies `bytes` bytes starting at `offset` out of the buffer (a fresh, aligned Uint8Array). */
  read(offset: number, bytes: number): Uint8Array<ArrayBuffer> {
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw new BackendError(SDF_STATUS.E_INVALID, `read: bytes must be a non-negative integer, got ${bytes}`);
    }
    const out = new Uint8Array(bytes);
    this.backend.check(
      this.backend.symbols.sdf_buffer_read(this.pointer, u64(offset, "read: offset"), out, BigInt(bytes)),
      "sdf_buffer_read",
    );
    return out;
  }

  /** `read`, as the Backend interface has it (native buffers are readable at once). */
  readAsync(offset: number, bytes: number): Promise<Uint8Array<ArrayBuffer>> {
    return Promise.resolve(this.read(offset, bytes));
  }

  /** Fills `target` from the buffer at byte `offset`; returns `target`. */
  readInto<T extends ArrayBufferView>(offset: number, target: T): T {
    const bytes = new Uint8Array(target.buffer, target.byteOffset, target.byteLength) as Uint8Array<ArrayBuffer>;
    this.backend.check(
      this.backend.symbols.sdf_buffer_read(this.pointer, u64(offset, "read: offset"), bytes, BigInt(bytes.byteLength)),
      "sdf_buffer_read",
    );
    return target;
  }

  /** Releases the memory (or mapping). Idempotent; not allowed while a plan using it runs. */
  free(): void {
    if (this.#ptr === null) return;
    if (this.pins > 0) throw new BackendError(SDF_STATUS.E_STATE, "buffer is in use by a running plan");
    this.backend.symbols.sdf_buffer_free(this.#ptr);
    this.#ptr = null;
  }
}

/** A compiled plan. */
export class NativePlan implements BackendPlan {
  readonly backend: NativeBackend;
  /** Number of ops in the plan. */
  readonly nOps: number;
  #ptr: Deno.PointerObject | null;
  #running = false;

  /** Use NativeBackend.compile. */
  constructor(backend: NativeBackend, ptr: Deno.PointerObject, nOps: number) {
    this.backend = backend;
    this.#ptr = ptr;
    this.nOps = nOps;
  }

  get #p(): Deno.PointerObject {
    if (this.#ptr === null) throw new BackendError(SDF_STATUS.E_STATE, "plan was freed");
    return this.#ptr;
  }

  get running(): boolean {
    return this.#running;
  }

  /**
   * Runs the plan with `bindings` (one buffer per binding slot) on the
   * backend's threads; JS stays free meanwhile (use `progress()`).
   */
  async run(anyBindings: readonly BackendBuffer[]): Promise<void> {
    const plan = this.#p;
    if (this.#running) throw new BackendError(SDF_STATUS.E_STATE, "plan is already running");
    const ptrs = new BigUint64Array(anyBindings.length);
    const bindings = anyBindings as readonly NativeBuffer[];
    bindings.forEach((b, i) => {
      if (!(b instanceof NativeBuffer) || b.backend.path !== this.backend.path) {
        throw new BackendError(SDF_STATUS.E_INVALID, `binding ${i} belongs to another backend library`);
      }
      ptrs[i] = BigInt(Deno.UnsafePointer.value(b.pointer));
    });
    const lib = this.backend.loaded;
    const prev = lib.queue;
    let release!: () => void;
    lib.queue = new Promise<void>((r) => release = r);
    this.#running = true;
    for (const b of bindings) b.pins++;
    try {
      await prev;
      this.backend.activate();
      lib.running++;
      let rc: number;
      try {
        rc = await this.backend.symbols.sdf_plan_run_nonblocking(plan, ptrs, bindings.length);
      } finally {
        lib.running--;
      }
      if (rc < 0) {
        // sdf_last_error is thread-local and the run happened on a helper thread:
        // the plan keeps its own copy of the message.
        const sym = this.backend.symbols.sdf_plan_last_error;
        const msg = sym ? readCString(sym(plan)) : this.backend.lastError();
        throw new BackendError(rc, msg || `sdf_plan_run failed with status ${rc}`);
      }
    } finally {
      for (const b of bindings) b.pins--;
      this.#running = false;
      release();
    }
  }

  /** Runs the plan on the calling thread (blocks JS until done). */
  runSync(bindings: readonly NativeBuffer[]): void {
    const plan = this.#p;
    if (this.#running) throw new BackendError(SDF_STATUS.E_STATE, "plan is already running");
    if (this.backend.loaded.running > 0) {
      throw new BackendError(SDF_STATUS.E_STATE, "another plan of this backend is running; use run()");
    }
    const ptrs = new BigUint64Array(bindings.map((b) => BigInt(Deno.UnsafePointer.value(b.pointer))));
    this.backend.activate();
    this.backend.check(this.backend.symbols.sdf_plan_run(plan, ptrs, bindings.length), "sdf_plan_run");
  }

  /** Ops completed by the run in progress (or the last run). */
  progress(): number {
    return this.backend.symbols.sdf_plan_progress(this.#p);
  }

  /** Per-op wall times of the last run, in nanoseconds. */
  profile(): BigUint64Array {
    const out = new BigUint64Array(this.nOps);
    const n = this.backend.symbols.sdf_plan_profile(this.#p, out, this.nOps);
    return out.subarray(0, n);
  }

  /** Releases the plan. Idempotent; not allowed while it runs. */
  free(): void {
    if (this.#ptr === null) return;
    if (this.#running) throw new BackendError(SDF_STATUS.E_STATE, "plan is running; free it after run() settles");
    this.backend.symbols.sdf_plan_free(this.#ptr);
    this.#ptr = null;
  }
}
