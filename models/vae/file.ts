/**
 * A VAE on its own (stable-diffusion.cpp's `--vae`): a weight file or folder opened so that model
 * code reads ldm names, and checked against the diffusion model it is to decode for.
 *
 * Accepted layouts:
 * - single files with ldm names, bare (`encoder.*`, `decoder.*`, `quant_conv.*`: vae-ft-mse-840000,
 *   sd.cpp's own VAE files) or under `first_stage_model.` (a whole checkpoint also works: its VAE is used);
 * - single files with diffusers names (`decoder.up_blocks.*`, `encoder.down_blocks.*`, mid_block
 *   attention as `to_q`/`query`...: sdxl_vae.safetensors, sdxl-vae-fp16-fix), optionally under `vae.`;
 * - a diffusers VAE folder (`config.json` + `diffusion_pytorch_model[.fp16].safetensors|.bin`) or a
 *   whole diffusers model folder (its `vae/` is used).
 *
 * A VAE whose latents do not fit the model (channels: SD3/Flux VAEs have 16; downsampling factor) is a
 * {@link VaeFileError}, one line naming both numbers.
 */

import { type ArchInfo, detectVaeConfig, type VaeConfig } from "../arch.ts";
import type { ModelFamily } from "../types.ts";
import { isDiffusersFolder, openLdmWeights, openWeights, TensorTable, toLdmNames } from "../weights/mod.ts";
import type { TensorInfo, WeightFile } from "../weights/mod.ts";

/** A separate VAE file that cannot be used (not a VAE, or another family's). */
export class VaeFileError extends Error {
  override name = "VaeFileError";
  constructor(readonly path: string, message: string) {
    super(message);
  }
}

/** The weight file of a diffusers VAE folder itself (not a whole model folder), if `dir` is one. */
async function vaeFolderFile(dir: string): Promise<string | undefined> {
  for (const variant of ["", ".fp16"]) {
    for (const ext of ["safetensors", "bin"]) {
      const p = `${dir}/diffusion_pytorch_model${variant}.${ext}`;
      try {
        if ((await Deno.stat(p)).isFile) return p;
      } catch {
        // try the next candidate
      }
    }
  }
  return undefined;
}

/** Diffusers VAE names (`decoder.up_blocks.0...`), bare or under `vae.`. */
const DIFFUSERS_VAE = /^(vae\.)?(encoder|decoder)\.(down_blocks|up_blocks|mid_block|conv_norm_out)\./;

/** Presents a file of diffusers VAE tensor names under ldm names (`first_stage_model.decoder.up.3...`). */
function diffusersVaeAsLdm(file: WeightFile): WeightFile {
  const tensors = new Map<string, TensorInfo>();
  for (const [name, t] of file.tensors) {
    const full = name.startsWith("vae.") ? name : `vae.${name}`;
    tensors.set(full, { ...t, name: full });
  }
  const prefixed = new TensorTable({ path: file.path, format: "diffusers", tensors, metadata: file.metadata });
  return toLdmNames(prefixed, "sd1");
}

/** Opens a separate VAE: a file or a folder, in any of the layouts above; tensors under ldm names. */
export async function openVaeWeights(path: string): Promise<WeightFile> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new VaeFileError(path, `VAE file not found: ${path}`);
    throw e;
  }
  if (st.isDirectory) {
    const inner = await vaeFolderFile(path);
    if (inner) return diffusersVaeAsLdm(await openWeights(inner));
    if (await isDiffusersFolder(path)) return await openLdmWeights(path);
    throw new VaeFileError(
      path,
      `${path} is a folder without VAE weights (expected diffusion_pytorch_model.safetensors or a diffusers model)`,
    );
  }
  const file = await openWeights(path);
  for (const name of file.tensors.keys()) if (DIFFUSERS_VAE.test(name)) return diffusersVaeAsLdm(file);
  return file;
}

/** Scaling factor of a family's latents (when the checkpoint itself carries no VAE to read it from). */
function familyScalingFactor(family: ModelFamily): number {
  return family === "sdxl" ? 0.13025 : 0.18215;
}

/**
 * The configuration of the VAE in `file`, checked to decode `arch`'s latents; its scaling factor is
 * the model's (the checkpoint's own VAE's, else the family's).
 */
export function separateVaeConfig(file: WeightFile, arch: ArchInfo): VaeConfig {
  const found = detectVaeConfig(file.tensors.values(), arch.family);
  if (!found) {
    const taesd = [...file.tensors.keys()].some((n) => /(^|\.)decoder\.layers\.\d+\./.test(n));
    throw new VaeFileError(
      file.path,
      taesd
        ? `${file.path} is a TAESD (tiny autoencoder) file, not a KL VAE; --vae needs an AutoencoderKL`
        : `${file.path} holds no VAE decoder (no decoder.conv_in.weight, first_stage_model.decoder.* or diffusers vae names)`,
    );
  }
  return checkVaeFits(file.path, found, arch);
}

/** `cfg` with the model's scaling factor, or a {@link VaeFileError} when its latents do not fit `arch`. */
export function checkVaeFits(path: string, cfg: VaeConfig, arch: ArchInfo): VaeConfig {
  const latent = arch.unet?.outChannels ?? arch.vae?.zChannels;
  const what = `the ${arch.family === "sd1" ? "SD 1.x" : arch.family === "sd2" ? "SD 2.x" : "SDXL"} model`;
  if (latent !== undefined && cfg.zChannels !== latent) {
    throw new VaeFileError(
      path,
      `${path}: a VAE of another model family: its latents have ${cfg.zChannels} channels, ${what} uses ${latent}`,
    );
  }
  const factor = arch.vae?.downFactor ?? 8;
  if (cfg.downFactor !== factor) {
    throw new VaeFileError(
      path,
      `${path}: a VAE of another model family: it scales images down ${cfg.downFactor}x, ${what} ${factor}x`,
    );
  }
  if (cfg.imageChannels !== 3) {
    throw new VaeFileError(path, `${path}: the VAE decodes to ${cfg.imageChannels} image channels, not 3 (RGB)`);
  }
  return { ...cfg, scalingFactor: arch.vae?.scalingFactor ?? familyScalingFactor(arch.family) };
}
