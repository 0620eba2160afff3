/**
 * LoRA files (kohya, LyCORIS LoCon, diffusers, PEFT) as weight patches
 * (models/patch.ts), with stable-diffusion.cpp's semantics:
 * - scale = the layer's `.scale` tensor if present, else alpha / rank if `.alpha` is, else 1;
 *   rank = the first dimension of the down factor; then × the strength (the prompt's multiplier);
 * - ΔW = scale · up @ down, the factors flattened to 2-D (a LoCon k×k convolution's down factor
 *   is [rank, in, k, k], its up factor [out, rank, 1, 1]); `.diff` tensors are dense deltas.
 * Tensors that match no weight of the model, or whose shapes do not fit, are reported (as
 * stable-diffusion.cpp's "unused lora tensor" / "skip incompatible LoRA tensor"), and a file none
 * of whose layers fit the model is an error.
 *
 * The factors stay in the LoRA file: the patch refers to their byte ranges (memory-mapped by the
 * backend when applied at run time, read one weight at a time when merged).
 */

import { isLoadable, openWeights, readTensorF32, type TensorInfo, type WeightFile } from "../weights/mod.ts";
import type { ModelFamily } from "../weights/names.ts";
import { type ApplyMode, deltaMismatch, type WeightDelta, type WeightPatch } from "../patch.ts";
import { buildTargetIndex, type LoraComponent, type LoraPart, type LoraTarget, parseLoraName } from "./names.ts";

/** A LoRA file that cannot be used with this model, or cannot be read. One line, naming the file. */
export class LoraError extends Error {
  override name = "LoraError";
}

/** What {@link loadLora} needs to know about the model it patches. */
export interface LoraModelInfo {
  readonly family: ModelFamily;
  /** UNet weights (ldm name → shape): a MODEL's `patchableWeights()`. */
  readonly unet: ReadonlyMap<string, readonly number[]>;
  /** Text encoder weights (ldm name → shape): a CLIP's `patchableWeights()`. */
  readonly text: ReadonlyMap<string, readonly number[]>;
}

export interface LoraOptions {
  /** Multiplier of the UNet deltas (ComfyUI's strength_model; sd.cpp's `<lora:name:m>`), default 1. */
  readonly strengthModel?: number;
  /** Multiplier of the text encoder deltas (strength_clip), default 1. */
  readonly strengthClip?: number;
  /** Default `merge`. */
  readonly mode?: ApplyMode;
  /** Names the patches in messages (default: the file name without its extension). */
  readonly label?: string;
}

/** A LoRA file turned into patches, with what of it was not used. */
export interface LoadedLora {
  /** Deltas for the UNet (MODEL). */
  readonly model: WeightPatch;
  /** Deltas for the text encoder(s) (CLIP). */
  readonly clip: WeightPatch;
  /** Layers applied. */
  readonly applied: number;
  /** Tensors that name no weight of this model. */
  readonly unused: readonly string[];
  /** Tensors of layers whose shapes do not fit their weight, with why. */
  readonly incompatible: readonly string[];
  /** Tensors of kinds not supported (LoHa, LoKr, Tucker `lora_mid`, bias diffs), ignored. */
  readonly unsupported: readonly string[];
  /** One-line warnings summarising the three lists (empty when every tensor was used). */
  readonly warnings: readonly string[];
}

/** Layer tensors grouped by layer key. */
interface LayerTensors {
  readonly names: string[];
  readonly parts: Partial<Record<LoraPart, TensorInfo>>;
}

const baseName = (path: string): string =>
  path.split(/[\\/]/).pop()!.replace(/\.(safetensors|ckpt|pt|pth|bin|gguf)$/i, "");

/** Up to `n` names, then how many more. */
function someNames(names: readonly string[], n = 3): string {
  const shown = names.slice(0, n).join(", ");
  return names.length > n ? `${shown} and ${names.length - n} more` : shown;
}

function scalarOf(info: TensorInfo, file: string): number {
  const v = readTensorF32(info);
  if (v.length !== 1 || !Number.isFinite(v[0])) {
    throw new LoraError(`LoRA ${file}: ${info.name} should be one finite number, has ${v.length} values`);
  }
  return v[0];
}

/**
 * Reads a LoRA file and matches it against a model. Throws {@link LoraError} when the file cannot
 * be read (missing, corrupt) or when none of its layers fits the model (a LoRA for another family).
 */
export async function loadLora(path: string, model: LoraModelInfo, opts: LoraOptions = {}): Promise<LoadedLora> {
  let file: WeightFile;
  try {
    file = await openWeights(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new LoraError(`LoRA file not found: ${path}`);
    const why = e instanceof Error ? e.message : String(e);
    throw new LoraError(`LoRA ${path} cannot be read: ${why}`);
  }
  try {
    return matchLora(file, model, opts);
  } finally {
    // The patches keep byte ranges of the file, not the table.
    file.close();
  }
}

/** {@link loadLora} on an opened file. */
export function matchLora(file: WeightFile, model: LoraModelInfo, opts: LoraOptions = {}): LoadedLora {
  const label = `lora ${opts.label ?? baseName(file.path)}`;
  const index = buildTargetIndex(model.family, model.unet, model.text);
  const layers = new Map<string, LayerTensors>();
  const unused: string[] = [];
  const unsupported: string[] = [];
  for (const [name, info] of file.tensors) {
    const parsed = parseLoraName(name);
    if (!parsed) {
      (/\.(hada_|lokr_|diff_b|dora_scale)/.test(name) ? unsupported : unused).push(name);
      continue;
    }
    const layer = layers.get(parsed.key) ?? { names: [], parts: {} };
    layer.names.push(name);
    layer.parts[parsed.part] = info;
    layers.set(parsed.key, layer);
  }
  if (file.tensors.size === 0) throw new LoraError(`LoRA ${file.path} holds no tensors`);

  const strength: Record<LoraComponent, number> = {
    unet: opts.strengthModel ?? 1,
    te1: opts.strengthClip ?? 1,
    te2: opts.strengthClip ?? 1,
  };
  const modelDeltas: WeightDelta[] = [];
  const clipDeltas: WeightDelta[] = [];
  const incompatible: string[] = [];
  let applied = 0;
  for (const [key, layer] of layers) {
    const target: LoraTarget | undefined = index.get(key);
    const { down, up, mid, diff, alpha, scale } = layer.parts;
    if (!target) {
      unused.push(...layer.names);
      continue;
    }
    if (mid) {
      unsupported.push(...layer.names);
      continue;
    }
    const shape = (target.component === "unet" ? model.unet : model.text).get(target.name)!;
    let s: number;
    let delta: WeightDelta;
    const rows = target.rows ? { rows: target.rows } : {};
    if (down && up) {
      const rank = down.shape[0];
      s = scale ? scalarOf(scale, file.path) : alpha ? scalarOf(alpha, file.path) / rank : 1;
      delta = { kind: "low_rank", target: target.name, up, down, scale: s * strength[target.component], ...rows };
    } else if (diff && !down && !up) {
      delta = { kind: "dense", target: target.name, delta: diff, scale: strength[target.component], ...rows };
    } else {
      unused.push(...layer.names);
      continue;
    }
    const factors = delta.kind === "dense" ? [delta.delta] : [delta.up, delta.down];
    const badType = factors.find((f) => !isLoadable(f.dtype as TensorInfo["dtype"]));
    const why = badType ? `dtype ${badType.dtype} (f32, f16 or bf16 needed)` : deltaMismatch(delta, shape);
    if (why) {
      incompatible.push(`${layer.names[0]} (${why})`);
      continue;
    }
    applied++;
    (target.component === "unet" ? modelDeltas : clipDeltas).push(delta);
  }
  if (applied === 0) {
    const family = { sd1: "SD 1.x", sd2: "SD 2.x", sdxl: "SDXL" }[model.family];
    const detail = incompatible.length
      ? `${incompatible.length} layers do not fit its weights, e.g. ${incompatible[0]}`
      : `none of its ${file.tensors.size} tensors names a weight of the model, e.g. ${
        someNames([...file.tensors.keys()], 1)
      }`;
    throw new LoraError(
      `LoRA ${file.path} does not fit this ${family} model (a LoRA for another model family?): ${detail}`,
    );
  }
  const warnings: string[] = [];
  if (unused.length) {
    warnings.push(`${label}: ${unused.length} unused lora tensors (no such weight in the model): ${someNames(unused)}`);
  }
  if (incompatible.length) {
    warnings.push(`${label}: skipped ${incompatible.length} incompatible LoRA layers: ${someNames(incompatible, 2)}`);
  }
  if (unsupported.length) {
    warnings.push(
      `${label}: ${unsupported.length} tensors of unsupported kinds ignored (LoHa, LoKr, Tucker lora_mid): ${
        someNames(unsupported)
      }`,
    );
  }
  const mode = opts.mode ?? "merge";
  return {
    model: { kind: "weights", label, deltas: modelDeltas, mode },
    clip: { kind: "weights", label, deltas: clipDeltas, mode },
    applied,
    unused,
    incompatible,
    unsupported,
    warnings,
  };
}
