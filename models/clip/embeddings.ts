/**
 * Textual-inversion embeddings: a few learned token vectors, saved in a small file whose name (the file
 * stem) is the word that stands for them in prompts.
 *
 * Formats read (the ones stable-diffusion.cpp's `--embd-dir` and sd-webui load):
 * - sd-webui `.pt` / `.ckpt` / `.bin` (a PyTorch zip read by the restricted unpickler): the vectors are
 *   `string_to_param["*"]` ([vectors, width]); the original textual_inversion repository's files have the
 *   same key;
 * - `.safetensors` from sd-webui and most trainers: tensor `emb_params` [vectors, width];
 * - SDXL `.safetensors`: `clip_l` [vectors, 768] and `clip_g` [vectors, 1280], one per text encoder:
 *   the one whose width matches the text encoder's is used;
 * - diffusers `learned_embeds.bin` (a file with a single tensor, [width] or [vectors, width]).
 *
 * As in stable-diffusion.cpp, the vectors replace the embedding's name wherever it appears in a prompt
 * (one token position per vector); the text encoder then runs as usual with those vectors in place of
 * vocabulary rows (models/clip/text_encoder.ts, `customEmbeddings`).
 *
 * @example
 * ```ts
 * const e = await loadEmbedding("embeddings/easynegative.safetensors", { width: 768 });
 * tokenizer.registerToken(e.name, e.count); // ids vocabSize + k … for e.vectors' rows
 * ```
 */

import { openWeights, readTensorF32, type TensorInfo, type WeightFile, WeightFileError } from "../weights/mod.ts";

/** One loaded textual-inversion embedding. */
export interface Embedding {
  /** The word that stands for it in prompts: the file name without its extension. */
  readonly name: string;
  /** The file it came from. */
  readonly path: string;
  /** The tensor of the file the vectors came from (e.g. `emb_params`, `string_to_param.*`). */
  readonly tensor: string;
  /** `count` vectors of `width` values, row-major. */
  readonly vectors: Float32Array;
  readonly count: number;
  readonly width: number;
}

/** An embedding file that cannot be used (unreadable, not an embedding, or for another text encoder). */
export class EmbeddingError extends Error {
  override name = "EmbeddingError";
  constructor(readonly path: string, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * File extensions of embeddings, in the order a name is looked up when several files share it
 * (stable-diffusion.cpp tries `.pt`, `.ckpt`, then `.safetensors`; `.bin` is diffusers').
 */
export const EMBEDDING_EXTENSIONS = [".pt", ".ckpt", ".safetensors", ".bin"] as const;

export interface LoadEmbeddingOptions {
  /** The text encoder's width (768 for SD 1.x): vectors of another width are refused. */
  width?: number;
}

/** Tensors holding the vectors, in the order they are looked for. */
const VECTOR_KEYS = ["emb_params", "string_to_param.*"];
/** SDXL embeddings: one tensor per text encoder. */
const SDXL_KEYS = ["clip_l", "clip_g"];

function baseName(path: string): string {
  return path.split(/[\\/]/).pop() ?? path;
}

function extensionOf(path: string): string {
  const base = baseName(path);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(dot).toLowerCase() : "";
}

/** The name an embedding file gives its embedding in prompts: the file name without its extension. */
export function embeddingName(path: string): string {
  const base = baseName(path);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

const shapeText = (s: readonly number[]) => `[${s.join(", ")}]`;

/** Picks the tensor of `file` that holds the vectors. */
function pickTensor(file: WeightFile, path: string, width: number | undefined): TensorInfo {
  for (const key of VECTOR_KEYS) {
    const t = file.tensors.get(key);
    if (t) return t;
  }
  const sdxl = SDXL_KEYS.map((k) => file.tensors.get(k)).filter((t): t is TensorInfo => t !== undefined);
  if (sdxl.length > 0) {
    if (width === undefined) return sdxl[0];
    const match = sdxl.find((t) => t.shape[t.shape.length - 1] === width);
    if (match) return match;
    const have = sdxl.map((t) => `${t.name} ${shapeText(t.shape)}`).join(", ");
    throw new EmbeddingError(
      path,
      `${path}: embedding vectors have the wrong width for this model: the file has ${have}, the text ` +
        `encoder's width is ${width} (the embedding was trained for another model family)`,
    );
  }
  if (file.tensors.size === 1) return [...file.tensors.values()][0];
  const names = [...file.tensors.keys()];
  const listed = names.slice(0, 5).join(", ") + (names.length > 5 ? `, … (${names.length} tensors)` : "");
  throw new EmbeddingError(
    path,
    `${path} is not a textual-inversion embedding: it has no emb_params, string_to_param.*, clip_l or clip_g ` +
      `tensor (found ${names.length === 0 ? "no tensors" : listed})`,
  );
}

/**
 * Reads a textual-inversion embedding file (`.safetensors`, `.pt`, `.ckpt`, `.bin`). With `width`, the
 * vectors must have that width (the text encoder's), else an {@link EmbeddingError} names the file and
 * both widths. Every failure is an {@link EmbeddingError} with a one-line message naming the file.
 */
export async function loadEmbedding(path: string, opts: LoadEmbeddingOptions = {}): Promise<Embedding> {
  const ext = extensionOf(path);
  if (!(EMBEDDING_EXTENSIONS as readonly string[]).includes(ext)) {
    throw new EmbeddingError(
      path,
      `${path}: unsupported embedding format${ext ? ` "${ext}"` : " (no file extension)"}; sdflow reads ` +
        `textual-inversion embeddings from ${EMBEDDING_EXTENSIONS.join(", ")} files`,
    );
  }
  const name = embeddingName(path);
  if (name.trim().length === 0) throw new EmbeddingError(path, `${path}: an embedding's file name must not be empty`);
  let file: WeightFile;
  try {
    if ((await Deno.stat(path)).isDirectory) {
      throw new EmbeddingError(path, `${path} is a folder, not an embedding file`);
    }
    file = await openWeights(path);
  } catch (e) {
    throw asEmbeddingError(path, e);
  }
  try {
    const t = pickTensor(file, path, opts.width);
    const w = t.shape[t.shape.length - 1] ?? 0;
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (t.shape.length === 0 || w === 0 || numel === 0) {
      throw new EmbeddingError(path, `${path}: embedding tensor ${t.name} ${shapeText(t.shape)} holds no vectors`);
    }
    if (opts.width !== undefined && w !== opts.width) {
      throw new EmbeddingError(
        path,
        `${path}: embedding vectors have width ${w} (tensor ${t.name} ${shapeText(t.shape)}) but the text ` +
          `encoder's width is ${opts.width} (the embedding was trained for another model family)`,
      );
    }
    // get() checks the dtype is a float type and the tensor is contiguous.
    const vectors = readTensorF32(file.get(t.name));
    for (let i = 0; i < vectors.length; i++) {
      if (!Number.isFinite(vectors[i])) {
        throw new EmbeddingError(path, `${path}: embedding tensor ${t.name} holds non-finite values (NaN or ∞)`);
      }
    }
    return { name, path, tensor: t.name, vectors, count: numel / w, width: w };
  } catch (e) {
    throw asEmbeddingError(path, e);
  } finally {
    file.close();
  }
}

function asEmbeddingError(path: string, e: unknown): unknown {
  if (e instanceof EmbeddingError) return e;
  if (e instanceof Deno.errors.NotFound) {
    return new EmbeddingError(path, `embedding file not found: ${path}`, { cause: e });
  }
  if (e instanceof WeightFileError) {
    // Weight-file messages already name the file; say what it was being read as.
    return new EmbeddingError(path, `cannot read embedding ${path}: ${e.message}`, { cause: e });
  }
  if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.IsADirectory) {
    return new EmbeddingError(path, `cannot read embedding ${path}: ${(e as Error).message}`, { cause: e });
  }
  return e;
}

/** An embedding file of a folder that was not loaded, and why. */
export interface SkippedEmbedding {
  readonly path: string;
  readonly reason: string;
}

export interface EmbeddingDir {
  /** The loaded embeddings, sorted by name. */
  readonly embeddings: Embedding[];
  /** Files with an embedding extension that could not be used (wrong width, not an embedding, unreadable). */
  readonly skipped: SkippedEmbedding[];
}

/**
 * Loads every embedding file directly in `dir` (`.pt`, `.ckpt`, `.safetensors`, `.bin`; other files and
 * sub-folders are ignored), as stable-diffusion.cpp's `--embd-dir`. Such folders often hold embeddings
 * for several model families, so a file that cannot be used here is listed in `skipped` with the reason
 * rather than failing the load; when two files share a name, the first of {@link EMBEDDING_EXTENSIONS}
 * wins (sd.cpp's lookup order) and the others are skipped. A missing or unreadable folder throws an
 * {@link EmbeddingError}.
 */
export async function loadEmbeddingDir(dir: string, opts: LoadEmbeddingOptions = {}): Promise<EmbeddingDir> {
  const files: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.isFile && !entry.isSymlink) continue;
      if ((EMBEDDING_EXTENSIONS as readonly string[]).includes(extensionOf(entry.name))) files.push(entry.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new EmbeddingError(dir, `embedding folder not found: ${dir}`);
    if (e instanceof Deno.errors.NotADirectory) {
      throw new EmbeddingError(dir, `${dir} is not a folder (give the folder that holds the embedding files)`);
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new EmbeddingError(dir, `cannot read embedding folder ${dir}: ${e.message}`);
    }
    throw e;
  }
  const rank = (f: string) => (EMBEDDING_EXTENSIONS as readonly string[]).indexOf(extensionOf(f));
  files.sort((a, b) => {
    const na = embeddingName(a).toLowerCase(), nb = embeddingName(b).toLowerCase();
    return na < nb ? -1 : na > nb ? 1 : rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
  });
  const sep = dir.endsWith("/") || dir.endsWith("\\") ? "" : "/";
  const embeddings: Embedding[] = [];
  const skipped: SkippedEmbedding[] = [];
  const taken = new Map<string, string>();
  for (const f of files) {
    const path = `${dir}${sep}${f}`;
    const key = embeddingName(f).toLowerCase();
    const first = taken.get(key);
    if (first !== undefined) {
      skipped.push({ path, reason: `${path}: the name "${embeddingName(f)}" is already taken by ${first}` });
      continue;
    }
    try {
      const e = await loadEmbedding(path, opts);
      embeddings.push(e);
      taken.set(key, path);
    } catch (e) {
      if (!(e instanceof EmbeddingError)) throw e;
      skipped.push({ path, reason: e.message });
    }
  }
  return { embeddings, skipped };
}
