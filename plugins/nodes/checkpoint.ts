/** `checkpoint`: loads a Stable Diffusion checkpoint and splits it into model, text encoder and VAE. */

import { fileURLToPath } from "node:url";
import { defineNode, NodeInputError, type NodeValues, type RunSettings } from "../node.ts";
import { loadBackendFromManifest } from "../../backends/mod.ts";
import { type LoadOptions, makeTinyCheckpoint, PREDICTIONS, WEIGHT_TYPES } from "../../models/mod.ts";
import { loadCheckpoint } from "./model_layer.ts";

/**
 * Where generated tiny checkpoints are kept (generated once per seed; same seed, same bytes): sdflow's own
 * `.cache/tiny`, whatever folder sdflow runs from.
 */
export const TINY_CACHE_DIR = fileURLToPath(new URL("../../.cache/tiny", import.meta.url));

/** Writes the tiny checkpoint for `seed` under {@link TINY_CACHE_DIR} unless present; returns its path. */
export async function tinyCheckpointPath(seed: number): Promise<string> {
  const path = `${TINY_CACHE_DIR}/tiny-seed${seed}.safetensors`;
  try {
    if ((await Deno.stat(path)).isFile) return path;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.mkdir(TINY_CACHE_DIR, { recursive: true });
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await makeTinyCheckpoint(tmp, { seed });
  await Deno.rename(tmp, path);
  return path;
}

/** Published weights the graphs in graphs/ name, by file name. */
const PUBLISHED: readonly { file: RegExp; what: string; url: string; name: string }[] = [
  {
    file: /turbo/i,
    what: "SDXL-Turbo",
    url: "https://huggingface.co/stabilityai/sdxl-turbo",
    name: "sd_xl_turbo_1.0_fp16.safetensors",
  },
  {
    file: /xl/i,
    what: "Stable Diffusion XL base 1.0",
    url: "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0",
    name: "sd_xl_base_1.0.safetensors",
  },
  {
    file: /./,
    what: "Stable Diffusion 1.5",
    url: "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5",
    name: "v1-5-pruned-emaonly.safetensors",
  },
];

/** Where to get the official weights for a missing checkpoint `path`: the published weights its file name suggests (SD 1.5 otherwise). */
export function modelHelp(nodeId: string, path: string): string {
  const base = path.split(/[\\/]/).pop() ?? path;
  const p = PUBLISHED.find((m) => m.file.test(base))!;
  return `The official ${p.what} weights are published at ${p.url} (file ${p.name}). ` +
    `Download it to that path, or point the graph at your file with --set ${nodeId}.path=/path/to/model.safetensors ` +
    "(or -m with sd.cpp-style flags). To check the pipeline without a download, run: deno task gen graphs/demo.json";
}

/** Size and mtime of a file (null if absent): a loader's cache fingerprint, so an edited file reloads. */
export async function fileFingerprint(path: unknown): Promise<unknown> {
  try {
    const st = await Deno.stat(String(path));
    return [st.size, st.mtime?.getTime() ?? 0];
  } catch {
    return null;
  }
}

/** Name, size and mtime of each file in a folder (an edited or added embedding reloads the checkpoint). */
async function folderFingerprint(dir: unknown): Promise<unknown> {
  try {
    const out: unknown[] = [];
    for await (const e of Deno.readDir(String(dir))) {
      if (e.isDirectory) continue;
      out.push([e.name, await fileFingerprint(`${dir}/${e.name}`)]);
    }
    return out.sort((a, b) => (String((a as unknown[])[0]) < String((b as unknown[])[0]) ? -1 : 1));
  } catch {
    return null;
  }
}

/**
 * What the run's settings (`-t`, `--precision`, `--backend`, `--profile`) and the node's `backend` input ask of the
 * model layer. A backend that a plugin of the graph registers is built if needed and loaded from its
 * manifest (which checks its ABI version and name), then handed on by library path.
 */
export async function loadOptions(
  settings: RunSettings,
  backend: string | undefined,
  placed: { clip?: string; vae?: string } = {},
): Promise<LoadOptions> {
  const resolve = async (name: string | undefined): Promise<string | undefined> => {
    const manifest = name === undefined ? undefined : settings.pluginBackends?.find((b) => b.name === name);
    if (!manifest) return name;
    return (await loadBackendFromManifest(manifest, Deno.cwd(), { threads: settings.threads })).path;
  };
  const main = await resolve(backend ?? settings.backend);
  return {
    threads: settings.threads,
    precision: settings.precision,
    backend: main,
    onProfile: settings.onProfile,
    ...(placed.clip === undefined ? {} : { clipBackend: await resolve(placed.clip) }),
    ...(placed.vae === undefined ? {} : { vaeBackend: await resolve(placed.vae) }),
  };
}

/** Checks that a path exists (file or folder), else a NodeInputError naming `input`. */
export async function requirePath(input: string, path: string, what: string): Promise<void> {
  try {
    await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new NodeInputError(input, `${what} not found: ${path}`);
    throw e;
  }
}

/** The `vae` path input of the loader nodes, and `vae_loader`'s `path`. */
export const VAE_PATH_DESCRIPTION = "A separate VAE (stable-diffusion.cpp's --vae): a .safetensors/.ckpt/.gguf file " +
  "with ldm names (bare encoder.*/decoder.* or first_stage_model.*) or diffusers names, or a diffusers VAE folder " +
  "(e.g. sdxl-vae-fp16-fix, vae-ft-mse-840000). A VAE of another model family (latent channels) is an error.";

/** The `backend` input of the loader nodes. */
export const BACKEND_INPUT = {
  optional: true,
  schema: {
    type: "string",
    minLength: 1,
    description: "Backend to run the networks on: `cpu`, `webgpu`, the name of a backend that a plugin in this " +
      "graph's `plugins` registers, or a library path; ops it lacks run on the CPU. Default: --backend, else cpu.",
    examples: ["cpu", "webgpu"],
  },
} as const;

/** The `clip_backend` and `vae_backend` inputs of the checkpoint loaders: one network placed apart. */
function networkBackendInput(what: string, flag: string) {
  return {
    optional: true,
    schema: {
      type: "string",
      minLength: 1,
      description:
        `Backend of the ${what} when it should not run where the other networks do (stable-diffusion.cpp's ` +
        `${flag} is \`cpu\`): a name or library path as for \`backend\`. Default: \`backend\`.`,
      examples: ["cpu"],
    },
  } as const;
}

/** `clip_backend`: the text encoders' backend (`--clip-on-cpu`). */
export const CLIP_BACKEND_INPUT = networkBackendInput("text encoders", "--clip-on-cpu");
/** `vae_backend`: the VAE's backend (`--vae-on-cpu`). */
export const VAE_BACKEND_INPUT = networkBackendInput("VAE", "--vae-on-cpu");

/** Loads a checkpoint file (.safetensors, .ckpt, .gguf). */
export const checkpoint = defineNode({
  type: "checkpoint",
  category: "loaders",
  description: "Loads a Stable Diffusion checkpoint (.safetensors, .ckpt or .gguf file, or a diffusers folder) " +
    "and outputs its UNet, text encoder and VAE.",
  inputs: {
    path: {
      schema: {
        type: "string",
        minLength: 1,
        description: "Path of the checkpoint file, or of a diffusers folder, relative to the working directory.",
        examples: ["models/v1-5-pruned-emaonly.safetensors"],
      },
    },
    backend: BACKEND_INPUT,
    clip_backend: CLIP_BACKEND_INPUT,
    vae_backend: VAE_BACKEND_INPUT,
    embeddings_dir: {
      optional: true,
      schema: {
        type: "string",
        minLength: 1,
        description: "Folder of textual-inversion embeddings (.pt, .ckpt, .safetensors, .bin; sd.cpp's " +
          "--embd-dir): a prompt uses one by its file name without the extension. Files for another model " +
          "family are skipped with a warning.",
        examples: ["models/embeddings"],
      },
    },
    prediction: {
      optional: true,
      schema: {
        enum: PREDICTIONS,
        description: "What the UNet predicts: `eps` (noise) or `v` (v-prediction, SD 2.x 768-v models); " +
          "stable-diffusion.cpp's --prediction. Default: what the file says (a v_pred tensor), else for SD 2.x " +
          "stable-diffusion.cpp's UNet probe, else eps. Contradicting a v_pred tensor is an error.",
      },
    },
    vae: {
      optional: true,
      schema: {
        type: "string",
        minLength: 1,
        description: `${VAE_PATH_DESCRIPTION} Used instead of the checkpoint's own VAE.`,
        examples: ["models/vae-ft-mse-840000-ema-pruned.safetensors"],
      },
    },
    weight_type: {
      optional: true,
      schema: {
        enum: WEIGHT_TYPES,
        description: "Convert the weights to this type when loading (stable-diffusion.cpp's --type): q8_0, q5_1, " +
          "q5_0, q4_1 and q4_0 are ggml's block formats (less memory, slightly different pictures), f16/f32 " +
          "plain floats. As sd.cpp, biases, norms, embeddings and the UNet's time embedding keep their type, " +
          "and a block format only applies to weights whose rows are whole blocks of 32. Default: as stored.",
      },
    },
  },
  outputs: { model: "MODEL", clip: "CLIP", vae: "VAE" },
  fingerprint: async (values: NodeValues) => [
    await fileFingerprint(values.path),
    values.embeddings_dir === undefined ? null : await folderFingerprint(values.embeddings_dir),
    values.vae === undefined ? null : await fileFingerprint(values.vae),
  ],
  async run({ path, backend, clip_backend, vae_backend, embeddings_dir, prediction, vae, weight_type }, ctx) {
    try {
      await Deno.stat(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        // One line: the CLI prints errors as single lines.
        throw new NodeInputError("path", `model file not found: ${path}. ${modelHelp(ctx.nodeId, path)}`);
      }
      throw e;
    }
    if (embeddings_dir !== undefined) {
      let isDir = false;
      try {
        isDir = (await Deno.stat(embeddings_dir)).isDirectory;
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      if (!isDir) throw new NodeInputError("embeddings_dir", `embedding folder not found: ${embeddings_dir}`);
    }
    if (vae !== undefined) await requirePath("vae", vae, "VAE file");
    const opts = await loadOptions(ctx.settings, backend, { clip: clip_backend, vae: vae_backend });
    const ckpt = await loadCheckpoint(path, {
      ...opts,
      onWarning: (m) => ctx.log(m),
      ...(embeddings_dir === undefined ? {} : { embeddingDir: embeddings_dir }),
      ...(prediction === undefined ? {} : { prediction }),
      ...(vae === undefined ? {} : { vae }),
      ...(weight_type === undefined ? {} : { weightType: weight_type }),
    });
    ctx.onDispose(() => ckpt.dispose(), { bytes: ckpt.weightBytes });
    if (ckpt.predictionSource === "probe") {
      ctx.log(
        `${ctx.nodeId}: SD 2.x ${ckpt.denoiser.prediction}-prediction (stable-diffusion.cpp's UNet probe; ` +
          `set prediction / --prediction to choose)`,
      );
    }
    ctx.publish({
      family: ckpt.family,
      model: path.split(/[\\/]/).pop(),
      // The prediction the model runs with (decided by the file or stable-diffusion.cpp's probe when not given).
      prediction: ckpt.denoiser.prediction,
    });
    return { model: ckpt.denoiser, clip: ckpt.textEncoder, vae: ckpt.vae };
  },
  async estimate({ path, vae }) {
    let bytes = 0;
    let note: string | undefined;
    try {
      bytes = (await Deno.stat(path)).size;
    } catch {
      note = `${path} is not present: load size unknown`;
    }
    const meta = { checkpoint: path };
    return {
      ops: [{
        op: "load_weights",
        flops: 0,
        bytes,
        note: "memory-mapped by the backend; each network compiles on first use",
      }],
      // A separate VAE is priced from its own file.
      outputs: { model: meta, clip: meta, vae: vae === undefined ? meta : { checkpoint: vae } },
      note,
    };
  },
});

/** The demo's checkpoint: tiny, SD-shaped, random weights. */
export const tinyCheckpoint = defineNode({
  type: "tiny_checkpoint",
  category: "loaders",
  description: "A tiny SD 1.x-shaped checkpoint with RANDOM weights, generated from a seed (into .cache/tiny/). " +
    "It checks that the pipeline runs end to end in seconds; its pictures are noise, not art.",
  inputs: {
    seed: {
      schema: { type: "integer", minimum: 0, maximum: 4294967295, default: 0, description: "Seed of the weights." },
    },
    backend: BACKEND_INPUT,
    clip_backend: CLIP_BACKEND_INPUT,
    vae_backend: VAE_BACKEND_INPUT,
  },
  outputs: { model: "MODEL", clip: "CLIP", vae: "VAE" },
  async run({ seed, backend, clip_backend, vae_backend }, ctx) {
    ctx.log(`${ctx.nodeId}: the weights are RANDOM (tiny demo model, seed ${seed}): expect noise, not a picture`);
    const path = await tinyCheckpointPath(seed);
    const opts = await loadOptions(ctx.settings, backend, { clip: clip_backend, vae: vae_backend });
    const ckpt = await loadCheckpoint(path, opts);
    ctx.onDispose(() => ckpt.dispose(), { bytes: ckpt.weightBytes });
    ctx.publish({ family: ckpt.family, model: `tiny (random weights, seed ${seed})` });
    return { model: ckpt.denoiser, clip: ckpt.textEncoder, vae: ckpt.vae };
  },
  async estimate({ seed }) {
    // The networks are priced from the checkpoint's header, so the tiny file is made (once, as a run would).
    const path = await tinyCheckpointPath(seed);
    const meta = { checkpoint: path };
    return {
      ops: [{ op: "load_weights", flops: 0, bytes: (await Deno.stat(path)).size, note: "tiny random weights" }],
      outputs: { model: meta, clip: meta, vae: meta },
    };
  },
});
