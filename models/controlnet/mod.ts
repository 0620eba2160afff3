/**
 * ControlNet: loading a ControlNet file, running it on the backend, and a
 * {@link Denoiser} that adds its residuals to the UNet's, as stable-diffusion.cpp does:
 * - each UNet evaluation first runs the ControlNet on the same scaled input, timestep and
 *   context (cond and uncond each get their own residuals: batched here, which is the same
 *   computation as sd.cpp's two calls, every op being per batch item);
 * - the UNet adds strength·c[12] to the middle block's output and strength·c[i] to skip i before the
 *   output block concatenates it (models/unet/unet.ts `control`);
 * - the hint part of the network depends on the control image only: computed once per control
 *   image and size, and reused for every step;
 * - several ControlNets on one model add their residuals (sum of strength·c).
 *
 * The residual hook is the optional `control` argument of `Denoiser.predict` (13 tensors added
 * as they are). models/patch.ts designs a `block_residuals` patch with the same contract
 * (`residuals(call)` per evaluation, sd.cpp's order, not applied by the checkpoint yet);
 * `ControlNet.residuals` fits it, so this wrapper can become such a patch. The wrapper forwards
 * weight patches (LoRA) to the model it wraps.
 */

import { type Backend, loadBackend, type Precision } from "../../backends/mod.ts";
import { compile, Graph, type Program } from "../../engine/mod.ts";
import type { UnetConfig } from "../arch.ts";
import { createWeightLookup, type WeightLookup } from "../nn.ts";
import { fitImage } from "../preprocess/resize.ts";
import type { Conditioning, Denoiser, HostTensor, Image } from "../types.ts";
import { openWeights, type TensorInfo, type WeightFile } from "../weights/mod.ts";
import { sdxlVector } from "../unet/sdxl.ts";
import { buildControlHint, buildControlNet } from "./controlnet.ts";
import { controlNetConfig, ControlNetError } from "./detect.ts";
import { controlNetLayout, controlNetTensors } from "./names.ts";

export { buildControlHint, buildControlNet, controlCount } from "./controlnet.ts";
export { controlNetConfig, ControlNetError } from "./detect.ts";
export { controlNetLayout, diffusersControlNetName } from "./names.ts";

export interface ControlNetLoadOptions {
  /** Backend name or library path (default "cpu"). */
  backend?: string;
  threads?: number;
  /** Precision of the backend's GEMM ops (`--precision`): "f32" (default) or "bf16" (see BackendConfig.precision). */
  precision?: Precision;
}

/** What one UNet evaluation computed its residuals from. */
export interface UnetCall {
  readonly x: HostTensor;
  readonly timesteps: Float32Array;
  readonly context: HostTensor;
  /** SDXL's vector conditioning [N, admInChannels], as the UNet's. */
  readonly y?: Float32Array;
}

/** A loaded ControlNet bound to a UNet configuration. */
export class ControlNet {
  #hintProgram?: { key: string; program: Program };
  #controlProgram?: { key: string; program: Program; shapes: number[][] };

  private constructor(
    readonly path: string,
    private readonly file: WeightFile,
    /** The file's tensors by original name (no prefix). */
    private readonly weights: ReadonlyMap<string, TensorInfo>,
    private readonly backend: Backend,
    /** The ControlNet's own configuration (read from its weights; encoder shaped as the UNet's). */
    readonly unet: UnetConfig,
  ) {}

  /**
   * Opens `path` for a UNet of configuration `unet` (the model it will control) and checks every
   * weight's shape against it; a file that does not fit is a {@link ControlNetError} naming the
   * first weight that does not.
   */
  static async load(path: string, unet: UnetConfig, opts: ControlNetLoadOptions = {}): Promise<ControlNet> {
    let file: WeightFile;
    try {
      file = await openWeights(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new ControlNetError(`ControlNet file not found: ${path}`);
      throw new ControlNetError(`${path}: not a readable ControlNet file: ${(e as Error).message}`);
    }
    try {
      const found = controlNetLayout(file.tensors.keys());
      if (!found) {
        throw new ControlNetError(
          `${path} is not a ControlNet: no input_hint_block (original layout) or controlnet_cond_embedding ` +
            `(diffusers layout) tensors`,
        );
      }
      let weights: Map<string, TensorInfo>;
      try {
        weights = controlNetTensors(file.tensors, found.layout, found.prefix);
      } catch (e) {
        throw new ControlNetError(`${path}: ${(e as Error).message}`);
      }
      const shapes = new Map([...weights].map(([n, t]) => [n, t.shape] as const));
      const config = controlNetConfig(shapes, unet, path);
      const backend = await loadBackend(opts.backend ?? "cpu", { threads: opts.threads, precision: opts.precision });
      const net = new ControlNet(path, file, weights, backend, config);
      net.#check();
      return net;
    } catch (e) {
      file.close();
      throw e;
    }
  }

  #lookup(g: Graph): WeightLookup {
    const weights = this.weights;
    return createWeightLookup(g, { get: (n) => weights.get(n) });
  }

  /** Builds both graphs at a small size: every weight is looked up and its shape checked. */
  #check(): void {
    try {
      const h = new Graph();
      buildControlHint(h, this.#lookup(h), this.unet, { height: 64, width: 64 });
      const g = new Graph();
      buildControlNet(g, this.#lookup(g), this.unet, { batch: 1, height: 8, width: 8, contextTokens: 77 });
    } catch (e) {
      throw new ControlNetError(`ControlNet ${this.path} does not fit this model: ${(e as Error).message}`);
    }
  }

  /** The hint network's output for `hint` [1, 3, H, W] (values in [0, 1]). */
  async guidedHint(hint: HostTensor): Promise<HostTensor> {
    const [, , h, w] = hint.shape;
    const key = `${h}x${w}`;
    if (this.#hintProgram?.key !== key) {
      this.#hintProgram?.program.dispose();
      const g = new Graph();
      buildControlHint(g, this.#lookup(g), this.unet, { height: h, width: w });
      this.#hintProgram = { key, program: compile(g, this.backend, { hoistBudgetBytes: 0 }) };
    }
    const { guided_hint } = await this.#hintProgram.program.run({ hint: hint.data });
    return { shape: [1, this.unet.modelChannels, Math.ceil(h / 8), Math.ceil(w / 8)], data: guided_hint };
  }

  /** The residuals for one UNet evaluation, in sd.cpp's order (input blocks 0..11, then the middle block). */
  async residuals(call: UnetCall, guidedHint: HostTensor): Promise<HostTensor[]> {
    const [b, , h, w] = call.x.shape;
    const tokens = call.context.shape[1];
    if (guidedHint.shape[2] !== h || guidedHint.shape[3] !== w) {
      throw new ControlNetError(
        `ControlNet: hint of ${guidedHint.shape[3]}x${guidedHint.shape[2]} for a ${w}x${h} latent`,
      );
    }
    if (call.x.shape[1] !== this.unet.inChannels) {
      throw new ControlNetError(
        `ControlNet ${this.path} takes ${this.unet.inChannels}-channel latents, this UNet's input has ${
          call.x.shape[1]
        }`,
      );
    }
    const key = `${b}x${h}x${w}/${tokens}`;
    if (this.#controlProgram?.key !== key) {
      this.#controlProgram?.program.dispose();
      const g = new Graph();
      const outs = buildControlNet(g, this.#lookup(g), this.unet, {
        batch: b,
        height: h,
        width: w,
        contextTokens: tokens,
      });
      const program = compile(g, this.backend, { hoistBudgetBytes: 0 });
      this.#controlProgram = { key, program, shapes: outs.map((t) => [...t.shape]) };
    }
    const { program, shapes } = this.#controlProgram;
    const adm = this.unet.admInChannels;
    if (adm !== undefined && call.y?.length !== b * adm) {
      throw new ControlNetError(`ControlNet for SDXL: needs the vector conditioning y [${b}, ${adm}]`);
    }
    const out = await program.run({
      x: call.x.data,
      timesteps: call.timesteps,
      context: call.context.data,
      guided_hint: guidedHint.data,
      ...(adm !== undefined ? { y: call.y! } : {}),
    });
    return shapes.map((shape, i) => ({ shape, data: out[`control_${i}`] }));
  }

  dispose(): void {
    this.#hintProgram?.program.dispose();
    this.#controlProgram?.program.dispose();
    this.#hintProgram = this.#controlProgram = undefined;
    this.file.close();
  }
}

/** An 8-bit picture as the hint tensor [1, 3, H, W], u8/255 (sd.cpp's `sd_image_to_tensor`). */
export function hintTensor(image: Image): HostTensor {
  const { width: w, height: h, channels: ch, data } = image;
  const out = new Float32Array(3 * w * h);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < w * h; i++) out[c * w * h + i] = data[i * ch + c] / 255;
  }
  return { shape: [1, 3, h, w], data: out };
}

/** One ControlNet applied to a model. */
export interface ControlSpec {
  readonly net: ControlNet;
  /** The control image (edge map, ...); fitted to the picture's size when it differs. */
  readonly image: Image;
  /** Multiplies every residual (sd.cpp's `--control-strength`, default 0.9). */
  readonly strength: number;
  /** Told once when the control image is resized. */
  readonly onNote?: (message: string) => void;
}

/**
 * `base` with the ControlNet `spec` added: its residuals, times the strength, are added to any
 * residuals the caller passes (so stacked ControlNets sum) and handed to `base`.
 */
export function withControlNet(base: Denoiser, spec: ControlSpec): Denoiser {
  if (!base.unet) throw new ControlNetError("this model does not take ControlNet residuals");
  let cached: { key: string; hint: HostTensor } | undefined;
  const f = Math.fround;
  const s = f(spec.strength);
  return {
    family: base.family,
    prediction: base.prediction,
    alphasCumprod: base.alphasCumprod,
    unet: base.unet,
    // Patchable as the model it wraps: a LoRA applied after the ControlNet patches the UNet underneath.
    ...(base.withPatches
      ? {
        patches: base.patches,
        patchableWeights: base.patchableWeights,
        withPatches: (more) => withControlNet(base.withPatches!(more), spec),
      }
      : {}),
    predict: async (x: HostTensor, timesteps: Float32Array, cond: Conditioning, control?: readonly HostTensor[]) => {
      const [, , h, w] = x.shape;
      const key = `${h}x${w}`;
      if (cached?.key !== key) {
        const width = 8 * w, height = 8 * h;
        const { image } = spec;
        if (image.width !== width || image.height !== height) {
          spec.onNote?.(
            `control image ${image.width}x${image.height} resized to ${width}x${height} ` +
              `(centre crop to the aspect ratio, box filter), as stable-diffusion.cpp does`,
          );
        }
        cached = { key, hint: await spec.net.guidedHint(hintTensor(fitImage(image, width, height))) };
      }
      const y = spec.net.unet.admInChannels === undefined
        ? undefined
        : sdxlLabel(cond, x.shape[0], h, w, spec.net.unet);
      const own = await spec.net.residuals({ x, timesteps, context: cond.context, y }, cached.hint);
      if (control && control.length !== own.length) {
        throw new ControlNetError(`ControlNet: ${control.length} residuals to add to ${own.length}`);
      }
      const sum = own.map((r, i) => {
        const data = new Float32Array(r.data.length);
        const prev = control?.[i].data;
        for (let j = 0; j < data.length; j++) {
          const v = f(s * r.data[j]);
          data[j] = prev ? f(v + prev[j]) : v;
        }
        return { shape: r.shape, data };
      });
      return base.predict(x, timesteps, cond, sum);
    },
  };
}

/**
 * SDXL's y for a batch of `b` at latent size h x w, as the UNet gets it (sd.cpp hands the ControlNet
 * the same c_vector): the pooled rows and the size embeddings (original = target = the image size).
 */
function sdxlLabel(cond: Conditioning, b: number, h: number, w: number, cfg: UnetConfig): Float32Array {
  if (!cond.pooled || cond.pooled.shape[0] !== b) {
    throw new ControlNetError(`ControlNet for SDXL: batch ${b} needs a pooled text embedding per entry`);
  }
  const size = { originalHeight: 8 * h, originalWidth: 8 * w, targetHeight: 8 * h, targetWidth: 8 * w };
  return sdxlVector(cond.pooled.data, b, size, cfg.admInChannels!);
}
