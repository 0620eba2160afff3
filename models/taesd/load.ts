/**
 * A TAESD file loaded on a backend, as a {@link Vae}: it decodes and encodes diffusion latents
 * directly (no scaling factor), so it can stand in for a checkpoint's VAE anywhere (the `taesd`
 * node, `--taesd`, live previews). Decoder output [0, 1] goes to 8 bits as stable-diffusion.cpp
 * does; VAE tiling works as for the full VAE.
 */

import { type Backend, loadBackend, type Precision } from "../../backends/mod.ts";
import { compile, Graph, type OpProfile, type Program } from "../../engine/mod.ts";
import { imageToTensor, tensorToImage } from "../image_tensor.ts";
import { createWeightLookup } from "../nn.ts";
import { VAE_ENCODE_TILE_FACTOR, vaeTiled as tiled } from "../tiling.ts";
import type { HostTensor, Image, Latent, Vae, VaeDecodeOptions, VaeEncodeOptions } from "../types.ts";
import { openWeights, type WeightFile } from "../weights/mod.ts";
import {
  buildTaesdDecoder,
  buildTaesdEncoder,
  detectTaesd,
  type TaesdConfig,
  TaesdError,
  taesdNames,
} from "./taesd.ts";

export interface TaesdLoadOptions {
  threads?: number;
  /** Precision of the backend's GEMM ops (`--precision`): "f32" (default) or "bf16" (see BackendConfig.precision). */
  precision?: Precision;
  /** Backend name or library path (default "cpu"). */
  backend?: string;
  /** Called after every network run with its per-op times (`--profile`), as LoadOptions.onProfile. */
  onProfile?: (network: string, ops: readonly OpProfile[], runMs: number) => void;
}

/** A loaded TAESD: a {@link Vae} plus its configuration. */
export interface Taesd extends Vae {
  readonly path: string;
  readonly config: TaesdConfig;
  dispose(): void;
}

/** Opens a TAESD file (diffusers AutoencoderTiny names, or the original taesd_decoder / taesd_encoder files). */
export async function loadTaesd(path: string, opts: TaesdLoadOptions = {}): Promise<Taesd> {
  const file = await openWeights(path);
  try {
    const names = taesdNames(file.tensors.values());
    let config: TaesdConfig;
    try {
      config = detectTaesd([...names].map(([name, fileName]) => ({ name, shape: file.tensors.get(fileName)!.shape })));
    } catch (e) {
      if (e instanceof TaesdError) throw new TaesdError(`${path}: ${e.message}`);
      throw e;
    }
    const backend = await loadBackend(opts.backend ?? "cpu", { threads: opts.threads, precision: opts.precision });
    return new LoadedTaesd(path, file, names, config, backend, opts.onProfile);
  } catch (e) {
    file.close();
    throw e;
  }
}

class LoadedTaesd implements Taesd {
  readonly latentChannels: number;
  /** TAESD takes the diffusion latents as they are. */
  readonly scalingFactor = 1;
  #decoder?: { key: string; program: Program };
  #encoder?: { key: string; program: Program };

  constructor(
    readonly path: string,
    private readonly file: WeightFile,
    private readonly names: ReadonlyMap<string, string>,
    readonly config: TaesdConfig,
    private readonly backend: Backend,
    private readonly onProfile?: TaesdLoadOptions["onProfile"],
  ) {
    this.latentChannels = config.zChannels;
  }

  #program(which: "decoder" | "encoder", h: number, w: number): Program {
    const key = `${h}x${w}`;
    const slot = which === "decoder" ? this.#decoder : this.#encoder;
    if (slot?.key === key) return slot.program;
    slot?.program.dispose();
    const g = new Graph();
    const lookup = createWeightLookup(g, {
      get: (name) => {
        const fileName = this.names.get(name);
        if (fileName === undefined) throw new TaesdError(`${this.path}: no tensor ${name}`);
        return this.file.get(fileName);
      },
    });
    const build = which === "decoder" ? buildTaesdDecoder : buildTaesdEncoder;
    build(g, lookup, this.config, { batch: 1, height: h, width: w });
    const program = compile(g, this.backend, { hoistBudgetBytes: 0 });
    if (which === "decoder") this.#decoder = { key, program };
    else this.#encoder = { key, program };
    return program;
  }

  async #timed(which: string, program: Program, inputs: Record<string, Float32Array>) {
    const t0 = performance.now();
    const out = await program.run(inputs);
    this.onProfile?.(`taesd ${which}`, program.profile(), performance.now() - t0);
    return out;
  }

  async #decodeOne(z: HostTensor): Promise<HostTensor> {
    const [, , h, w] = z.shape;
    const { image } = await this.#timed("decoder", this.#program("decoder", h, w), { latent: z.data });
    return { shape: [1, 3, h * 8, w * 8], data: image };
  }

  async #encodeOne(x: HostTensor): Promise<HostTensor> {
    const [, , h, w] = x.shape;
    const { latent } = await this.#timed("encoder", this.#program("encoder", h, w), { image: x.data });
    return { shape: [1, this.config.zChannels, h / 8, w / 8], data: latent };
  }

  async decode(latent: Latent, onProgress?: (done: number, total: number) => void, opts: VaeDecodeOptions = {}) {
    if (!this.config.hasDecoder) {
      throw new TaesdError(`${this.path} has no TAESD decoder (decoder.layers.*): it can only encode`);
    }
    const [b, c, h, w] = latent.shape;
    if (c !== this.config.zChannels) {
      throw new TaesdError(`${this.path} decodes ${this.config.zChannels}-channel latents, got ${c} channels`);
    }
    const images: Image[] = [];
    const per = c * h * w;
    for (let i = 0; i < b; i++) {
      const z: HostTensor = { shape: [1, c, h, w], data: latent.data.slice(i * per, (i + 1) * per) };
      const out = opts.tiling
        ? await tiled(
          z,
          8 * w,
          8 * h,
          8,
          opts.tiling,
          1,
          (t) => this.#decodeOne(t),
          (d, n) => onProgress?.(i * n + d, b * n),
        )
        : await this.#decodeOne(z);
      if (!opts.tiling) onProgress?.(i + 1, b);
      images.push(tensorToImage(out));
    }
    return images;
  }

  async encode(images: readonly Image[], opts: VaeEncodeOptions = {}): Promise<Latent> {
    if (!this.config.hasEncoder) {
      throw new TaesdError(`${this.path} has no TAESD encoder (encoder.layers.*): it can only decode`);
    }
    if (images.length === 0) throw new TaesdError("no images to encode");
    const { width, height } = images[0];
    if (width % 8 || height % 8) throw new TaesdError(`image ${width}x${height}: sizes must be multiples of 8`);
    const z = this.config.zChannels;
    const per = z * (height / 8) * (width / 8);
    const out = new Float32Array(images.length * per);
    for (const [i, im] of images.entries()) {
      if (im.width !== width || im.height !== height) throw new TaesdError("images to encode differ in size");
      const x = imageToTensor(im);
      const lat = opts.tiling
        ? await tiled(x, width / 8, height / 8, 8, opts.tiling, VAE_ENCODE_TILE_FACTOR, (t) => this.#encodeOne(t))
        : await this.#encodeOne(x);
      out.set(lat.data, i * per);
    }
    return { shape: [images.length, z, height / 8, width / 8], data: out };
  }

  dispose(): void {
    this.#decoder?.program.dispose();
    this.#encoder?.program.dispose();
    this.#decoder = this.#encoder = undefined;
    this.file.close();
  }
}
