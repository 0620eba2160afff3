/**
 * The model-patching API: how a node changes a loaded model without touching
 * the model code. A patch is data handed to a patchable component (the UNet
 * behind a MODEL socket, the text encoder behind CLIP, the VAE); the component
 * returns a patched copy and leaves the original as it was, so one checkpoint
 * can feed patched and unpatched branches of a graph.
 *
 * Three kinds of patch are designed:
 * - `weights` (implemented): deltas added to named weights, ΔW = scale·up·down
 *   (low rank: LoRA, LoCon) or scale·D (dense). Merged into the weight once
 *   (default), or applied at run time as y = W·x + scale·up(down(x)).
 * - `block_residuals` (designed, not applied yet): tensors added to the UNet's
 *   skip connections and middle block output at every evaluation (ControlNet).
 * - `decoder` (designed, not applied yet): another network decodes latents in
 *   place of the VAE decoder (TAESD).
 * A component refuses a patch kind it does not apply with a {@link PatchError}.
 *
 * Weights are named by their ldm single-file names
 * (`model.diffusion_model.input_blocks.1.1.proj_in.weight`), as the network
 * builders and {@link Patchable.patchableWeights} name them.
 *
 * @example
 * ```ts
 * // A rank-1 delta on one UNet weight, from data held in JavaScript:
 * const target = "model.diffusion_model.middle_block.1.proj_in.weight";
 * const [out, inF] = model.patchableWeights!().get(target)!;
 * const patch: WeightPatch = {
 *   kind: "weights",
 *   label: "my patch",
 *   deltas: [{
 *     kind: "low_rank", target, scale: 0.5,
 *     up: hostWeight([out, 1], new Float32Array(out).fill(0.01)),
 *     down: hostWeight([1, inF], new Float32Array(inF).fill(0.01)),
 *   }],
 * };
 * const patched = applyPatches(model, [patch], "MODEL");
 * ```
 */

import type { WeightInfo } from "./nn.ts";
import type { HostTensor, Image, Latent } from "./types.ts";

/** Rows [start, start + count) of a weight's first axis (a q, k or v third of a fused OpenCLIP in_proj_weight). */
export interface RowRange {
  readonly start: number;
  readonly count: number;
}

/** ΔW = scale · up @ down (the factors flattened to 2-D: up [out, rank], down [rank, in·kh·kw]). */
export interface LowRankDelta {
  readonly kind: "low_rank";
  /** ldm name of the weight it changes. */
  readonly target: string;
  /** [out, rank] or [out, rank, 1, 1]. */
  readonly up: WeightInfo;
  /** [rank, in] or [rank, in, kh, kw] (a k×k convolution's down factor is itself a k×k convolution). */
  readonly down: WeightInfo;
  readonly scale: number;
  /** The delta covers only these rows of the target (default: all). */
  readonly rows?: RowRange;
}

/** ΔW = scale · delta (delta has the target's shape, or `rows`' part of it). */
export interface DenseDelta {
  readonly kind: "dense";
  readonly target: string;
  readonly delta: WeightInfo;
  readonly scale: number;
  readonly rows?: RowRange;
}

export type WeightDelta = LowRankDelta | DenseDelta;

/**
 * How weight deltas are applied: `merge` computes W' = W + ΔW once per patched weight (rounded to
 * the weight's dtype, as stable-diffusion.cpp's `immediately` mode does) and runs the network as
 * usual; `runtime` keeps W and adds scale·up(down(x)) to the layer's output (sd.cpp's `at_runtime`):
 * no merged copies, a little more work per evaluation.
 */
export type ApplyMode = "merge" | "runtime";

/** Deltas added to a network's weights (LoRA, LoCon, or anything a plugin computes). */
export interface WeightPatch {
  readonly kind: "weights";
  /** Names the patch in messages ("lora random-lora-f16"). */
  readonly label: string;
  readonly deltas: readonly WeightDelta[];
  /** Default `merge`. */
  readonly mode?: ApplyMode;
}

/** What the UNet computed its residuals from: the inputs of one evaluation. */
export interface UnetCall {
  /** [N, 4, h, w] latent input. */
  readonly x: HostTensor;
  readonly timesteps: Float32Array;
  /** [N, tokens, dim] cross-attention context. */
  readonly context: HostTensor;
}

/**
 * DESIGNED, NOT APPLIED YET (ControlNet): per-block residuals. `residuals` is called once per UNet
 * evaluation and returns, in stable-diffusion.cpp's order, one tensor per input block (12 for
 * SD 1.x/2.x) then the middle block's, each [N, C, H, W] of that block's output; the UNet adds
 * them to the skip connections it hands the output blocks and to the middle block's output.
 */
export interface BlockResidualPatch {
  readonly kind: "block_residuals";
  readonly label: string;
  residuals(call: UnetCall): Promise<readonly HostTensor[]>;
}

/**
 * DESIGNED, NOT APPLIED YET (TAESD): another network decodes (and optionally encodes) latents in
 * place of the VAE's. The latents are the diffusion model's, scaled as the sampler produced them.
 */
export interface DecoderPatch {
  readonly kind: "decoder";
  readonly label: string;
  decode(latent: Latent): Promise<Image[]>;
  encode?(images: readonly Image[]): Promise<Latent>;
}

export type ModelPatch = WeightPatch | BlockResidualPatch | DecoderPatch;

/** A model component that patches can change (the checkpoint's UNet, text encoder, VAE). */
export interface Patchable<T> {
  /** Every weight patches may target: ldm name → shape. */
  patchableWeights(): ReadonlyMap<string, readonly number[]>;
  /** The patches applied to this component so far, in order. */
  readonly patches: readonly ModelPatch[];
  /**
   * This component with `patches` added after its own. The original is unchanged. Throws
   * {@link PatchError} for a patch it cannot apply (a kind it does not support, a delta whose
   * target is missing or whose shape does not fit).
   */
  withPatches(patches: readonly ModelPatch[]): T;
  /**
   * Present on patched copies: frees what the copy holds (its compiled programs and merged
   * weights); the copy must not be used afterwards. The component it was made from is untouched.
   */
  release?(): void;
}

/** A patch that cannot be applied. */
export class PatchError extends Error {
  override name = "PatchError";
}

/**
 * `component` with `patches` applied; `what` names it in the error when it cannot be patched
 * (a MODEL from a plugin that does not implement {@link Patchable}).
 */
export function applyPatches<T>(component: T & Partial<Patchable<T>>, patches: readonly ModelPatch[], what: string): T {
  if (patches.length === 0) return component;
  if (typeof component.withPatches !== "function") {
    throw new PatchError(`this ${what} cannot be patched (its loader does not implement withPatches)`);
  }
  return component.withPatches(patches);
}

/** A weight held in JavaScript as float32, for deltas a plugin computes itself. */
export function hostWeight(shape: readonly number[], data: Float32Array, name = "host"): WeightInfo {
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) throw new PatchError(`${name}: [${shape.join(", ")}] needs ${n} values, got ${data.length}`);
  return { name, dtype: "f32", shape, source: { kind: "data", data } };
}

const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/**
 * Why `delta` cannot change a weight of shape `targetShape`, or undefined when it fits. Factors are
 * compared flattened: a linear weight [out, in] takes [out, r] @ [r, in] (or their 1×1-conv forms),
 * a k×k convolution [out, in, k, k] takes [out, r, 1, 1] @ [r, in, k, k].
 */
export function deltaMismatch(delta: WeightDelta, targetShape: readonly number[]): string | undefined {
  const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;
  const rows = delta.rows ?? { start: 0, count: targetShape[0] };
  if (rows.start < 0 || rows.count < 1 || rows.start + rows.count > targetShape[0]) {
    return `rows [${rows.start}, ${rows.start + rows.count}) outside ${fmt(targetShape)}`;
  }
  const inner = numel(targetShape.slice(1));
  if (!Number.isFinite(delta.scale)) return `scale ${delta.scale} is not finite`;
  if (delta.kind === "dense") {
    return numel(delta.delta.shape) === rows.count * inner
      ? undefined
      : `delta ${fmt(delta.delta.shape)} does not fit ${fmt(targetShape)}`;
  }
  const { up, down } = delta;
  const rank = down.shape[0];
  const upOk = up.shape.length >= 2 && up.shape[0] === rows.count && up.shape[1] === rank &&
    numel(up.shape.slice(2)) === 1;
  const kernelOk = down.shape.length === 2 || numel(down.shape.slice(2)) === 1 ||
    (down.shape.length === 4 && targetShape.length === 4 && down.shape[2] === targetShape[2] &&
      down.shape[3] === targetShape[3]);
  const downOk = down.shape.length >= 2 && numel(down.shape.slice(1)) === inner && kernelOk;
  if (upOk && downOk && rank > 0) return undefined;
  return `up ${fmt(up.shape)} @ down ${fmt(down.shape)} does not fit ${fmt(targetShape)}`;
}
