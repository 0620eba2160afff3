/**
 * stable-diffusion.cpp (sd.cpp) as a benchmark peer: `deno task bench gen --sdcpp PATH` runs its
 * `sd-cli` with the same flags as sdflow's `gen`, in the same run, and reads its figures from its own
 * log ({@link parseSdcppLog}) and its peak RSS from `/usr/bin/time -v` ({@link parseTimeV}), or, where
 * that is missing, from polling `/proc/<pid>/status` (VmHWM) while it runs. No figure of sd.cpp is
 * written in sdflow's code: every one comes from the run.
 *
 * What sd-cli prints (examples/common/log.cpp and src/core/util.cpp of its source):
 * - log lines `[INFO ] stable-diffusion.cpp:5711 - sampling completed, taking 19.80s`;
 * - a progress bar per sampling step on stdout, redrawn with `\r`: `|=====>   | 2/4 - 4.91s/it`
 *   (`2.50it/s` when a step takes under a second); each step is timed from the end of the one before
 *   (the first from the start of its own model evaluation, so it includes reading the UNet's weights);
 * - bars of weight loading in the same format but in `MB/s` (not steps).
 * A captured log: bench/testdata/sdcpp_sd15_256_euler_4.log (with its `/usr/bin/time -v` report).
 *
 * @module
 */

import { median } from "../cli/progress.ts";

/** What one sd-cli run took, from its log. */
export interface SdcppLogTimes {
  /**
   * Every "loading tensors completed, taking X s", summed: sd-cli reads each network's weights when it
   * first runs it (text encoder, then the UNet inside the first step, then the VAE inside the decode),
   * so these seconds are also part of the text encoding, the first step and the decode.
   */
  readonly load_s: number | null;
  /** "get_learned_condition completed": the text encoders. */
  readonly text_encode_s: number | null;
  /** Each sampling step, from the progress bar (2 decimals, as sd.cpp prints them). */
  readonly step_s: readonly number[];
  readonly first_step_s: number | null;
  readonly step_median_rest_s: number | null;
  /** "sampling completed". */
  readonly sample_s: number | null;
  /** "decode_first_stage completed": the VAE decode. */
  readonly decode_s: number | null;
  /** "generate_image completed in X s": text encoding, sampling and decoding. */
  readonly generate_s: number | null;
}

const num = (m: RegExpMatchArray | null | undefined): number | null => (m ? Number(m[1]) : null);

/** The last match of a "…, taking 1.23s" style message in the log. */
function lastSeconds(log: string, re: RegExp): number | null {
  return num([...log.matchAll(re)].at(-1));
}

/** The sum of every match of a "…, taking 1.23s" style message; null when there is none. */
function sumSeconds(log: string, re: RegExp): number | null {
  const all = [...log.matchAll(re)].map((m) => Number(m[1]));
  return all.length ? Math.round(all.reduce((a, b) => a + b, 0) * 1000) / 1000 : null;
}

/** Reads sd-cli's stdout + stderr (see the module comment for the format). */
export function parseSdcppLog(log: string): SdcppLogTimes {
  // Progress redraws are separated by \r; a step's last drawing carries its final time. Only bars
  // before "sampling completed" are the sampler's (the VAE's tiling, when on, draws its own).
  const end = log.indexOf("sampling completed");
  const sampling = end >= 0 ? log.slice(0, end) : log;
  const byStep = new Map<number, number>();
  let total = 0;
  for (const m of sampling.matchAll(/\|\s*(\d+)\/(\d+) - ([\d.]+)(s\/it|it\/s)/g)) {
    const v = Number(m[3]);
    total = Number(m[2]);
    byStep.set(Number(m[1]), m[4] === "it/s" ? (v > 0 ? 1 / v : NaN) : v);
  }
  const steps: number[] = [];
  for (let i = 1; i <= total && byStep.has(i); i++) steps.push(Math.round(byStep.get(i)! * 1000) / 1000);
  return {
    load_s: sumSeconds(log, /loading tensors completed, taking ([\d.]+)s/g),
    text_encode_s: lastSeconds(log, /get_learned_condition completed, taking ([\d.]+)s/g),
    step_s: steps,
    first_step_s: steps.length ? steps[0] : null,
    step_median_rest_s: steps.length > 1 ? Math.round(median(steps.slice(1)) * 1000) / 1000 : null,
    sample_s: lastSeconds(log, /sampling completed, taking ([\d.]+)s/g),
    decode_s: lastSeconds(log, /decode_first_stage completed, taking ([\d.]+)s/g),
    generate_s: lastSeconds(log, /generate_image completed in ([\d.]+)s/g),
  };
}

/** Peak RSS (bytes), wall and CPU seconds from GNU time's `-v` report; null for what it lacks. */
export function parseTimeV(
  text: string,
): { peak_rss_bytes: number | null; wall_s: number | null; cpu_s: number | null } {
  const rss = /Maximum resident set size \(kbytes\):\s*(\d+)/.exec(text);
  // "Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02.34"
  const wall = /Elapsed \(wall clock\) time.*?:\s*([\d:.]+)\s*$/m.exec(text);
  let wallS: number | null = null;
  if (wall) wallS = wall[1].split(":").reduce((a, p) => a * 60 + Number(p), 0);
  const user = num(/User time \(seconds\):\s*([\d.]+)/.exec(text));
  const system = num(/System time \(seconds\):\s*([\d.]+)/.exec(text));
  return {
    peak_rss_bytes: rss ? Number(rss[1]) * 1024 : null,
    wall_s: wallS,
    cpu_s: user === null || system === null ? null : Math.round((user + system) * 100) / 100,
  };
}

/** The sd-cli arguments of a txt2img run (sdflow's `gen` takes the same). */
export interface Txt2ImgFlags {
  readonly model: string;
  readonly prompt: string;
  readonly seed: number;
  readonly cfg: number;
  readonly size: number;
  readonly steps: number;
  readonly sampler: string;
  readonly threads: number;
  readonly output: string;
  /** A LoRA file, applied with strength 1 through sd.cpp's `<lora:name:1>` prompt tag. */
  readonly lora?: { readonly path: string; readonly mode: "immediately" | "at_runtime" };
  /** sd.cpp's `--type`: convert the weights on load (q8_0, q4_0, f16, …). */
  readonly weightType?: string;
  /** Add-on flags both engines take as they are (`--taesd F`, `--control-net F --control-image P`, …). */
  readonly addons?: readonly string[];
}

/** sd.cpp's command-line flags for a run; sdflow's `gen` accepts the very same list. */
export function txt2imgArgs(f: Txt2ImgFlags): string[] {
  const slash = f.lora ? f.lora.path.lastIndexOf("/") : -1;
  const loraName = f.lora ? f.lora.path.slice(slash + 1).replace(/\.[^.]*$/, "") : "";
  const lora = f.lora
    ? ["--lora-model-dir", slash >= 0 ? f.lora.path.slice(0, slash) || "/" : ".", "--lora-apply-mode", f.lora.mode]
    : [];
  return [
    "-m",
    f.model,
    "-p",
    f.lora ? `${f.prompt}<lora:${loraName}:1>` : f.prompt,
    ...lora,
    "-s",
    String(f.seed),
    "--cfg-scale",
    String(f.cfg),
    "--rng",
    "cuda",
    "-t",
    String(f.threads),
    "-W",
    String(f.size),
    "-H",
    String(f.size),
    "--sampling-method",
    f.sampler,
    "--steps",
    String(f.steps),
    ...(f.weightType ? ["--type", f.weightType] : []),
    ...(f.addons ?? []),
    "-o",
    f.output,
  ];
}

/** One sd-cli run as the benchmark reports it. */
export interface SdcppRun extends SdcppLogTimes {
  /** Wall seconds, spawn to exit. */
  readonly total_s: number;
  readonly peak_rss_bytes: number | null;
  /** How the peak was measured. */
  readonly peak_rss_source: "time -v" | "VmHWM polling" | null;
  /** User + system CPU seconds (from `time -v`; null when polling). */
  readonly cpu_s: number | null;
}

/** GNU time, whose `-v` report gives a child's exact peak RSS. */
export const GNU_TIME = "/usr/bin/time";

export function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Runs sd-cli with `flags`; throws with the tail of its log when it fails or prints no timings. */
export async function runSdcpp(binary: string, flags: Txt2ImgFlags, scratch: string): Promise<SdcppRun> {
  if (!isFile(binary)) throw new Error(`--sdcpp ${binary}: no such file`);
  const timeFile = `${scratch}/sdcpp-time-${flags.size}.txt`;
  const viaTime = isFile(GNU_TIME);
  const cmd = viaTime
    ? new Deno.Command(GNU_TIME, { args: ["-v", "-o", timeFile, binary, ...txt2imgArgs(flags)], ...io })
    : new Deno.Command(binary, { args: txt2imgArgs(flags), ...io });
  const t0 = performance.now();
  const child = cmd.spawn();
  const polled = viaTime ? null : pollPeakRss(child.pid, child.status);
  const out = await child.output();
  const totalS = Math.round(performance.now() - t0) / 1000;
  const log = new TextDecoder().decode(out.stdout) + "\n" + new TextDecoder().decode(out.stderr);
  const tail = () => log.split(/[\r\n]+/).filter((l) => l.trim()).slice(-8).join("\n");
  if (out.code !== 0) throw new Error(`sd-cli exited with ${out.code}:\n${tail()}`);
  const times = parseSdcppLog(log);
  if (times.step_s.length !== flags.steps || times.decode_s === null) {
    throw new Error(
      `sd-cli's log has ${times.step_s.length} of ${flags.steps} step times and ` +
        `${times.decode_s === null ? "no" : "a"} decode time (a log format this benchmark does not know?):\n${tail()}`,
    );
  }
  let peak: number | null = null;
  let cpu: number | null = null;
  if (viaTime) {
    const t = parseTimeV(await Deno.readTextFile(timeFile).catch(() => ""));
    peak = t.peak_rss_bytes;
    cpu = t.cpu_s;
    await Deno.remove(timeFile).catch(() => {});
  } else peak = await polled!;
  return {
    ...times,
    total_s: totalS,
    peak_rss_bytes: peak,
    peak_rss_source: peak === null ? null : viaTime ? "time -v" : "VmHWM polling",
    cpu_s: cpu,
  };
}

const io = { stdout: "piped", stderr: "piped", stdin: "null" } as const;

/** Reads VmHWM of `pid` every 50 ms until it exits: a lower bound of its peak (the last growth may be missed). */
export async function pollPeakRss(pid: number, done: Promise<unknown>): Promise<number | null> {
  let peak: number | null = null;
  let finished = false;
  done.then(() => (finished = true), () => (finished = true));
  while (!finished) {
    try {
      const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(await Deno.readTextFile(`/proc/${pid}/status`));
      if (m) peak = Math.max(peak ?? 0, Number(m[1]) * 1024);
    } catch {
      break; // gone (or no /proc)
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return peak;
}

/** `sd-cli --version`'s first line, or null when it prints none. */
export async function sdcppVersion(binary: string): Promise<string | null> {
  try {
    const out = await new Deno.Command(binary, { args: ["--version"], ...io }).output();
    const line = new TextDecoder().decode(out.stdout).split("\n").map((l) => l.trim()).find(Boolean);
    return out.code === 0 && line ? line : null;
  } catch {
    return null;
  }
}
