/**
 * The server's engine: graphs that arrive over the network are checked against what a remote client may
 * do (no plugins, no library backends, model names only inside `--models`, outputs only inside the output
 * folder), validated by the same validator as the CLI, and run with one {@link OutputCache} kept for the
 * server's life — so loaded models stay resident (the least recently used unloaded beyond a memory
 * budget), and a request that changes only the seed re-runs only the sampler and what follows.
 */

import { basename, join, resolve, sep } from "node:path";
import type { Diagnostic } from "../dsl/errors.ts";
import { GraphError, pointer } from "../dsl/errors.ts";
import type { GraphFile } from "../dsl/format.ts";
import { type CacheEntry, OutputCache, runPipeline, type RunReporter } from "../dsl/run.ts";
import { builtinRegistry, type Pipeline, validateGraph } from "../dsl/validate.ts";

/** The name under which the tiny random-weight demo model is always available (no models folder needed). */
export const TINY_MODEL = "tiny";

/** File extensions of checkpoints in `--models`. */
const CHECKPOINT_EXT = /\.(safetensors|ckpt|gguf|pt|pth|bin)$/i;
/** Conventional checkpoint subfolders (sd-webui, ComfyUI); the folder itself is searched first. */
const CHECKPOINT_SUBDIRS = ["", "Stable-diffusion", "checkpoints"];
/** LoRA files and their conventional subfolders (sd-webui's `Lora`, ComfyUI's `loras`). */
const LORA_EXT = /\.(safetensors|ckpt|pt|bin)$/i;
const LORA_SUBDIRS = ["Lora", "loras"];

/** The other model files a graph may name, each kind only in its conventional subfolders (sd-webui, ComfyUI). */
export const MODEL_KINDS = {
  lora: { label: "LoRA", subdirs: LORA_SUBDIRS, ext: LORA_EXT },
  controlnet: {
    label: "ControlNet",
    subdirs: ["ControlNet", "controlnet"],
    ext: /\.(safetensors|pth|gguf|ckpt|bin)$/i,
  },
  upscaler: {
    label: "upscaler",
    subdirs: ["ESRGAN", "RealESRGAN", "upscale_models"],
    ext: /\.(safetensors|pth|gguf|pt|bin)$/i,
  },
  vae: { label: "VAE", subdirs: ["VAE", "vae"], ext: /\.(safetensors|pt|ckpt|gguf|bin)$/i },
  taesd: {
    label: "TAESD",
    subdirs: ["VAE-approx", "vae_approx", "VAE-taesd", "taesd"],
    ext: /\.(safetensors|pth|gguf)$/i,
  },
} as const;
export type ModelKind = keyof typeof MODEL_KINDS;

/** The node inputs that name a model file of the models folder, and its kind. */
const FILE_INPUTS: Readonly<Record<string, Readonly<Record<string, ModelKind>>>> = {
  lora: { path: "lora" },
  controlnet: { path: "controlnet" },
  upscale_model_loader: { path: "upscaler" },
  vae_loader: { path: "vae" },
  taesd: { path: "taesd" },
  checkpoint: { vae: "vae" },
};
/**
 * The node types a graph from the network may use. Each input that names a file is confined below; a node
 * type added to the catalog later is refused until it is reviewed here.
 */
const NETWORK_NODE_TYPES = new Set([
  "checkpoint",
  "tiny_checkpoint",
  "lora",
  "clip_encode",
  "empty_latent",
  "load_image",
  "vae_encode",
  "sampler",
  "vae_decode",
  "save_image",
  // Files only from their --models subfolders (FILE_INPUTS); no file inputs at all for canny/inpaint/upscale.
  "controlnet",
  "canny",
  "inpaint_encode",
  "upscale_model_loader",
  "upscale",
  "vae_loader",
  "taesd",
]);

/** A request the server refuses; `status` is the HTTP status (400 bad input, 404 unknown name). */
export class RequestError extends Error {
  constructor(readonly status: number, message: string, readonly diagnostics: readonly Diagnostic[] = []) {
    super(message);
    this.name = "RequestError";
  }
}

/** A model the server offers. */
export interface ModelEntry {
  /** File name (with extension), or {@link TINY_MODEL}. */
  readonly name: string;
  /** Absolute path; undefined for the tiny model. */
  readonly path?: string;
}

/** A file name with no folder part: what a client may name a model or output by. */
export function isPlainName(name: string): boolean {
  return name.length > 0 && name.length <= 255 && name !== "." && name !== ".." && !/[/\\\0]/.test(name);
}

/** Options of {@link Engine}. */
export interface EngineOptions {
  /** Folder of checkpoints; none: only the tiny model. */
  modelsDir?: string;
  /** Where generated pictures are written (created if missing). */
  outputDir: string;
  /**
   * Bytes of model weights kept loaded between requests (`--model-memory`); the least recently used model
   * is unloaded beyond it. Default: {@link defaultModelMemory}.
   */
  modelMemoryBytes?: number;
  /** Told of each model unloaded to stay within the budget (its name and bytes). */
  onUnload?: (model: string, bytes: number) => void;
}

/** The default model memory budget: half of this machine's physical memory (4 GiB when it cannot be read). */
export function defaultModelMemory(): number {
  try {
    return Math.floor(Deno.systemMemoryInfo().total / 2);
  } catch {
    return 4 * 1024 ** 3;
  }
}

/** A model the engine holds loaded. */
export interface ResidentModel {
  /** What its loader published (a checkpoint's file name; the tiny model's seed), or the node type. */
  readonly model: string;
  readonly bytes: number;
}

/** What the engine's model cache holds (`GET /v1/stats`). */
export interface EngineStats {
  /** Loaded models, least recently used first. */
  readonly models: readonly ResidentModel[];
  readonly bytes: number;
  readonly budgetBytes: number;
  /** Models unloaded so far to stay within the budget. */
  readonly evictions: number;
  /** Other cached node outputs (prompts' conditioning, latents). */
  readonly entries: number;
}

const modelName = (e: CacheEntry): string => String(e.meta.model ?? "model");

/** What a finished run produced: the output files' names inside the output folder. */
export interface RunOutput {
  readonly files: readonly string[];
  readonly executed: readonly string[];
  readonly cached: readonly string[];
}

/** Holds the model cache and the folders; turns network graphs into pipelines and runs them. */
export class Engine {
  readonly cache: OutputCache;
  readonly modelsDir?: string;
  readonly outputDir: string;

  constructor(opts: EngineOptions) {
    this.modelsDir = opts.modelsDir === undefined ? undefined : resolve(opts.modelsDir);
    this.outputDir = resolve(opts.outputDir);
    const onUnload = opts.onUnload;
    this.cache = new OutputCache({
      maxBytes: opts.modelMemoryBytes ?? defaultModelMemory(),
      ...(onUnload ? { onEvict: (e: CacheEntry) => onUnload(modelName(e), e.bytes ?? 0) } : {}),
    });
  }

  /** The loaded models and the budget they are kept within. */
  stats(): EngineStats {
    const s = this.cache.stats();
    return {
      models: this.cache.resident().map((e) => ({ model: modelName(e), bytes: e.bytes! })),
      bytes: s.residentBytes,
      budgetBytes: s.maxBytes,
      evictions: s.evictions,
      entries: s.entries - s.resident,
    };
  }

  /** The tiny model, then every checkpoint file of the models folder (and its conventional subfolders). */
  async models(): Promise<ModelEntry[]> {
    return [{ name: TINY_MODEL }, ...await this.#files(CHECKPOINT_SUBDIRS, CHECKPOINT_EXT, new Set([TINY_MODEL]))];
  }

  /** The LoRA files of the models folder, in `Lora/` or `loras/` (a flat file there is a checkpoint). */
  async loras(): Promise<ModelEntry[]> {
    return await this.files("lora");
  }

  /** The ControlNet files of the models folder, in `ControlNet/` or `controlnet/`. */
  async controlnets(): Promise<ModelEntry[]> {
    return await this.files("controlnet");
  }

  /** A ControlNet by file name, with or without extension. */
  async controlnet(name: string): Promise<ModelEntry> {
    return await this.file("controlnet", name);
  }

  /** The files of one kind, from its subfolders of the models folder. */
  async files(kind: ModelKind): Promise<ModelEntry[]> {
    return await this.#files(MODEL_KINDS[kind].subdirs, MODEL_KINDS[kind].ext, new Set());
  }

  async #files(subdirs: readonly string[], ext: RegExp, seen: Set<string>): Promise<ModelEntry[]> {
    const out: ModelEntry[] = [];
    if (!this.modelsDir) return out;
    for (const sub of subdirs) {
      const dir = join(this.modelsDir, sub);
      let entries: Deno.DirEntry[];
      try {
        entries = await Array.fromAsync(Deno.readDir(dir));
      } catch {
        continue;
      }
      for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
        if (!ext.test(e.name) || seen.has(e.name)) continue;
        const path = join(dir, e.name);
        try {
          if (!(await Deno.stat(path)).isFile) continue;
        } catch {
          continue;
        }
        seen.add(e.name);
        out.push({ name: e.name, path });
      }
    }
    return out;
  }

  /** The model chosen with `POST /sdapi/v1/options` (sd_model_checkpoint), if any. */
  selectedModel?: string;

  /**
   * The named model; without a name the one selected through the options, else the first checkpoint of the
   * models folder (the tiny model when none).
   */
  async modelOrDefault(name: string | undefined): Promise<ModelEntry> {
    if (name !== undefined) return await this.model(name);
    if (this.selectedModel !== undefined) return await this.model(this.selectedModel);
    const all = await this.models();
    return all[1] ?? all[0];
  }

  /**
   * The model a client names, by file name with or without its extension. Names are looked up in the
   * listing, never joined to a path: `../../etc/passwd` is refused (400) before any lookup.
   */
  async model(name: string): Promise<ModelEntry> {
    if (!isPlainName(name)) {
      throw new RequestError(400, `model name must be a file name in the models folder, got ${JSON.stringify(name)}`);
    }
    const all = await this.models();
    const hit = all.find((m) => m.name === name) ??
      all.find((m) => m.name.replace(CHECKPOINT_EXT, "") === name);
    if (!hit) {
      throw new RequestError(
        404,
        `unknown model ${JSON.stringify(name)}; available: ${all.map((m) => m.name).join(", ")}`,
      );
    }
    return hit;
  }

  /** A LoRA by file name, with or without extension (looked up in the listing, like {@link Engine.model}). */
  async lora(name: string): Promise<ModelEntry> {
    return await this.file("lora", name);
  }

  /** A model file of one kind by file name, with or without extension, looked up in its subfolders' listing. */
  async file(kind: ModelKind, name: string): Promise<ModelEntry> {
    const { label, ext } = MODEL_KINDS[kind];
    if (!isPlainName(name)) {
      throw new RequestError(
        400,
        `${label} name must be a file name in the models folder, got ${JSON.stringify(name)}`,
      );
    }
    const all = await this.files(kind);
    const hit = all.find((m) => m.name === name) ?? all.find((m) => m.name.replace(ext, "") === name);
    if (!hit) {
      throw new RequestError(
        404,
        `unknown model ${JSON.stringify(name)} (${label}); available: ${
          all.map((m) => m.name).join(", ") || "none"
        } (looked for in ${MODEL_KINDS[kind].subdirs.map((d) => `${d}/`).join(" or ")})`,
      );
    }
    return hit;
  }

  /**
   * Rewrites a graph document from the network into one that only touches the server's folders, then
   * validates it. `jobId` prefixes the output files. Throws {@link RequestError} (400 with diagnostics
   * naming node, field and JSON pointer; 404 for an unknown model).
   */
  async pipelineFromNetwork(doc: unknown, jobId: string): Promise<Pipeline> {
    const diags: Diagnostic[] = [];
    const source = "request";
    if (doc && typeof doc === "object" && !Array.isArray(doc)) {
      const g = doc as Record<string, unknown>;
      if ("plugins" in g) {
        diags.push({
          source,
          field: "plugins",
          pointer: "/plugins",
          message: "graphs sent to the server may not load plugins",
        });
      }
      const nodes = g.nodes;
      if (nodes && typeof nodes === "object" && !Array.isArray(nodes)) {
        for (const [id, spec] of Object.entries(nodes as Record<string, unknown>)) {
          if (!spec || typeof spec !== "object") continue;
          const s = spec as Record<string, unknown>;
          const inputs = s.inputs;
          if (!inputs || typeof inputs !== "object" || Array.isArray(inputs)) continue;
          await this.#confine(id, String(s.type), inputs as Record<string, unknown>, jobId, diags);
        }
      }
    }
    if (diags.length) {
      throw new RequestError(
        diags.every((d) => d.message.startsWith("unknown model")) ? 404 : 400,
        "invalid graph",
        diags,
      );
    }
    try {
      return await validateGraph(doc as GraphFile, { source });
    } catch (e) {
      if (e instanceof GraphError) throw new RequestError(400, "invalid graph", e.diagnostics);
      throw e;
    }
  }

  #known?: Set<string>;
  #knownTypes(): Set<string> {
    return this.#known ??= new Set(builtinRegistry().types());
  }

  /** Checks and rewrites one node's file inputs in place. */
  async #confine(
    id: string,
    type: string,
    inputs: Record<string, unknown>,
    jobId: string,
    diags: Diagnostic[],
  ): Promise<void> {
    const bad = (input: string, message: string) =>
      diags.push({ source: "request", node: id, input, pointer: pointer("nodes", id, "inputs", input), message });
    const name = (input: string): string | undefined => {
      const v = inputs[input];
      if (v === undefined) return undefined;
      if (typeof v !== "string") return undefined; // the validator reports the type (or a wired input below)
      if (!isPlainName(v)) {
        bad(input, `must be a file name without folders, got ${JSON.stringify(v.slice(0, 80))}`);
        return undefined;
      }
      return v;
    };
    for (const [input, v] of Object.entries(inputs)) {
      if (
        v && typeof v === "object" &&
        (["path", "embeddings_dir", "backend", "preview_path"].includes(input) || FILE_INPUTS[type]?.[input])
      ) {
        bad(input, "may not be wired from another node in a graph sent to the server");
      }
    }
    if (!NETWORK_NODE_TYPES.has(type)) {
      // Unknown types are reported by the validator; known ones outside the list are refused here.
      if (this.#knownTypes().has(type)) {
        diags.push({
          source: "request",
          node: id,
          field: "type",
          pointer: pointer("nodes", id, "type"),
          message: `node type "${type}" is not available to graphs sent to the server`,
        });
      }
      return;
    }
    if (inputs.backend !== undefined && inputs.backend !== "cpu") {
      bad("backend", `only "cpu" is allowed in a graph sent to the server`);
    }
    for (const [input, kind] of Object.entries(FILE_INPUTS[type] ?? {})) {
      const n = name(input);
      if (n === undefined) continue;
      try {
        inputs[input] = (await this.file(kind, n)).path!;
      } catch (e) {
        if (e instanceof RequestError) bad(input, e.message);
        else throw e;
      }
    }
    if (type === "checkpoint") {
      if (inputs.embeddings_dir !== undefined) bad("embeddings_dir", "not allowed in a graph sent to the server");
      const n = name("path");
      if (n !== undefined) {
        try {
          const m = await this.model(n);
          if (!m.path) bad("path", `"${TINY_MODEL}" is the tiny_checkpoint node, not a file`);
          else inputs.path = m.path;
        } catch (e) {
          if (e instanceof RequestError) bad("path", e.message);
          else throw e;
        }
      }
    } else if (type === "sampler") {
      // The live preview file goes to the output folder as preview-<job>_<name> (not one of the job's pictures).
      const v = inputs.preview_path ??
        (inputs.preview !== undefined && inputs.preview !== "none" ? "preview.png" : undefined);
      if (typeof v === "string") {
        const parts = v.split("/");
        if (v.startsWith("/") || !parts.every(isPlainName)) {
          bad(
            "preview_path",
            `must be a relative path without ".." (written inside the output folder), got ${
              JSON.stringify(v.slice(0, 80))
            }`,
          );
        } else inputs.preview_path = join(this.outputDir, `preview-${jobId}_${parts.join("_")}`);
      }
    } else if (type === "save_image") {
      // A relative path's folders become part of the file name: "out/demo.png" → "<job>_out_demo.png".
      const v = inputs.path ?? "output.png";
      if (typeof v === "string") {
        const parts = v.split("/");
        if (v.startsWith("/") || !parts.every(isPlainName)) {
          bad(
            "path",
            `must be a relative path without ".." (written inside the output folder), got ${
              JSON.stringify(v.slice(0, 80))
            }`,
          );
        } else inputs.path = join(this.outputDir, `${jobId}_${parts.join("_")}`);
      }
    } else if (type === "load_image") {
      // An input picture is one the server made before (a previous job's output).
      const n = name("path");
      if (n !== undefined) inputs.path = join(this.outputDir, n);
    }
  }

  /** Runs a pipeline on the shared cache; returns the output files job `jobId` wrote. */
  async run(p: Pipeline, jobId: string, reporter: RunReporter, signal?: AbortSignal): Promise<RunOutput> {
    await Deno.mkdir(this.outputDir, { recursive: true });
    const r = await runPipeline(p, { cache: this.cache, reporter, signal, concurrency: 1 });
    const files: string[] = [];
    for await (const e of Deno.readDir(this.outputDir)) {
      if (e.isFile && e.name.startsWith(`${jobId}_`)) files.push(e.name);
    }
    files.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    return { files, executed: r.executed, cached: r.cached };
  }

  /** The path of output file `name`, only inside the output folder; undefined when not a plain, present file. */
  async outputPath(name: string): Promise<string | undefined> {
    if (!isPlainName(name)) return undefined;
    const path = join(this.outputDir, basename(name));
    try {
      const real = await Deno.realPath(path);
      const root = await Deno.realPath(this.outputDir);
      if (!real.startsWith(root + sep) || !(await Deno.stat(real)).isFile) return undefined;
      return real;
    } catch {
      return undefined;
    }
  }

  /** Releases the loaded models. */
  close(): void {
    this.cache.clear();
  }
}
