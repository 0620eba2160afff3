/**
 * The WebGPU backend, on Deno's built-in `navigator.gpu` (wgpu: Vulkan on
 * Linux — mesa's lavapipe in CI —, Metal on macOS, D3D12 on Windows).
 *
 * - Buffers are GPU storage buffers; weights are uploaded once, in their
 *   file's dtype (f16/bf16 widened in the kernels).
 * - A plan is read (`plan_reader.ts`), each op turned into a WGSL kernel call
 *   (`kernels.ts`; pipelines cached by source), and every run is encoded into
 *   one command buffer and submitted once.
 * - Failures (no adapter, a kernel that does not compile, out of memory, a
 *   lost device) are BackendErrors whose message starts with `webgpu:` and
 *   names the op where there is one.
 */

import { SDF_STATUS } from "../abi.ts";
import type { Backend, BackendBuffer, BackendCapabilities, BackendInfo, BackendPlan } from "../backend.ts";
import { BackendError } from "../ffi.ts";
import { type ParsedPlan, readPlan } from "../plan_reader.ts";
import { type GemmVariant, kernelFor, WEBGPU_OPS } from "./kernels.ts";
import { SELF_CHECK_KINDS, selfCheckPlan } from "./self_check.ts";
import { PARAM_BASE, PARAM_SLOTS } from "./wgsl.ts";

/** A BackendError from the WebGPU backend; `op` names the op kind when one is to blame. */
export class WebGpuError extends BackendError {
  override name = "WebGpuError";
  constructor(code: number, message: string, readonly op?: string) {
    super(code, message.startsWith("webgpu:") ? message : `webgpu: ${message}`);
  }
}

/** Options of `createWebGpuBackend`. */
export interface WebGpuOptions {
  /** "high-performance" (default) or "low-power". */
  powerPreference?: GPUPowerPreference;
  /** Use the software fallback adapter even when a hardware one exists. */
  forceFallbackAdapter?: boolean;
  /** GEMM kernel: "tiled" (workgroup memory) or "registers"; default: registers on CPU-emulated adapters. */
  gemm?: GemmVariant;
  /**
   * A kernel that fails to compile: "fallback" (default) leaves its op to the CPU backend with a
   * warning naming it; "error" makes creating the backend fail.
   */
  onKernelError?: "fallback" | "error";
  /** Where warnings go (default console.error). */
  warn?: (line: string) => void;
  /** Test seam: rewrites a kernel's WGSL before it is compiled (e.g. to check compile failures). */
  patchKernel?: (op: string, code: string) => string;
}

const USAGE_STORAGE = 0x80; // GPUBufferUsage.STORAGE
const USAGE_COPY_SRC = 0x04;
const USAGE_COPY_DST = 0x08;
const USAGE_MAP_READ = 0x01;
const USAGE_UNIFORM = 0x40;
const MAP_READ = 0x1; // GPUMapMode.READ

/** Round up to a multiple of 4 (WebGPU copies and buffer sizes). */
const up4 = (n: number): number => Math.ceil(n / 4) * 4;

/** The adapter, or a WebGpuError saying why there is none. */
export async function requestAdapter(opts: WebGpuOptions = {}): Promise<GPUAdapter> {
  const gpu = (globalThis.navigator as { gpu?: GPU }).gpu;
  if (!gpu) {
    throw new WebGpuError(SDF_STATUS.E_UNSUPPORTED, "navigator.gpu is absent in this Deno (WebGPU not available)");
  }
  const adapter = await gpu.requestAdapter({
    powerPreference: opts.powerPreference ?? "high-performance",
    forceFallbackAdapter: opts.forceFallbackAdapter,
  });
  if (!adapter) {
    throw new WebGpuError(
      SDF_STATUS.E_UNSUPPORTED,
      "no WebGPU adapter (on Linux install a Vulkan driver, e.g. mesa-vulkan-drivers for lavapipe)",
    );
  }
  return adapter;
}

/** Creates the backend on the first adapter; throws a WebGpuError when there is none. */
export async function createWebGpuBackend(opts: WebGpuOptions = {}): Promise<WebGpuBackend> {
  const adapter = await requestAdapter(opts);
  const limits = adapter.limits;
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      requiredLimits: {
        maxBufferSize: limits.maxBufferSize,
        maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
        maxStorageBuffersPerShaderStage: Math.min(limits.maxStorageBuffersPerShaderStage, 10),
        maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
      },
    });
  } catch (e) {
    throw new WebGpuError(SDF_STATUS.E_UNSUPPORTED, `cannot create a device: ${(e as Error).message}`);
  }
  const backend = new WebGpuBackend(adapter, device, opts.gemm, opts.patchKernel);
  try {
    await backend.selfCheck(opts.onKernelError ?? "fallback", opts.warn ?? console.error);
  } catch (e) {
    backend.destroy();
    throw e;
  }
  return backend;
}

/** Adapter facts for `deno task backends`. */
export function describeAdapter(adapter: GPUAdapter): Record<string, unknown> {
  const i = adapter.info;
  const l = adapter.limits;
  return {
    adapter: i.description || `${i.vendor} ${i.device}`.trim(),
    vendor: i.vendor,
    architecture: i.architecture,
    fallbackAdapter: (i as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
    shaderF16: adapter.features.has("shader-f16"),
    maxBufferSize: l.maxBufferSize,
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
  };
}

export class WebGpuBackend implements Backend {
  readonly name = "webgpu";
  readonly path = "webgpu";
  readonly info: BackendInfo;
  readonly capabilities: BackendCapabilities;
  fallback?: Backend;
  readonly device: GPUDevice;
  readonly adapter: GPUAdapter;
  #lost?: string;
  #pipelines = new Map<string, GPUComputePipeline>();
  /** Op kinds whose kernel failed to compile: reported, then left to the fallback. */
  readonly broken = new Map<string, string>();

  /** The GEMM kernel its convs, linears and batched products use. */
  readonly gemm: GemmVariant;

  readonly #patch?: (op: string, code: string) => string;
  readonly #ops: Set<string>;

  constructor(
    adapter: GPUAdapter,
    device: GPUDevice,
    gemm?: GemmVariant,
    patch?: (op: string, code: string) => string,
  ) {
    this.#patch = patch;
    this.adapter = adapter;
    this.device = device;
    const emulated = (adapter.info as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
    this.gemm = gemm ?? (emulated ? "registers" : "tiled");
    const l = device.limits;
    device.lost.then((info) => {
      this.#lost = `${info.reason ?? "unknown"}: ${info.message}`;
    });
    const ops = new Set<string>(WEBGPU_OPS);
    this.#ops = ops;
    this.capabilities = {
      ops,
      dtypes: new Set(["f32", "f16", "bf16", "i32"]),
      // Direct (implicit-GEMM) 3x3 convolutions: no Winograd stages, so no transformed intermediates.
      conv: { kind: "direct" },
      alignment: Math.max(256, l.minStorageBufferOffsetAlignment),
      // WebGPU does not say how much device memory there is: an allocation past it fails, named, at alloc.
      memoryBytes: Infinity,
      deviceMemory: !(adapter.info as { isFallbackAdapter?: boolean }).isFallbackAdapter,
      maxTensorBytes: l.maxStorageBufferBindingSize - Math.max(256, l.minStorageBufferOffsetAlignment),
      maxBufferBytes: l.maxBufferSize,
    };
    const d = describeAdapter(adapter);
    this.info = {
      name: "webgpu",
      abi: 1,
      gemm: this.gemm,
      isa: String(d.adapter),
      isas: [],
      threads: 1,
      dtypes: [...this.capabilities.dtypes],
      ops: [...ops],
      ...d,
    };
  }

  /**
   * Compiles every op kind's kernel on a small plan. A failure is one line
   * naming the backend and op: with "fallback" a warning, the op then left to
   * the CPU backend; with "error" a WebGpuError.
   */
  async selfCheck(onError: "fallback" | "error", warn: (line: string) => void): Promise<void> {
    for (const kind of SELF_CHECK_KINDS) {
      const plan = readPlan(selfCheckPlan(kind), "webgpu self-check");
      try {
        const call = kernelFor(0, plan.ops[0], plan.tensors, this.gemm);
        await this.pipeline(call.code, kind);
      } catch (e) {
        if (onError === "error") throw e;
        this.#ops.delete(kind);
        warn(`${(e as Error).message}; ${kind} runs on the CPU backend`);
      }
    }
  }

  /** Throws if the device was lost (every later call would fail silently otherwise). */
  checkDevice(what: string): void {
    if (this.#lost !== undefined) {
      throw new WebGpuError(SDF_STATUS.E_STATE, `device lost (${this.#lost}) before ${what}`);
    }
  }

  /** @internal a GPU buffer, or a WebGpuError (out of memory included). */
  gpuBuffer(bytes: number, usage: number, what: string): GPUBuffer {
    this.checkDevice(what);
    if (bytes > this.device.limits.maxBufferSize) {
      throw new WebGpuError(
        SDF_STATUS.E_NOMEM,
        `${what}: ${bytes} bytes exceed the device's largest buffer (${this.device.limits.maxBufferSize})`,
      );
    }
    try {
      return this.device.createBuffer({ size: Math.max(4, up4(bytes)), usage });
    } catch (e) {
      throw new WebGpuError(SDF_STATUS.E_NOMEM, `${what}: cannot allocate ${bytes} bytes: ${(e as Error).message}`);
    }
  }

  alloc(bytes: number): WebGpuBuffer {
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw new WebGpuError(SDF_STATUS.E_INVALID, `alloc: bytes must be a non-negative integer, got ${bytes}`);
    }
    const b = this.gpuBuffer(bytes, USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST, "alloc");
    return new WebGpuBuffer(this, b, bytes, false);
  }

  /**
   * A file range in device memory. The same range of the same (unchanged) file is uploaded once and
   * shared: each network shape compiles its own program, but the weights stay where they are.
   */
  fromFile(path: string, offset: number, bytes: number): WebGpuBuffer {
    for (const [n, v] of [["offset", offset], ["bytes", bytes]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) {
        throw new WebGpuError(SDF_STATUS.E_INVALID, `fromFile: ${n} must be a non-negative integer, got ${v}`);
      }
    }
    let stamp: string;
    try {
      const st = Deno.statSync(path);
      stamp = `${Deno.realPathSync(path)}\0${offset}\0${bytes}\0${st.size}\0${st.mtime?.getTime() ?? 0}`;
    } catch (e) {
      throw new WebGpuError(SDF_STATUS.E_IO, `fromFile: cannot open ${path}: ${(e as Error).message}`);
    }
    const shared = this.#files.get(stamp);
    if (shared && !shared.destroyed) {
      shared.users++;
      return new WebGpuBuffer(this, shared.gpu, bytes, true, shared);
    }
    const gpu = this.#upload(path, offset, bytes);
    const entry = { gpu, users: 1, destroyed: false };
    this.#files.set(stamp, entry);
    return new WebGpuBuffer(this, gpu, bytes, true, entry);
  }

  /** Shared uploads of file ranges, by path, range, size and mtime. */
  readonly #files = new Map<string, SharedUpload>();

  #upload(path: string, offset: number, bytes: number): GPUBuffer {
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path, { read: true });
    } catch (e) {
      throw new WebGpuError(SDF_STATUS.E_IO, `fromFile: cannot open ${path}: ${(e as Error).message}`);
    }
    const buf = this.alloc(bytes);
    try {
      const size = file.statSync().size;
      if (offset + bytes > size) {
        throw new WebGpuError(
          SDF_STATUS.E_IO,
          `fromFile: ${path} has ${size} bytes, asked for [${offset}, ${offset + bytes})`,
        );
      }
      file.seekSync(offset, Deno.SeekMode.Start);
      // Upload in chunks: the file's bytes go to device memory once, not through one huge host copy.
      const chunk = new Uint8Array(Math.min(bytes, 32 * 2 ** 20) + 4);
      for (let done = 0; done < bytes;) {
        const want = Math.min(chunk.length - 4, bytes - done);
        let got = 0;
        while (got < want) {
          const n = file.readSync(chunk.subarray(got, want));
          if (n === null || n === 0) throw new WebGpuError(SDF_STATUS.E_IO, `fromFile: ${path} ended early`);
          got += n;
        }
        chunk.fill(0, want, up4(want));
        this.device.queue.writeBuffer(buf.gpu, done, chunk, 0, up4(want));
        done += want;
      }
    } catch (e) {
      buf.free();
      throw e;
    } finally {
      file.close();
    }
    return buf.gpu;
  }

  /** @internal the pipeline of a WGSL source, compiled once; a WebGpuError naming `op` if it does not compile. */
  async pipeline(code: string, op: string): Promise<GPUComputePipeline> {
    const known = this.#pipelines.get(code);
    if (known) return known;
    if (this.broken.has(op)) throw new WebGpuError(SDF_STATUS.E_UNSUPPORTED, this.broken.get(op)!, op);
    this.checkDevice(`compiling the ${op} kernel`);
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ code: this.#patch ? this.#patch(op, code) : code });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error");
    const pipeline = this.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
    const scoped = await this.device.popErrorScope();
    if (errors.length || scoped) {
      const msg = errors.length
        ? errors.map((m) => `line ${m.lineNum}: ${m.message.trim()}`).join("\n")
        : String(scoped?.message);
      const first = msg.split("\n").map((l) => l.trim()).filter((l) => l && !/^line \d+:$/.test(l))[0] ?? "no message";
      const text = `the ${op} kernel failed to compile: ${first}`;
      this.broken.set(op, `webgpu: ${text}`);
      throw new WebGpuError(SDF_STATUS.E_UNSUPPORTED, text, op);
    }
    this.#pipelines.set(code, pipeline);
    return pipeline;
  }

  compile(planBytes: Uint8Array): BackendPlan {
    const parsed = readPlan(planBytes, "webgpu");
    return new WebGpuPlan(this, parsed);
  }

  /** Compiles the kernels of a plan ahead of its first run (compile() is synchronous; WGSL checks are not). */
  async prepare(plan: BackendPlan): Promise<void> {
    if (plan instanceof WebGpuPlan) await plan.prepare();
  }

  /** Releases the device. */
  destroy(): void {
    this.device.destroy();
  }
}

/** A file range uploaded once and bound by every program that maps it. */
interface SharedUpload {
  gpu: GPUBuffer;
  users: number;
  destroyed: boolean;
}

export class WebGpuBuffer implements BackendBuffer {
  readonly backend: WebGpuBackend;
  readonly size: number;
  readonly readOnly: boolean;
  #gpu: GPUBuffer | null;
  readonly #shared?: SharedUpload;

  constructor(backend: WebGpuBackend, gpu: GPUBuffer, size: number, readOnly: boolean, shared?: SharedUpload) {
    this.backend = backend;
    this.#gpu = gpu;
    this.size = size;
    this.readOnly = readOnly;
    this.#shared = shared;
  }

  get gpu(): GPUBuffer {
    if (this.#gpu === null) throw new WebGpuError(SDF_STATUS.E_STATE, "buffer was freed");
    return this.#gpu;
  }

  get freed(): boolean {
    return this.#gpu === null;
  }

  #range(offset: number, bytes: number, what: string): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(bytes) || bytes < 0) {
      throw new WebGpuError(SDF_STATUS.E_INVALID, `${what}: offset and size must be non-negative integers`);
    }
    if (offset + bytes > this.size) {
      throw new WebGpuError(SDF_STATUS.E_INVALID, `${what}: [${offset}, ${offset + bytes}) exceeds ${this.size} bytes`);
    }
  }

  write(offset: number, data: ArrayBufferView): void {
    this.#range(offset, data.byteLength, "write");
    this.backend.checkDevice("write");
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (offset % 4 !== 0) {
      throw new WebGpuError(SDF_STATUS.E_INVALID, `write: offset ${offset} is not a multiple of 4`);
    }
    if (bytes.byteLength % 4 !== 0) {
      // WebGPU writes whole words; the padding lands in the buffer's own rounding or the next aligned tensor's gap.
      const padded = new Uint8Array(up4(bytes.byteLength));
      padded.set(bytes);
      bytes = padded;
    }
    this.backend.device.queue.writeBuffer(this.gpu, offset, bytes as Uint8Array<ArrayBuffer>);
  }

  async readAsync(offset: number, bytes: number): Promise<Uint8Array<ArrayBuffer>> {
    this.#range(offset, bytes, "read");
    this.backend.checkDevice("read");
    const start = Math.floor(offset / 4) * 4;
    const end = up4(offset + bytes);
    const device = this.backend.device;
    const staging = this.backend.gpuBuffer(end - start, USAGE_MAP_READ | USAGE_COPY_DST, "read");
    try {
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(this.gpu, start, staging, 0, end - start);
      device.queue.submit([enc.finish()]);
      try {
        await staging.mapAsync(MAP_READ);
      } catch (e) {
        this.backend.checkDevice("read");
        throw new WebGpuError(SDF_STATUS.E_INTERNAL, `read: mapping failed: ${(e as Error).message}`);
      }
      const out = new Uint8Array(bytes);
      out.set(new Uint8Array(staging.getMappedRange(), offset - start, bytes));
      staging.unmap();
      return out;
    } finally {
      staging.destroy();
    }
  }

  evict(): void {}

  free(): void {
    if (this.#gpu === null) return;
    const shared = this.#shared;
    if (!shared) this.#gpu.destroy();
    else if (--shared.users === 0) {
      shared.destroyed = true;
      shared.gpu.destroy();
    }
    this.#gpu = null;
  }
}

interface Prepared {
  kind: string;
  pipeline: GPUComputePipeline;
  tensors: number[];
  /** One per dispatch: its parameters and workgroup counts. */
  steps: { uniform: GPUBuffer; groups: [number, number, number] }[];
  /** The op's own scratch buffer (attention's running state between key chunks), bound after the tensors. */
  scratch?: GPUBuffer;
}

export class WebGpuPlan implements BackendPlan {
  readonly backend: WebGpuBackend;
  readonly nOps: number;
  readonly parsed: ParsedPlan;
  #prepared?: Prepared[];
  #preparing?: Promise<void>;
  #progress = 0;
  #freed = false;

  constructor(backend: WebGpuBackend, parsed: ParsedPlan) {
    this.backend = backend;
    this.parsed = parsed;
    this.nOps = parsed.ops.length;
    // Shapes and params are checked now (synchronously), so a bad plan fails at compile as with native backends.
    this.#calls = parsed.ops.map((op, i) => kernelFor(i, op, parsed.tensors, backend.gemm));
  }

  readonly #calls: ReturnType<typeof kernelFor>[];

  /** Compiles every op's pipeline and uploads its parameters. */
  prepare(): Promise<void> {
    this.#preparing ??= (async () => {
      const out: Prepared[] = [];
      const { device } = this.backend;
      for (const [i, call] of this.#calls.entries()) {
        const op = this.parsed.ops[i];
        const pipeline = await this.backend.pipeline(call.code, op.kind);
        const offsets = new Uint32Array(PARAM_SLOTS);
        // Slots 0..7: each tensor's first element within its 256-byte aligned binding (the scratch's: 0).
        call.tensors.forEach((ti, k) => {
          const t = this.parsed.tensors[ti];
          const elem = t.dtype === 1 || t.dtype === 2 ? 2 : 4;
          offsets[k] = (t.offset % this.backend.capabilities.alignment) / elem;
        });
        const prepared: Prepared = { kind: op.kind, pipeline, tensors: call.tensors, steps: [] };
        out.push(prepared);
        for (const [j, d] of call.dispatches.entries()) {
          const words = offsets.slice();
          d.params.forEach((v, k) => (words[PARAM_BASE + k] = v >>> 0));
          const what = `op ${i} params${call.dispatches.length > 1 ? ` (dispatch ${j + 1})` : ""}`;
          const uniform = this.backend.gpuBuffer(words.byteLength, USAGE_UNIFORM | USAGE_COPY_DST, what);
          device.queue.writeBuffer(uniform, 0, words);
          prepared.steps.push({ uniform, groups: d.groups });
        }
        if (call.scratchBytes) {
          prepared.scratch = this.backend.gpuBuffer(call.scratchBytes, USAGE_STORAGE, `op ${i} (${op.kind}) scratch`);
        }
      }
      this.#prepared = out;
    })();
    return this.#preparing;
  }

  /** Encodes every op into one command buffer, submits it once and waits for it. */
  async run(bindings: readonly BackendBuffer[]): Promise<void> {
    if (this.#freed) throw new WebGpuError(SDF_STATUS.E_STATE, "plan was freed");
    if (bindings.length !== this.parsed.nBindings) {
      throw new WebGpuError(
        SDF_STATUS.E_INVALID,
        `plan needs ${this.parsed.nBindings} bindings, got ${bindings.length}`,
      );
    }
    const bufs = bindings.map((b, i) => {
      if (!(b instanceof WebGpuBuffer) || b.backend !== this.backend) {
        throw new WebGpuError(SDF_STATUS.E_INVALID, `binding ${i} belongs to another backend`);
      }
      return b;
    });
    const { tensors } = this.parsed;
    for (const [i, t] of tensors.entries()) {
      if (t.offset + t.bytes > bufs[t.binding].size) {
        throw new WebGpuError(
          SDF_STATUS.E_INVALID,
          `tensor ${i}: bytes [${t.offset}, ${t.offset + t.bytes}) exceed binding ${t.binding}'s ${
            bufs[t.binding].size
          } bytes`,
        );
      }
    }
    await this.prepare();
    const prepared = this.#prepared!;
    const { device } = this.backend;
    this.backend.checkDevice("a run");
    this.#progress = 0;
    const align = this.backend.capabilities.alignment;
    device.pushErrorScope("out-of-memory");
    device.pushErrorScope("validation");
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const [i, p] of prepared.entries()) {
      const entries: GPUBindGroupEntry[] = p.tensors.map((ti, k) => {
        const t = tensors[ti];
        const base = Math.floor(t.offset / align) * align;
        const size = Math.min(up4(t.offset + t.bytes), bufs[t.binding].gpu.size) - base;
        return { binding: k + 1, resource: { buffer: bufs[t.binding].gpu, offset: base, size } };
      });
      if (p.scratch) entries.push({ binding: p.tensors.length + 1, resource: { buffer: p.scratch } });
      pass.setPipeline(p.pipeline);
      for (const step of p.steps) {
        let group: GPUBindGroup;
        try {
          group = device.createBindGroup({
            layout: p.pipeline.getBindGroupLayout(0),
            entries: [{ binding: 0, resource: { buffer: step.uniform } }, ...entries],
          });
        } catch (e) {
          throw new WebGpuError(SDF_STATUS.E_INTERNAL, `op ${i} (${p.kind}): ${(e as Error).message}`, p.kind);
        }
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(...step.groups);
      }
    }
    pass.end();
    device.queue.submit([enc.finish()]);
    const validation = await device.popErrorScope();
    const oom = await device.popErrorScope();
    await device.queue.onSubmittedWorkDone();
    this.backend.checkDevice("the end of a run");
    if (oom) throw new WebGpuError(SDF_STATUS.E_NOMEM, `out of device memory during a run: ${oom.message}`);
    if (validation) {
      throw new WebGpuError(SDF_STATUS.E_INTERNAL, `a run failed validation: ${validation.message.split("\n")[0]}`);
    }
    this.#progress = this.nOps;
  }

  progress(): number {
    return this.#progress;
  }

  profile(): BigUint64Array {
    return new BigUint64Array(this.nOps);
  }

  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    for (const p of this.#prepared ?? []) {
      for (const step of p.steps) step.uniform.destroy();
      p.scratch?.destroy();
    }
  }
}
