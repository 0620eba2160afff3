/**
 * One timed txt2img run in its own process, for `deno task bench gen` (bench/gen.ts), so that peak RSS
 * is this size's alone:
 *
 *   deno run -A bench/gen_worker.ts --model PATH --size 256 [--steps 4] [--threads N] [--cfg 7]
 *     [--seed 42] [--sampler euler] [--prompt TEXT] [--out image.png] [--lora PATH [--lora-mode merge|runtime]]
 *
 * Runs the model layer directly (models/mod.ts: load → text encode → sample → VAE decode), timing each
 * phase and every sampling step (onStep timestamps), and prints one JSON line on stdout:
 * `{ load_s, text_encode_s, step_s: [...], step_median_s, sample_s, decode_s, run_s, peak_rss_bytes,
 * rss_anon_bytes, rss_file_bytes, cpu_s, ... }`.
 * `run_s` is the time since the process started (Deno start-up and module loading included).
 * Peak RSS is VmHWM from /proc/self/status, read after the decode (null where /proc is missing).
 * With `--lora`, the LoRA patches the UNet and text encoder (strength 1): `lora_s` is reading the file and
 * matching its layers; merging (`--lora-mode merge`, the default) happens on first use, so its cost is in
 * `text_encode_s` (text encoder) and the first step (UNet).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { applyPatches, loadCheckpoint, loadLora, sample } from "../models/mod.ts";
import { writePng } from "../plugins/image/png.ts";
import { median } from "../cli/progress.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string" },
    size: { type: "string", default: "256" },
    steps: { type: "string", default: "4" },
    threads: { type: "string" },
    cfg: { type: "string", default: "7" },
    seed: { type: "string", default: "42" },
    sampler: { type: "string", default: "euler" },
    prompt: { type: "string", default: "a lovely cat" },
    out: { type: "string" },
    "hoist-mib": { type: "string" },
    lora: { type: "string" },
    "lora-mode": { type: "string", default: "merge" },
  },
});

function positiveInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new RangeError(`--${name} expects a positive integer, got "${v}"`);
  return Number(v);
}

/** Peak resident set size of this process (VmHWM), in bytes; null without /proc. */
export function peakRssBytes(status?: string): number | null {
  return statusBytes("VmHWM", status);
}

/** A field of /proc/self/status in bytes (e.g. "RssAnon"); null without /proc. */
export function statusBytes(field: string, status?: string): number | null {
  let text = status;
  if (text === undefined) {
    try {
      text = Deno.readTextFileSync("/proc/self/status");
    } catch {
      return null;
    }
  }
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(text);
  return m ? Number(m[1]) * 1024 : null;
}

/** CPU seconds (user + system) this process has used, from /proc/self/stat (USER_HZ = 100); null without /proc. */
export function cpuSeconds(stat?: string): number | null {
  let text = stat;
  if (text === undefined) {
    try {
      text = Deno.readTextFileSync("/proc/self/stat");
    } catch {
      return null;
    }
  }
  // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const utime = Number(rest[11]), stime = Number(rest[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / 100 : null;
}

async function main(): Promise<void> {
  if (!values.model) throw new Error("--model PATH is required");
  const size = positiveInt("size", values.size)!;
  if (size % 8) throw new RangeError(`--size must be a multiple of 8, got ${size}`);
  const steps = positiveInt("steps", values.steps)!;
  const threads = positiveInt("threads", values.threads);
  const seed = Number(values.seed);
  const cfgScale = Number(values.cfg);
  const sec = (ms: number) => Math.round(ms) / 1000;

  let t = performance.now();
  const hoist = values["hoist-mib"];
  const ckpt = await loadCheckpoint(values.model, {
    threads,
    hoistBudgetBytes: hoist === undefined ? undefined : Number(hoist) * 2 ** 20,
  });
  const loadMs = performance.now() - t;
  try {
    let denoiser = ckpt.denoiser;
    let textEncoder = ckpt.textEncoder;
    let loraMs: number | null = null;
    if (values.lora) {
      const mode = values["lora-mode"];
      if (mode !== "merge" && mode !== "runtime") throw new RangeError(`--lora-mode: merge or runtime, got "${mode}"`);
      t = performance.now();
      const lora = await loadLora(values.lora, {
        family: denoiser.family,
        unet: denoiser.patchableWeights!(),
        text: textEncoder.patchableWeights!(),
      }, { mode });
      for (const w of lora.warnings) console.error(w);
      denoiser = applyPatches(denoiser, [lora.model], "MODEL");
      textEncoder = applyPatches(textEncoder, [lora.clip], "CLIP");
      loraMs = performance.now() - t;
    }
    t = performance.now();
    const positive = await textEncoder.encode(values.prompt!);
    const negative = await textEncoder.encode("");
    const textMs = performance.now() - t;

    const h = size / 8, w = size / 8;
    const stepMs: number[] = [];
    t = performance.now();
    let last = t;
    const latent = await sample({
      denoiser,
      positive,
      negative,
      latent: { shape: [1, 4, h, w], data: new Float32Array(4 * h * w) },
      batch: 1,
      seed,
      steps,
      cfgScale,
      method: values.sampler!,
      scheduler: "discrete",
      rng: "cuda",
      onStep: () => {
        const now = performance.now();
        stepMs.push(now - last);
        last = now;
      },
    });
    const sampleMs = performance.now() - t;
    // Times of a broken run mean nothing: refuse non-finite latents.
    const bad = latent.data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new Error(`the sampled latent has a non-finite value at ${bad}: ${latent.data[bad]}`);

    t = performance.now();
    const [image] = await ckpt.vae.decode(latent);
    const decodeMs = performance.now() - t;
    const status = (() => {
      try {
        return Deno.readTextFileSync("/proc/self/status");
      } catch {
        return "";
      }
    })();
    const peak = peakRssBytes(status);
    if (values.out) await writePng(values.out, image);

    console.log(JSON.stringify({
      size,
      steps,
      threads: threads ?? null,
      sampler: values.sampler,
      cfg: cfgScale,
      seed,
      load_s: sec(loadMs),
      ...(values.lora ? { lora: values.lora, lora_mode: values["lora-mode"], lora_s: sec(loraMs ?? 0) } : {}),
      text_encode_s: sec(textMs),
      step_s: stepMs.map(sec),
      step_median_s: sec(median(stepMs)),
      sample_s: sec(sampleMs),
      decode_s: sec(decodeMs),
      run_s: sec(performance.now()),
      peak_rss_bytes: peak,
      // After the decode: anonymous memory (activations, hoisted filters, copies) vs mapped file pages (weights).
      rss_anon_bytes: statusBytes("RssAnon", status),
      rss_file_bytes: statusBytes("RssFile", status),
      cpu_s: cpuSeconds(),
    }));
  } finally {
    ckpt.dispose();
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`gen_worker: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
