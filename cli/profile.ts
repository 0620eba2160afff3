/**
 * `--profile`: per-op times of the networks a run executed. The model layer
 * reports each program run's `Program.profile()` (wall ms per op, with its
 * kind, label and FLOPs); this accumulates them per network, per op kind
 * (Winograd stages by tile size) and per op label, and formats a report:
 * the time of each network, where it goes by kind, and the top ops.
 */

/** One op of one run, as `Program.profile()` gives it. */
export interface OpTime {
  readonly kind: string;
  readonly label?: string;
  readonly note?: string;
  readonly flops: number;
  readonly ms: number;
}

interface Total {
  ms: number;
  flops: number;
  /** Op executions (ops × runs). */
  count: number;
}

interface NetworkTotal extends Total {
  runs: number;
  wallMs: number;
}

function add(map: Map<string, Total>, key: string, ms: number, flops: number): void {
  const t = map.get(key) ?? { ms: 0, flops: 0, count: 0 };
  t.ms += ms;
  t.flops += flops;
  t.count++;
  map.set(key, t);
}

/** An op's group: its kind, with the Winograd tile (`F(4,3)`) for Winograd stages. */
export function opGroup(op: Pick<OpTime, "kind" | "note">): string {
  const tile = op.kind.startsWith("wino_") ? op.note?.match(/F\(\d+,\s*3\)/)?.[0] : undefined;
  return tile ? `${op.kind} ${tile}` : op.kind;
}

function gflops(flops: number, ms: number): string {
  return ms > 0 && flops > 0 ? (flops / (ms * 1e6)).toFixed(1) : "-";
}

function msText(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms.toFixed(2);
}

function pct(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : "-";
}

function table(header: readonly string[], rows: readonly (readonly string[])[], left: ReadonlySet<number>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: readonly string[]) =>
    r.map((c, i) => (left.has(i) ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ").trimEnd();
  return [fmt(header), ...rows.map(fmt)];
}

/** Accumulates per-op times over runs; {@link OpProfiler.report} formats them. */
export class OpProfiler {
  readonly #networks = new Map<string, NetworkTotal>();
  readonly #kinds = new Map<string, Total>();
  readonly #labels = new Map<string, Total & { network: string; group: string; label: string }>();

  /** Records one run of `network`: its ops' times and the run's wall time. */
  add(network: string, ops: readonly OpTime[], runMs: number): void {
    const n = this.#networks.get(network) ?? { ms: 0, flops: 0, count: 0, runs: 0, wallMs: 0 };
    n.runs++;
    n.wallMs += runMs;
    for (const [i, op] of ops.entries()) {
      n.ms += op.ms;
      n.flops += op.flops;
      n.count++;
      const group = opGroup(op);
      add(this.#kinds, `${network}\0${group}`, op.ms, op.flops);
      const label = op.label ?? `#${i} ${op.kind}`;
      const key = `${network}\0${label}\0${group}`;
      const t = this.#labels.get(key) ?? { ms: 0, flops: 0, count: 0, network, group, label };
      t.ms += op.ms;
      t.flops += op.flops;
      t.count++;
      this.#labels.set(key, t);
    }
    this.#networks.set(network, n);
  }

  /** Whether anything was recorded. */
  get empty(): boolean {
    return this.#networks.size === 0;
  }

  /** The report: networks, time by op kind, and the `top` ops by time. */
  report(opts: { top?: number } = {}): string[] {
    const top = opts.top ?? 25;
    if (this.empty) return ["profile: no network ran (all outputs came from the cache?)"];
    const opTotal = [...this.#networks.values()].reduce((a, n) => a + n.ms, 0);
    const lines = [
      "profile: per-op wall times from Program.profile(). Ops run concurrently on the backend's threads, so op " +
      "times overlap: their sum can exceed a run's wall time, and shares are of the summed op time " +
      `(${(opTotal / 1000).toFixed(2)} s), not of the wall time.`,
      "",
    ];
    const nets = [...this.#networks].sort((a, b) => b[1].wallMs - a[1].wallMs);
    lines.push(...table(
      ["network", "runs", "wall ms", "ms/run", "sum of op ms", "GFLOP", "GFLOP/s (wall)"],
      nets.map(([name, n]) => [
        name,
        String(n.runs),
        msText(n.wallMs),
        msText(n.wallMs / n.runs),
        msText(n.ms),
        (n.flops / 1e9).toFixed(1),
        gflops(n.flops, n.wallMs),
      ]),
      new Set([0]),
    ));
    lines.push("", "by op kind:");
    const kinds = [...this.#kinds].map(([k, t]) => {
      const [network, group] = k.split("\0");
      return { network, group, ...t };
    }).sort((a, b) => b.ms - a.ms);
    lines.push(...table(
      ["network", "kind", "ops", "ms", "share", "GFLOP/s"],
      kinds.map((k) => [k.network, k.group, String(k.count), msText(k.ms), pct(k.ms, opTotal), gflops(k.flops, k.ms)]),
      new Set([0, 1]),
    ));
    const ops = [...this.#labels.values()].sort((a, b) => b.ms - a.ms).slice(0, top);
    lines.push("", `top ${ops.length} ops (summed over runs):`);
    lines.push(...table(
      ["ms", "share", "GFLOP/s", "count", "network", "kind", "op"],
      ops.map((o) => [
        msText(o.ms),
        pct(o.ms, opTotal),
        gflops(o.flops, o.ms),
        String(o.count),
        o.network,
        o.group,
        o.label,
      ]),
      new Set([4, 5, 6]),
    ));
    return lines;
  }
}
