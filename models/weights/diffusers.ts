/**
 * A diffusers model folder (`model_index.json`, `unet/`, `vae/`, `text_encoder/`,
 * `text_encoder_2/`) presented as one WeightFile whose tensor names carry the
 * folder as a prefix (`unet.conv_in.weight`). `toLdmNames` renames them for model code.
 */
import { CorruptHeaderError, UnsupportedFormatError, type WeightFileError } from "./errors.ts";
import { TensorTable } from "./table.ts";
import type { MetadataValue, TensorInfo, WeightFile } from "./types.ts";

/** Sub-folders read, in this order. */
export const DIFFUSERS_COMPONENTS = ["unet", "vae", "text_encoder", "text_encoder_2"] as const;

/** Candidate weight files of a component, most preferred first. */
function candidates(component: string): string[] {
  const stem = component.startsWith("text_encoder") ? ["model", "pytorch_model"] : ["diffusion_pytorch_model"];
  const out: string[] = [];
  for (const variant of ["", ".fp16"]) {
    out.push(`${stem[0]}${variant}.safetensors`, `${stem[0]}${variant}.safetensors.index.json`);
    for (const s of stem) out.push(`${s}${variant}.bin`, `${s}${variant}.bin.index.json`);
  }
  return out;
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isFile;
  } catch {
    return false;
  }
}

/** Whether `dir` looks like a diffusers folder. */
export async function isDiffusersFolder(dir: string): Promise<boolean> {
  if (await isFile(`${dir}/model_index.json`)) return true;
  for (const c of DIFFUSERS_COMPONENTS) {
    for (const f of candidates(c)) if (await isFile(`${dir}/${c}/${f}`)) return true;
  }
  return false;
}

/**
 * Opens the components of a diffusers folder with `openFile` (the format-sniffing single-file
 * opener) and merges them under `<component>.` prefixes.
 */
export async function openDiffusers(dir: string, openFile: (path: string) => Promise<WeightFile>): Promise<WeightFile> {
  const tensors = new Map<string, TensorInfo>();
  const metadata: Record<string, MetadataValue> = {};
  const subfiles: WeightFile[] = [];
  const problems = new Map<string, () => WeightFileError>();
  const add = (component: string, f: WeightFile) => {
    subfiles.push(f);
    for (const [k, v] of Object.entries(f.metadata)) metadata[`${component}/${k}`] = v;
    for (const [name, t] of f.tensors) {
      const full = `${component}.${name}`;
      tensors.set(full, { ...t, name: full });
      // Keep the sub-file's refusals (non-contiguous, unsupported dtype): they name the exact file.
      try {
        f.get(name);
      } catch (e) {
        const err = e as WeightFileError;
        problems.set(full, () => err);
      }
    }
  };
  if (await isFile(`${dir}/model_index.json`)) {
    metadata["model_index.json"] = await Deno.readTextFile(`${dir}/model_index.json`);
  }
  for (const c of DIFFUSERS_COMPONENTS) {
    const file = await firstExisting(dir, c);
    if (!file) continue;
    if (file.endsWith(".index.json")) {
      for (const shard of await shardsOf(`${dir}/${c}/${file}`)) add(c, await openFile(`${dir}/${c}/${shard}`));
    } else {
      add(c, await openFile(`${dir}/${c}/${file}`));
    }
  }
  if (subfiles.length === 0) {
    throw new UnsupportedFormatError(
      dir,
      `${dir} is a folder without diffusers weights (unet/, vae/, text_encoder/ ...); pass a model file or a diffusers folder`,
    );
  }
  for (const f of subfiles) f.close();
  return new TensorTable({ path: dir, format: "diffusers", tensors, metadata, problems });
}

async function firstExisting(dir: string, component: string): Promise<string | undefined> {
  for (const f of candidates(component)) if (await isFile(`${dir}/${component}/${f}`)) return f;
  return undefined;
}

/** The shard files of a sharded checkpoint's index (`weight_map` values), checked to stay in the folder. */
async function shardsOf(indexPath: string): Promise<string[]> {
  let idx: unknown;
  try {
    idx = JSON.parse(await Deno.readTextFile(indexPath));
  } catch (e) {
    throw new CorruptHeaderError(indexPath, `${indexPath} is not valid JSON (${(e as Error).message})`);
  }
  const map = (idx as { weight_map?: unknown })?.weight_map;
  if (typeof map !== "object" || map === null) {
    throw new CorruptHeaderError(indexPath, `${indexPath} has no weight_map; the index is corrupt`);
  }
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  for (const s of shards) {
    if (typeof s !== "string" || s.includes("/") || s.includes("\\") || s.startsWith(".")) {
      throw new CorruptHeaderError(indexPath, `${indexPath} names an invalid shard ${JSON.stringify(s)}`);
    }
  }
  return shards as string[];
}
