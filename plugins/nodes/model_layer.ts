/**
 * The entry points of the model layer (`models/mod.ts`) that the built-in
 * nodes call, loaded on first use. The catalog, the schema, validation and
 * `plan` work without the model layer; a node that needs it fails with
 * {@link ModelLayerMissingError} when it is absent, never with fake data.
 */

import type { Checkpoint, Conditioning, Denoiser, Latent } from "../../models/types.ts";
import type { OpEstimate } from "../node.ts";

/** `sample`'s options, as the models team provides them in `models/mod.ts`. */
export interface SampleOptions {
  denoiser: Denoiser;
  positive: Conditioning;
  negative: Conditioning;
  latent: Latent;
  seed: number;
  steps: number;
  cfgScale: number;
  method: string;
  scheduler: string;
  rng: "cuda" | "std_default";
  /** < 1 for img2img: the fraction of the schedule that is run on the noised input latent. */
  strength?: number;
  batch: number;
  onStep?: (i: number, n: number) => void;
}

/** The networks `estimateNetwork` prices, one evaluation each. */
export type NetworkKind = "text_encoder" | "unet" | "vae_decoder" | "vae_encoder";

/** What `estimateNetwork` is told about one evaluation. */
export interface NetworkEstimateOptions {
  /** The checkpoint's path (its header says the family and dtypes). */
  checkpoint: string;
  /** [N, C, h, w] of the latent going in (unet, vae_decoder). */
  latentShape?: readonly number[];
  /** [N, H, W, C] of the image going in (vae_encoder). */
  imageShape?: readonly number[];
  /** Token count (text_encoder); 77 for CLIP. */
  tokens?: number;
}

/** What the nodes need from `models/mod.ts`. */
export interface ModelLayer {
  loadCheckpoint(path: string, opts: { threads?: number; backend?: string }): Promise<Checkpoint>;
  sample(opts: SampleOptions): Promise<Latent>;
  /** The ops one evaluation of a network lowers to, for `deno task plan`. */
  estimateNetwork?(kind: NetworkKind, opts: NetworkEstimateOptions): Promise<readonly OpEstimate[]>;
}

/** The model layer is not in this checkout, or lacks an entry point a node needs. */
export class ModelLayerMissingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ModelLayerMissingError";
  }
}

// Not a string literal on purpose: the catalog must load (and type-check) while
// models/mod.ts is still being written. Once it exists, `satisfies`-style
// checking happens at runtime in `modelLayer()` below.
const MODELS_URL = new URL("../../models/mod.ts", import.meta.url).href;

let cached: Promise<Partial<ModelLayer>> | undefined;

async function importLayer(): Promise<Partial<ModelLayer>> {
  try {
    await Deno.stat(new URL(MODELS_URL));
  } catch {
    throw new ModelLayerMissingError(
      "the model layer (models/mod.ts) is not in this checkout, so no model can be loaded or run",
    );
  }
  return (await import(MODELS_URL)) as Partial<ModelLayer>;
}

/** Loads `models/mod.ts` (once) and returns its entry points, without requiring any. */
export function tryModelLayer(): Promise<Partial<ModelLayer>> {
  cached ??= importLayer();
  cached.catch(() => cached = undefined);
  return cached;
}

/** Loads `models/mod.ts` and checks that it exports `names`, with a clear error if not. */
export async function modelLayer<K extends keyof ModelLayer>(
  ...names: K[]
): Promise<Pick<Required<ModelLayer>, K>> {
  const layer = await tryModelLayer();
  for (const n of names) {
    if (typeof layer[n] !== "function") {
      throw new ModelLayerMissingError(`models/mod.ts does not export ${n}() yet, which this node needs`);
    }
  }
  return layer as Pick<Required<ModelLayer>, K>;
}

/** Ops of one network evaluation, or undefined (with the reason) when the model layer cannot say. */
export async function estimateNetwork(
  kind: NetworkKind,
  opts: NetworkEstimateOptions,
): Promise<{ ops?: readonly OpEstimate[]; note?: string }> {
  try {
    const layer = await tryModelLayer();
    if (typeof layer.estimateNetwork !== "function") {
      return { note: "models/mod.ts has no estimateNetwork() yet: cost unknown" };
    }
    return { ops: await layer.estimateNetwork(kind, opts) };
  } catch (e) {
    return { note: (e as Error).message };
  }
}
