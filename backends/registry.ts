/**
 * `loadBackend`: one entry point for every kind of backend. A name is looked
 * up among the TypeScript backends (`webgpu`, and those plugins register),
 * else loaded as a native library (`cpu`, a library in `.cache/lib/`, a path).
 * A backend that lacks some ops gets the CPU backend as its `fallback`, where
 * the planner places those ops (with explicit transfers).
 *
 * @example
 * ```ts
 * const be = await loadBackend("webgpu");
 * be.fallback?.name; // "cpu" if WebGPU lacked an op
 * ```
 */

import { type Backend, missingOps } from "./backend.ts";
import { type BackendConfig, BackendError, loadNativeBackend } from "./ffi.ts";
import { SDF_STATUS } from "./abi.ts";
import type { WebGpuOptions } from "./webgpu/backend.ts";

/** Options of `loadBackend`: the native config plus what TypeScript backends take. */
export interface LoadBackendOptions extends BackendConfig {
  /** Where ops the backend lacks run: "cpu" (default) or "none" (a plan with such an op then fails to compile). */
  fallback?: "cpu" | "none";
  /** Options of the WebGPU backend (adapter choice, GEMM kernel, …). */
  webgpu?: WebGpuOptions;
}

/** A backend written in TypeScript, registered by name (the WebGPU backend, plugins' backends). */
export interface BackendFactory {
  readonly name: string;
  readonly description?: string;
  create(options: LoadBackendOptions): Promise<Backend>;
  /** What `deno task backends` prints about it: devices, limits; throws if it is unavailable here. */
  describe?(): Promise<Record<string, unknown>>;
}

const factories = new Map<string, BackendFactory>();

/** Registers a TypeScript backend under its name (a later registration of the same name replaces it). */
export function registerBackend(factory: BackendFactory): void {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(factory.name)) {
    throw new BackendError(SDF_STATUS.E_INVALID, `invalid backend name "${factory.name}"`);
  }
  if (factory.name === "cpu") throw new BackendError(SDF_STATUS.E_INVALID, `backend name "cpu" is reserved`);
  factories.set(factory.name, factory);
}

/** The registered TypeScript backends (WebGPU first). */
export async function backendFactories(): Promise<BackendFactory[]> {
  await builtins();
  return [...factories.values()];
}

/** Names of the bundled TypeScript backends (registered by {@link builtins}). */
const BUILTIN_NAMES = new Set(["webgpu"]);

let builtinsLoaded: Promise<void> | undefined;
/** The bundled TypeScript backends register on first use (their modules load only then). */
function builtins(): Promise<void> {
  builtinsLoaded ??= import("./webgpu/mod.ts").then((m) => {
    if (!factories.has("webgpu")) registerBackend(m.webgpuBackendFactory);
  });
  return builtinsLoaded;
}

/**
 * Loads backend `nameOrPath`: a registered TypeScript backend (`webgpu`, a
 * plugin's), else a native library (`cpu`, a name in `.cache/lib/` or
 * `backends/<name>/`, a library path), and attaches the CPU fallback when it
 * lacks ops.
 */
export async function loadBackend(nameOrPath: string, options: LoadBackendOptions = {}): Promise<Backend> {
  const { fallback = "cpu", webgpu: _webgpu, ...native } = options;
  if (fallback !== "cpu" && fallback !== "none") {
    throw new BackendError(SDF_STATUS.E_INVALID, `fallback must be "cpu" or "none", got ${JSON.stringify(fallback)}`);
  }
  // Only a bundled TypeScript backend's name loads its module: a CPU or OpenCL run never imports WebGPU's kernels.
  if (BUILTIN_NAMES.has(nameOrPath)) await builtins();
  const factory = factories.get(nameOrPath);
  const backend = factory ? await factory.create(options) : await loadNativeBackend(nameOrPath, native);
  // A backend that does not know the precision key ignores it: say so rather than run f32 silently.
  if ((options.precision ?? "f32") !== "f32" && backend.info.precision !== options.precision) {
    throw new BackendError(
      SDF_STATUS.E_UNSUPPORTED,
      `backend "${backend.name}" does not offer precision "${options.precision}" (the CPU backend does, on CPUs ` +
        `with AVX512-BF16 or AMX-BF16)`,
    );
  }
  if (fallback === "none" || backend.fallback || backend.name === "cpu") return backend;
  if (missingOps(backend.capabilities).length === 0) return backend;
  const cpu = await loadNativeBackend("cpu", native);
  (backend as { fallback?: Backend }).fallback = cpu;
  return backend;
}
