/**
 * Backends: the `Backend` interface and capabilities, the C ABI
 * (`sdflow_backend.h`), its constants, the plan writer, the loaders (native
 * over FFI, TypeScript backends by name: `webgpu`) and the builder of bundled
 * backends.
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
  ALL_OPS,
  type Backend,
  type BackendBuffer,
  type BackendCapabilities,
  type BackendInfo,
  type BackendPlan,
  type ConvLowering,
  missingOps,
  type WinogradTile,
} from "./backend.ts";
export {
  type BackendConfig,
  BackendError,
  closeAllBackends,
  loadNativeBackend,
  NativeBackend,
  NativeBuffer,
  NativePlan,
  type Precision,
  PRECISIONS,
  resolveBackendPath,
} from "./ffi.ts";
export {
  backendFactories,
  type BackendFactory,
  loadBackend,
  type LoadBackendOptions,
  registerBackend,
} from "./registry.ts";
export { nativeCapabilities } from "./native_capabilities.ts";
export { CPU_BAND_BYTES, cpuCapabilities, cpuChooseWinograd } from "./cpu/capabilities.ts";
export { BackendBuildError, buildBackend, type BuildOptions, builtLibraryPath, libraryFileName } from "./build.ts";
export * from "./manifest.ts";
