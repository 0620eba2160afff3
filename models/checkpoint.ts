/**
 * A loaded Stable Diffusion checkpoint: the weight file, its detected
 * architecture, and the text encoder, UNet and VAE as compiled programs on a
 * backend. Programs are compiled lazily per input shape and kept while the
 * shape stays the same (a new shape replaces the old program, so only one set
 * of hoisted Winograd filters per network is alive at a time; the text encoder
 * keeps two, with and without textual-inversion inputs).
 */

import { type Backend, loadBackend, type Precision } from "../backends/mod.ts";
import {
  compile,
  Graph,
  type InputData,
  type OpProfile,
  type PlanOptions,
  type Program,
  SharedArena,
} from "../engine/mod.ts";
import {
  ArchError,
  type ArchInfo,
  detectArch,
  judgeVPredictionProbe,
  needsPredictionProbe,
  V_PREDICTION_PROBE,
  type VaeConfig,
} from "./arch.ts";
import { type Embedding, EmbeddingError, loadEmbedding, loadEmbeddingDir } from "./clip/embeddings.ts";
import { assembleSdxlConditioning, sdxlTokenInputs } from "./clip/sdxl_conditioning.ts";
import { buildTextEncoder, splitCustomTokens } from "./clip/text_encoder.ts";
import { ClipTokenizer } from "./clip/tokenizer.ts";
import { createWeightLookup, type WeightSource } from "./nn.ts";
import type { ModelPatch } from "./patch.ts";
import { PatchedWeights } from "./patch_weights.ts";
import { applyTokenWeights, tokenizeWeighted } from "./prompt/emphasis.ts";
import { assertFinite } from "./finite.ts";
import { sdAlphasCumprod } from "./sampling/schedules.ts";
import type {
  Checkpoint,
  Conditioning,
  Denoiser,
  HostTensor,
  Image,
  Latent,
  ModelFamily,
  Prediction,
  TextEncoder,
  TextEncoderOptions,
  Vae,
  VaeDecodeOptions,
  VaeEncodeOptions,
} from "./types.ts";
import { VAE_ENCODE_TILE_FACTOR, vaeTiled } from "./tiling.ts";
import { sdxlVector } from "./unet/sdxl.ts";
import { buildUnet } from "./unet/unet.ts";
import { buildVaeDecoder, buildVaeEncoder, fromImages, sampleLatent, toImages } from "./vae/vae.ts";
import { openVaeWeights, separateVaeConfig, VaeFileError } from "./vae/file.ts";
import { createRng } from "./sampling/rng.ts";
import {
  isDiffusersFolder,
  openLdmWeights,
  readTensorF32,
  storedRows,
  type WeightFile,
  type WeightType,
  withWeightType,
} from "./weights/mod.ts";

export interface LoadOptions {
  /** Worker threads of the backend (default: physical cores). */
  threads?: number;
  /**
   * Precision of the backend's GEMM ops (`--precision`): "f32" (default) or "bf16" (linear layers and
   * im2col / 1x1 convolutions on bf16 operands with f32 accumulation; CPU backend with AVX512-BF16 or AMX,
   * else loading fails with a BackendError saying so).
   */
  precision?: Precision;
  /** Backend name or library path (default "cpu"). */
  backend?: string;
  /**
   * Backend of the text encoders when not `backend` (stable-diffusion.cpp's `--clip-on-cpu`: "cpu"); they
   * then keep their own activation memory there.
   */
  clipBackend?: string;
  /** Backend of the VAE when not `backend` (stable-diffusion.cpp's `--vae-on-cpu`: "cpu"). */
  vaeBackend?: string;
  /**
   * Force the prediction type (stable-diffusion.cpp's `--prediction`). Without it: the file's marker
   * (a `v_pred` tensor, metadata), else for SD 2.x stable-diffusion.cpp's UNet probe, else eps. An
   * override that contradicts a `v_pred` tensor is an error.
   */
  prediction?: Prediction;
  /** Bytes of Winograd-transformed UNet filters kept between steps (default 0: transformed inside the products). */
  hoistBudgetBytes?: number;
  /**
   * Bytes of the UNet's mapped weights kept resident from one step to the next (default
   * {@link UNET_RESIDENT_WEIGHT_BYTES}; Infinity keeps all). The rest, read once per step, are dropped
   * after the op that reads them and read again from the page cache at the next step: peak RSS holds
   * this many bytes of UNet weights instead of all of them.
   */
  residentWeightBytes?: number;
  /**
   * Called after every run of a network's program with its per-op wall times (`Program.profile()`)
   * and the run's wall time, for `--profile`. Op times overlap when ops run concurrently.
   */
  onProfile?: (network: string, ops: readonly OpProfile[], runMs: number) => void;
  /**
   * Textual-inversion embedding files (.safetensors, .pt, .ckpt, .bin) to make available to prompts
   * under their file names. A file that cannot be used is an error.
   */
  embeddings?: readonly string[];
  /**
   * A folder of embedding files (stable-diffusion.cpp's `--embd-dir`). Files there that cannot be used
   * with this model (another family's width, not an embedding) are skipped, each reported to `onWarning`.
   */
  embeddingDir?: string;
  /**
   * A separate VAE (stable-diffusion.cpp's `--vae`): a file or diffusers folder, used instead of the
   * checkpoint's own. One of another family (latent channels, downsampling) is a VaeFileError.
   */
  vae?: string;
  /** Called with one-line warnings (skipped embedding files, a prediction override against metadata). */
  onWarning?: (message: string) => void;
  /**
   * Convert the weights to this type on load (stable-diffusion.cpp's `--type`), per sd.cpp's rule of which
   * tensors take it (models/weights/weight_type.ts); the converted weights are kept in memory.
   */
  weightType?: WeightType;
}

/**
 * Default {@link LoadOptions.residentWeightBytes}: 4 GiB. An SD 1.x/2.x UNet (1.7 GB in f16) stays whole;
 * SDXL's (5.1 GB in f16) streams its last 0.8 GB per step, which keeps a 512x512 SDXL run's peak RSS at
 * ~4.6 GB instead of ~5.5 GB. Refaulting a page-cache page costs ~0.2 s of CPU per GB (measured with a
 * small C loop on this machine), so that is ~0.15 CPU-s per SDXL step.
 */
export const UNET_RESIDENT_WEIGHT_BYTES = 4 * 2 ** 30;

/** The weights of `file` for graph builders: whole tensors, and pieces stored separately (diffusers q/k/v). */
function fileSource(file: WeightFile): WeightSource {
  return { get: (n) => file.get(n), rows: (n, start, count) => storedRows(file, n, start, count) };
}

/** A checkpoint that cannot be used for generation (parts missing). */
export class CheckpointError extends Error {
  override name = "CheckpointError";
}

/**
 * Keeps the compiled programs of one network, by key (shape): up to `capacity` of them (default one),
 * the least recently used is disposed to make room for a new key.
 */
class ProgramSlot {
  /** Most recently used last. */
  #programs: { key: string; program: Program }[] = [];
  constructor(private readonly capacity = 1) {}
  get(key: string, build: () => Program): Program {
    const i = this.#programs.findIndex((p) => p.key === key);
    if (i >= 0) {
      const [hit] = this.#programs.splice(i, 1);
      this.#programs.push(hit);
      return hit.program;
    }
    while (this.#programs.length >= this.capacity) this.#programs.shift()!.program.dispose();
    const program = build();
    this.#programs.push({ key, program });
    return program;
  }
  evictWeights(): void {
    for (const p of this.#programs) p.program.evictWeights();
  }
  dispose(): void {
    for (const p of this.#programs) p.program.dispose();
    this.#programs = [];
  }
}

/** Removes `item` from `list` if present. */
function remove<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}

/** Textual-inversion vectors registered in a tokenizer: ids `vocabSize + row` are rows of each table. */
interface CustomEmbeddings {
  /** Rows of each table. */
  readonly rows: number;
  /** One table per text encoder, [rows, width] (SDXL: CLIP-L's from `clip_l`, bigG's from `clip_g`). */
  readonly tables: readonly Float32Array[];
  /** The embeddings' names, as registered. */
  readonly names: readonly string[];
}

/**
 * One embedding file read for every text encoder width (SDXL files hold `clip_l` and `clip_g`, as
 * stable-diffusion.cpp reads them for its two encoders); all must have the same number of vectors.
 */
async function loadForWidths(path: string, widths: readonly number[], first?: Embedding): Promise<Embedding[]> {
  const out: Embedding[] = [];
  for (const [i, width] of widths.entries()) {
    out.push(i === 0 && first ? first : await loadEmbedding(path, { width }));
  }
  if (out.some((e) => e.count !== out[0].count)) {
    throw new EmbeddingError(
      path,
      `${path}: ${out.map((e) => `${e.tensor} has ${e.count} vectors`).join(", ")}; they must be as many`,
    );
  }
  return out;
}

/**
 * Loads the embeddings `opts` names, checked against the text encoders' widths, and registers each
 * name in `tokenizer`; returns a table of their vectors per width, indexed by token id - vocabSize.
 */
async function registerEmbeddings(
  opts: LoadOptions,
  tokenizer: ClipTokenizer,
  widths: readonly number[],
): Promise<CustomEmbeddings> {
  const found: Embedding[][] = [];
  for (const path of opts.embeddings ?? []) found.push(await loadForWidths(path, widths));
  if (opts.embeddingDir !== undefined) {
    const dir = await loadEmbeddingDir(opts.embeddingDir, { width: widths[0] });
    for (const s of dir.skipped) opts.onWarning?.(`embedding skipped: ${s.reason}`);
    for (const e of dir.embeddings) {
      try {
        found.push(await loadForWidths(e.path, widths, e));
      } catch (err) {
        if (!(err instanceof EmbeddingError)) throw err;
        opts.onWarning?.(`embedding skipped: ${err.message}`);
      }
    }
  }
  const byName = new Map<string, Embedding>();
  const ids: number[][] = [];
  const registered: Embedding[][] = [];
  for (const perWidth of found) {
    const e = perWidth[0];
    const key = tokenizer.normalize(e.name);
    const other = byName.get(key);
    if (other) {
      // An explicitly listed file wins over the folder's file of the same name.
      if (opts.embeddings?.includes(other.path) && !opts.embeddings.includes(e.path)) {
        opts.onWarning?.(`embedding skipped: ${e.path}: the name "${e.name}" is already taken by ${other.path}`);
        continue;
      }
      throw new EmbeddingError(e.path, `${e.path}: two embeddings are named "${e.name}" (the other: ${other.path})`);
    }
    if (key.length === 0) throw new EmbeddingError(e.path, `${e.path}: an embedding's name must not be blank`);
    byName.set(key, e);
    registered.push(perWidth);
    ids.push([...tokenizer.registerToken(e.name, e.count)]);
  }
  const rows = ids.reduce((n, r) => n + r.length, 0);
  const tables = widths.map((width, t) => {
    const table = new Float32Array(rows * width);
    registered.forEach((perWidth, i) =>
      ids[i].forEach((id, v) => {
        const row = id - tokenizer.vocabSize;
        if (row < 0 || row >= rows) throw new Error(`embedding ${perWidth[0].name}: token id ${id} outside the table`);
        table.set(perWidth[t].vectors.subarray(v * width, (v + 1) * width), row * width);
      })
    );
    return table;
  });
  return { rows, tables, names: registered.map((e) => e[0].name) };
}

/** Opens a checkpoint file or diffusers folder and prepares it for generation. */
export async function loadCheckpoint(path: string, opts: LoadOptions = {}): Promise<Checkpoint> {
  const opened = await openLdmWeights(path);
  const file = opts.weightType ? withWeightType(opened, opts.weightType) : opened;
  let vaeSource: VaeSource | undefined;
  try {
    let arch: ArchInfo;
    try {
      arch = detectArch(file.tensors.values(), file.metadata, { prediction: opts.prediction });
    } catch (e) {
      // Name the file: the CLI prints this one line.
      if (e instanceof ArchError) throw new CheckpointError(`${path}: ${e.message}`);
      throw e;
    }
    if (!arch.unet) throw new CheckpointError(`${path}: no UNet tensors (model.diffusion_model.*)`);
    if (!arch.vae && opts.vae === undefined) {
      throw new CheckpointError(`${path}: no VAE tensors (first_stage_model.*); give a separate VAE file (--vae)`);
    }
    const latentChannels = arch.vae?.zChannels ?? arch.unet.outChannels;
    // Inpainting models (2z + 1 channels: latent, mask, masked picture's latent) run with inpaint_encode's latent.
    if (arch.unet.inChannels !== latentChannels && arch.unet.inChannels !== 2 * latentChannels + 1) {
      // sd.cpp: 9 channels are an inpainting model, 8 Instruct-Pix2Pix; both need an image beside the latent.
      const kind = arch.unet.inChannels === 9
        ? "an inpainting model"
        : arch.unet.inChannels === 8
        ? "an Instruct-Pix2Pix model"
        : "not a plain txt2img model";
      throw new CheckpointError(
        `${path}: the UNet takes ${arch.unet.inChannels} input channels, the VAE's latents have ` +
          `${latentChannels} (${kind}); sdflow runs txt2img/img2img models only`,
      );
    }
    if (arch.family === "sdxl") checkSdxlParts(path, arch);
    if (arch.textEncoders.length === 0) throw new CheckpointError(`${path}: no text encoder tensors`);
    vaeSource = opts.vae === undefined
      ? { file, config: arch.vae!, separate: false }
      : await openSeparateVae(opts.vae, arch);
    const main = opts.backend ?? "cpu";
    const backend = await loadBackend(main, { threads: opts.threads, precision: opts.precision });
    const other = async (name: string | undefined) =>
      name === undefined || name === main
        ? backend
        : await loadBackend(name, { threads: opts.threads, precision: opts.precision });
    const backends: NetworkBackends = {
      unet: backend,
      textEncoder: await other(opts.clipBackend),
      vae: await other(opts.vaeBackend),
    };
    // A diffusers folder carries its own tokenizer files; single files use the bundled vocabulary.
    const tokenizer = await ClipTokenizer.load({ modelDir: (await isDiffusersFolder(path)) ? path : undefined });
    const custom = await registerEmbeddings(opts, tokenizer, arch.textEncoders.map((c) => c.width));
    if (arch.predictionWarning) opts.onWarning?.(arch.predictionWarning);
    const ckpt = new LoadedCheckpoint(path, file, arch, backends, tokenizer, custom, opts, vaeSource);
    if (needsPredictionProbe(arch)) {
      try {
        await ckpt.probePrediction();
      } catch (e) {
        ckpt.dispose();
        throw e;
      }
    }
    return ckpt;
  } catch (e) {
    file.close();
    if (vaeSource?.separate) vaeSource.file.close();
    throw e;
  }
}

/** Opens a separate VAE for `arch`'s model: a {@link VaeFileError} when it is not one, or another family's. */
async function openSeparateVae(path: string, arch: ArchInfo): Promise<VaeSource> {
  const file = await openVaeWeights(path);
  try {
    return { file, config: separateVaeConfig(file, arch), separate: true };
  } catch (e) {
    file.close();
    throw e;
  }
}

/** Options of {@link loadVae}. */
export interface LoadVaeOptions extends Pick<LoadOptions, "threads" | "precision" | "backend" | "onProfile"> {
  /**
   * The model whose latents it decodes: its family gives the scaling factor (SDXL 0.13025, else
   * 0.18215) and its latent channels are checked. Default: SD 1.x/2.x, 4 channels.
   */
  model?: { family: ModelFamily; latentChannels?: number };
}

/** A VAE loaded on its own (the `vae_loader` node), with its own backend arena. */
export interface LoadedVae extends Vae {
  /** Bytes of its weights as stored (see {@link Checkpoint.weightBytes}). */
  readonly weightBytes: number;
  dispose(): void;
}

/** Loads a separate VAE file or folder (see models/vae/file.ts for the layouts). */
export async function loadVae(path: string, opts: LoadVaeOptions = {}): Promise<LoadedVae> {
  const family = opts.model?.family ?? "sd1";
  const channels = opts.model?.latentChannels ?? 4;
  const arch = {
    family,
    prediction: "eps",
    predictionSource: "default",
    textEncoders: [],
    unet: undefined,
    vae: undefined,
  } as const;
  const file = await openVaeWeights(path);
  let config: VaeConfig;
  try {
    const found = separateVaeConfig(file, arch);
    if (found.zChannels !== channels) {
      throw new VaeFileError(
        path,
        `${path}: a VAE of another model family: its latents have ${found.zChannels} channels, the model uses ${channels}`,
      );
    }
    config = found;
  } catch (e) {
    file.close();
    throw e;
  }
  const backend = await loadBackend(opts.backend ?? "cpu", { threads: opts.threads, precision: opts.precision });
  const arena = new SharedArena(backend);
  const slots: ProgramSlot[] = [];
  const networks = new WeakMap<Program, string>();
  const vae = makeVae({ file, config, separate: true }, {
    serial: new Serial(),
    slot: (capacity) => {
      const s = new ProgramSlot(capacity);
      slots.push(s);
      return s;
    },
    make: (network, g, plan) => {
      const program = compile(g, backend, { ...plan, arena });
      networks.set(program, network);
      return program;
    },
    run: async (program, inputs) => {
      if (!opts.onProfile) return await program.run(inputs);
      const t0 = performance.now();
      const out = await program.run(inputs);
      opts.onProfile(networks.get(program) ?? "network", program.profile(), performance.now() - t0);
      return out;
    },
  });
  return {
    ...vae,
    weightBytes: tensorBytes(file, [config.prefix]),
    dispose() {
      for (const s of slots) s.dispose();
      arena.dispose();
      file.close();
    },
  };
}

/**
 * SDXL's vector conditioning y for a UNet batch of `b` at image size `height` x `width`: the pooled
 * rows and the size embeddings sd.cpp uses (original = target = the requested image size, crop 0, 0).
 */
function sdxlLabelInput(
  cond: Conditioning,
  b: number,
  height: number,
  width: number,
  admInChannels: number,
): Float32Array {
  if (!cond.pooled || cond.pooled.shape[0] !== b) {
    throw new CheckpointError(
      `SDXL UNet: batch ${b} needs a pooled text embedding per entry (conditioning from an SDXL text encoder)`,
    );
  }
  const size = { originalHeight: height, originalWidth: width, targetHeight: height, targetWidth: width };
  return sdxlVector(cond.pooled.data, b, size, admInChannels);
}

/** An SDXL checkpoint needs both text encoders (CLIP ViT-L and OpenCLIP bigG with its text_projection). */
function checkSdxlParts(path: string, arch: ArchInfo): void {
  const l = arch.textEncoders.find((c) => c.naming === "hf");
  const g = arch.textEncoders.find((c) => c.naming === "openclip");
  const missing = [
    !l && "CLIP ViT-L (conditioner.embedders.0.transformer.text_model.*)",
    !g && "OpenCLIP ViT-bigG (conditioner.embedders.1.model.*)",
  ].filter(Boolean);
  if (missing.length > 0) {
    throw new CheckpointError(`${path}: SDXL checkpoint without its ${missing.join(" and ")} text encoder`);
  }
  if (!g!.projectionDim) {
    throw new CheckpointError(`${path}: SDXL's OpenCLIP ViT-bigG text encoder has no text_projection`);
  }
  const unet = arch.unet!;
  if (unet.admInChannels === undefined || unet.contextDim !== l!.width + g!.width) {
    throw new CheckpointError(
      `${path}: SDXL UNet (context ${unet.contextDim}, label_emb ${unet.admInChannels ?? "missing"}) does not fit ` +
        `text encoders of widths ${l!.width} + ${g!.width}`,
    );
  }
}

/**
 * Runs the networks one at a time (each uses every backend thread). When the
 * network changes, the previous one's mapped weights are evicted: only the
 * running network's weights need to be resident, which keeps peak RSS near
 * the largest network rather than the whole checkpoint.
 */
class Serial {
  #tail: Promise<unknown> = Promise.resolve();
  #last?: ProgramSlot;
  run<T>(slot: ProgramSlot, job: () => Promise<T>): Promise<T> {
    const step = (): Promise<T> => {
      if (this.#last && this.#last !== slot) this.#last.evictWeights();
      this.#last = slot;
      return job();
    };
    const next = this.#tail.then(step, step);
    this.#tail = next.catch(() => {});
    return next;
  }
}

class LoadedCheckpoint implements Checkpoint {
  readonly family: ModelFamily;
  #prediction: Prediction;
  #predictionSource: ArchInfo["predictionSource"];
  readonly textEncoder: TextEncoder;
  readonly denoiser: Denoiser;
  readonly vae: Vae;
  readonly #slots: ProgramSlot[] = [];
  readonly #arenas = new Map<Backend, SharedArena>();
  /** Patched weights of patched networks (merged weights in backend buffers), freed with the checkpoint. */
  readonly #patched: PatchedWeights[] = [];

  constructor(
    readonly path: string,
    private readonly file: WeightFile,
    readonly arch: ArchInfo,
    backends: NetworkBackends,
    tokenizer: ClipTokenizer,
    custom: CustomEmbeddings,
    private readonly opts: LoadOptions,
    private readonly vaeSource: VaeSource,
  ) {
    this.family = arch.family;
    this.#prediction = arch.prediction;
    this.#predictionSource = arch.predictionSource;
    const slot = (capacity?: number): ProgramSlot => {
      const s = new ProgramSlot(capacity);
      this.#slots.push(s);
      return s;
    };
    const clip = arch.textEncoders[0];
    const unet = arch.unet!;
    const serial = new Serial();
    // The networks run one at a time, so those on one backend share one activation arena.
    const arenas = this.#arenas;
    const arenaOf = (b: Backend): SharedArena => {
      let a = arenas.get(b);
      if (!a) arenas.set(b, a = new SharedArena(b));
      return a;
    };
    /** The backend of a network, by its name: the text encoders and the VAE may have their own. */
    const backendOf = (network: string): Backend =>
      network.startsWith("text encoder")
        ? backends.textEncoder
        : network.startsWith("vae")
        ? backends.vae
        : backends.unet;
    const networks = new WeakMap<Program, string>();
    /** Profile names: a network placed apart says where ("vae decoder on cpu"). */
    const profiled = new WeakMap<Program, string>();
    const make = (network: string, g: Graph, plan: PlanOptions): Program => {
      const backend = backendOf(network);
      const program = compile(g, backend, { ...plan, arena: arenaOf(backend) });
      networks.set(program, network);
      profiled.set(program, backend === backends.unet ? network : `${network} on ${backend.name}`);
      return program;
    };
    const onProfile = opts.onProfile;
    /** Runs a program, reporting its per-op times when profiling. */
    const run = async (program: Program, inputs: Record<string, InputData>): Promise<Record<string, Float32Array>> => {
      const t0 = performance.now();
      const out = await program.run(inputs);
      if (onProfile) onProfile(profiled.get(program) ?? "network", program.profile(), performance.now() - t0);
      // A NaN or Infinity here would end as a black picture: stop, naming the network (one pass over outputs).
      for (const [name, data] of Object.entries(out)) {
        assertFinite(data, `the ${networks.get(program) ?? "network"}'s output "${name}"`);
      }
      return out;
    };

    const allWeights = [...file.tensors.values()];
    const shapesUnder = (prefixes: readonly string[]): ReadonlyMap<string, readonly number[]> =>
      new Map(allWeights.filter((t) => prefixes.some((p) => t.name.startsWith(p))).map((t) => [t.name, t.shape]));
    let unetShapes: ReadonlyMap<string, readonly number[]> | undefined;
    let textShapes: ReadonlyMap<string, readonly number[]> | undefined;
    const base = fileSource(file);
    /** The weights of a network with its patches (the plain file when there are none). */
    const patchedSource = (
      patches: readonly ModelPatch[],
      shapes: ReadonlyMap<string, readonly number[]>,
      what: string,
    ): WeightSource => {
      if (patches.length === 0) return base;
      const source = new PatchedWeights(base, shapes, patches, backendOf(what), what);
      this.#patched.push(source);
      return source;
    };
    /** Frees a patched copy's programs and merged weights (the unpatched network has nothing to release). */
    const releaser = (s: ProgramSlot, source: WeightSource) => () => {
      s.dispose();
      remove(this.#slots, s);
      if (source instanceof PatchedWeights) {
        source.dispose();
        remove(this.#patched, source);
      }
    };

    /** SDXL: both encoders, one after the other, then the 2048-wide context and the pooled vector. */
    const encodeSdxl = async (
      prompt: string,
      o: TextEncoderOptions,
      textSlot: ProgramSlot,
      source: WeightSource,
    ): Promise<Conditioning> => {
      const [l, big] = [
        arch.textEncoders.find((c) => c.naming === "hf")!,
        arch.textEncoders.find((c) => c.naming === "openclip")!,
      ];
      const { chunks } = tokenizeWeighted(prompt, tokenizer, { padId: l.padTokenId });
      const clipSkip = o.clipSkip && o.clipSkip > 0 ? o.clipSkip : l.defaultClipSkip;
      const n = chunks.length;
      const inputs = sdxlTokenInputs(chunks, l.maxTokens);
      // Prompts that name an embedding run the graphs with the custom-vector inputs (CLIP-L's and bigG's tables).
      const k = custom.rows > 0 && inputs.clipL.some((id) => id >= tokenizer.vocabSize) ? custom.rows : 0;
      const tokensFor = (ids: Int32Array, table: Float32Array): Record<string, InputData> =>
        k > 0 ? { ...splitCustomTokens(ids, tokenizer.vocabSize, k), custom_table: table } : { tokens: ids };
      const tables = [custom.tables[arch.textEncoders.indexOf(l)], custom.tables[arch.textEncoders.indexOf(big)]];
      const { hl, hg, pooled } = await serial.run(textSlot, async () => {
        if (source instanceof PatchedWeights) await source.prepare();
        const programL = textSlot.get(`L/${n}/${clipSkip}/${k}`, () => {
          const g = new Graph();
          buildTextEncoder(g, createWeightLookup(g, source), l, { batch: n, clipSkip, customEmbeddings: k });
          return make("text encoder (CLIP-L)", g, {});
        });
        const { hidden: hl } = await run(programL, tokensFor(inputs.clipL, tables[0]));
        const programG = textSlot.get(`G/${n}/${clipSkip}/${k}`, () => {
          const g = new Graph();
          buildTextEncoder(g, createWeightLookup(g, source), big, {
            batch: n,
            clipSkip,
            pooled: true,
            customEmbeddings: k,
          });
          return make("text encoder (bigG)", g, {});
        });
        const { hidden: hg, pooled } = await run(programG, {
          ...tokensFor(inputs.bigG, tables[1]),
          eos_index: inputs.eosIndex,
        });
        return { hl, hg, pooled };
      });
      const widths = { clipL: l.width, bigG: big.width, pooled: big.projectionDim! };
      return assembleSdxlConditioning(prompt, chunks, { clipL: hl, bigG: hg, pooled }, widths, l.maxTokens);
    };

    /** The text encoder with `patches` (none: the checkpoint's own); each copy compiles its own programs. */
    const makeTextEncoder = (patches: readonly ModelPatch[]): TextEncoder => {
      // Two programs: a prompt with embeddings and one without (the usual positive and negative
      // pair) then do not rebuild the program at every encode. SDXL: CLIP-L and bigG, with and without,
      // in one slot so that encoding a prompt pair does not evict and re-map one encoder for the other.
      const textSlot = slot(arch.family === "sdxl" ? 4 : 2);
      const shapes = textShapes ??= shapesUnder(arch.textEncoders.map((c) => c.prefix));
      const source = patchedSource(patches, shapes, "text encoder");
      if (arch.family === "sdxl") {
        return {
          patches,
          patchableWeights: () => shapes,
          withPatches: (more) => makeTextEncoder([...patches, ...more]),
          ...(patches.length ? { release: releaser(textSlot, source) } : {}),
          encode: (prompt: string, o: TextEncoderOptions = {}): Promise<Conditioning> =>
            encodeSdxl(prompt, o, textSlot, source),
        };
      }
      return {
        patches,
        patchableWeights: () => shapes,
        withPatches: (more) => makeTextEncoder([...patches, ...more]),
        ...(patches.length ? { release: releaser(textSlot, source) } : {}),
        encode: (prompt: string, o: TextEncoderOptions = {}): Promise<Conditioning> =>
          serial.run(textSlot, async () => {
            if (source instanceof PatchedWeights) await source.prepare();
            const { chunks } = tokenizeWeighted(prompt, tokenizer, { padId: clip.padTokenId });
            const clipSkip = o.clipSkip && o.clipSkip > 0 ? o.clipSkip : clip.defaultClipSkip;
            const tokens = new Int32Array(chunks.length * clip.maxTokens);
            chunks.forEach((c, i) => tokens.set(c.ids, i * clip.maxTokens));
            // Prompts that name an embedding run the graph with the custom-vector inputs (keyed by the
            // table's rows); the others keep the plain graph.
            const k = custom.rows > 0 && tokens.some((id) => id >= tokenizer.vocabSize) ? custom.rows : 0;
            const program = textSlot.get(`${chunks.length}/${clipSkip}/${k}`, () => {
              const g = new Graph();
              buildTextEncoder(g, createWeightLookup(g, source), clip, {
                batch: chunks.length,
                clipSkip,
                customEmbeddings: k,
              });
              return make("text encoder", g, {});
            });
            const inputs: Record<string, InputData> = k > 0
              ? { ...splitCustomTokens(tokens, tokenizer.vocabSize, k), custom_table: custom.tables[0] }
              : { tokens };
            const { hidden } = await run(program, inputs);
            const perChunk = clip.maxTokens * clip.width;
            chunks.forEach((c, i) =>
              applyTokenWeights(hidden.subarray(i * perChunk, (i + 1) * perChunk), c.weights, clip.width)
            );
            return { context: { shape: [1, chunks.length * clip.maxTokens, clip.width], data: hidden } };
          }),
      };
    };
    this.textEncoder = makeTextEncoder([]);

    const alphas = file.has("alphas_cumprod")
      ? Float64Array.from(readTensorF32(file.get("alphas_cumprod")))
      : Float64Array.from(sdAlphasCumprod());
    const hoistBudgetBytes = opts.hoistBudgetBytes;
    const residentWeightBytes = opts.residentWeightBytes ?? UNET_RESIDENT_WEIGHT_BYTES;
    // deno-lint-ignore no-this-alias
    const self = this;
    /** The UNet with `patches` (none: the checkpoint's own). */
    const makeDenoiser = (patches: readonly ModelPatch[]): Denoiser => {
      const unetSlot = slot();
      const shapes = unetShapes ??= shapesUnder([unet.prefix]);
      const source = patchedSource(patches, shapes, "UNet");
      return {
        family: arch.family,
        get prediction() {
          return self.#prediction;
        },
        alphasCumprod: alphas,
        patches,
        patchableWeights: () => shapes,
        withPatches: (more) => makeDenoiser([...patches, ...more]),
        ...(patches.length ? { release: releaser(unetSlot, source) } : {}),
        unet,
        predict: (x: HostTensor, timesteps: Float32Array, cond: Conditioning, control?: readonly HostTensor[]) =>
          serial.run(unetSlot, async (): Promise<HostTensor> => {
            if (source instanceof PatchedWeights) await source.prepare();
            const [b, , h, w] = x.shape;
            const tokens = cond.context.shape[1];
            if (cond.context.shape[0] !== b || timesteps.length !== b) {
              throw new CheckpointError(
                `UNet: batch ${b} but ${cond.context.shape[0]} contexts, ${timesteps.length} timesteps`,
              );
            }
            const program = unetSlot.get(`${b}x${h}x${w}/${tokens}${control ? "/control" : ""}`, () => {
              const g = new Graph();
              // ControlNet residuals are graph inputs "control_0".. (the shapes the caller hands in).
              const ctl = control?.map((c, i) => g.input(`control_${i}`, c.shape));
              buildUnet(g, createWeightLookup(g, source), unet, {
                batch: b,
                height: h,
                width: w,
                contextTokens: tokens,
                ...(ctl ? { control: { skips: ctl.slice(0, -1), middle: ctl[ctl.length - 1] } } : {}),
              });
              return make("unet", g, { hoistBudgetBytes, residentWeightBytes });
            });
            const inputs: Record<string, InputData> = { x: x.data, timesteps, context: cond.context.data };
            if (unet.admInChannels !== undefined) {
              const f = vaeSource.config.downFactor;
              inputs.y = sdxlLabelInput(cond, b, h * f, w * f, unet.admInChannels);
            }
            control?.forEach((c, i) => inputs[`control_${i}`] = c.data);
            const { out } = await run(program, inputs);
            return { shape: [b, unet.outChannels, h, w], data: out };
          }),
      };
    };
    this.denoiser = makeDenoiser([]);

    this.vae = makeVae(vaeSource, { serial, slot, make, run });
  }

  /** How the prediction type was decided (the file, an override, the family default, the UNet probe). */
  get predictionSource(): ArchInfo["predictionSource"] {
    return this.#predictionSource;
  }

  /**
   * stable-diffusion.cpp's SD 2.x v-prediction test ({@link V_PREDICTION_PROBE}): one UNet pass on a
   * constant 8x8 latent; sets the denoiser's prediction from it. The probe's program is dropped after.
   */
  async probePrediction(): Promise<Prediction> {
    const unet = this.arch.unet!;
    const [b, c, h, w] = V_PREDICTION_PROBE.shape;
    const per = h * w;
    // An inpainting UNet's extra input channels (mask, masked image) are zeros, as in sd.cpp.
    const x = new Float32Array(b * unet.inChannels * per);
    x.fill(V_PREDICTION_PROBE.value, 0, c * per);
    const context = new Float32Array(b * V_PREDICTION_PROBE.contextTokens * unet.contextDim)
      .fill(V_PREDICTION_PROBE.value);
    const out = await this.denoiser.predict(
      { shape: [b, unet.inChannels, h, w], data: x },
      new Float32Array(b).fill(V_PREDICTION_PROBE.timestep),
      { context: { shape: [b, V_PREDICTION_PROBE.contextTokens, unet.contextDim], data: context } },
    );
    this.#prediction = judgeVPredictionProbe(out.data.subarray(0, c * per));
    this.#predictionSource = "probe";
    return this.#prediction;
  }

  #weightBytes?: number;
  get weightBytes(): number {
    return this.#weightBytes ??= tensorBytes(this.file, [
      this.arch.unet!.prefix,
      ...this.arch.textEncoders.map((c) => c.prefix),
      ...(this.vaeSource.separate ? [] : [this.vaeSource.config.prefix]),
    ]) + (this.vaeSource.separate ? tensorBytes(this.vaeSource.file, [this.vaeSource.config.prefix]) : 0);
  }

  /** Whether the VAE came from its own file (`--vae`) rather than the checkpoint. */
  get separateVae(): boolean {
    return this.vaeSource.separate;
  }

  dispose(): void {
    for (const s of this.#slots) s.dispose();
    for (const p of this.#patched) p.dispose();
    for (const a of this.#arenas.values()) a.dispose();
    this.file.close();
    if (this.vaeSource.separate) this.vaeSource.file.close();
  }
}

/** Bytes of a weight file's tensors whose names start with one of `prefixes`, as stored. */
function tensorBytes(file: WeightFile, prefixes: readonly string[]): number {
  let bytes = 0;
  for (const t of file.tensors.values()) {
    if (!prefixes.some((p) => t.name.startsWith(p))) continue;
    bytes += t.source.kind === "file" ? t.source.bytes : t.source.data.byteLength;
  }
  return bytes;
}

/** The backend each network of a checkpoint runs on (the same one unless the text encoders or VAE are placed apart). */
interface NetworkBackends {
  unet: Backend;
  textEncoder: Backend;
  vae: Backend;
}

/** Where a checkpoint's VAE comes from: its own tensors, or a separate file (`--vae`). */
export interface VaeSource {
  readonly file: WeightFile;
  readonly config: VaeConfig;
  /** True for a separate file (closed with the checkpoint). */
  readonly separate: boolean;
}

/** What a VAE runner shares with the networks of its checkpoint (or has on its own: {@link loadVae}). */
interface NetworkRuntime {
  serial: Serial;
  slot: (capacity?: number) => ProgramSlot;
  make: (network: string, g: Graph, plan: PlanOptions) => Program;
  run: (program: Program, inputs: Record<string, InputData>) => Promise<Record<string, Float32Array>>;
}

/** The VAE decoder and encoder of `source`, compiled per shape on first use. */
function makeVae(source: VaeSource, { serial, slot, make, run }: NetworkRuntime): Vae {
  const { file, config: vae, separate } = source;
  const scalingFactor = vae.scalingFactor;
  const decoderSlot = slot();
  const encoderSlot = slot();
  const lookup = (g: Graph) => createWeightLookup(g, fileSource(file));
  return {
    latentChannels: vae.zChannels,
    separate,
    scalingFactor,
    decode: (
      latent: Latent,
      onProgress?: (done: number, total: number) => void,
      decodeOpts: VaeDecodeOptions = {},
    ): Promise<Image[]> =>
      serial.run(decoderSlot, async () => {
        const [b, c, h, w] = latent.shape;
        const f = vae.downFactor;
        const tiling = decodeOpts.tiling;
        const images: Image[] = [];
        // One image (or tile) at a time: the decoder's activations dominate memory, not its weights.
        const programFor = (th: number, tw: number) =>
          decoderSlot.get(`${th}x${tw}`, () => {
            const g = new Graph();
            buildVaeDecoder(g, lookup(g), vae, { batch: 1, height: th, width: tw });
            // Filter transforms once per decode: hoisting them would hold ~1.6 GB for a one-off pass.
            return make("vae decoder", g, { hoistBudgetBytes: 0 });
          });
        const per = c * h * w;
        if (tiling) {
          const decodeTile = async (t: HostTensor): Promise<HostTensor> => {
            const [, , th, tw] = t.shape;
            const { image } = await run(programFor(th, tw), { latent: t.data });
            return { shape: [1, 3, th * f, tw * f], data: image };
          };
          for (let i = 0; i < b; i++) {
            const z = { shape: [1, c, h, w], data: latent.data.slice(i * per, (i + 1) * per) };
            const out = await vaeTiled(z, w * f, h * f, f, tiling, 1, decodeTile, (d, n) =>
              onProgress?.(i * n + d, b * n));
            images.push(...toImages(out.data, out.shape));
          }
          return images;
        }
        const program = programFor(h, w);
        // Progress in ops of the decoder over the whole batch, polled while the backend runs.
        const ops = Math.max(1, program.plan.stepOps.length);
        for (let i = 0; i < b; i++) {
          onProgress?.(i * ops, b * ops);
          const stale = program.progress();
          let started = stale === 0 || stale < ops;
          const poll = onProgress && setInterval(() => {
            const p = program.progress();
            if (!started && p < stale) {
              started = true;
            }
            if (started) {
              onProgress(i * ops + Math.min(p, ops), b * ops);
            }
          }, 100);
          try {
            const { image } = await run(program, { latent: latent.data.slice(i * per, (i + 1) * per) });
            images.push(...toImages(image, [1, 3, h * f, w * f]));
          } finally {
            if (poll) {
              clearInterval(poll);
            }
          }
        }
        onProgress?.(b * ops, b * ops);
        return images;
      }),
    encode: (images: readonly Image[], o: VaeEncodeOptions = {}): Promise<Latent> =>
      serial.run(encoderSlot, async () => {
        if (!vae.hasEncoder) {
          throw new CheckpointError(`${file.path}: the VAE has no encoder (a decoder-only file); img2img needs one`);
        }
        const input = fromImages(images);
        const [b, , h, w] = input.shape;
        const f = vae.downFactor;
        const programFor = (n: number, th: number, tw: number) =>
          encoderSlot.get(`${n}x${th}x${tw}`, () => {
            const g = new Graph();
            buildVaeEncoder(g, lookup(g), vae, { batch: n, height: th, width: tw });
            return make("vae encoder", g, { hoistBudgetBytes: 0 });
          });
        const shape = [b, 2 * vae.zChannels, h / f, w / f];
        let moments: Float32Array;
        if (o.tiling) {
          // One image at a time, each in tiles of twice the decode size (sd.cpp's encode tiling).
          const tiling = o.tiling;
          const encodeTile = async (t: HostTensor): Promise<HostTensor> => {
            const [, , th, tw] = t.shape;
            const out = await run(programFor(1, th, tw), { image: t.data });
            return { shape: [1, 2 * vae.zChannels, th / f, tw / f], data: out.moments };
          };
          const per = 3 * h * w;
          moments = new Float32Array(b * shape[1] * shape[2] * shape[3]);
          for (let i = 0; i < b; i++) {
            const x = { shape: [1, 3, h, w], data: input.data.subarray(i * per, (i + 1) * per) };
            const m = await vaeTiled(x, w / f, h / f, f, tiling, VAE_ENCODE_TILE_FACTOR, encodeTile);
            moments.set(m.data, i * m.data.length);
          }
        } else {
          moments = (await run(programFor(b, h, w), { image: input.data })).moments;
        }
        const noise = o.seed === undefined
          ? null
          : createRng(o.rng ?? "cuda", o.seed).randn(b * vae.zChannels * shape[2] * shape[3]);
        return sampleLatent(moments, shape, noise, scalingFactor);
      }),
  };
}
