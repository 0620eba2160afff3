/**
 * The WebGPU backend (TypeScript + WGSL on Deno's `navigator.gpu`), and its
 * registration: `loadBackend("webgpu")`, `--backend webgpu`.
 *
 * @example
 * ```ts
 * import { loadBackend } from "../mod.ts";
 * const gpu = await loadBackend("webgpu");
 * console.log(gpu.info.adapter, gpu.capabilities.conv.kind); // e.g. "llvmpipe (LLVM 15.0.6, 256 bits)", "direct"
 * ```
 */

import type { BackendFactory } from "../registry.ts";
export type { WebGpuOptions } from "./backend.ts";
import { createWebGpuBackend, describeAdapter, requestAdapter } from "./backend.ts";

export {
  createWebGpuBackend,
  describeAdapter,
  requestAdapter,
  WebGpuBackend,
  WebGpuBuffer,
  WebGpuError,
  WebGpuPlan,
} from "./backend.ts";
export { WEBGPU_OPS } from "./kernels.ts";

/** The registry entry of the WebGPU backend. */
export const webgpuBackendFactory: BackendFactory = {
  name: "webgpu",
  description: "WebGPU (wgpu: Vulkan, Metal, D3D12) through Deno's navigator.gpu; WGSL kernels",
  create: (o) => createWebGpuBackend({ onKernelError: o.fallback === "none" ? "error" : "fallback", ...o.webgpu }),
  describe: async () => describeAdapter(await requestAdapter()),
};
