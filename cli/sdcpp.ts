/**
 * stable-diffusion.cpp's command line (`sd -m model.safetensors -p "a cat" …`),
 * turned into the default txt2img or img2img graph. Flag values are checked by
 * the graph's schema, and errors name the flag that set them.
 */

import yargsParser from "yargs-parser";
import { graph } from "../dsl/builder.ts";
import { type Diagnostic, didYouMean, GraphError, pointer } from "../dsl/errors.ts";
import type { GraphFile } from "../dsl/format.ts";
import { type Override, parseValue } from "../dsl/overrides.ts";
import { builtinRegistry } from "../dsl/validate.ts";
import type { InputSpec, JsonSchema } from "../plugins/node.ts";
import { randomSeed } from "../plugins/nodes/sampler.ts";
import { LORA_APPLY_MODES } from "../plugins/nodes/lora.ts";
import type { WeightType } from "../models/mod.ts";

/** A mistake on the command line itself (exit code 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** One sd.cpp flag: its names and which graph input it sets. */
interface FlagSpec {
  readonly names: readonly string[];
  readonly target?: readonly [node: string, input: string];
  readonly default?: string;
  readonly help: string;
  /** A switch without a value (`--vae-tiling`). */
  readonly boolean?: true;
}

/** The sd.cpp flags sdflow understands, with sd.cpp's defaults. */
export const SDCPP_FLAGS: readonly FlagSpec[] = [
  { names: ["m", "model"], target: ["checkpoint", "path"], help: "path to the model (.safetensors, .ckpt, .gguf)" },
  { names: ["p", "prompt"], target: ["positive", "text"], default: "", help: "the prompt" },
  { names: ["n", "negative-prompt"], target: ["negative", "text"], default: "", help: "the negative prompt" },
  { names: ["s", "seed"], target: ["sampler", "seed"], default: "42", help: "RNG seed; < 0 for a random seed" },
  { names: ["cfg-scale"], target: ["sampler", "cfg"], default: "7", help: "classifier-free guidance scale" },
  { names: ["rng"], target: ["sampler", "rng"], default: "cuda", help: "cuda | std_default | cpu" },
  { names: ["t", "threads"], help: "CPU threads (default: all cores)" },
  { names: ["W", "width"], target: ["latent", "width"], default: "512", help: "image width (multiple of 8)" },
  { names: ["H", "height"], target: ["latent", "height"], default: "512", help: "image height (multiple of 8)" },
  { names: ["sampling-method"], target: ["sampler", "sampler"], default: "euler_a", help: "sampling method" },
  { names: ["steps"], target: ["sampler", "steps"], default: "20", help: "sampling steps" },
  {
    names: ["eta"],
    target: ["sampler", "eta"],
    help: "noise per step: euler_a, dpm++2s_a (default 1), ddim_trailing, tcd (default 0)",
  },
  {
    names: ["schedule", "scheduler"],
    target: ["sampler", "scheduler"],
    default: "default",
    help: "noise schedule (default: per sampling method, as sd.cpp)",
  },
  {
    names: ["o", "output"],
    target: ["save", "path"],
    default: "output.png",
    help: "output image (.png, .jpg or .webp)",
  },
  { names: ["i", "init-img"], target: ["image", "path"], help: "initial image: img2img" },
  { names: ["mask"], target: ["mask", "path"], help: "inpainting mask (white: repaint), the size of -i's picture" },
  { names: ["strength"], target: ["sampler", "denoise"], default: "0.75", help: "img2img strength" },
  { names: ["b", "batch-count"], help: "number of images (default 1)" },
  {
    names: ["embd-dir"],
    target: ["checkpoint", "embeddings_dir"],
    help: "folder of textual-inversion embeddings, used in prompts by file name",
  },
  {
    names: ["lora-model-dir"],
    help: "folder of LoRA files, applied by <lora:name:multiplier> tags in the prompt (tags are removed from it)",
  },
  {
    names: ["lora-apply-mode"],
    default: "auto",
    help: "auto | immediately (merge into the weights) | at_runtime (add up(down(x)) in each patched layer)",
  },
  {
    names: ["control-net"],
    target: ["controlnet", "path"],
    help: "ControlNet file (SD 1.x, original single-file layout)",
  },
  { names: ["control-image"], target: ["control_image", "path"], help: "control image for the ControlNet" },
  {
    names: ["control-strength"],
    target: ["controlnet", "strength"],
    default: "0.9",
    help: "ControlNet strength",
  },
  { names: ["canny"], boolean: true, help: "apply the canny edge preprocessor to the control image" },
  { names: ["clip-skip"], target: ["positive", "clip_skip"], default: "-1", help: "CLIP layers to skip; -1: auto" },
  { names: ["vae"], target: ["checkpoint", "vae"], help: "a separate VAE file or diffusers VAE folder" },
  {
    names: ["prediction"],
    target: ["checkpoint", "prediction"],
    help: "eps | v: what the UNet predicts (default: from the file; SD 2.x: probed)",
  },
  {
    names: ["M", "mode"],
    default: "txt2img",
    help: "txt2img | img2img (implied by -i) | upscale (-i IN -o OUT) | convert (-m IN -o OUT.gguf --type T)",
  },
  {
    names: ["type"],
    target: ["checkpoint", "weight_type"],
    help: "weight type: f32, f16, q8_0, q5_1, q5_0, q4_1, q4_0 (quantized on load; with -M convert: the output's)",
  },
  {
    names: ["taesd"],
    target: ["taesd", "path"],
    help: "decode (and encode) with this TAESD file instead of the checkpoint's VAE",
  },
  {
    names: ["preview"],
    default: "none",
    help: "live preview while sampling: none | proj | tae (needs --taesd) | vae",
  },
  { names: ["preview-path"], target: ["sampler", "preview_path"], default: "preview.png", help: "preview PNG path" },
  {
    names: ["preview-interval"],
    target: ["sampler", "preview_interval"],
    default: "1",
    help: "steps between preview updates",
  },
  { names: ["preview-noisy"], boolean: true, help: "preview the noisy latent, not the denoised estimate" },
  {
    names: ["taesd-preview-only"],
    boolean: true,
    help: "with --preview tae: TAESD for previews only, the checkpoint's VAE for the final image",
  },
  { names: ["vae-tiling"], boolean: true, help: "run the VAE in tiles (bounded memory for big images)" },
  {
    names: ["clip-on-cpu"],
    boolean: true,
    help: "with --backend other than cpu: run the text encoders on the CPU (the checkpoint's clip_backend)",
  },
  {
    names: ["vae-on-cpu"],
    boolean: true,
    help: "with --backend other than cpu: run the VAE (or TAESD) on the CPU (vae_backend, the taesd node's backend)",
  },
  {
    names: ["control-net-cpu"],
    boolean: true,
    help: "with --backend other than cpu: run the ControlNet on the CPU (the controlnet node's backend)",
  },
  {
    names: ["vae-tile-size"],
    target: ["decode", "tile_size"],
    default: "32",
    help: "VAE tile size in latent pixels, N or NxN (encoding uses twice this)",
  },
  {
    names: ["vae-tile-overlap"],
    target: ["decode", "tile_overlap"],
    default: "0.5",
    help: "VAE tile overlap, a fraction of the tile",
  },
  { names: ["upscale-model"], target: ["upscaler", "path"], help: "ESRGAN model to upscale the final images with" },
  {
    names: ["upscale-repeats"],
    target: ["upscale", "repeats"],
    default: "1",
    help: "how many times to run the upscaler",
  },
  {
    names: ["upscale-tile-size"],
    target: ["upscale", "tile_size"],
    default: "128",
    help: "upscaler tile size in input pixels",
  },
  { names: ["v", "verbose"], help: "show progress of every node, and stack traces on errors" },
];

/** sd.cpp flags sdflow knows of but does not implement yet (an error says so rather than "unknown"). */
const NOT_YET = [
  "diffusion-model",
  "clip_l",
  "clip_g",
  "t5xxl",
  "vae-relative-tile-size",
  "normalize-input",
  "stacked-id-embd-dir",
  "input-id-images-dir",
  "style-ratio",
  "guidance",
  "slg-scale",
  "skip-layers",
];

/** sdflow's own flags, accepted in both modes. */
export const OWN_FLAGS = {
  boolean: ["dry-run", "verbose", "help", "profile"],
  string: ["set", "set-ref", "backend", "precision", "concurrency", "threads", "timings-json"],
  alias: { v: "verbose", h: "help", t: "threads" },
} as const;

/** Parsed flags of either mode. */
export interface ParsedArgs {
  readonly positional: readonly string[];
  readonly flags: Readonly<Record<string, string | boolean | undefined>>;
  /** `--set` and `--set-ref` overrides, in command-line order. */
  readonly sets: readonly Override[];
  /** How each flag was written (canonical name → `-s` or `--seed`), for messages. */
  readonly spelled: Readonly<Record<string, string>>;
}

function last(v: unknown): unknown {
  return Array.isArray(v) ? v[v.length - 1] : v;
}

/** The flags that take a value in a mode: long names, and long name → short names. */
function valueFlags(sdcpp: boolean): { strings: string[]; booleans: string[]; alias: Record<string, string[]> } {
  const strings: string[] = [...OWN_FLAGS.string];
  const booleans: string[] = [...OWN_FLAGS.boolean];
  // long name → short names: with "strip-aliased", flags come back under their long names.
  const alias: Record<string, string[]> = { verbose: ["v"], help: ["h"], threads: ["t"] };
  if (sdcpp) {
    for (const f of SDCPP_FLAGS) {
      if (f.names.includes("verbose")) continue;
      (f.boolean ? booleans : strings).push(f.names[f.names.length - 1]);
      if (f.names.length > 1) alias[f.names[f.names.length - 1]] = f.names.slice(0, -1) as string[];
    }
  }
  return { strings, booleans, alias };
}

/** Every name (long and short) of the flags that take a value in a mode → the long name. */
function valueFlagNames(sdcpp: boolean): Map<string, string> {
  const { strings, alias } = valueFlags(sdcpp);
  const names = new Map<string, string>();
  for (const s of strings) {
    names.set(s, s);
    for (const n of alias[s] ?? []) names.set(n, s);
  }
  return names;
}

/** The name of a flag argument (`-p`, `--seed=3` → `p`, `seed`); undefined for a value (`-1`, `a cat`). */
function flagName(arg: string): string | undefined {
  return /^--?[A-Za-z]/.test(arg) ? arg.replace(/^--?/, "").split("=")[0] : undefined;
}

/**
 * Where the arguments that are not flags nor flag values are (everything after `--` is one), given the
 * flags of both modes: so a graph file may come before, between or after the flags.
 */
export function positionalIndexes(argv: readonly string[]): number[] {
  const takesValue = valueFlagNames(true);
  const out: number[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      for (let j = i + 1; j < argv.length; j++) out.push(j);
      break;
    }
    const name = flagName(a);
    if (name === undefined) out.push(i);
    else if (!a.includes("=") && takesValue.has(name)) i++;
  }
  return out;
}

/** Parses argv with the given flags; unknown flags and flags missing their value are a {@link UsageError}. */
export function parseArgs(argv: readonly string[], sdcpp: boolean): ParsedArgs {
  const { strings, booleans, alias } = valueFlags(sdcpp);
  // A flag that takes a value must get one: `-p` last, or followed by another flag, is a mistake
  // (yargs would read it as ""). A value that starts with "-" is written `--prompt=-text`.
  const takesValue = valueFlagNames(sdcpp);
  for (let i = 0; i < argv.length && argv[i] !== "--"; i++) {
    const name = flagName(argv[i]);
    if (name === undefined || argv[i].includes("=") || !takesValue.has(name)) continue;
    const next = argv[i + 1];
    if (next === undefined || next === "--" || flagName(next) !== undefined) {
      const got = next === undefined ? "" : `, got the flag ${next} (a value starting with "-": ${argv[i]}=VALUE)`;
      throw new UsageError(`${argv[i]} needs a value${got}`);
    }
    i++;
  }
  const parsed = yargsParser([...argv], {
    string: strings,
    boolean: booleans,
    alias,
    configuration: {
      "camel-case-expansion": false,
      "strip-aliased": true,
      "dot-notation": false,
      "parse-numbers": false,
      "parse-positional-numbers": false,
      "boolean-negation": false,
    },
  });
  const known = new Set(["_", "--", ...strings, ...booleans, ...Object.keys(alias)]);
  for (const key of Object.keys(parsed)) {
    if (known.has(key)) continue;
    const dash = key.length === 1 ? "-" : "--";
    if (NOT_YET.includes(key)) {
      throw new UsageError(`${dash}${key} is a stable-diffusion.cpp flag sdflow does not support yet`);
    }
    const sdcppFlag = SDCPP_FLAGS.find((f) => f.names.includes(key));
    if (!sdcpp && sdcppFlag) {
      const to = sdcppFlag.target ? ` (e.g. --set ${sdcppFlag.target.join(".")}=…, if the graph has that node)` : "";
      throw new UsageError(
        `${dash}${key} is a stable-diffusion.cpp flag, used without a graph file; with a graph, set inputs with ` +
          `--set node.input=value${to}`,
      );
    }
    const names = sdcpp ? SDCPP_FLAGS.flatMap((f) => f.names) : [];
    throw new UsageError(
      `unknown flag ${dash}${key}${didYouMean(key, [...names, ...known].filter((k) => k.length > 1))}`,
    );
  }
  const flags: Record<string, string | boolean | undefined> = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (k === "_" || k === "--" || k === "set" || k === "set-ref") continue;
    const x = last(v);
    flags[k] = typeof x === "boolean" ? x : x === undefined ? undefined : String(x);
  }
  // --set and --set-ref in the order given (a later one for the same input wins).
  const set: Override[] = [];
  for (let i = 0; i < argv.length && argv[i] !== "--"; i++) {
    const m = /^--(set|set-ref)(?:=(.*))?$/s.exec(argv[i]);
    if (!m) continue;
    const text = m[2] ?? argv[++i];
    set.push(m[1] === "set" ? text : { ref: text });
  }
  const canonical = new Map<string, string>();
  for (const [long, shorts] of Object.entries(alias)) for (const n of [long, ...shorts]) canonical.set(n, long);
  const spelled: Record<string, string> = {};
  for (const a of argv) {
    const m = /^(--?)([^=]+)/.exec(a);
    if (m && !/^-\d/.test(a)) spelled[canonical.get(m[2]) ?? m[2]] = m[1] + m[2];
  }
  return { positional: parsed._.map(String), flags, sets: set, spelled };
}

/** The usage text of sd.cpp mode. */
export function sdcppHelp(): string {
  const lines = SDCPP_FLAGS.map((f) => {
    const names = f.names.map((n) => (n.length === 1 ? "-" : "--") + n).join(", ");
    return `  ${names.padEnd(28)} ${f.help}${f.default !== undefined ? ` (default: ${f.default})` : ""}`;
  });
  return lines.join("\n");
}

/** The default graph of an sd.cpp command line, with what the caller should know about it. */
export interface SdcppGraph {
  readonly file: GraphFile;
  /** Each set input's JSON pointer → the flag text, for messages. */
  readonly origins: Map<string, string>;
  /** Lines for the user (e.g. the random seed drawn for `-s -1` in img2img). */
  readonly notes: readonly string[];
}

/**
 * Builds the default txt2img (or, with `-i`, img2img) graph from sd.cpp flags.
 *
 * img2img samples the VAE posterior with the run's seed and RNG before
 * sampling, as stable-diffusion.cpp does, so the `encode` node gets the
 * sampler's seed and rng; a negative seed is drawn here, once, for both.
 */
export function graphFromSdcppFlags(
  flags: Readonly<Record<string, string | boolean | undefined>>,
  spelled: Readonly<Record<string, string>> = {},
): SdcppGraph {
  const str = (k: string): string | undefined => (typeof flags[k] === "string" ? flags[k] as string : undefined);
  const mode = str("mode") ?? (str("init-img") ? "img2img" : "txt2img");
  if (mode !== "txt2img" && mode !== "img2img" && mode !== "upscale") {
    throw new UsageError(`--mode must be txt2img, img2img or upscale, got "${mode}"`);
  }
  if (mode === "img2img" && !str("init-img")) throw new UsageError("img2img needs an initial image: -i image.png");
  if (str("mask") && !str("init-img")) throw new UsageError("--mask needs the picture to repaint: -i image.png");
  if (mode === "upscale") {
    if (!str("init-img")) throw new UsageError("-M upscale needs an image to upscale: -i image.png");
    if (!str("upscale-model")) throw new UsageError("-M upscale needs a model: --upscale-model esrgan.safetensors");
  } else if (!str("model")) {
    throw new UsageError(
      "no model: give one with -m path/to/model.safetensors (or run a graph: deno task gen graphs/demo.json)",
    );
  }
  const reg = builtinRegistry();
  const origins = new Map<string, string>();
  const diags: Diagnostic[] = [];
  const types: Record<string, string> = {
    checkpoint: "checkpoint",
    positive: "clip_encode",
    negative: "clip_encode",
    latent: "empty_latent",
    sampler: "sampler",
    save: "save_image",
    image: "load_image",
    taesd: "taesd",
    decode: "vae_decode",
    upscaler: "upscale_model_loader",
    upscale: "upscale",
    controlnet: "controlnet",
    control_image: "load_image",
    mask: "load_image",
  };
  const values = new Map<string, unknown>();
  for (const f of SDCPP_FLAGS) {
    if (!f.target) continue;
    const key = f.names[f.names.length - 1];
    const given = str(key);
    let text = given ?? f.default;
    if (key === "vae-tile-size" && text !== undefined) {
      // sd.cpp takes N or XxY; sdflow's tiles are square.
      const xy = /^(\d+)x(\d+)$/.exec(text);
      if (xy && xy[1] !== xy[2]) {
        diags.push({ source: `--vae-tile-size ${text}`, message: "sdflow's VAE tiles are square: give N or NxN" });
        continue;
      }
      if (xy) text = xy[1];
    }
    if (text === undefined) continue;
    const [node, input] = f.target;
    const schema = (reg.get(types[node])!.inputs as Record<string, InputSpec>)[input] as { schema: JsonSchema };
    const flag = `${spelled[key] ?? `--${key}`} ${JSON.stringify(text)}`;
    try {
      values.set(`${node}.${input}`, parseValue(text, schema.schema));
    } catch (e) {
      diags.push({ source: flag, node, input, message: (e as Error).message });
      continue;
    }
    if (given !== undefined) origins.set(pointer("nodes", node, "inputs", input), flag);
  }
  let batch = 1;
  if (str("batch-count") !== undefined) {
    const b = str("batch-count")!;
    if (!/^\d+$/.test(b) || Number(b) < 1) diags.push({ source: `-b ${b}`, message: "expected a positive integer" });
    else batch = Number(b);
  }
  if (diags.length) throw new GraphError(diags);

  const v = <T>(k: string): T => values.get(k) as T;
  const g = graph();
  /** `--upscale-model`: the upscale node after the images, `--upscale-repeats` times. */
  const upscaled = <T extends Parameters<typeof g.upscale>[0]["image"]>(images: T) => {
    if (!str("upscale-model")) return images;
    const model = g.upscale_model_loader({ path: v<string>("upscaler.path") }, "upscaler");
    return g.upscale({
      upscale_model: model,
      image: images,
      repeats: v<number>("upscale.repeats"),
      tile_size: v<number>("upscale.tile_size"),
    }, "upscale").image;
  };
  if (mode === "upscale") {
    const image = g.load_image({ path: v<string>("image.path") }, "image");
    g.save_image({ images: upscaled(image.image), path: v<string>("save.path") }, "save");
    return { file: g.toJSON(), origins, notes: [] };
  }
  const clipSkip = v<number>("positive.clip_skip");
  const skip = clipSkip === undefined || clipSkip < 1 ? {} : { clip_skip: clipSkip };
  const embd = v<string | undefined>("checkpoint.embeddings_dir");
  const vaePath = v<string | undefined>("checkpoint.vae");
  const prediction = v<"eps" | "v" | undefined>("checkpoint.prediction");
  const weightType = v<WeightType | undefined>("checkpoint.weight_type");
  // sd.cpp's --clip-on-cpu, --vae-on-cpu, --control-net-cpu: those networks' nodes get backend "cpu" when the run's
  // backend is another one (on the CPU backend they already are).
  const backendFlag = str("backend");
  const onCpu = (flag: string, node: string, input: string): { [k: string]: "cpu" } => {
    if (flags[flag] !== true || backendFlag === undefined || backendFlag === "cpu") return {};
    origins.set(pointer("nodes", node, "inputs", input), spelled[flag] ?? `--${flag}`);
    return { [input]: "cpu" };
  };
  const ckpt = g.checkpoint(
    {
      path: v<string>("checkpoint.path"),
      ...onCpu("clip-on-cpu", "checkpoint", "clip_backend"),
      ...onCpu("vae-on-cpu", "checkpoint", "vae_backend"),
      ...(embd === undefined ? {} : { embeddings_dir: embd }),
      ...(vaePath === undefined ? {} : { vae: vaePath }),
      ...(prediction === undefined ? {} : { prediction }),
      ...(weightType === undefined ? {} : { weight_type: weightType }),
    },
    "checkpoint",
  );
  const notes: string[] = [];
  const applyMode = str("lora-apply-mode") ?? "auto";
  if (!(LORA_APPLY_MODES as readonly string[]).includes(applyMode)) {
    throw new UsageError(`--lora-apply-mode must be one of ${LORA_APPLY_MODES.join(", ")}, got "${applyMode}"`);
  }
  let prompt = v<string>("positive.text");
  let model = ckpt.model;
  let clip = ckpt.clip;
  const loraDir = str("lora-model-dir");
  if (loraDir !== undefined) {
    const tags = extractLoraTags(prompt, loraDir);
    prompt = tags.prompt;
    notes.push(...tags.notes);
    tags.loras.forEach(({ path, multiplier }, i) => {
      const id = i === 0 ? "lora" : `lora_${i + 1}`;
      const out = g.lora({
        model,
        clip,
        path,
        strength_model: multiplier,
        strength_clip: multiplier,
        apply_mode: applyMode as "auto",
      }, id);
      origins.set(pointer("nodes", id, "inputs", "path"), `<lora:…> in ${spelled["prompt"] ?? "-p"}`);
      model = out.model;
      clip = out.clip;
    });
  } else if (LORA_TAG.test(prompt)) {
    notes.push("the prompt has <lora:…> tags but no --lora-model-dir: they stay in the prompt text, as in sd.cpp");
  }
  if (str("control-net")) {
    if (!str("control-image")) throw new UsageError("--control-net needs a control image: --control-image edges.png");
    let control = g.load_image({ path: v<string>("control_image.path") }, "control_image");
    if (flags.canny === true) control = g.canny({ image: control }, "canny");
    model = g.controlnet(
      {
        model,
        path: v<string>("controlnet.path"),
        image: control,
        strength: v<number>("controlnet.strength"),
        ...onCpu("control-net-cpu", "controlnet", "backend"),
      },
      "controlnet",
    ).model;
  } else if (str("control-image") || flags.canny === true) {
    throw new UsageError(`${str("control-image") ? "--control-image" : "--canny"} needs a ControlNet: --control-net`);
  }
  // --taesd: TAESD decodes (and, for img2img, encodes) in place of the checkpoint's VAE, as in sd.cpp, unless it
  // serves previews only.
  const previewMode = str("preview") ?? "none";
  if (!["none", "proj", "tae", "vae"].includes(previewMode)) {
    throw new UsageError(`--preview must be none, proj, tae or vae, got "${previewMode}"`);
  }
  if (previewMode === "tae" && !str("taesd")) throw new UsageError("--preview tae needs a TAESD file: --taesd FILE");
  const taesd = str("taesd")
    ? g.taesd({ path: v<string>("taesd.path"), ...onCpu("vae-on-cpu", "taesd", "backend") }, "taesd").vae
    : undefined;
  const previewOnly = flags["taesd-preview-only"] === true && previewMode === "tae";
  const vae = taesd && !previewOnly ? taesd : ckpt.vae;
  const preview = previewMode === "none" ? {} : {
    preview: previewMode === "proj" ? "proj" as const : "vae" as const,
    ...(previewMode === "proj" ? {} : { preview_vae: previewMode === "tae" ? taesd! : ckpt.vae }),
    preview_path: v<string>("sampler.preview_path"),
    preview_interval: v<number>("sampler.preview_interval"),
    preview_noisy: flags["preview-noisy"] === true,
  };
  const tiling = flags["vae-tiling"] === true
    ? { tiled: true, tile_size: v<number>("decode.tile_size"), tile_overlap: v<number>("decode.tile_overlap") }
    : {};
  const positive = g.clip_encode({ clip, text: prompt, ...skip }, "positive");
  const negative = g.clip_encode({ clip, text: v<string>("negative.text"), ...skip }, "negative");
  let latent;
  let denoise = 1;
  let seed = v<number>("sampler.seed");
  if (mode === "img2img") {
    if (seed < 0) {
      seed = randomSeed();
      notes.push(`random seed ${seed}`);
    }
    const image = g.load_image({ path: v<string>("image.path") }, "image");
    const rng = v<"cuda">("sampler.rng");
    if (str("mask")) {
      const mask = g.load_image({ path: v<string>("mask.path") }, "mask");
      latent = g.inpaint_encode({ model, vae, image, mask, seed, rng }, "encode");
    } else {
      latent = g.vae_encode({ vae, image, seed, rng, ...tiling }, "encode");
    }
    denoise = v<number>("sampler.denoise");
    origins.set(
      pointer("nodes", "sampler", "inputs", "denoise"),
      origins.get(pointer("nodes", "sampler", "inputs", "denoise")) ?? "--strength",
    );
  } else {
    latent = g.empty_latent({ width: v<number>("latent.width"), height: v<number>("latent.height"), batch }, "latent");
    if (str("batch-count")) origins.set(pointer("nodes", "latent", "inputs", "batch"), `-b ${batch}`);
  }
  const sampled = g.sampler({
    model,
    positive,
    negative,
    latent,
    seed,
    steps: v<number>("sampler.steps"),
    cfg: v<number>("sampler.cfg"),
    sampler: v<"euler">("sampler.sampler"),
    scheduler: v<"discrete">("sampler.scheduler"),
    rng: v<"cuda">("sampler.rng"),
    ...(v<number | undefined>("sampler.eta") === undefined ? {} : { eta: v<number>("sampler.eta") }),
    denoise,
    ...(mode === "img2img" && batch > 1 ? { batch } : {}),
    ...preview,
  }, "sampler");
  const image = g.vae_decode({ vae, latent: sampled, ...tiling }, "decode");
  g.save_image({ images: upscaled(image.image), path: v<string>("save.path") }, "save");
  // clip_skip set on "positive" applies to "negative" too.
  const skipOrigin = origins.get(pointer("nodes", "positive", "inputs", "clip_skip"));
  if (skipOrigin) origins.set(pointer("nodes", "negative", "inputs", "clip_skip"), skipOrigin);
  return { file: g.toJSON(), origins, notes };
}

/** stable-diffusion.cpp's LoRA prompt tag, `<lora:name:multiplier>`. */
const LORA_TAG = /<lora:([^:>]+):([^>]+)>/;
/** The extensions tried after a tag's name, in sd.cpp's order. */
const LORA_EXTENSIONS = [".gguf", ".safetensors", ".pt", ".ckpt"];

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * Removes the `<lora:name:multiplier>` tags from a prompt, as stable-diffusion.cpp does with
 * `--lora-model-dir`: each names `dir/name`, else `dir/name` plus .gguf, .safetensors, .pt or .ckpt
 * (an absolute name is used as it is); a file named twice gets the sum of its multipliers. A tag
 * whose multiplier is not a number is removed and ignored (with a note); a file that is not there
 * is an error (sd.cpp warns and goes on without it).
 */
export function extractLoraTags(
  prompt: string,
  dir: string,
): { prompt: string; loras: { path: string; multiplier: number }[]; notes: string[] } {
  const sums = new Map<string, number>();
  const notes: string[] = [];
  const all = new RegExp(LORA_TAG.source, "g");
  const rest = prompt.replace(all, (tag: string, name: string, mult: string) => {
    const multiplier = Number.parseFloat(mult);
    if (!Number.isFinite(multiplier)) {
      notes.push(`${tag}: the multiplier is not a number; tag ignored`);
      return "";
    }
    const base = name.startsWith("/") ? name : `${dir.replace(/\/+$/, "")}/${name}`;
    const path = isFile(base) ? base : LORA_EXTENSIONS.map((e) => base + e).find(isFile);
    if (!path) throw new UsageError(`${tag}: no LoRA file ${base} (nor with ${LORA_EXTENSIONS.join(", ")})`);
    sums.set(path, (sums.get(path) ?? 0) + multiplier);
    return "";
  });
  return { prompt: rest, loras: [...sums].map(([path, multiplier]) => ({ path, multiplier })), notes };
}

/**
 * `--set` overrides for an sd.cpp-flag graph: in img2img, a `--set sampler.seed=…`
 * or `--set sampler.rng=…` also sets the `encode` node's (unless that is set
 * too), so the posterior noise keeps following the sampler's seed; a negative
 * seed is drawn here for both.
 */
export function linkSeedOverrides(
  file: GraphFile,
  sets: readonly Override[],
): { sets: Override[]; notes: string[] } {
  const out = [...sets];
  const notes: string[] = [];
  if (!("encode" in file.nodes)) return { sets: out, notes };
  const setsInput = (target: string) => (s: Override) => (typeof s === "string" ? s : s.ref).startsWith(`${target}=`);
  const given = (input: string): boolean => sets.some(setsInput(`encode.${input}`));
  for (const input of ["seed", "rng"]) {
    const i = out.findLastIndex(setsInput(`sampler.${input}`));
    const set = out[i];
    if (i < 0 || given(input) || typeof set !== "string") continue;
    let value = set.slice(`sampler.${input}=`.length);
    if (input === "seed" && /^\s*-\d+\s*$/.test(value)) {
      value = String(randomSeed());
      out[i] = `sampler.seed=${value}`;
      notes.push(`random seed ${value}`);
    }
    out.push(`encode.${input}=${value}`);
  }
  return { sets: out, notes };
}
