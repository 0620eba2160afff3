/**
 * ComfyUI's discovery endpoints in ComfyUI's JSON shapes: `GET /object_info[/:class]` (the node types
 * sdflow's import translates, with their inputs — widget ranges are sdflow's limits — and, for the
 * loaders, the files of `--models`) and `GET /system_stats` (sdflow's version in place of ComfyUI's and
 * Python's; the device that runs the server's jobs).
 */

import { builtinRegistry } from "../dsl/validate.ts";
import { COMFY_SAMPLERS, COMFY_SCHEDULERS } from "./comfy.ts";
import type { Engine } from "./engine.ts";
import denoJson from "../deno.json" with { type: "json" };

/** sdflow's version (deno.json). */
export const SDFLOW_VERSION: string = denoJson.version;

/** One input as ComfyUI describes it: `[TYPE]`, `[TYPE, options]` or `[[choices], options?]`. */
type ComfyInput =
  | readonly [string | readonly string[]]
  | readonly [string | readonly string[], Record<string, unknown>];

/** A node type as `/object_info` shows it. */
export interface ComfyNodeInfo {
  input: {
    required: Record<string, ComfyInput>;
    optional?: Record<string, ComfyInput>;
    hidden?: Record<string, string>;
  };
  input_order: { required: string[]; optional?: string[]; hidden?: string[] };
  output: string[];
  output_is_list: boolean[];
  output_name: string[];
  name: string;
  display_name: string;
  description: string;
  python_module: string;
  category: string;
  output_node: boolean;
}

/** The file lists the loaders offer (names as clients send them back). */
export interface ComfyFileLists {
  checkpoints: readonly string[];
  loras: readonly string[];
  controlnets: readonly string[];
  upscalers: readonly string[];
  vaes: readonly string[];
  images: readonly string[];
}

/** `{min, max}` of an sdflow node input's schema (the limits a translated workflow is validated against). */
function limits(type: string, input: string): { min: number; max: number } {
  const schema = builtinRegistry().get(type)?.inputs[input]?.schema as
    | { minimum?: number; maximum?: number }
    | undefined;
  if (schema?.minimum === undefined || schema.maximum === undefined) {
    throw new Error(`sdflow node "${type}" input "${input}" has no numeric range`);
  }
  return { min: schema.minimum, max: schema.maximum };
}

const int = (type: string, input: string, dflt: number, extra: Record<string, unknown> = {}): ComfyInput => [
  "INT",
  { default: dflt, ...limits(type, input), step: 1, ...extra },
];
const float = (type: string, input: string, dflt: number, step = 0.01): ComfyInput => [
  "FLOAT",
  { default: dflt, ...limits(type, input), step, round: step },
];

interface Spec {
  display: string;
  category: string;
  required: Record<string, ComfyInput>;
  optional?: Record<string, ComfyInput>;
  hidden?: Record<string, string>;
  output: string[];
  outputName?: string[];
  outputNode?: boolean;
  description: string;
}

function specs(files: ComfyFileLists): Record<string, Spec> {
  const samplers = Object.keys(COMFY_SAMPLERS);
  const schedulers = Object.keys(COMFY_SCHEDULERS);
  // ComfyUI's seed widget runs to 2^64 - 1; sdflow's seeds are non-negative JavaScript integers here.
  const seed: ComfyInput = ["INT", { default: 0, min: 0, max: Number.MAX_SAFE_INTEGER, control_after_generate: true }];
  const sampling = {
    steps: int("sampler", "steps", 20),
    cfg: float("sampler", "cfg", 8, 0.1),
    sampler_name: [samplers],
    scheduler: [schedulers],
    positive: ["CONDITIONING"],
    negative: ["CONDITIONING"],
    latent_image: ["LATENT"],
  } as const;
  const image = [files.images, { image_upload: true }] as const;
  const hidden = { prompt: "PROMPT", extra_pnginfo: "EXTRA_PNGINFO" };
  return {
    CheckpointLoaderSimple: {
      display: "Load Checkpoint",
      category: "loaders",
      required: { ckpt_name: [files.checkpoints] },
      output: ["MODEL", "CLIP", "VAE"],
      description: 'A checkpoint of --models ("tiny": random weights, for trying the API).',
    },
    CLIPTextEncode: {
      display: "CLIP Text Encode (Prompt)",
      category: "conditioning",
      required: { text: ["STRING", { multiline: true, dynamicPrompts: true }], clip: ["CLIP"] },
      output: ["CONDITIONING"],
      description: "Encodes a prompt.",
    },
    CLIPSetLastLayer: {
      display: "CLIP Set Last Layer",
      category: "conditioning",
      required: { clip: ["CLIP"], stop_at_clip_layer: ["INT", { default: -1, min: -12, max: -1, step: 1 }] },
      output: ["CLIP"],
      description: "The clip_skip of the prompts encoded with this clip.",
    },
    KSampler: {
      display: "KSampler",
      category: "sampling",
      required: {
        model: ["MODEL"],
        seed,
        ...sampling,
        denoise: ["FLOAT", { default: 1, min: 0, max: 1, step: 0.01 }],
      },
      output: ["LATENT"],
      description: "Samples a latent.",
    },
    KSamplerAdvanced: {
      display: "KSampler (Advanced)",
      category: "sampling",
      required: {
        model: ["MODEL"],
        // sdflow runs the whole schedule from noise only.
        add_noise: [["enable"]],
        noise_seed: seed,
        ...sampling,
        start_at_step: ["INT", { default: 0, min: 0, max: 0, step: 1 }],
        end_at_step: ["INT", { default: 10000, min: 0, max: 10000, step: 1 }],
        return_with_leftover_noise: [["disable"]],
      },
      output: ["LATENT"],
      description: "Samples a latent over the whole schedule (start_at_step 0, end_at_step at least steps).",
    },
    EmptyLatentImage: {
      display: "Empty Latent Image",
      category: "latent",
      required: {
        width: int("empty_latent", "width", 512, { step: 8 }),
        height: int("empty_latent", "height", 512, { step: 8 }),
        batch_size: int("empty_latent", "batch", 1),
      },
      output: ["LATENT"],
      description: "A latent of noise to start from.",
    },
    VAEEncode: {
      display: "VAE Encode",
      category: "latent",
      required: { pixels: ["IMAGE"], vae: ["VAE"] },
      output: ["LATENT"],
      description: "Encodes a picture (the posterior mean).",
    },
    VAEDecode: {
      display: "VAE Decode",
      category: "latent",
      required: { samples: ["LATENT"], vae: ["VAE"] },
      output: ["IMAGE"],
      description: "Decodes a latent into a picture.",
    },
    VAELoader: {
      display: "Load VAE",
      category: "loaders",
      required: { vae_name: [files.vaes] },
      output: ["VAE"],
      description: "A VAE of --models (VAE/ or vae/).",
    },
    LoadImage: {
      display: "Load Image",
      category: "image",
      required: { image },
      output: ["IMAGE"],
      description:
        "A picture uploaded with /upload/image (or made by an earlier job). Its MASK output is not supported.",
    },
    SaveImage: {
      display: "Save Image",
      category: "image",
      required: { images: ["IMAGE"], filename_prefix: ["STRING", { default: "ComfyUI" }] },
      hidden,
      output: [],
      outputNode: true,
      description: "Saves the pictures to the server's output folder.",
    },
    PreviewImage: {
      display: "Preview Image",
      category: "image",
      required: { images: ["IMAGE"] },
      hidden,
      output: [],
      outputNode: true,
      description: "Saves the pictures to the server's output folder (as ComfyUI_temp).",
    },
    LoraLoader: {
      display: "Load LoRA",
      category: "loaders",
      required: {
        model: ["MODEL"],
        clip: ["CLIP"],
        lora_name: [files.loras],
        strength_model: float("lora", "strength_model", 1),
        strength_clip: float("lora", "strength_clip", 1),
      },
      output: ["MODEL", "CLIP"],
      description: "A LoRA of --models (Lora/ or loras/).",
    },
    ControlNetLoader: {
      display: "Load ControlNet Model",
      category: "loaders",
      required: { control_net_name: [files.controlnets] },
      output: ["CONTROL_NET"],
      description: "A ControlNet of --models (ControlNet/ or controlnet/).",
    },
    ControlNetApply: {
      display: "Apply ControlNet (OLD)",
      category: "conditioning/controlnet",
      required: {
        conditioning: ["CONDITIONING"],
        control_net: ["CONTROL_NET"],
        image: ["IMAGE"],
        strength: float("controlnet", "strength", 1),
      },
      output: ["CONDITIONING"],
      description: "Applied to the sampler's model, for both prompts (as stable-diffusion.cpp does).",
    },
    ControlNetApplyAdvanced: {
      display: "Apply ControlNet",
      category: "conditioning/controlnet",
      required: {
        positive: ["CONDITIONING"],
        negative: ["CONDITIONING"],
        control_net: ["CONTROL_NET"],
        image: ["IMAGE"],
        strength: float("controlnet", "strength", 1),
        start_percent: ["FLOAT", { default: 0, min: 0, max: 0, step: 0.001 }],
        end_percent: ["FLOAT", { default: 1, min: 1, max: 1, step: 0.001 }],
      },
      optional: { vae: ["VAE"] },
      output: ["CONDITIONING", "CONDITIONING"],
      outputName: ["positive", "negative"],
      description: "Applied to the sampler's model over the whole schedule (start 0, end 1).",
    },
    UpscaleModelLoader: {
      display: "Load Upscale Model",
      category: "loaders",
      required: { model_name: [files.upscalers] },
      output: ["UPSCALE_MODEL"],
      description: "An upscaler of --models (ESRGAN/, RealESRGAN/ or upscale_models/).",
    },
    ImageUpscaleWithModel: {
      display: "Upscale Image (using Model)",
      category: "image/upscaling",
      required: { upscale_model: ["UPSCALE_MODEL"], image: ["IMAGE"] },
      output: ["IMAGE"],
      description: "Upscales a picture with an ESRGAN model.",
    },
  };
}

/** `/object_info`: every ComfyUI node type the import translates, in ComfyUI's shape. */
export function comfyObjectInfo(files: ComfyFileLists): Record<string, ComfyNodeInfo> {
  const out: Record<string, ComfyNodeInfo> = {};
  for (const [name, s] of Object.entries(specs(files))) {
    out[name] = {
      input: {
        required: s.required,
        ...(s.optional ? { optional: s.optional } : {}),
        ...(s.hidden ? { hidden: s.hidden } : {}),
      },
      input_order: {
        required: Object.keys(s.required),
        ...(s.optional ? { optional: Object.keys(s.optional) } : {}),
        ...(s.hidden ? { hidden: Object.keys(s.hidden) } : {}),
      },
      output: s.output,
      output_is_list: s.output.map(() => false),
      output_name: s.outputName ?? s.output,
      name,
      display_name: s.display,
      description: s.description,
      python_module: "nodes",
      category: s.category,
      output_node: s.outputNode ?? false,
    };
  }
  return out;
}

/** The file lists of an engine's folders: checkpoints, LoRAs, ControlNets, upscalers, VAEs, uploaded pictures. */
export async function comfyFileLists(engine: Engine): Promise<ComfyFileLists> {
  const names = (l: readonly { name: string }[]) => l.map((m) => m.name);
  const images: string[] = [];
  try {
    for await (const e of Deno.readDir(engine.outputDir)) {
      // Uploads, as ComfyUI lists its input folder (not the jobs' outputs, named <job id>_…, init- or preview-).
      if (!e.isFile || !/\.png$/i.test(e.name)) continue;
      if (/^[0-9a-f]{8}-[0-9a-f]{4}-/i.test(e.name) || /^(init|preview)-/.test(e.name)) continue;
      images.push(e.name);
    }
  } catch {
    // No output folder yet: no pictures.
  }
  return {
    checkpoints: names(await engine.models()),
    loras: names(await engine.loras()),
    controlnets: names(await engine.files("controlnet")),
    upscalers: names(await engine.files("upscaler")),
    vaes: names(await engine.files("vae")),
    images: images.sort(),
  };
}

/** The CPU's model name (Linux), else the architecture. */
async function cpuName(): Promise<string> {
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    const m = /^model name\s*:\s*(.+)$/m.exec(info);
    if (m) return `cpu: ${m[1].trim()}`;
  } catch {
    // Not Linux.
  }
  return `cpu: ${Deno.build.arch}`;
}

/**
 * `/system_stats` in ComfyUI's shape. Python and PyTorch do not exist here: `comfyui_version` and
 * `python_version` say sdflow's and Deno's versions. The device is the CPU that runs this process's jobs
 * (graphs from the network run on the CPU backend); its "vram" is the machine's memory, as ComfyUI reports
 * a CPU device. `argv` is not shown (it may hold the API key).
 */
export async function comfySystemStats(queue: string): Promise<Record<string, unknown>> {
  let total = 0, free = 0;
  try {
    const m = Deno.systemMemoryInfo();
    total = m.total;
    free = m.available;
  } catch {
    // Unknown: zeros.
  }
  return {
    system: {
      os: Deno.build.os === "windows" ? "nt" : "posix",
      ram_total: total,
      ram_free: free,
      comfyui_version: `sdflow ${SDFLOW_VERSION}`,
      python_version: `Deno ${Deno.version.deno} (V8 ${Deno.version.v8}, TypeScript ${Deno.version.typescript})`,
      pytorch_version: "",
      embedded_python: false,
      argv: ["sdflow", "serve"],
      sdflow_version: SDFLOW_VERSION,
      sdflow_queue: queue,
    },
    devices: [{
      name: await cpuName(),
      type: "cpu",
      index: 0,
      vram_total: total,
      vram_free: free,
      torch_vram_total: 0,
      torch_vram_free: 0,
    }],
  };
}
