/**
 * `deno task bench gen [--arch sd15|sdxl] [--sizes 256,512] [--steps 4] [--threads N] [--model PATH] [--json]
 *   [--lora PATH [--lora-mode merge|runtime]]`
 *
 * End-to-end txt2img ("a lovely cat", seed 42, euler, discrete, cfg 7, rng cuda) at each size, each in a
 * fresh process (bench/gen_worker.ts) so peak RSS is per size: load time, seconds per sampling step
 * (median; the first step, which compiles the UNet program and transforms its filters, is shown too), VAE
 * decode seconds, the whole run (process start to exit, as a user sees it) and peak RSS (VmHWM). Next to
 * them: stable-diffusion.cpp's figures for the same runs, measured elsewhere (not in this run), the ratios,
 * and the targets.
 *
 * `--arch sd15` (default; sizes 256,512) runs the random SD 1.5 checkpoint, `--arch sdxl` (sizes 512,1024)
 * the random SDXL one. The model: `--model PATH`, else `$SDFLOW_SD15_MODEL` / `$SDFLOW_SDXL_MODEL`, else
 * `.cache/<name>` or `../cache/<name>` (next to the repository), name `sd15-random-f16.safetensors` or
 * `sdxl-random-f16.safetensors`; when none exists it is made into `.cache/` with
 * ../shared/tools/make_random_sd.py (python3 + numpy; SD 1.5: 2.1 GB, half a minute; SDXL: 6.9 GB, minutes).
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { Backend } from "../backends/mod.ts";

const REPO = new URL("../", import.meta.url);
const MAKE_RANDOM_SD = new URL("../shared/tools/make_random_sd.py", REPO);

/** sd.cpp's figures for one size: seconds per step, decode seconds, whole run (if published), peak RSS. */
type SdcppFigures = { step_s: number; decode_s: number; total_s: number | null; peak_rss_gb: number };

/** What differs between the benchmarked model families. */
export interface BenchArch {
  readonly title: string;
  readonly modelName: string;
  readonly modelEnv: string;
  readonly makeArgs: readonly string[];
  readonly makeAbout: string;
  readonly defaultSizes: string;
  /** stable-diffusion.cpp's figures per size (measured elsewhere). */
  readonly sdcpp: Readonly<Record<number, SdcppFigures>>;
  /** The targets at `targetSize`: fractions of sd.cpp's step and decode time, and of its peak RSS. */
  readonly targets: { readonly size: number; readonly step: number; readonly decode: number; readonly rss: number };
}

/**
 * stable-diffusion.cpp master-827 (ggml 8e800ce, CPU AVX-512 build), 2 threads, f16 SD 1.5, 4 steps euler:
 * ../shared/reference/perf-anchors.md and ../shared/reference/README.md. Measured elsewhere on a machine of
 * this kind (2 vCPU Zen 5 class), not in this run. 512 total: not published.
 */
export const SDCPP_REFERENCE: Readonly<Record<number, SdcppFigures>> = {
  256: { step_s: 4.9, decode_s: 11.6, total_s: 40, peak_rss_gb: 2.43 },
  512: { step_s: 31, decode_s: 51, total_s: null, peak_rss_gb: 3.69 },
};

/** Issue 3's targets at 512x512: ≤ 1/3 of sd.cpp's time per step, ≤ 1/4 of its decode, less memory. */
export const TARGET_FRACTION = { step: 1 / 3, decode: 1 / 4, rss: 1 } as const;

export const BENCH_ARCHS: Readonly<Record<"sd15" | "sdxl", BenchArch>> = {
  sd15: {
    title: "SD 1.5",
    modelName: "sd15-random-f16.safetensors",
    modelEnv: "SDFLOW_SD15_MODEL",
    makeArgs: ["--dtype", "f16"],
    makeAbout: "2.1 GB, about half a minute",
    defaultSizes: "256,512",
    sdcpp: SDCPP_REFERENCE,
    targets: { size: 512, ...TARGET_FRACTION },
  },
  sdxl: {
    title: "SDXL",
    modelName: "sdxl-random-f16.safetensors",
    modelEnv: "SDFLOW_SDXL_MODEL",
    makeArgs: ["--arch", "sdxl", "--dtype", "f16"],
    makeAbout: "6.9 GB, a few minutes",
    defaultSizes: "512,1024",
    // ../shared/reference/README.md (sdxl-random/): 256x256, 4 steps: sampling 55 s, decode 13.8 s, 7.26 GB;
    // 512x512, 2 steps: sampling 88.9 s, decode 52.6 s, 8.73 GB. 1024x1024: not published.
    sdcpp: {
      256: { step_s: 13.75, decode_s: 13.8, total_s: null, peak_rss_gb: 7.26 },
      512: { step_s: 44.45, decode_s: 52.6, total_s: null, peak_rss_gb: 8.73 },
    },
    // Issue 7: at 512x512, ≤ 1/8 of sd.cpp's time per step, ≤ 1/10 of its decode, ≤ 0.6x its peak RSS.
    targets: { size: 512, step: 1 / 8, decode: 1 / 10, rss: 0.6 },
  },
};

export interface WorkerResult {
  size: number;
  steps: number;
  threads: number | null;
  load_s: number;
  text_encode_s: number;
  step_s: number[];
  step_median_s: number;
  sample_s: number;
  decode_s: number;
  run_s: number;
  peak_rss_bytes: number | null;
  rss_anon_bytes?: number | null;
  rss_file_bytes?: number | null;
  /** CPU seconds the worker used. */
  cpu_s?: number | null;
}

export interface GenBenchRow extends WorkerResult {
  /** Wall time of the worker process, spawn to exit. */
  total_s: number;
  isa: string;
  model: string;
  /** Fraction of all CPUs busy in the second before the run (other processes). */
  cpu_busy_before: number | null;
  /** CPU seconds used by other processes during the run (system busy time − the worker's own). */
  others_cpu_s: number | null;
  sdcpp: {
    note: string;
    step_s: number;
    decode_s: number;
    total_s: number | null;
    peak_rss_gb: number;
    /** sd.cpp time / ours (> 1: we are faster); RSS: ours / sd.cpp. */
    step_speedup: number;
    decode_speedup: number;
    total_speedup: number | null;
    rss_ratio: number | null;
  } | null;
  targets: { step_s: number; decode_s: number; peak_rss_gb: number; met: boolean } | null;
}

function exists(path: string | URL): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Busy and total CPU time of the whole system so far, in seconds (USER_HZ = 100), from /proc/stat. */
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
  return (b.busy - a.busy) / (b.total - a.total);
}

/** Finds the benchmark's checkpoint, or makes it with the shared tool (saying so). */
async function findOrMakeModel(arch: BenchArch, explicit?: string): Promise<string> {
  if (explicit) {
    if (!exists(explicit)) throw new Error(`--model ${explicit}: no such file`);
    return explicit;
  }
  const name = arch.modelName;
  const env = Deno.env.get(arch.modelEnv);
  const candidates = [
    ...(env ? [env] : []),
    new URL(`.cache/${name}`, REPO).pathname,
    new URL(`../cache/${name}`, REPO).pathname,
  ];
  for (const c of candidates) if (exists(c)) return c;
  if (!exists(MAKE_RANDOM_SD)) {
    throw new Error(
      `no ${arch.title} checkpoint (looked for ${
        candidates.join(", ")
      }) and no ${MAKE_RANDOM_SD.pathname} to make one: ` +
        `pass --model PATH`,
    );
  }
  const target = new URL(`.cache/${name}`, REPO);
  const partial = new URL(`.cache/${name}.partial-${Deno.pid}`, REPO);
  console.error(
    `no ${arch.title} checkpoint found: making ${target.pathname} with ${MAKE_RANDOM_SD.pathname} ` +
      `(python3 + numpy; ${arch.makeAbout})`,
  );
  await Deno.mkdir(new URL(".cache/", REPO), { recursive: true });
  try {
    const r = await new Deno.Command("/usr/bin/python3", {
      args: [MAKE_RANDOM_SD.pathname, "--out", partial.pathname, ...arch.makeArgs],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (r.code !== 0) {
      throw new Error(
        `make_random_sd.py exited with ${r.code} (it needs python3 + numpy: apt-get install python3-numpy)`,
      );
    }
    await Deno.rename(partial, target);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error("/usr/bin/python3 not found: install python3-numpy, or pass --model PATH");
    }
    throw e;
  } finally {
    await Deno.remove(partial).catch(() => {});
  }
  return target.pathname;
}

async function runWorker(
  model: string,
  size: number,
  steps: number,
  threads: number,
  isa: string,
): Promise<{ result: WorkerResult; wallS: number }> {
  const env: Record<string, string> = isa === "auto" ? {} : { SDF_ISA: isa };
  const t0 = performance.now();
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("gen_worker.ts", import.meta.url).pathname,
      "--model",
      model,
      "--size",
      String(size),
      "--steps",
      String(steps),
      "--threads",
      String(threads),
      "--cfg",
      "7",
      "--seed",
      "42",
      "--sampler",
      "euler",
      ...(hoistMib === undefined ? [] : ["--hoist-mib", String(hoistMib)]),
      ...loraArgs,
    ],
    cwd: REPO,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const wallS = (performance.now() - t0) / 1000;
  const out = new TextDecoder().decode(r.stdout).trim();
  const err = new TextDecoder().decode(r.stderr).trim();
  const line = out.split("\n").filter((l) => l.startsWith("{")).at(-1);
  if (r.code !== 0 || !line) {
    throw new Error(`gen worker (${size}x${size}) exited with ${r.code}:\n${[out, err].filter(Boolean).join("\n")}`);
  }
  return { result: JSON.parse(line) as WorkerResult, wallS };
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** Builds the report row: our figures, sd.cpp's for the same size, ratios and targets. */
export function makeRow(
  result: WorkerResult,
  totalS: number,
  extra: { isa: string; model: string; busyBefore: number | null; othersCpuS: number | null },
  arch: BenchArch = BENCH_ARCHS.sd15,
): GenBenchRow {
  const ref = arch.sdcpp[result.size];
  const t = arch.targets;
  const rssGb = result.peak_rss_bytes === null ? null : result.peak_rss_bytes / 1e9;
  return {
    ...result,
    total_s: round(totalS),
    isa: extra.isa,
    model: extra.model,
    cpu_busy_before: extra.busyBefore === null ? null : round(extra.busyBefore),
    others_cpu_s: extra.othersCpuS === null ? null : round(Math.max(0, extra.othersCpuS), 1),
    sdcpp: ref
      ? {
        note: "stable-diffusion.cpp master-827, 2 threads, f16: reference figures measured elsewhere, not in this run",
        ...ref,
        step_speedup: round(ref.step_s / result.step_median_s),
        decode_speedup: round(ref.decode_s / result.decode_s),
        total_speedup: ref.total_s === null ? null : round(ref.total_s / totalS),
        rss_ratio: rssGb === null ? null : round(rssGb / ref.peak_rss_gb),
      }
      : null,
    targets: ref && result.size === t.size
      ? {
        step_s: round(ref.step_s * t.step),
        decode_s: round(ref.decode_s * t.decode),
        peak_rss_gb: round(ref.peak_rss_gb * t.rss),
        met: result.step_median_s <= ref.step_s * t.step &&
          result.decode_s <= ref.decode_s * t.decode &&
          rssGb !== null && (t.rss === 1 ? rssGb < ref.peak_rss_gb : rssGb <= ref.peak_rss_gb * t.rss),
      }
      : null,
  };
}

function fmt(x: number | null | undefined, d = 2): string {
  return x === null || x === undefined ? "-" : x.toFixed(d);
}

/** The human-readable table: ours | sd.cpp's reference figures | sd.cpp ÷ ours. */
export function formatTable(rows: readonly GenBenchRow[]): string {
  const groups = [
    ["size"],
    ["load s", "text s", "step s", "1st step", "decode s", "total s", "RSS GB"],
    ["step s", "decode s", "total s", "RSS GB"],
    ["step", "decode", "total", "RSS"],
  ];
  const x = (v: number | null | undefined) => (v === null || v === undefined ? "-" : `${v.toFixed(2)}x`);
  const cells = rows.map((r) => {
    const s = r.sdcpp;
    return [
      [`${r.size}x${r.size}`],
      [
        fmt(r.load_s),
        fmt(r.text_encode_s),
        fmt(r.step_median_s),
        fmt(r.step_s[0]),
        fmt(r.decode_s),
        fmt(r.total_s, 1),
        fmt(r.peak_rss_bytes === null ? null : r.peak_rss_bytes / 1e9),
      ],
      [fmt(s?.step_s, 1), fmt(s?.decode_s, 1), fmt(s?.total_s, 0), fmt(s?.peak_rss_gb)],
      [x(s?.step_speedup), x(s?.decode_speedup), x(s?.total_speedup), fmt(s?.rss_ratio)],
    ];
  });
  const width = (g: number, k: number) => Math.max(groups[g][k].length, ...cells.map((c) => c[g][k].length)) + 1;
  const line = (parts: string[][]) =>
    parts.map((p, g) => p.map((c, k) => (g === 0 ? c.padEnd(width(g, k)) : c.padStart(width(g, k)))).join(""))
      .join(" |");
  const titles = ["", "sdflow (this run)", "sd.cpp (reference)", "sd.cpp ÷ sdflow"];
  const groupWidth = (g: number) => groups[g].reduce((a, _, k) => a + width(g, k), 0);
  const title = titles.map((t, g) => (g === 0 ? t.padEnd(groupWidth(g)) : t.padStart(groupWidth(g)))).join(" |");
  return [title, line(groups), ...cells.map(line)].join("\n");
}

/** Bytes of transformed UNet filters to keep (MiB), from --hoist-mib; default: the engine's. */
let hoistMib: number | undefined;
/** `--lora PATH --lora-mode MODE`, passed on to every worker. */
let loraArgs: string[] = [];

/** The `gen` suite of bench/main.ts. Reads its own flags (--sizes, --steps, --model) from Deno.args. */
export async function benchGen(backend: Backend): Promise<void> {
  try {
    await runGenBench(backend);
  } catch (e) {
    console.error(`bench gen: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}

async function runGenBench(backend: Backend): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    strict: false,
    allowPositionals: true,
    options: {
      arch: { type: "string", default: "sd15" },
      sizes: { type: "string" },
      steps: { type: "string", default: "4" },
      threads: { type: "string" },
      model: { type: "string" },
      json: { type: "boolean", default: false },
      isa: { type: "string", default: "auto" },
      "hoist-mib": { type: "string" },
      lora: { type: "string" },
      "lora-mode": { type: "string", default: "merge" },
    },
  });
  loraArgs = values.lora === undefined
    ? []
    : ["--lora", String(values.lora), "--lora-mode", String(values["lora-mode"])];
  hoistMib = values["hoist-mib"] === undefined ? undefined : Number(values["hoist-mib"]);
  const archName = String(values.arch);
  if (archName !== "sd15" && archName !== "sdxl") {
    throw new RangeError(`--arch expects sd15 or sdxl, got "${archName}"`);
  }
  const arch = BENCH_ARCHS[archName];
  const sizes = String(values.sizes ?? arch.defaultSizes).split(",").map((s) => Number(s.trim()));
  if (sizes.some((s) => !Number.isInteger(s) || s < 64 || s % 8)) {
    throw new RangeError(`--sizes expects multiples of 8 from 64 up, got "${values.sizes}"`);
  }
  const steps = Number(values.steps);
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`--steps expects a positive integer`);
  // The parent's backend resolved the default thread count (physical cores); the workers use the same.
  const threads = backend.info.threads;
  const isa = String(values.isa);
  const model = await findOrMakeModel(arch, values.model as string | undefined);
  const json = values.json === true;

  if (!json) {
    console.log(
      `${arch.title} txt2img, ${steps} steps euler, cfg 7, seed 42, ${threads} thread(s), isa ${backend.info.isa}, ` +
        `one process per size\nmodel ${model}` +
        (loraArgs.length ? `\nLoRA ${loraArgs[1]} (${loraArgs[3]}; merging is in the 1st step and text encode)` : ""),
    );
  }
  const rows: GenBenchRow[] = [];
  for (const size of sizes) {
    const busyBefore = await cpuBusy();
    if (!json) console.error(`running ${size}x${size} (CPUs ${fmt((busyBefore ?? 0) * 100, 0)}% busy before it)…`);
    const cpu0 = systemCpu();
    const { result, wallS } = await runWorker(model, size, steps, threads, isa);
    const cpu1 = systemCpu();
    const othersCpuS = cpu0 && cpu1 && result.cpu_s != null ? cpu1.busy - cpu0.busy - result.cpu_s : null;
    const row = makeRow(result, wallS, { isa: backend.info.isa, model, busyBefore, othersCpuS }, arch);
    rows.push(row);
    if (json) console.log(JSON.stringify(row));
  }
  if (json) return;
  console.log(formatTable(rows));
  console.log(
    "step s: median over all steps; 1st step includes compiling the UNet program and transforming its filters. " +
      "total s: process start to exit.\n" +
      "stable-diffusion.cpp columns: master-827, 2 threads, f16 weights: reference figures measured elsewhere " +
      "(../shared/reference/perf-anchors.md), not in this run. Ratios: sd.cpp time / ours (> 1: sdflow faster); " +
      "RSS: ours / sd.cpp (< 1: sdflow smaller).",
  );
  for (const r of rows) {
    if (r.targets) {
      const rss = r.peak_rss_bytes === null ? "?" : (r.peak_rss_bytes / 1e9).toFixed(2);
      console.log(
        `targets at ${r.size}x${r.size}: step ≤ ${r.targets.step_s} s (${r.step_median_s}), decode ≤ ${r.targets.decode_s} s ` +
          `(${r.decode_s}), RSS ${arch.targets.rss === 1 ? "<" : "≤"} ${r.targets.peak_rss_gb} GB (${rss}): ` +
          `${r.targets.met ? "met" : "NOT met"}`,
      );
    }
    if (r.rss_anon_bytes != null && r.rss_file_bytes != null) {
      console.log(
        `memory at ${r.size}x${r.size} after the decode: ${(r.rss_anon_bytes / 1e9).toFixed(2)} GB anonymous, ` +
          `${(r.rss_file_bytes / 1e9).toFixed(2)} GB mapped file (weights)`,
      );
    }
    // Others' CPU use: more than 5 % of the run's CPU capacity, or a quarter of the CPUs busy before it.
    const capacity = r.total_s * navigator.hardwareConcurrency;
    if ((r.others_cpu_s ?? 0) > 0.05 * capacity || (r.cpu_busy_before ?? 0) > 0.25) {
      console.log(
        `note: other processes were busy during ${r.size}x${r.size} (${fmt(r.others_cpu_s, 1)} CPU s during the run, ` +
          `${fmt((r.cpu_busy_before ?? 0) * 100, 0)}% busy just before): its times may be inflated`,
      );
    }
  }
}
