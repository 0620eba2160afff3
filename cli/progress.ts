/**
 * Progress for the CLI: a bar per long-running node when stderr is a
 * terminal (redrawn in place), plain lines otherwise (logs, CI).
 */

import type { RunReporter } from "../dsl/run.ts";

/** Where progress goes: Deno.stderr, or a test double. */
export interface ProgressStream {
  writeSync(p: Uint8Array): number;
  isTerminal(): boolean;
}

const enc = new TextEncoder();

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

/** A {@link RunReporter} that draws progress bars on a terminal and prints plain lines elsewhere. */
export class ProgressDisplay implements RunReporter {
  readonly #out: ProgressStream;
  readonly #tty: boolean;
  readonly #verbose: boolean;
  readonly #bars = new Map<string, { type: string; done: number; total: number; start: number }>();
  readonly #types = new Map<string, string>();
  #drawn = 0;
  #lastDraw = 0;

  constructor(opts: { stream?: ProgressStream; verbose?: boolean } = {}) {
    this.#out = opts.stream ?? Deno.stderr;
    this.#tty = this.#out.isTerminal();
    this.#verbose = opts.verbose ?? false;
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
    const width = 30;
    for (const [id, b] of this.#bars) {
      if (!b.total) continue;
      const frac = Math.min(1, b.done / b.total);
      const fill = Math.round(frac * width);
      const eta = b.done > 0 ? ` eta ${seconds(((performance.now() - b.start) / b.done) * (b.total - b.done))}` : "";
      this.#write(`${id} [${"#".repeat(fill)}${".".repeat(width - fill)}] ${b.done}/${b.total}${eta}\n`);
      this.#drawn++;
    }
    this.#lastDraw = performance.now();
  }

  #line(s: string): void {
    this.#clear();
    this.#write(s + "\n");
    this.#draw();
  }

  nodeStart(id: string, type: string): void {
    this.#types.set(id, type);
    this.#bars.set(id, { type, done: 0, total: 0, start: performance.now() });
    if (this.#verbose) this.#line(`▶ ${id} (${type})`);
  }

  progress(id: string, done: number, total: number): void {
    const b = this.#bars.get(id);
    if (!b) return;
    const first = b.total === 0;
    b.done = done;
    b.total = total;
    if (first || done >= total || performance.now() - this.#lastDraw > 100) this.#draw();
  }

  log(_id: string, message: string): void {
    this.#line(message);
  }

  nodeEnd(id: string, info: { cached: boolean; ms: number }): void {
    const b = this.#bars.get(id);
    this.#bars.delete(id);
    if (info.cached) {
      if (this.#verbose) this.#line(`· ${id}: cached`);
      return;
    }
    if (this.#verbose || (b && b.total > 0) || info.ms > 1000) {
      this.#line(`✓ ${id} (${this.#types.get(id)}) ${seconds(info.ms)}`);
    } else this.#draw();
  }

  /** Removes bars left on screen (after an error). */
  close(): void {
    this.#bars.clear();
    this.#clear();
  }
}
