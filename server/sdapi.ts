/**
 * The sd-webui (A1111) and OpenAI request formats, translated into sdflow graphs: field names and
 * sampler/scheduler labels as those APIs spell them, checked here with one error naming the field.
 */

import { didYouMean } from "../dsl/errors.ts";
import { SAMPLE_METHOD_LABELS, SAMPLE_METHODS } from "../models/sampling/samplers.ts";
import { SCHEDULE_LABELS, SCHEDULERS } from "../plugins/nodes/sampler.ts";
import type { Image } from "../models/types.ts";
import { type ModelEntry, RequestError } from "./engine.ts";

/** A txt2img request as the sd-webui API takes it (the fields sdflow honours). */
export interface Txt2ImgParams {
  prompt: string;
  negative_prompt: string;
  steps: number;
  cfg_scale: number;
  sampler: string;
  scheduler: string;
  seed: number;
  width: number;
  height: number;
  batch_size: number;
  n_iter: number;
  model?: string;
}

/** sd-webui's sampler list: name, aliases (sdflow's own names), options. */
export function samplerList(): { name: string; aliases: string[]; options: Record<string, string> }[] {
  return SAMPLE_METHODS.map((m) => ({ name: SAMPLE_METHOD_LABELS[m], aliases: [m], options: {} }));
}

/** sd-webui's scheduler list. */
export function schedulerList(): { name: string; label: string; aliases: string[] | null }[] {
  return SCHEDULERS.filter((s) => s !== "default").map((s) => ({
    name: s,
    label: SCHEDULE_LABELS[s] ?? s,
    aliases: null,
  }));
}

/** sd-webui's model list. */
export function modelList(models: readonly ModelEntry[]): Record<string, unknown>[] {
  return models.map((m) => ({
    title: m.name,
    model_name: m.name.replace(/\.[^.]+$/, ""),
    hash: null,
    sha256: null,
    filename: m.path ?? m.name,
    config: null,
  }));
}

function bad(field: string, message: string): RequestError {
  return new RequestError(400, `field "${field}": ${message}`, [{ source: "request", field, message }]);
}

function int(body: Record<string, unknown>, field: string, dflt: number, min: number, max: number): number {
  const v = body[field] ?? dflt;
  if (typeof v !== "number" || !Number.isInteger(v)) throw bad(field, `expected an integer, got ${JSON.stringify(v)}`);
  if (v < min || v > max) throw bad(field, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

function num(body: Record<string, unknown>, field: string, dflt: number, min: number, max: number): number {
  const v = body[field] ?? dflt;
  if (typeof v !== "number" || !Number.isFinite(v)) throw bad(field, `expected a number, got ${JSON.stringify(v)}`);
  if (v < min || v > max) throw bad(field, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

function str(body: Record<string, unknown>, field: string, dflt: string): string {
  const v = body[field] ?? dflt;
  if (typeof v !== "string") throw bad(field, `expected a string, got ${JSON.stringify(v)?.slice(0, 80)}`);
  return v;
}

/**
 * A sampler by sd-webui label ("Euler a", "DPM++ 2M Karras") or sdflow name ("euler_a"), case-insensitive;
 * an old-style label with a scheduler suffix also gives the scheduler.
 */
export function resolveSampler(name: string): { sampler: string; scheduler?: string } {
  const lower = name.trim().toLowerCase();
  for (const m of SAMPLE_METHODS) {
    if (m === lower || SAMPLE_METHOD_LABELS[m].toLowerCase() === lower) return { sampler: m };
  }
  for (const [s, label] of Object.entries(SCHEDULE_LABELS)) {
    const suffix = ` ${label.toLowerCase()}`;
    if (!lower.endsWith(suffix)) continue;
    const base = lower.slice(0, -suffix.length);
    const m = SAMPLE_METHODS.find((m) => m === base || SAMPLE_METHOD_LABELS[m].toLowerCase() === base);
    if (m) return { sampler: m, scheduler: s };
  }
  throw bad(
    "sampler_name",
    `unknown sampler ${JSON.stringify(name.slice(0, 80))}${didYouMean(name, Object.values(SAMPLE_METHOD_LABELS))}; ` +
      `see GET /sdapi/v1/samplers`,
  );
}

/** A scheduler by name ("karras") or label ("Karras"); "automatic"/"default" leaves the sampler's choice. */
export function resolveScheduler(name: string): string {
  const lower = name.trim().toLowerCase();
  if (lower === "" || lower === "automatic" || lower === "default") return "default";
  for (const s of SCHEDULERS) if (s === lower || SCHEDULE_LABELS[s]?.toLowerCase() === lower) return s;
  throw bad(
    "scheduler",
    `unknown scheduler ${JSON.stringify(name.slice(0, 80))}${didYouMean(name, Object.values(SCHEDULE_LABELS))}; ` +
      `see GET /sdapi/v1/schedulers`,
  );
}

/** Reads an sd-webui txt2img body; a negative seed is drawn here so that the answer can report it. */
export function txt2imgParams(body: Record<string, unknown>): Txt2ImgParams {
  const s = resolveSampler(str(body, "sampler_name", str(body, "sampler_index", "Euler a")));
  const scheduler = body.scheduler === undefined
    ? s.scheduler ?? "default"
    : resolveScheduler(str(body, "scheduler", ""));
  let seed = int(body, "seed", -1, -1, 2 ** 32 - 1);
  if (seed < 0) seed = crypto.getRandomValues(new Uint32Array(1))[0];
  const override = body.override_settings;
  if (override !== undefined && (override === null || typeof override !== "object" || Array.isArray(override))) {
    throw bad("override_settings", "expected an object");
  }
  const ckpt = (override as Record<string, unknown> | undefined)?.sd_model_checkpoint;
  if (ckpt !== undefined && typeof ckpt !== "string") {
    throw bad("override_settings.sd_model_checkpoint", "expected a model name");
  }
  return {
    prompt: str(body, "prompt", ""),
    negative_prompt: str(body, "negative_prompt", ""),
    steps: int(body, "steps", 20, 1, 1000),
    cfg_scale: num(body, "cfg_scale", 7, 0, 100),
    sampler: s.sampler,
    scheduler,
    seed,
    width: int(body, "width", 512, 8, 4096),
    height: int(body, "height", 512, 8, 4096),
    batch_size: int(body, "batch_size", 1, 1, 64),
    n_iter: int(body, "n_iter", 1, 1, 64),
    model: ckpt as string | undefined,
  };
}

/** An OpenAI `images/generations` body as txt2img parameters (steps, cfg and sampler: sdflow's defaults). */
export function openaiParams(body: Record<string, unknown>): { params: Txt2ImgParams; format: "b64_json" | "url" } {
  const prompt = body.prompt;
  if (typeof prompt !== "string" || prompt === "") throw bad("prompt", "expected a non-empty string");
  const size = str(body, "size", "512x512");
  const m = /^(\d{1,5})x(\d{1,5})$/.exec(size);
  if (!m) throw bad("size", `expected "WIDTHxHEIGHT", e.g. "512x512", got ${JSON.stringify(size.slice(0, 80))}`);
  const format = str(body, "response_format", "b64_json");
  if (format !== "b64_json" && format !== "url") throw bad("response_format", `expected "b64_json" or "url"`);
  const n = int(body, "n", 1, 1, 16);
  const model = body.model === undefined ? undefined : str(body, "model", "");
  const params = txt2imgParams({
    prompt,
    width: Number(m[1]),
    height: Number(m[2]),
    batch_size: n,
    // Extensions many OpenAI-compatible servers accept.
    ...(body.steps !== undefined ? { steps: body.steps } : {}),
    ...(body.seed !== undefined ? { seed: body.seed } : {}),
    ...(body.negative_prompt !== undefined ? { negative_prompt: body.negative_prompt } : {}),
  });
  return { params: { ...params, model: model === "" ? undefined : model }, format };
}

/** An img2img request: txt2img's fields, the starting picture (a file in the output folder) and the strength. */
export interface Img2ImgInit {
  /** File name of the decoded init image inside the output folder. */
  readonly image: string;
  /** File name of a mask picture (same size; white is repainted, black kept) inside the output folder. */
  readonly mask?: string;
  /** sd-webui's denoising_strength: 1 replaces the picture, 0 keeps it. */
  readonly denoise: number;
}

/**
 * Reads an sd-webui img2img body's own fields: the one init image (base64, data URL allowed), the strength,
 * and the inpainting mask (base64 PNG, white repainted; `inpainting_mask_invert: 1` swaps).
 */
export function img2imgFields(
  body: Record<string, unknown>,
): { png: string; denoise: number; mask?: string; invertMask: boolean } {
  let mask: string | undefined;
  if (body.mask !== undefined && body.mask !== null) {
    if (typeof body.mask !== "string") throw bad("mask", "expected a base64 PNG");
    mask = body.mask.replace(/^data:image\/[a-z]+;base64,/i, "");
  }
  const invert = body.inpainting_mask_invert ?? 0;
  if (invert !== 0 && invert !== 1) throw bad("inpainting_mask_invert", "expected 0 or 1");
  const init = body.init_images;
  if (!Array.isArray(init) || init.length === 0) throw bad("init_images", "expected an array with one base64 PNG");
  if (init.length > 1) throw bad("init_images", "one init image is supported (got several)");
  if (typeof init[0] !== "string") throw bad("init_images", "expected a base64 string");
  const denoise = num(body, "denoising_strength", 0.75, 0, 1);
  return { png: init[0].replace(/^data:image\/[a-z]+;base64,/i, ""), denoise, mask, invertMask: invert === 1 };
}

/** The graph of iteration `iter` of a txt2img (or, with `init`, img2img) request; seeds advance by the batch size. */
export function txt2imgGraph(
  p: Txt2ImgParams,
  model: ModelEntry,
  iter: number,
  init?: Img2ImgInit,
): Record<string, unknown> {
  const ckpt = model.path
    ? { type: "checkpoint", inputs: { path: model.name } }
    : { type: "tiny_checkpoint", inputs: {} };
  const seed = p.seed + iter * p.batch_size;
  // img2img samples the VAE posterior with the sampler's seed, as stable-diffusion.cpp and `sdflow gen -i` do.
  const start = init?.mask !== undefined
    ? {
      image: { type: "load_image", inputs: { path: init.image } },
      mask: { type: "load_image", inputs: { path: init.mask } },
      latent: {
        type: "inpaint_encode",
        inputs: {
          model: { from: "checkpoint.model" },
          vae: { from: "checkpoint.vae" },
          image: { from: "image.image" },
          mask: { from: "mask.image" },
          // The posterior's mean (as ComfyUI encodes): the kept part does not change with the seed.
        },
      },
    }
    : init
    ? {
      image: { type: "load_image", inputs: { path: init.image } },
      latent: { type: "vae_encode", inputs: { vae: { from: "checkpoint.vae" }, image: { from: "image.image" }, seed } },
    }
    : { latent: { type: "empty_latent", inputs: { width: p.width, height: p.height, batch: p.batch_size } } };
  return {
    version: 1,
    nodes: {
      checkpoint: ckpt,
      positive: { type: "clip_encode", inputs: { clip: { from: "checkpoint.clip" }, text: p.prompt } },
      negative: { type: "clip_encode", inputs: { clip: { from: "checkpoint.clip" }, text: p.negative_prompt } },
      ...start,
      sampler: {
        type: "sampler",
        inputs: {
          model: { from: "checkpoint.model" },
          positive: { from: "positive.conditioning" },
          negative: { from: "negative.conditioning" },
          latent: { from: "latent.latent" },
          seed,
          steps: p.steps,
          cfg: p.cfg_scale,
          sampler: p.sampler,
          scheduler: p.scheduler,
          ...(init ? { denoise: init.denoise, batch: p.batch_size } : {}),
        },
      },
      decode: { type: "vae_decode", inputs: { vae: { from: "checkpoint.vae" }, latent: { from: "sampler.latent" } } },
      save: { type: "save_image", inputs: { images: { from: "decode.image" }, path: `iter${iter}.png` } },
    },
  };
}

/**
 * A mask picture (white repainted, black kept) from a client's mask: by `alpha` (OpenAI's edits: transparent,
 * alpha < 128, is repainted) or by `grey` level (sd-webui: white, grey >= 128, is repainted); `invert` swaps.
 */
export function maskImage(src: Image, by: "alpha" | "grey", invert = false): Image {
  const n = src.width * src.height;
  const data = new Uint8Array(n * 3);
  for (let p = 0; p < n; p++) {
    const at = p * src.channels;
    let repaint = by === "alpha"
      ? src.channels === 4 && src.data[at + 3] < 128
      : (src.data[at] + src.data[at + 1] + src.data[at + 2]) / 3 >= 128;
    if (invert) repaint = !repaint;
    data[p * 3] = data[p * 3 + 1] = data[p * 3 + 2] = repaint ? 255 : 0;
  }
  return { width: src.width, height: src.height, channels: 3, data };
}

/** Whether a picture has a pixel that {@link maskImage} by alpha would repaint. */
export function hasTransparency(src: Image): boolean {
  if (src.channels !== 4) return false;
  for (let i = 3; i < src.data.length; i += 4) if (src.data[i] < 128) return true;
  return false;
}

/** The picture without its alpha channel (what the VAE encodes). */
export function rgbOf(src: Image): Image {
  if (src.channels === 3) return src;
  const n = src.width * src.height;
  const data = new Uint8Array(n * 3);
  for (let p = 0; p < n; p++) for (let k = 0; k < 3; k++) data[p * 3 + k] = src.data[p * 4 + k];
  return { width: src.width, height: src.height, channels: 3, data };
}
