/**
 * ComfyUI "API format" workflows (`{"3": {"class_type": "KSampler", "inputs": {…, "model": ["4", 0]}}, …}`)
 * translated into sdflow graph documents: a pure function, used by the server's `POST /prompt` and
 * `POST /v1/graphs/from-comfy`, and by `deno task import-comfy` offline.
 *
 * Only the nodes an output node (SaveImage, PreviewImage) depends on are translated, as ComfyUI runs only
 * those. Structural differences:
 * - ComfyUI applies a ControlNet to a conditioning; sdflow's `controlnet` node wraps the model (for both
 *   prompts, as stable-diffusion.cpp does). A sampler whose positive or negative conditioning passes
 *   through ControlNetApply nodes gets its model wrapped by one `controlnet` node per ControlNet.
 * - CLIPSetLastLayer becomes the `clip_skip` input of the CLIPTextEncode nodes that read its clip.
 * - Sampler and scheduler names are mapped to sdflow's (ComfyUI's `ddim` is its Euler; `normal` is the
 *   uniform-timestep schedule, sdflow's `discrete`); a name sdflow lacks is an error naming node and input.
 * Model file names stay names: the server resolves them inside its `--models` folder.
 */

/** A workflow node that sdflow cannot translate, or a malformed workflow. */
export class ComfyError extends Error {
  constructor(
    message: string,
    /** The ComfyUI node id, its class_type, and the input concerned, when known. */
    readonly node?: string,
    readonly classType?: string,
    readonly input?: string,
  ) {
    super(
      node === undefined
        ? message
        : `node ${node} (${classType ?? "?"})${input !== undefined ? `, input "${input}"` : ""}: ${message}`,
    );
    this.name = "ComfyError";
  }
}

/** One ComfyUI output node and the file path its sdflow `save_image` writes. */
export interface ComfySave {
  readonly node: string;
  readonly classType: string;
  /** save_image's `path`: `<filename_prefix>_<node>.png` (the server adds the job id in front). */
  readonly path: string;
}

/** A translated workflow. */
export interface ComfyTranslation {
  readonly graph: { version: 1; nodes: Record<string, { type: string; inputs: Record<string, unknown> }> };
  readonly saves: readonly ComfySave[];
  /** sdflow node id → the ComfyUI node it comes from (a sampler's controlnet nodes: the sampler). */
  readonly origin: Readonly<Record<string, string>>;
}

/** The class types sdflow translates. */
export const COMFY_CLASS_TYPES = [
  "CheckpointLoaderSimple",
  "CLIPTextEncode",
  "CLIPSetLastLayer",
  "KSampler",
  "KSamplerAdvanced",
  "EmptyLatentImage",
  "VAEEncode",
  "VAEDecode",
  "VAELoader",
  "LoadImage",
  "SaveImage",
  "PreviewImage",
  "LoraLoader",
  "ControlNetLoader",
  "ControlNetApply",
  "ControlNetApplyAdvanced",
  "UpscaleModelLoader",
  "ImageUpscaleWithModel",
] as const;

/** ComfyUI sampler names → sdflow's. */
export const COMFY_SAMPLERS: Readonly<Record<string, string>> = {
  euler: "euler",
  euler_ancestral: "euler_a",
  heun: "heun",
  dpm_2: "dpm2",
  dpmpp_2s_ancestral: "dpm++2s_a",
  dpmpp_2m: "dpm++2m",
  ipndm: "ipndm",
  ipndm_v: "ipndm_v",
  lcm: "lcm",
  // ComfyUI's "ddim" runs its Euler sampler.
  ddim: "euler",
};

/** ComfyUI scheduler names → sdflow's. */
export const COMFY_SCHEDULERS: Readonly<Record<string, string>> = {
  normal: "discrete",
  karras: "karras",
  exponential: "exponential",
  sgm_uniform: "sgm_uniform",
  simple: "simple",
  kl_optimal: "kl_optimal",
};

/** The sdflow output names of each ComfyUI class's output slots. */
const OUTPUTS: Readonly<Record<string, readonly string[]>> = {
  CheckpointLoaderSimple: ["model", "clip", "vae"],
  LoraLoader: ["model", "clip"],
  CLIPTextEncode: ["conditioning"],
  EmptyLatentImage: ["latent"],
  KSampler: ["latent"],
  KSamplerAdvanced: ["latent"],
  VAEEncode: ["latent"],
  VAEDecode: ["image"],
  VAELoader: ["vae"],
  LoadImage: ["image"],
  UpscaleModelLoader: ["upscale_model"],
  ImageUpscaleWithModel: ["image"],
};

interface ComfyNode {
  class_type: string;
  inputs: Record<string, unknown>;
}

/** The name under which the server offers its tiny demo model (a `tiny_checkpoint` node). */
const TINY = "tiny";

/** A workflow body: the API-format object itself, or `{"prompt": {…}}` as clients POST it to /prompt. */
export function comfyPromptOf(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== "object" || Array.isArray(body)) {
    throw new ComfyError("a ComfyUI workflow must be a JSON object of nodes (API format)");
  }
  const b = body as Record<string, unknown>;
  const p = b.prompt;
  if (p && typeof p === "object" && !Array.isArray(p)) return p as Record<string, unknown>;
  return b;
}

/** Translates a ComfyUI API-format workflow into an sdflow graph; throws {@link ComfyError}. */
export function comfyToGraph(body: unknown): ComfyTranslation {
  const prompt = comfyPromptOf(body);
  if ("nodes" in prompt && "links" in prompt) {
    throw new ComfyError(
      'this is ComfyUI\'s UI-format workflow; save it with "Export (API)" (or "Save (API Format)")',
    );
  }
  const nodes = new Map<string, ComfyNode>();
  for (const [id, n] of Object.entries(prompt)) {
    if (!n || typeof n !== "object" || Array.isArray(n)) throw new ComfyError("expected an object", id);
    const c = n as Record<string, unknown>;
    if (typeof c.class_type !== "string") throw new ComfyError('missing "class_type"', id);
    const inputs = c.inputs ?? {};
    if (!inputs || typeof inputs !== "object" || Array.isArray(inputs)) {
      throw new ComfyError('"inputs" must be an object', id, c.class_type);
    }
    nodes.set(id, { class_type: c.class_type, inputs: inputs as Record<string, unknown> });
  }
  const out: ComfyTranslation["graph"]["nodes"] = {};
  const saves: ComfySave[] = [];
  const done = new Map<string, string>(); // ComfyUI id → sdflow id

  const sid = (id: string) => `n${id.replace(/[^A-Za-z0-9_-]/g, "_")}`;

  const node = (id: string): ComfyNode => nodes.get(id)!;
  const fail = (id: string, message: string, input?: string): never => {
    throw new ComfyError(message, id, nodes.get(id)?.class_type, input);
  };

  /** A literal input (a link where a value is needed is an error); `dflt` when absent. */
  const value = (id: string, input: string, dflt?: unknown): unknown => {
    const v = node(id).inputs[input];
    if (Array.isArray(v)) {
      fail(id, "is linked to another node; sdflow needs a value here (convert it back to a widget)", input);
    }
    if (v === undefined) {
      if (dflt === undefined) fail(id, "missing", input);
      return dflt;
    }
    return v;
  };
  const text = (id: string, input: string, dflt?: string): string => {
    const v = value(id, input, dflt);
    if (typeof v !== "string") fail(id, `expected a string, got ${JSON.stringify(v)?.slice(0, 80)}`, input);
    return v as string;
  };
  const num = (id: string, input: string, dflt?: number): number => {
    const v = value(id, input, dflt);
    if (typeof v !== "number" || !Number.isFinite(v)) {
      fail(id, `expected a number, got ${JSON.stringify(v)?.slice(0, 80)}`, input);
    }
    return v as number;
  };

  /** The [node, slot] a linked input names. */
  const link = (id: string, input: string): [string, number] => {
    const v = node(id).inputs[input];
    if (v === undefined) fail(id, "missing (it must be linked to another node)", input);
    if (
      !Array.isArray(v) || v.length !== 2 || (typeof v[0] !== "string" && typeof v[0] !== "number") ||
      !Number.isInteger(v[1])
    ) {
      fail(id, `expected a link ["<node id>", <output index>], got ${JSON.stringify(v)?.slice(0, 80)}`, input);
    }
    const [src, slot] = v as [string | number, number];
    if (!nodes.has(String(src))) fail(id, `links to node ${src}, which is not in the workflow`, input);
    return [String(src), slot];
  };

  /** A reference to what a linked input gets, translating its source first. */
  const ref = (id: string, input: string): { from: string } => {
    let [src, slot] = link(id, input);
    // Pass-through nodes: their output is their input (their effect is applied where it is read).
    for (;;) {
      const cls = node(src).class_type;
      if (cls === "ControlNetApply" && slot === 0) [src, slot] = link(src, "conditioning");
      else if (cls === "ControlNetApplyAdvanced" && (slot === 0 || slot === 1)) {
        [src, slot] = link(src, slot === 0 ? "positive" : "negative");
      } else if (cls === "CLIPSetLastLayer" && slot === 0) [src, slot] = link(src, "clip");
      else break;
    }
    const names = OUTPUTS[node(src).class_type];
    if (names && slot >= names.length) {
      fail(
        id,
        `links to output ${slot} of node ${src} (${node(src).class_type}), which sdflow does not have` +
          (node(src).class_type === "LoadImage" ? " (LoadImage's MASK output is not supported)" : ""),
        input,
      );
    }
    return { from: `${translate(src)}.${names![slot]}` };
  };

  /** Walks a conditioning link back through ControlNetApply nodes; returns them, nearest first. */
  const controlNets = (id: string, input: string): string[] => {
    const found: string[] = [];
    let [src, slot] = link(id, input);
    for (;;) {
      const cls = node(src).class_type;
      if (cls === "ControlNetApply") found.push(src), [src, slot] = link(src, "conditioning");
      else if (cls === "ControlNetApplyAdvanced") {
        found.push(src);
        [src, slot] = link(src, slot === 0 ? "positive" : "negative");
      } else break;
    }
    return found;
  };

  /** A CLIP link's clip_skip from a CLIPSetLastLayer on the way (through LoRA loaders; the nearest wins). */
  const clipSkip = (id: string): number | undefined => {
    let [src, slot] = link(id, "clip");
    for (;;) {
      const cls = node(src).class_type;
      if (cls === "LoraLoader" && slot === 1) [src, slot] = link(src, "clip");
      else if (cls === "CLIPSetLastLayer") {
        const layer = num(src, "stop_at_clip_layer");
        if (!Number.isInteger(layer) || layer > -1 || layer < -12) {
          fail(src, `expected -1 … -12, got ${layer}`, "stop_at_clip_layer");
        }
        return -layer;
      } else return undefined;
    }
  };

  const sampler = (id: string, advanced: boolean): Record<string, unknown> => {
    const name = text(id, "sampler_name");
    const sampler = COMFY_SAMPLERS[name];
    if (!sampler) {
      fail(
        id,
        `sampler ${JSON.stringify(name.slice(0, 80))} is not available in sdflow; available: ${
          Object.keys(COMFY_SAMPLERS).join(", ")
        }`,
        "sampler_name",
      );
    }
    const sched = text(id, "scheduler");
    const scheduler = COMFY_SCHEDULERS[sched];
    if (!scheduler) {
      fail(
        id,
        `scheduler ${JSON.stringify(sched.slice(0, 80))} is not available in sdflow; available: ${
          Object.keys(COMFY_SCHEDULERS).join(", ")
        }`,
        "scheduler",
      );
    }
    const steps = num(id, "steps");
    if (advanced) {
      if (text(id, "add_noise", "enable") !== "enable") {
        fail(id, 'only "enable" is supported (sdflow samplers always start from noise)', "add_noise");
      }
      if (num(id, "start_at_step", 0) !== 0) {
        fail(id, "only 0 is supported (use denoise via KSampler)", "start_at_step");
      }
      if (num(id, "end_at_step", 10000) < steps) fail(id, `must be at least steps (${steps})`, "end_at_step");
    }
    // The model, wrapped by each ControlNet applied to the prompts (farthest first, as ComfyUI stacks them).
    let model = ref(id, "model");
    const cns = [...new Set([...controlNets(id, "positive"), ...controlNets(id, "negative")])].reverse();
    for (const cn of cns) {
      const advancedCn = node(cn).class_type === "ControlNetApplyAdvanced";
      if (advancedCn) {
        if (num(cn, "start_percent", 0) !== 0) fail(cn, "only 0 is supported", "start_percent");
        if (num(cn, "end_percent", 1) !== 1) fail(cn, "only 1 is supported", "end_percent");
      }
      const [loader] = link(cn, "control_net");
      if (node(loader).class_type !== "ControlNetLoader") {
        fail(cn, `must come from a ControlNetLoader, not ${node(loader).class_type}`, "control_net");
      }
      const cnId = `${sid(id)}_cn${sid(cn)}`;
      out[cnId] = {
        type: "controlnet",
        inputs: {
          model,
          path: text(loader, "control_net_name"),
          image: ref(cn, "image"),
          strength: num(cn, "strength", 1),
        },
      };
      model = { from: `${cnId}.model` };
    }
    return {
      model,
      positive: ref(id, "positive"),
      negative: ref(id, "negative"),
      latent: ref(id, "latent_image"),
      seed: num(id, advanced ? "noise_seed" : "seed"),
      steps,
      cfg: num(id, "cfg"),
      sampler,
      scheduler,
      ...(advanced ? {} : { denoise: num(id, "denoise", 1) }),
    };
  };

  /** Translates node `id` (once); returns its sdflow id. */
  const translate = (id: string): string => {
    const known = done.get(id);
    if (known !== undefined) return known;
    const s = sid(id);
    done.set(id, s);
    const cls = node(id).class_type;
    const set = (type: string, inputs: Record<string, unknown>) => out[s] = { type, inputs };
    switch (cls) {
      case "CheckpointLoaderSimple": {
        const name = text(id, "ckpt_name");
        if (name === TINY) set("tiny_checkpoint", {});
        else set("checkpoint", { path: name });
        break;
      }
      case "LoraLoader":
        set("lora", {
          model: ref(id, "model"),
          clip: ref(id, "clip"),
          path: text(id, "lora_name"),
          strength_model: num(id, "strength_model", 1),
          strength_clip: num(id, "strength_clip", 1),
        });
        break;
      case "CLIPTextEncode": {
        const skip = clipSkip(id);
        set("clip_encode", {
          clip: ref(id, "clip"),
          text: text(id, "text", ""),
          ...(skip !== undefined ? { clip_skip: skip } : {}),
        });
        break;
      }
      case "EmptyLatentImage":
        set("empty_latent", {
          width: num(id, "width", 512),
          height: num(id, "height", 512),
          batch: num(id, "batch_size", 1),
        });
        break;
      case "KSampler":
      case "KSamplerAdvanced":
        set("sampler", sampler(id, cls === "KSamplerAdvanced"));
        break;
      case "VAEEncode":
        set("vae_encode", { vae: ref(id, "vae"), image: ref(id, "pixels") });
        break;
      case "VAEDecode":
        set("vae_decode", { vae: ref(id, "vae"), latent: ref(id, "samples") });
        break;
      case "VAELoader":
        set("vae_loader", { path: text(id, "vae_name") });
        break;
      case "LoadImage":
        set("load_image", { path: text(id, "image") });
        break;
      case "UpscaleModelLoader":
        set("upscale_model_loader", { path: text(id, "model_name") });
        break;
      case "ImageUpscaleWithModel":
        set("upscale", { upscale_model: ref(id, "upscale_model"), image: ref(id, "image") });
        break;
      case "SaveImage":
      case "PreviewImage": {
        const prefix = cls === "SaveImage" ? text(id, "filename_prefix", "ComfyUI") : "ComfyUI_temp";
        const safe = prefix.split("/").filter((p) => p !== "" && p !== "." && p !== "..").join("/") || "ComfyUI";
        const path = `${safe}_${id.replace(/[^A-Za-z0-9_-]/g, "_")}.png`;
        set("save_image", { images: ref(id, "images"), path });
        saves.push({ node: id, classType: cls, path });
        break;
      }
      case "ControlNetLoader":
      case "ControlNetApply":
      case "ControlNetApplyAdvanced":
      case "CLIPSetLastLayer":
        // Reached only through a link sdflow has no counterpart for (ref() passes the others through).
        fail(id, "its output is used where sdflow cannot follow it (only by samplers' prompts and CLIPTextEncode)");
        break;
      default:
        fail(id, `node type "${cls}" is not supported by sdflow; supported: ${COMFY_CLASS_TYPES.join(", ")}`);
    }
    return s;
  };

  const outputs = [...nodes].filter(([, n]) => n.class_type === "SaveImage" || n.class_type === "PreviewImage");
  if (!outputs.length) {
    // An unsupported output node is named rather than "no output".
    const other = [...nodes].find(([, n]) => !(COMFY_CLASS_TYPES as readonly string[]).includes(n.class_type));
    if (other) fail(other[0], `node type "${other[1].class_type}" is not supported by sdflow`);
    throw new ComfyError("the workflow has no SaveImage or PreviewImage node, so nothing would run");
  }
  for (const [id] of outputs) translate(id);
  const origin: Record<string, string> = {};
  for (const [comfy, s] of done) origin[s] = comfy;
  for (const s of Object.keys(out)) {
    const m = /^(.*)_cn/.exec(s);
    if (!(s in origin) && m) origin[s] = origin[m[1]];
  }
  return { graph: { version: 1, nodes: out }, saves, origin };
}

/** The files a save node wrote for a job: `<job>_<path stem>.png` or, for a batch, `<job>_<stem>_<i>.png`. */
export function filesOfSave(jobId: string, save: ComfySave, files: readonly string[]): string[] {
  const stem = `${jobId}_${save.path.replace(/\.png$/, "").split("/").join("_")}`;
  return files.filter((f) => f === `${stem}.png` || new RegExp(`^${escapeRe(stem)}_\\d+\\.png$`).test(f));
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
