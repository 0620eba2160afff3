/** Opens any supported weight file or diffusers folder, telling formats apart by their bytes. */
import { openCkpt, readCkpt } from "./ckpt.ts";
import { isDiffusersFolder, openDiffusers } from "./diffusers.ts";
import { UnsupportedFormatError } from "./errors.ts";
import { readGguf } from "./gguf.ts";
import { fileKind, withReader } from "./io.ts";
import { toLdmNames } from "./names.ts";
import { readSafetensors } from "./safetensors.ts";
import type { WeightFile, WeightFormat } from "./types.ts";

/**
 * Which format the first bytes of a file say it is: zip ("PK") or a legacy pickle (0x80) = ckpt,
 * "GGUF" = gguf, an 8-byte length followed by "{" = safetensors.
 */
export function sniffFormat(head: Uint8Array): WeightFormat | undefined {
  // First: a safetensors header length whose low bytes are 0x80 0x02..0x05 (640, 896, 1152 or 1408
  // bytes, mod 65536) also looks like a pickle's protocol opcode; its "{" at byte 8 and a length
  // under 4 GiB tell them apart.
  if (head.length >= 9 && head[8] === 0x7b && head[4] === 0 && head[5] === 0 && head[6] === 0 && head[7] === 0) {
    return "safetensors";
  }
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) return "ckpt";
  if (head.length >= 2 && head[0] === 0x80 && head[1] >= 2 && head[1] <= 5) return "ckpt";
  if (head.length >= 4 && head[0] === 0x47 && head[1] === 0x47 && head[2] === 0x55 && head[3] === 0x46) return "gguf";
  if (head.length >= 9 && head[8] === 0x7b) return "safetensors";
  return undefined;
}

/**
 * Opens a model: a `.safetensors`, `.ckpt`/`.pt`/`.pth`/`.bin` (PyTorch zip), `.gguf` file, or a
 * diffusers folder (names prefixed `unet.`, `vae.`, `text_encoder.`, ...). Only headers are read.
 *
 * @example
 * ```ts
 * const f = await openWeights("sd15.safetensors");
 * const w = f.get("model.diffusion_model.input_blocks.0.0.weight");
 * graph.constant(w.name, w.shape, w.dtype, w.source);
 * ```
 */
export async function openWeights(path: string): Promise<WeightFile> {
  const st = await Deno.stat(path);
  if (st.isDirectory) {
    if (!(await isDiffusersFolder(path))) {
      throw new UnsupportedFormatError(
        path,
        `${path} is a folder but not a diffusers model (no model_index.json, unet/, vae/ or text_encoder/ weights)`,
      );
    }
    return openDiffusers(path, openWeights);
  }
  if (!st.isFile) {
    throw new UnsupportedFormatError(
      path,
      `${path} is ${fileKind(st)}, not a model file; give a .safetensors, .ckpt or .gguf file or a diffusers folder`,
    );
  }
  return withReader(path, async (r) => {
    const head = await r.read(0, Math.min(16, r.size), "the file magic");
    switch (sniffFormat(head)) {
      case "safetensors":
        return readSafetensors(r);
      case "gguf":
        return readGguf(r);
      case "ckpt":
        return readCkpt(r);
      default:
        throw new UnsupportedFormatError(
          path,
          `${path} is not a safetensors, PyTorch checkpoint or GGUF file (unrecognised first bytes); ` +
            `check that it is a model file and fully downloaded`,
        );
    }
  });
}

/** {@link openWeights}, with a diffusers folder renamed to ldm names (what model code reads). */
export async function openLdmWeights(path: string): Promise<WeightFile> {
  return toLdmNames(await openWeights(path));
}

export { openCkpt };
