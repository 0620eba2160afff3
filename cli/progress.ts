/**
 * Progress for the CLI: a bar per long-running node (sampling steps, VAE
 * decoding) when stderr is a terminal, redrawn in place; no bars otherwise
 * (logs, CI, pipes), where only finished nodes get a line — and, under `-v`,
 * each sampling step. `-v` ends with a summary: load time, time per step
 * (median and total), decode time and peak memory.
 */

import type { RunReporter } from "../dsl/run.ts";

/** Where progress goes: Deno.stderr, or a test double. */
export interface ProgressStream {
  writeSync(p: Uint8Array): number;
  isTerminal(): boolean;
}

const enc = new TextEncoder();

/** Seconds for people: `0.4 s`, `12 s`. */
export function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

function precise(ms: number): string {
  return ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** Bytes for people, binary units. */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(2)} ${units[i]}`;
}

/** The median of some numbers (NaN for none). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Peak resident memory of this process: `VmHWM` from `/proc/self/status` on Linux
 * (the kernel's high-water mark), elsewhere the current RSS (a lower bound of the peak).
 */
export function peakRss(
  readStatus: () => string = () => Deno.readTextFileSync("/proc/self/status"),
): { bytes: number; source: "VmHWM" | "current RSS" } {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readStatus());
    if (m) return { bytes: Number(m[1]) * 1024, source: "VmHWM" };
  } catch {
    // Not Linux (or /proc is not mounted): fall through.
  }
  return { bytes: Deno.memoryUsage().rss, source: "current RSS" };
}

interface NodeTiming {
  readonly type: string;
  readonly category?: string;
  readonly start: number;
  ms?: number;
  /** Wall ms of each step, for nodes reporting `unit: "step"`. */
  readonly steps: number[];
  lastStep: number;
  lastDone: number;
}

interface Bar {
  done: number;
  total: number;
  readonly start: number;
  unit?: string;
}

/** A {@link RunReporter} that draws progress bars on a terminal and prints plain lines elsewhere. */
export class ProgressDisplay implements RunReporter {
  readonly #out: ProgressStream;
  readonly #tty: boolean;
  readonly #verbose: boolean;
  readonly #columns: () => number;
  readonly #bars = new Map<string, Bar>();
  readonly #timings = new Map<string, NodeTiming>();
  #drawn = 0;
  #lastDraw = 0;

  constructor(opts: { stream?: ProgressStream; verbose?: boolean; columns?: () => number } = {}) {
    this.#out = opts.stream ?? Deno.stderr;
    this.#tty = this.#out.isTerminal();
    this.#verbose = opts.verbose ?? false;
    this.#columns = opts.columns ?? (() => {
      try {
        return Deno.consoleSize().columns;
      } catch {
        return 80;
      }
    });
  }

  #write(s: string): void {
    const bytes = enc.encode(s);
    for (let off = 0; off < bytes.length;) off += this.#out.writeSync(bytes.subarray(off));
  }

  #clear(): void {
    if (this.#drawn) this.#write(`\x1b[${this.#drawn}A\x1b[0J`);
    this.#drawn = 0;
  }

  #draw(): void {
    if (!this.#tty) return;
    this.#clear();
    // One line per bar, never wider than the terminal (a wrapped line would break the redraw).
    const columns = Math.max(20, this.#columns() - 1);
    for (const [id, b] of this.#bars) {
      if (!b.total) continue;
      const frac = Math.min(1, b.done / b.total);
      const elapsed = performance.now() - b.start;
      const eta = b.done > 0 && b.done < b.total ? ` eta ${seconds((elapsed / b.done) * (b.total - b.done))}` : "";
      const count = b.unit === "step"
        ? ` ${b.done}/${b.total} steps`
        : ` ${Math.floor(frac * 100).toString().padStart(3)}%`;
      const tail = `${count} ${seconds(elapsed)}${eta}`;
      const width = Math.max(10, Math.min(30, columns - id.length - tail.length - 3));
      const fill = Math.round(frac * width);
      const line = `${id} [${"#".repeat(fill)}${".".repeat(width - fill)}]${tail}`;
      this.#write(`${line.slice(0, columns)}\n`);
      this.#drawn++;
    }
    this.#lastDraw = performance.now();
  }

  #line(s: string): void {
    this.#clear();
    this.#write(s + "\n");
    this.#draw();
  }

  nodeStart(id: string, type: string, info: { category?: string } = {}): void {
    const now = performance.now();
    this.#timings.set(id, { type, category: info.category, start: now, steps: [], lastStep: now, lastDone: 0 });
    this.#bars.set(id, { done: 0, total: 0, start: now });
    if (this.#verbose) this.#line(`▶ ${id} (${type})`);
  }

  progress(id: string, done: number, total: number, unit?: string): void {
    const now = performance.now();
    const t = this.#timings.get(id);
    if (t && unit === "step" && done > t.lastDone) {
      // Each call ends one step; several at once (a fast step) share the time evenly.
      const n = done - t.lastDone;
      for (let i = 0; i < n; i++) t.steps.push((now - t.lastStep) / n);
      t.lastStep = now;
      t.lastDone = done;
      if (!this.#tty && this.#verbose) this.#line(`${id}: step ${done}/${total} ${precise(t.steps.at(-1)!)}`);
    }
    const b = this.#bars.get(id);
    if (!b) return;
    const first = b.total === 0;
    b.done = done;
    b.total = total;
    b.unit = unit;
    if (first || done >= total || now - this.#lastDraw > 100) this.#draw();
  }

  log(_id: string, message: string): void {
    this.#line(message);
  }

  nodeEnd(id: string, info: { cached: boolean; ms: number }): void {
    const b = this.#bars.get(id);
    this.#bars.delete(id);
    const t = this.#timings.get(id);
    if (info.cached) {
      this.#timings.delete(id);
      if (this.#verbose) this.#line(`· ${id}: cached`);
      return;
    }
    if (t) t.ms = info.ms;
    if (this.#verbose || (b && b.total > 0) || info.ms > 1000) {
      this.#line(`✓ ${id} (${t?.type ?? "?"}) ${seconds(info.ms)}`);
    } else this.#draw();
  }

  /**
   * The `-v` summary of what ran: load time (loader nodes), sampling steps (median and total per
   * sampler), decode time (VAE decoders) and peak memory.
   */
  summary(peak: { bytes: number; source: string } = peakRss()): string[] {
    const lines: string[] = [];
    const done = [...this.#timings].filter(([, t]) => t.ms !== undefined);
    const loads = done.filter(([, t]) => t.category === "loaders");
    if (loads.length) {
      const total = loads.reduce((a, [, t]) => a + t.ms!, 0);
      const each = loads.length > 1 ? ` (${loads.map(([id, t]) => `${id} ${precise(t.ms!)}`).join(", ")})` : "";
      lines.push(`load: ${precise(total)}${each}`);
    }
    for (const [id, t] of done) {
      if (t.steps.length === 0) continue;
      const sum = t.steps.reduce((a, b) => a + b, 0);
      lines.push(
        `sampling (${id}): ${t.steps.length} steps, ${precise(median(t.steps))}/step median, ` +
          `${precise(sum)} total (min ${precise(Math.min(...t.steps))}, max ${precise(Math.max(...t.steps))})`,
      );
    }
    for (const [id, t] of done) {
      if (t.type === "vae_decode") lines.push(`decode (${id}): ${precise(t.ms!)}`);
    }
    lines.push(`peak memory: ${bytes(peak.bytes)} (${peak.source === "VmHWM" ? "peak RSS, VmHWM" : peak.source})`);
    return lines;
  }

  /** Removes bars left on screen (after an error). */
  close(): void {
    this.#bars.clear();
    this.#clear();
  }
}
