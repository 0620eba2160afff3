/**
 * Backends: the C ABI (`sdflow_backend.h`), its constants, the plan writer,
 * the loader and the builder of bundled backends.
 *
 * @example
 * ```ts
 * import { loadBackend, PlanWriter, SDF_DTYPE, SDF_OP } from "./backends/mod.ts";
 * const be = await loadBackend("cpu");
 * ```
 */
export * from "./abi.ts";
export { PlanWriter, PlanWriterError } from "./plan_writer.ts";
export {
  Backend,
  BackendBuffer,
  type BackendConfig,
  BackendError,
  type BackendInfo,
  BackendPlan,
  closeAllBackends,
  loadBackend,
  resolveBackendPath,
} from "./ffi.ts";
export { BackendBuildError, buildBackend, type BuildOptions, builtLibraryPath, libraryFileName } from "./build.ts";
export * from "./manifest.ts";
