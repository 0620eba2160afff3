/**
 * `deno task bench gen [--arch sd15|sd21|sdxl] [--sizes 256,512] [--steps 4] [--threads N]
 *   [--model PATH] [--type q8_0|q4_0|…] [--quantized q8_0,q4_0] [--lora PATH [--lora-mode merge|runtime]]
 *   [--taesd F] [--control-net F --control-image P [--control-strength X]] [--vae-tiling] [--upscale-model F]
 *   [--precision f32|bf16] [--sdcpp PATH/sd-cli] [--repeat N] [--json]`
 *
 * Times what users run: sdflow's own CLI (`deno run -A cli/gen.ts`, the command behind `deno task
 * gen`) in a subprocess per size, with stable-diffusion.cpp's flags (`-m … -p "a lovely cat" -s 42
 * --cfg-scale 7 --rng cuda -t N -W S -H S --sampling-method euler --steps N -o …`), so the figures
 * cover the graph, every node and the PNG write. `gen --timings-json` reports load, text encoding,
 * each step, the decode, the PNG write, peak RSS (VmHWM) and CPU time; the first step (which
 * compiles the UNet program) is reported apart from the median of the others, never dropped.
 *
 * `--sdcpp PATH` runs stable-diffusion.cpp's sd-cli with the very same flags in the same run, right
 * after sdflow at each size (bench/sdcpp.ts reads its log and peak RSS), prints the ratios and the
 * PSNR between the two pictures (the same flags should give the same picture). No sd.cpp figure is
 * written in the code. `--lora PATH` applies a LoRA (strength 1) in both, the way sd.cpp's command line
 * does (`--lora-model-dir`, a `<lora:name:1>` tag in the prompt, `--lora-apply-mode immediately` for
 * `--lora-mode merge`, the default, or `at_runtime` for `runtime`); a merge happens on first use, so its
 * time is in the text encoding and the first step. `--repeat N` runs each size N times (the engines alternating) and reports the
 * spread of the step and decode times.
 *
 * `--type T` converts the weights on load in both engines (sd.cpp's flag); a quantized GGUF file as `--model`
 * (e.g. from `deno task convert`) runs as it is.
 *
 * The add-on flags (`--taesd`, `--control-net` with `--control-image` and `--control-strength`, `--vae-tiling`,
 * `--upscale-model`) are sd.cpp's and are passed to both engines as they are, so each add-on's cost is measured
 * on the command users run; run once with and once without to see what an add-on adds.
 *
 * `--precision bf16` runs sdflow's GEMMs on bf16 operands (its `--precision`); sd.cpp has no such flag and runs as
 * it always does.
 *
 * `--quantized q8_0,q4_0` converts the model to each type first (`gen -M convert`, timed, with its peak RSS: the
 * conversion figures) and then, at each size, runs sdflow on each converted file right after the as-stored run,
 * printing them side by side: per-step time and peak RSS against the as-stored weights, and the PSNR of each
 * picture against the as-stored one.
 *
 * The model: `--model PATH`, else `$SDFLOW_<ARCH>_MODEL` (e.g. SDFLOW_SDXL_MODEL), else
 * `.cache/<arch>-random-f16.safetensors`, made on demand with ../shared/tools/make_random_sd.py
 * (python3 + numpy), as tests/sd15_reference_test.ts does.
 *
 * @module
 */

import type { Backend } from "../backends/mod.ts";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import type { TimingsReport } from "../cli/timings.ts";
import { median } from "../cli/progress.ts";
import { comparePngFiles } from "../tools/psnr.ts";
import { isWeightType, WEIGHT_TYPES, type WeightType } from "../models/mod.ts";
import {
  GNU_TIME,
  isFile,
  parseTimeV,
  pollPeakRss,
  runSdcpp,
  type SdcppRun,
  txt2imgArgs,
  type Txt2ImgFlags,
} from "./sdcpp.ts";
import { fmt, textTable, times } from "./table.ts";

const REPO = new URL("../", import.meta.url);
const MAKE_RANDOM_SD = new URL("../shared/tools/make_random_sd.py", REPO);
/** Debian's python3 (with python3-numpy); `SDFLOW_PYTHON` names another interpreter. */
const PYTHON = Deno.env.get("SDFLOW_PYTHON") || "/usr/bin/python3";

/**
 * The random checkpoints the benchmark can make, with what to tell the user while it does, and the sizes
 * run when `--sizes` is not given (SDXL: its native 1024 and 512, as issue 7 asks).
 */
export const ARCHS = {
  sd15: { title: "SD 1.5", made: "2.1 GB, about half a minute", sizes: "256,512" },
  sd21: { title: "SD 2.1", made: "2.6 GB, about a minute", sizes: "256,512" },
  sdxl: { title: "SDXL", made: "6.9 GB, a few minutes", sizes: "512,1024" },
} as const;
export type Arch = keyof typeof ARCHS;

/** What `bench gen` was asked to do. */
export interface GenOptions {
  readonly arch: Arch;
  readonly sizes: readonly number[];
  readonly steps: number;
  readonly threads?: number;
  readonly model?: string;
  readonly sdcpp?: string;
  readonly json: boolean;
  readonly isa: string;
  /** Runs of each size (each engine once per run). */
  readonly repeat: number;
  /** A LoRA file and how it is applied. */
  readonly lora?: { readonly path: string; readonly mode: "merge" | "runtime" };
  /** `--type`: both engines convert the weights on load (a quantized GGUF file needs none). */
  readonly weightType?: WeightType;
  /** `--quantized`: types the model is converted to and run at each size beside the as-stored weights. */
  readonly quantized: readonly WeightType[];
  /** Add-on flags passed to both engines as they are (see the module's notes). */
  readonly addons: readonly string[];
  /** sdflow's `--precision` (not passed to sd.cpp); undefined: its default. */
  readonly precision?: "f32" | "bf16";
}

/** The add-on flags `bench gen` passes through: name → takes a value (a file unless said otherwise). */
const ADDON_FLAGS = {
  "taesd": "file",
  "control-net": "file",
  "control-image": "file",
  "control-strength": "number",
  "vae-tiling": "switch",
  "upscale-model": "file",
} as const;

/** A mistake on the benchmark's command line (exit code 2). */
export class BenchUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BenchUsageError";
  }
}

function positiveInt(flag: string, v: string): number {
  if (!/^\d+$/.test(v.trim()) || Number(v) < 1) {
    throw new BenchUsageError(`${flag} expects a positive integer, got "${v}"`);
  }
  return Number(v);
}

/** Reads `bench gen`'s flags (after the suite name); throws {@link BenchUsageError} on a mistake. */
export function parseGenArgs(argv: readonly string[]): GenOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        arch: { type: "string", default: "sd15" },
        sizes: { type: "string" },
        steps: { type: "string", default: "4" },
        threads: { type: "string" },
        model: { type: "string" },
        sdcpp: { type: "string" },
        json: { type: "boolean", default: false },
        isa: { type: "string", default: "auto" },
        repeat: { type: "string", default: "1" },
        lora: { type: "string" },
        "lora-mode": { type: "string", default: "merge" },
        type: { type: "string" },
        quantized: { type: "string" },
        precision: { type: "string" },
        ...Object.fromEntries(
          Object.entries(ADDON_FLAGS).map(([k, v]) => [k, { type: v === "switch" ? "boolean" : "string" }] as const),
        ),
      },
    });
  } catch (e) {
    throw new BenchUsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  const extra = positionals.filter((p) => p !== "gen" && p !== "readme");
  if (extra.length) throw new BenchUsageError(`unexpected argument "${extra[0]}"`);
  const arch = values.arch!;
  if (!(arch in ARCHS)) {
    throw new BenchUsageError(`--arch must be one of ${Object.keys(ARCHS).join(", ")}, got "${arch}"`);
  }
  const sizes = (values.sizes ?? ARCHS[arch as Arch].sizes).split(",").map((s) => {
    const n = positiveInt("--sizes", s);
    if (n < 64 || n % 64) throw new BenchUsageError(`--sizes expects multiples of 64 (64, 128, …), got ${n}`);
    return n;
  });
  if (values.sdcpp === "") throw new BenchUsageError("--sdcpp expects the path of an sd-cli binary");
  if (values.model === "") throw new BenchUsageError("--model expects a checkpoint path");
  if (values.lora === "") throw new BenchUsageError("--lora expects a LoRA file");
  const quantized = values.quantized === undefined ? [] : values.quantized.split(",").map((t) => t.trim());
  for (const t of quantized) {
    if (!isWeightType(t)) {
      throw new BenchUsageError(`--quantized takes types from ${WEIGHT_TYPES.join(", ")}, got "${t}"`);
    }
  }
  if (new Set(quantized).size !== quantized.length) throw new BenchUsageError("--quantized names a type twice");
  if (quantized.length && values.type !== undefined) {
    throw new BenchUsageError("--quantized compares converted files with the as-stored weights: drop --type");
  }
  if (values.type !== undefined && !isWeightType(values.type)) {
    throw new BenchUsageError(`--type must be one of ${WEIGHT_TYPES.join(", ")}, got "${values.type}"`);
  }
  const addons: string[] = [];
  const flagValues = values as Record<string, string | boolean | undefined>;
  for (const [name, kind] of Object.entries(ADDON_FLAGS)) {
    const v = flagValues[name];
    if (v === undefined || v === false) continue;
    if (kind === "switch") {
      addons.push(`--${name}`);
      continue;
    }
    const text = String(v);
    if (kind === "number" && !Number.isFinite(Number(text))) {
      throw new BenchUsageError(`--${name} expects a number, got "${text}"`);
    }
    if (kind === "file" && text === "") throw new BenchUsageError(`--${name} expects a file`);
    addons.push(`--${name}`, kind === "file" ? resolve(text) : text);
  }
  if (flagValues["control-net"] !== undefined && flagValues["control-image"] === undefined) {
    throw new BenchUsageError("--control-net needs --control-image (the control picture, as sd.cpp)");
  }
  const precision = values.precision;
  if (precision !== undefined && precision !== "f32" && precision !== "bf16") {
    throw new BenchUsageError(`--precision must be f32 or bf16, got "${precision}"`);
  }
  const loraMode = values["lora-mode"]!;
  if (loraMode !== "merge" && loraMode !== "runtime") {
    throw new BenchUsageError(`--lora-mode must be merge or runtime, got "${loraMode}"`);
  }
  return {
    arch: arch as Arch,
    sizes,
    steps: positiveInt("--steps", values.steps!),
    threads: values.threads === undefined ? undefined : positiveInt("--threads", values.threads),
    model: values.model,
    sdcpp: values.sdcpp,
    json: values.json!,
    isa: values.isa!,
    repeat: positiveInt("--repeat", values.repeat!),
    ...(values.lora === undefined ? {} : { lora: { path: values.lora, mode: loraMode } }),
    ...(values.type === undefined ? {} : { weightType: values.type as WeightType }),
    quantized: quantized as WeightType[],
    addons,
    ...(precision === undefined ? {} : { precision: precision as "f32" | "bf16" }),
  };
}

/** sdflow's run at one size: `gen --timings-json`'s report and the wall time of the whole process. */
export interface SdflowRun extends Omit<TimingsReport, "nodes" | "version"> {
  /** Wall seconds, spawn to exit (Deno start-up, module loading and backend load included). */
  readonly total_s: number;
}

/** sd.cpp ÷ sdflow for times (> 1: sdflow is faster); sdflow ÷ sd.cpp for peak RSS (< 1: sdflow is smaller). */
export interface Ratios {
  readonly first_step: number | null;
  readonly step: number | null;
  readonly decode: number | null;
  readonly total: number | null;
  readonly rss: number | null;
}

/** The model converted to one type (`--quantized`), with the conversion's figures. */
export interface ConvertedModel {
  readonly type: WeightType;
  readonly path: string;
  /** File sizes: the converted file and the model it came from. */
  readonly bytes: number;
  readonly source_bytes: number;
  /** Wall seconds of `gen -M convert`, process start to exit. */
  readonly convert_s: number;
  /** Its peak RSS (GNU time -v, else VmHWM polling). */
  readonly convert_peak_rss_bytes: number | null;
}

/** sdflow on a converted file at one size. */
export interface QuantizedRun extends ConvertedModel {
  readonly sdflow: SdflowRun;
  /** PSNR (dB, RGB) of its picture against the as-stored weights' picture. */
  readonly psnr_vs_stored_db: number;
}

/** One size of a `bench gen` run (one JSON line under `--json`). */
export interface GenRow {
  readonly arch: Arch;
  readonly size: number;
  /** Which run of this size (1 … --repeat). */
  readonly run: number;
  readonly steps: number;
  readonly threads: number;
  readonly isa: string;
  readonly model: string;
  readonly sdflow: SdflowRun;
  readonly sdcpp: SdcppRun | null;
  readonly ratios: Ratios | null;
  /** PSNR (dB, RGB) between the two engines' pictures; null without the peer. */
  readonly psnr_db: number | null;
  /** Fraction of all CPUs busy in the second before this size's runs (other processes). */
  readonly cpu_busy_before: number | null;
  /** CPU seconds other processes used while this size's runs ran (system busy − the runs' own). */
  readonly others_cpu_s: number | null;
  /** `--quantized`: sdflow on each converted file, right after the as-stored run. */
  readonly quantized: readonly QuantizedRun[];
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  return a == null || b == null || !(a > 0) || !(b > 0) ? null : round(a / b);
}

/** The ratios of one size (see {@link Ratios}); steps compare the median after the first when both have it. */
export function makeRatios(ours: SdflowRun, peer: SdcppRun): Ratios {
  return {
    first_step: ratio(peer.first_step_s, ours.first_step_s),
    step: ratio(peer.step_median_rest_s ?? peer.first_step_s, ours.step_median_rest_s ?? ours.first_step_s),
    decode: ratio(peer.decode_s, ours.decode_s),
    total: ratio(peer.total_s, ours.total_s),
    rss: ratio(ours.peak_rss_bytes, peer.peak_rss_bytes),
  };
}

function exists(path: string | URL): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The checkpoint to run: `--model`, else `.cache/<arch>-random-f16.safetensors` (made when missing). */
async function findOrMakeModel(arch: Arch, explicit?: string): Promise<string> {
  if (explicit) {
    if (!exists(explicit)) throw new Error(`--model ${explicit}: no such file`);
    return explicit;
  }
  const env = Deno.env.get(`SDFLOW_${arch.toUpperCase()}_MODEL`);
  if (env) {
    if (!exists(env)) throw new Error(`$SDFLOW_${arch.toUpperCase()}_MODEL=${env}: no such file`);
    return env;
  }
  const name = `${arch}-random-f16.safetensors`;
  const target = new URL(`.cache/${name}`, REPO);
  if (exists(target)) return target.pathname;
  if (!exists(MAKE_RANDOM_SD)) {
    throw new Error(
      `no ${target.pathname}, and ${MAKE_RANDOM_SD.pathname} (which makes it) is not here: pass --model PATH`,
    );
  }
  const partial = new URL(`.cache/${name}.partial-${Deno.pid}`, REPO);
  console.error(
    `making ${target.pathname} with ${MAKE_RANDOM_SD.pathname} --arch ${arch} (python3 + numpy; ${ARCHS[arch].made})`,
  );
  await Deno.mkdir(new URL(".cache/", REPO), { recursive: true });
  try {
    const r = await new Deno.Command(PYTHON, {
      args: [MAKE_RANDOM_SD.pathname, "--arch", arch, "--dtype", "f16", "--out", partial.pathname],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (r.code !== 0) throw new Error(`make_random_sd.py exited with ${r.code} (it needs python3 + numpy)`);
    await Deno.rename(partial, target);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`${PYTHON} not found: install python3-numpy, or pass --model`);
    }
    throw e;
  } finally {
    await Deno.remove(partial).catch(() => {});
  }
  return target.pathname;
}

/** Busy and total CPU seconds of the whole system so far (USER_HZ = 100), from /proc/stat. */
function systemCpu(): { busy: number; total: number } | null {
  try {
    const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    const idle = f[3] + (f[4] ?? 0); // idle + iowait
    return { busy: (total - idle) / 100, total: total / 100 };
  } catch {
    return null;
  }
}

/** Fraction of all CPUs busy over `ms` milliseconds (before a run: what others are doing). */
async function cpuBusy(ms = 1000): Promise<number | null> {
  const a = systemCpu();
  await new Promise((r) => setTimeout(r, ms));
  const b = systemCpu();
  if (!a || !b || b.total <= a.total) return null;
  return round((b.busy - a.busy) / (b.total - a.total));
}

/** The last line of a failed command's output that says what went wrong. */
function errorLine(text: string): string {
  const lines = text.split(/[\r\n]+/).map((l) => l.trim()).filter(Boolean);
  return lines.findLast((l) => /^error\b/i.test(l)) ?? lines.at(-1) ?? "(no output)";
}

/** Runs sdflow's CLI (cli/gen.ts) with `flags` and reads its `--timings-json` report. */
export async function runSdflow(
  flags: Txt2ImgFlags,
  scratch: string,
  isa: string,
  extra: readonly string[] = [],
): Promise<SdflowRun> {
  const timingsFile = `${scratch}/sdflow-${flags.size}.json`;
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("cli/gen.ts", REPO).pathname,
      ...txt2imgArgs(flags),
      ...extra,
      "--timings-json",
      timingsFile,
    ],
    cwd: REPO,
    env: isa === "auto" ? {} : { SDF_ISA: isa },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const totalS = round((performance.now() - t0) / 1000, 3);
  if (out.code !== 0) {
    const text = new TextDecoder().decode(out.stderr) + "\n" + new TextDecoder().decode(out.stdout);
    throw new Error(`sdflow's gen exited with ${out.code} at ${flags.size}x${flags.size}: ${errorLine(text)}`);
  }
  const { nodes: _n, version, ...report } = JSON.parse(await Deno.readTextFile(timingsFile)) as TimingsReport;
  if (version !== 1) throw new Error(`gen --timings-json wrote version ${version}; this benchmark reads version 1`);
  return { ...report, total_s: totalS };
}

/** Converts `model` to `type` with sdflow's convert mode into `scratch`, timing it and measuring its peak RSS. */
export async function convertForBench(model: string, type: WeightType, scratch: string): Promise<ConvertedModel> {
  const path = `${scratch}/model-${type}.gguf`;
  const timeFile = `${scratch}/convert-${type}.time.txt`;
  const args = ["run", "-A", new URL("cli/gen.ts", REPO).pathname, "-M", "convert", "-m", model, "-o", path];
  args.push("--type", type);
  const viaTime = isFile(GNU_TIME);
  const io = { cwd: REPO, stdin: "null", stdout: "piped", stderr: "piped" } as const;
  const cmd = viaTime
    ? new Deno.Command(GNU_TIME, { args: ["-v", "-o", timeFile, Deno.execPath(), ...args], ...io })
    : new Deno.Command(Deno.execPath(), { args, ...io });
  const t0 = performance.now();
  const child = cmd.spawn();
  const polled = viaTime ? null : pollPeakRss(child.pid, child.status);
  const out = await child.output();
  const convertS = round((performance.now() - t0) / 1000, 3);
  if (out.code !== 0) {
    const text = new TextDecoder().decode(out.stderr) + "\n" + new TextDecoder().decode(out.stdout);
    throw new Error(`sdflow's convert to ${type} exited with ${out.code}: ${errorLine(text)}`);
  }
  const peak = viaTime ? parseTimeV(await Deno.readTextFile(timeFile)).peak_rss_bytes : await polled;
  return {
    type,
    path,
    bytes: (await Deno.stat(path)).size,
    source_bytes: await pathBytes(model),
    convert_s: convertS,
    convert_peak_rss_bytes: peak,
  };
}

/** Bytes of a file, or of the files in a folder (a diffusers model) and its subfolders. */
async function pathBytes(path: string): Promise<number> {
  const st = await Deno.stat(path);
  if (!st.isDirectory) return st.size;
  let sum = 0;
  for await (const e of Deno.readDir(path)) sum += await pathBytes(`${path}/${e.name}`);
  return sum;
}

/** Runs the benchmark; returns one row per size (and prints them as it goes). */
export async function runGenBench(opts: GenOptions, backend: Backend): Promise<GenRow[]> {
  // sdflow's gen runs in the repository's folder: paths given relative to this process's are made absolute.
  const model = resolve(await findOrMakeModel(opts.arch, opts.model));
  const threads = opts.threads ?? backend.info.threads;
  let lora: Txt2ImgFlags["lora"];
  if (opts.lora) {
    if (!exists(opts.lora.path)) throw new Error(`--lora ${opts.lora.path}: no such file`);
    lora = { path: resolve(opts.lora.path), mode: opts.lora.mode === "merge" ? "immediately" : "at_runtime" };
  }
  for (const [i, a] of opts.addons.entries()) {
    const name = a.slice(2);
    if (ADDON_FLAGS[name as keyof typeof ADDON_FLAGS] === "file" && !exists(opts.addons[i + 1])) {
      throw new Error(`${a} ${opts.addons[i + 1]}: no such file`);
    }
  }
  const sdflowOnly = opts.precision ? ["--precision", opts.precision] : [];
  const scratch = await Deno.makeTempDir({ prefix: "sdflow-bench-" });
  const say = (s: string) => !opts.json && console.error(s);
  const rows: GenRow[] = [];
  say(`model ${model}`);
  try {
    const converted: ConvertedModel[] = [];
    for (const type of opts.quantized) {
      say(`converting to ${type}…`);
      converted.push(await convertForBench(model, type, scratch));
    }
    for (const size of opts.sizes) {
      for (let run = 1; run <= opts.repeat; run++) {
        const busyBefore = await cpuBusy();
        const label = `${size}x${size}${opts.repeat > 1 ? ` #${run}` : ""}`;
        const flags = (engine: string): Txt2ImgFlags => ({
          model,
          prompt: "a lovely cat",
          seed: 42,
          cfg: 7,
          size,
          steps: opts.steps,
          sampler: "euler",
          threads,
          output: `${scratch}/${engine}-${size}.png`,
          lora,
          addons: opts.addons,
          ...(opts.weightType ? { weightType: opts.weightType } : {}),
        });
        const cpu0 = systemCpu();
        say(`${label}: sdflow… (CPUs ${fmt((busyBefore ?? 0) * 100, 0)}% busy before)`);
        const ours = await runSdflow(flags("sdflow"), scratch, opts.isa, sdflowOnly);
        const quantized: QuantizedRun[] = [];
        for (const c of converted) {
          say(`${label}: sdflow on the ${c.type} file…`);
          const f = { ...flags(`sdflow-${c.type}`), model: c.path };
          const run = await runSdflow(f, scratch, opts.isa, sdflowOnly);
          const psnr = round((await comparePngFiles(f.output, flags("sdflow").output)).psnr);
          quantized.push({ ...c, sdflow: run, psnr_vs_stored_db: psnr });
        }
        let peer: SdcppRun | null = null;
        let psnr: number | null = null;
        if (opts.sdcpp) {
          say(`${label}: sd.cpp…`);
          peer = await runSdcpp(opts.sdcpp, flags("sdcpp"), scratch);
          psnr = round((await comparePngFiles(flags("sdflow").output, flags("sdcpp").output)).psnr);
        }
        const cpu1 = systemCpu();
        const ownCpu = (ours.cpu_s ?? NaN) + (peer ? peer.cpu_s ?? NaN : 0) +
          quantized.reduce((a, q) => a + (q.sdflow.cpu_s ?? NaN), 0);
        const others = cpu0 && cpu1 && Number.isFinite(ownCpu)
          ? round(Math.max(0, cpu1.busy - cpu0.busy - ownCpu), 1)
          : null;
        const row: GenRow = {
          arch: opts.arch,
          size,
          run,
          steps: opts.steps,
          threads,
          isa: backend.info.isa,
          model,
          sdflow: ours,
          sdcpp: peer,
          ratios: peer ? makeRatios(ours, peer) : null,
          psnr_db: psnr,
          cpu_busy_before: busyBefore,
          others_cpu_s: others,
          quantized,
        };
        rows.push(row);
        if (opts.json) console.log(JSON.stringify(row));
      }
    }
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
  return rows;
}

const gb = (b: number | null | undefined) => (b == null ? null : b / 1e9);

/** The terminal table: per size, a row for sdflow, one for sd.cpp and one of ratios (sd.cpp ÷ sdflow). */
export function formatGenTable(rows: readonly GenRow[]): string {
  const header = [
    "size",
    "engine",
    "load s",
    "text s",
    "1st step s",
    "step s",
    "decode s",
    "png s",
    "total s",
    "RSS GB",
  ];
  const body: string[][] = [];
  const many = rows.some((r) => r.run > 1);
  for (const r of rows) {
    const size = `${r.size}x${r.size}${many ? ` #${r.run}` : ""}`;
    const o = r.sdflow;
    body.push([
      size,
      "sdflow",
      fmt(o.load_s),
      fmt(o.text_encode_s),
      fmt(o.first_step_s),
      fmt(o.step_median_rest_s),
      fmt(o.decode_s),
      fmt(o.save_s),
      fmt(o.total_s),
      fmt(gb(o.peak_rss_bytes)),
    ]);
    for (const v of r.quantized) {
      const s = v.sdflow;
      body.push([
        size,
        `sdflow ${v.type}`,
        fmt(s.load_s),
        fmt(s.text_encode_s),
        fmt(s.first_step_s),
        fmt(s.step_median_rest_s),
        fmt(s.decode_s),
        fmt(s.save_s),
        fmt(s.total_s),
        fmt(gb(s.peak_rss_bytes)),
      ]);
    }
    const p = r.sdcpp, q = r.ratios;
    if (!p || !q) continue;
    body.push([
      size,
      "sd.cpp",
      fmt(p.load_s),
      fmt(p.text_encode_s),
      fmt(p.first_step_s),
      fmt(p.step_median_rest_s),
      fmt(p.decode_s),
      "-",
      fmt(p.total_s),
      fmt(gb(p.peak_rss_bytes)),
    ]);
    body.push([
      size,
      "sd.cpp÷sdflow",
      "",
      "",
      times(q.first_step),
      times(q.step),
      times(q.decode),
      "",
      times(q.total),
      "",
    ]);
  }
  return textTable(header, body, new Set([0, 1]));
}

/** Notes under the table: what the columns mean, the pictures' agreement, a busy host. */
export function genNotes(rows: readonly GenRow[]): string[] {
  const lines = [
    "step s: median of the steps after the first; 1st step s: the first, which also compiles the UNet program. " +
    "total s: the whole process, start to exit. RSS: peak resident memory (VmHWM).",
  ];
  if (rows.some((r) => r.sdcpp)) {
    lines.push(
      "sd.cpp ran with the same flags right after sdflow at each size; ratios are sd.cpp's time ÷ sdflow's " +
        "(> 1: sdflow faster); peak RSS sdflow ÷ sd.cpp: " +
        rows.map((r) => `${r.size}x${r.size} ${fmt(r.ratios?.rss)}`).join(", ") +
        ` (sd.cpp's peak by ${rows.find((r) => r.sdcpp)?.sdcpp?.peak_rss_source ?? "-"}).`,
    );
    lines.push(
      "sd.cpp reads each network's weights when it first runs it: its load s is also inside its text s, 1st step s " +
        "and decode s.",
    );
    lines.push(
      `PSNR of sdflow's picture against sd.cpp's: ${
        rows.map((r) => `${r.size}x${r.size} ${fmt(r.psnr_db)} dB`).join(", ")
      }`,
    );
  }
  const conversions = new Map<string, ConvertedModel>();
  for (const v of rows.flatMap((r) => r.quantized)) conversions.set(v.type, v);
  for (const c of conversions.values()) {
    lines.push(
      `${c.type}: converted by sdflow's -M convert in ${fmt(c.convert_s)} s at ${fmt(gb(c.convert_peak_rss_bytes))} ` +
        `GB peak RSS; file ${fmt(gb(c.bytes))} GB (${fmt((c.bytes / c.source_bytes) * 100, 0)}% of the model's).`,
    );
  }
  for (const r of rows) {
    for (const v of r.quantized) {
      lines.push(
        `${v.type} at ${r.size}x${r.size} against the as-stored weights: step ${
          times(ratio(r.sdflow.step_median_rest_s, v.sdflow.step_median_rest_s))
        } (> 1: faster), peak RSS ${fmt(ratio(v.sdflow.peak_rss_bytes, r.sdflow.peak_rss_bytes))}x, picture ` +
          `${fmt(v.psnr_vs_stored_db)} dB PSNR`,
      );
    }
  }
  for (const size of new Set(rows.map((r) => r.size))) {
    const runs = rows.filter((r) => r.size === size);
    if (runs.length < 2) continue;
    const spread = (name: string, xs: (number | null | undefined)[]) => {
      const v = xs.filter((x): x is number => x != null);
      return v.length
        ? `${name} ${fmt(Math.min(...v))}–${fmt(Math.max(...v))} (median ${fmt(median(v))})`
        : `${name} -`;
    };
    const engine = (
      name: string,
      pick: (r: GenRow) => { step_median_rest_s: number | null; decode_s: number | null },
    ) =>
      `${name}: ${spread("step s", runs.map((r) => pick(r).step_median_rest_s))}, ` +
      spread("decode s", runs.map((r) => pick(r).decode_s));
    const parts = [engine("sdflow", (r) => r.sdflow)];
    if (runs.every((r) => r.sdcpp)) parts.push(engine("sd.cpp", (r) => r.sdcpp!));
    lines.push(`spread at ${size}x${size} over ${runs.length} runs: ${parts.join("; ")}`);
  }
  for (const r of rows) {
    const s = r.sdflow;
    if (s.rss_anon_bytes != null && s.rss_file_bytes != null) {
      lines.push(
        `sdflow memory at ${r.size}x${r.size} after the run: ${fmt(gb(s.rss_anon_bytes))} GB anonymous, ` +
          `${fmt(gb(s.rss_file_bytes))} GB mapped file (weights)`,
      );
    }
    const wall = s.total_s + (r.sdcpp?.total_s ?? 0);
    if ((r.others_cpu_s ?? 0) > 0.05 * wall * navigator.hardwareConcurrency || (r.cpu_busy_before ?? 0) > 0.25) {
      lines.push(
        `note: other processes were busy during ${r.size}x${r.size} (${fmt(r.others_cpu_s, 1)} CPU s during the ` +
          `runs, ${fmt((r.cpu_busy_before ?? 0) * 100, 0)}% busy just before): its times may be inflated`,
      );
    }
  }
  return lines;
}

/** The title line of a run. */
export function genTitle(opts: GenOptions, threads: number, isa: string): string {
  const lora = opts.lora ? `, LoRA ${opts.lora.path} (${opts.lora.mode})` : "";
  const type = opts.weightType
    ? `, weights --type ${opts.weightType}`
    : opts.quantized.length
    ? `, as stored and converted to ${opts.quantized.join(", ")}`
    : "";
  const precision = opts.precision ? `, sdflow --precision ${opts.precision}` : "";
  const addons = opts.addons.length ? `, ${opts.addons.map((a) => a.split("/").pop()).join(" ")}` : "";
  return `${
    ARCHS[opts.arch].title
  } txt2img "a lovely cat"${lora}${type}${addons}${precision}, ${opts.steps} steps euler, cfg 7, seed 42, ` +
    `${threads} thread(s), isa ${isa}, through sdflow's CLI (cli/gen.ts)` +
    (opts.sdcpp ? ` and ${opts.sdcpp} in the same run` : "");
}

/** The `gen` suite of bench/main.ts. */
export async function benchGen(backend: Backend, argv: readonly string[]): Promise<number> {
  let opts: GenOptions;
  try {
    opts = parseGenArgs(argv);
  } catch (e) {
    console.error(`bench gen: ${(e as Error).message}`);
    return 2;
  }
  try {
    if (!opts.json) console.log(genTitle(opts, opts.threads ?? backend.info.threads, backend.info.isa));
    const rows = await runGenBench(opts, backend);
    if (!opts.json) console.log([formatGenTable(rows), ...genNotes(rows)].join("\n"));
    return 0;
  } catch (e) {
    console.error(`bench gen: ${e instanceof Error ? e.message : e}`);
    return 1;
  }
}
