/**
 * An ESRGAN upscaler loaded on a backend: 8-bit images in, 8-bit images `scale` times larger out,
 * in tiles as stable-diffusion.cpp's `UpscalerGGML::upscale_tensor` runs them (tile size 128 input
 * pixels by default, requested overlap 0.25 recomputed by {@link calcTiles}, smootherstep blending);
 * an image no larger than one tile goes through in one pass.
 */

import { type Backend, loadBackend, type Precision } from "../../backends/mod.ts";
import { compile, Graph, type OpProfile, type Program } from "../../engine/mod.ts";
import { createWeightLookup } from "../nn.ts";
import { processTiles } from "../tiling.ts";
import { imageToTensor, tensorToImage } from "../image_tensor.ts";
import type { HostTensor, Image } from "../types.ts";
import { openWeights, type TensorInfo, type WeightFile } from "../weights/mod.ts";
import { buildEsrgan, detectEsrgan, type EsrganConfig, EsrganError, esrganName } from "./esrgan.ts";

/** stable-diffusion.cpp's `--upscale-tile-size` default. */
export const DEFAULT_UPSCALE_TILE = 128;
/** stable-diffusion.cpp's hard-coded target overlap for upscaler tiles. */
export const UPSCALE_TILE_OVERLAP = 0.25;

export interface UpscaleOptions {
  /** Tile size in input pixels (default 128); 0 runs the whole image in one pass. */
  tileSize?: number;
  /** Called after each tile: done of total, over the whole batch. */
  onProgress?: (done: number, total: number) => void;
}

/** A loaded upscaling model. */
export interface Upscaler {
  readonly path: string;
  readonly config: EsrganConfig;
  /** Output size / input size. */
  readonly scale: number;
  upscale(images: readonly Image[], opts?: UpscaleOptions): Promise<Image[]>;
  dispose(): void;
}

export interface UpscalerLoadOptions {
  threads?: number;
  /** Precision of the backend's GEMM ops (`--precision`): "f32" (default) or "bf16" (see BackendConfig.precision). */
  precision?: Precision;
  /** Backend name or library path (default "cpu"). */
  backend?: string;
  /** Called after every network run with its per-op times (`--profile`), as LoadOptions.onProfile. */
  onProfile?: (network: string, ops: readonly OpProfile[], runMs: number) => void;
}

/** Opens an ESRGAN file (.safetensors, .pth, .gguf), checks it is an RRDBNet and prepares it. */
export async function loadUpscaler(path: string, opts: UpscalerLoadOptions = {}): Promise<Upscaler> {
  const file = await openWeights(path);
  try {
    const renamed = new Map<string, TensorInfo>();
    for (const t of file.tensors.values()) renamed.set(esrganName(t.name), t);
    let config: EsrganConfig;
    try {
      config = detectEsrgan([...renamed].map(([name, t]) => ({ name, shape: t.shape })));
    } catch (e) {
      if (e instanceof EsrganError) throw new EsrganError(`${path}: ${e.message}`);
      throw e;
    }
    const backend = await loadBackend(opts.backend ?? "cpu", { threads: opts.threads, precision: opts.precision });
    return new LoadedUpscaler(path, file, renamed, config, backend, opts.onProfile);
  } catch (e) {
    file.close();
    throw e;
  }
}

class LoadedUpscaler implements Upscaler {
  readonly scale: number;
  #program?: { key: string; program: Program };

  constructor(
    readonly path: string,
    private readonly file: WeightFile,
    private readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly config: EsrganConfig,
    private readonly backend: Backend,
    private readonly onProfile?: UpscalerLoadOptions["onProfile"],
  ) {
    this.scale = config.scale;
  }

  /** The compiled network for one input size (one kept: every tile has the same size). */
  #programFor(h: number, w: number): Program {
    const key = `${h}x${w}`;
    if (this.#program?.key === key) return this.#program.program;
    this.#program?.program.dispose();
    this.#program = undefined;
    const g = new Graph();
    const original = new Map([...this.tensors].map(([name, t]) => [name, t.name]));
    const lookup = createWeightLookup(g, {
      get: (name) => {
        const fileName = original.get(name);
        if (fileName === undefined) throw new EsrganError(`${this.path}: no tensor ${name}`);
        return this.file.get(fileName);
      },
    });
    buildEsrgan(g, lookup, this.config, { height: h, width: w });
    const program = compile(g, this.backend, { hoistBudgetBytes: 0 });
    this.#program = { key, program };
    return program;
  }

  async #run(x: HostTensor): Promise<HostTensor> {
    const [, , h, w] = x.shape;
    const program = this.#programFor(h, w);
    const t0 = performance.now();
    const { image } = await program.run({ image: x.data });
    this.onProfile?.("esrgan", program.profile(), performance.now() - t0);
    return { shape: [1, this.config.outChannels, h * this.scale, w * this.scale], data: image };
  }

  async upscale(images: readonly Image[], opts: UpscaleOptions = {}): Promise<Image[]> {
    const tile = opts.tileSize ?? DEFAULT_UPSCALE_TILE;
    if (!Number.isInteger(tile) || tile < 0) throw new RangeError(`upscale tile size must be >= 0, got ${tile}`);
    const r = this.config.unshuffle;
    const out: Image[] = [];
    let done = 0;
    for (const [i, im] of images.entries()) {
      const x = imageToTensor(im);
      const whole = tile === 0 || (im.width <= tile && im.height <= tile);
      if (whole && (im.width % r || im.height % r)) {
        throw new EsrganError(
          `${this.path} needs image sizes that are multiples of ${r}, got ${im.width}x${im.height}`,
        );
      }
      if (tile > 0 && tile % r) throw new EsrganError(`the upscale tile size must be a multiple of ${r}`);
      let y: HostTensor;
      if (whole) {
        y = await this.#run(x);
        opts.onProgress?.(++done, images.length);
      } else {
        y = await processTiles(x, (t) => this.#run(t), {
          outWidth: im.width * this.scale,
          outHeight: im.height * this.scale,
          scale: this.scale,
          tileX: tile,
          tileY: tile,
          overlap: UPSCALE_TILE_OVERLAP,
          onTile: (d, n) => opts.onProgress?.(i * n + d, images.length * n),
        });
      }
      out.push(tensorToImage(y));
    }
    return out;
  }

  dispose(): void {
    this.#program?.program.dispose();
    this.#program = undefined;
    this.file.close();
  }
}
