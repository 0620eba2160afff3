/**
 * `gen --timings-json FILE`: what a run spent its time and memory on, as one JSON object, for
 * `deno task bench gen` (which runs the real CLI in a subprocess) and for anyone scripting sdflow.
 *
 * {@link RunTimings} listens to the runner like the progress display does; {@link RunTimings.report}
 * groups the nodes the way a user thinks of a generation: load (loader nodes), text encoding
 * (conditioning nodes), the sampling steps (the first one separately: it compiles the UNet program
 * and transforms its filters), the VAE decode and the PNG write (save_image: encode + write), with
 * peak RSS (VmHWM) and CPU seconds of the whole process.
 *
 * @module
 */

import type { RunReporter } from "../dsl/run.ts";
import { median } from "./progress.ts";

/** One node as it ran. */
export interface NodeTimes {
  readonly id: string;
  readonly type: string;
  readonly category: string | null;
  /** Wall seconds from start to end; 0 for a cached node. */
  readonly s: number;
  readonly cached: boolean;
  /** Seconds of each sampling step, for nodes that report progress in steps. */
  readonly step_s: readonly number[];
}

/** The report `--timings-json` writes (schema version 1). */
export interface TimingsReport {
  readonly version: 1;
  /** Loader nodes (checkpoint files mapped and checked). */
  readonly load_s: number;
  /** Conditioning nodes (tokenizer + text encoder, its program compiled on first use). */
  readonly text_encode_s: number;
  /** Every sampling step of every sampler node, in order. */
  readonly step_s: readonly number[];
  /** The first step: it includes compiling the UNet program. Null when no step ran. */
  readonly first_step_s: number | null;
  /** Median of the steps after the first; null with fewer than two steps. */
  readonly step_median_rest_s: number | null;
  /** Sampler nodes, whole (steps plus set-up). */
  readonly sample_s: number;
  /** VAE decoder nodes. */
  readonly decode_s: number;
  /** save_image nodes: PNG encoding and writing. */
  readonly save_s: number;
  /** The pipeline, first node start to last node end. */
  readonly run_s: number;
  /** Since the process started (Deno start-up and module loading included), when the report was made. */
  readonly process_s: number;
  /** VmHWM of this process; null where /proc is missing. */
  readonly peak_rss_bytes: number | null;
  /** Anonymous and file-backed (mapped weights) resident memory when the report was made. */
  readonly rss_anon_bytes: number | null;
  readonly rss_file_bytes: number | null;
  /** User + system CPU seconds of this process. */
  readonly cpu_s: number | null;
  readonly threads: number | null;
  readonly nodes: readonly NodeTimes[];
}

interface Open {
  readonly type: string;
  readonly category: string | null;
  readonly start: number;
  readonly steps: number[];
  lastStep: number;
  lastDone: number;
}

const sec = (ms: number) => Math.round(ms) / 1000;

/** A {@link RunReporter} that records each node's wall time and each sampling step's. */
export class RunTimings implements RunReporter {
  readonly #open = new Map<string, Open>();
  readonly #done: NodeTimes[] = [];
  #first = Infinity;
  #last = -Infinity;
  readonly #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  nodeStart(id: string, type: string, info: { category?: string } = {}): void {
    const t = this.#now();
    this.#first = Math.min(this.#first, t);
    this.#open.set(id, { type, category: info.category ?? null, start: t, steps: [], lastStep: t, lastDone: 0 });
  }

  progress(id: string, done: number, _total: number, unit?: string): void {
    const o = this.#open.get(id);
    if (!o || unit !== "step" || done <= o.lastDone) return;
    // Several steps reported at once share the time since the last report evenly.
    const t = this.#now();
    const n = done - o.lastDone;
    for (let i = 0; i < n; i++) o.steps.push((t - o.lastStep) / n);
    o.lastStep = t;
    o.lastDone = done;
  }

  nodeEnd(id: string, info: { cached: boolean; ms: number }): void {
    const t = this.#now();
    this.#last = Math.max(this.#last, t);
    const o = this.#open.get(id);
    this.#open.delete(id);
    this.#done.push({
      id,
      type: o?.type ?? "?",
      category: o?.category ?? null,
      s: info.cached ? 0 : sec(info.ms),
      cached: info.cached,
      step_s: (o?.steps ?? []).map(sec),
    });
  }

  /** The report; `proc` reads /proc files (a test passes fixed text). */
  report(
    opts: { threads?: number; proc?: (name: "status" | "stat") => string | null } = {},
  ): TimingsReport {
    const proc = opts.proc ?? readProcSelf;
    const status = proc("status");
    const stat = proc("stat");
    const nodes = [...this.#done];
    const sum = (pick: (n: NodeTimes) => boolean) =>
      sec(nodes.filter((n) => !n.cached && pick(n)).reduce((a, n) => a + n.s * 1000, 0));
    const steps = nodes.flatMap((n) => n.step_s);
    return {
      version: 1,
      load_s: sum((n) => n.category === "loaders"),
      text_encode_s: sum((n) => n.category === "conditioning"),
      step_s: steps,
      first_step_s: steps.length ? steps[0] : null,
      step_median_rest_s: steps.length > 1 ? sec(median(steps.slice(1)) * 1000) : null,
      sample_s: sum((n) => n.step_s.length > 0),
      decode_s: sum((n) => n.type === "vae_decode"),
      save_s: sum((n) => n.type === "save_image"),
      run_s: Number.isFinite(this.#first) ? sec(this.#last - this.#first) : 0,
      process_s: sec(this.#now()),
      peak_rss_bytes: statusBytes("VmHWM", status),
      rss_anon_bytes: statusBytes("RssAnon", status),
      rss_file_bytes: statusBytes("RssFile", status),
      cpu_s: cpuSeconds(stat),
      threads: opts.threads ?? null,
      nodes,
    };
  }
}

/** /proc/self/status or /proc/self/stat; null where /proc is missing. */
function readProcSelf(name: "status" | "stat"): string | null {
  try {
    return Deno.readTextFileSync(`/proc/self/${name}`);
  } catch {
    return null;
  }
}

/** A `kB` field of /proc/<pid>/status (VmHWM, RssAnon, …) in bytes; null when absent. */
export function statusBytes(field: string, status: string | null): number | null {
  if (status === null) return null;
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(status);
  return m ? Number(m[1]) * 1024 : null;
}

/** User + system CPU seconds from /proc/<pid>/stat (USER_HZ = 100); null when unreadable. */
export function cpuSeconds(stat: string | null): number | null {
  if (stat === null) return null;
  // After the parenthesised command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(rest[11]), stime = Number(rest[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / 100 : null;
}

/** One reporter that forwards every event to each of `reporters`. */
export function allReporters(...reporters: readonly RunReporter[]): RunReporter {
  return {
    nodeStart: (id, type, info) => reporters.forEach((r) => r.nodeStart?.(id, type, info)),
    nodeEnd: (id, info) => reporters.forEach((r) => r.nodeEnd?.(id, info)),
    progress: (id, done, total, unit) => reporters.forEach((r) => r.progress?.(id, done, total, unit)),
    log: (id, message) => reporters.forEach((r) => r.log?.(id, message)),
  };
}
