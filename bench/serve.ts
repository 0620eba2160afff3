/**
 * `deno task bench serve [--clients N] [--requests M] [--seconds T] [--steps S] [--size PX] [--workers W]
 * [--json]`: a load test of `deno task serve` on the tiny model. N clients send sd-webui txt2img requests
 * back to back until M requests are answered or T seconds pass (both bounded), against the server with its
 * in-process queue and then with the Redis queue and W `deno task worker` processes (skipped, with a line,
 * when `redis-server` is not installed; the Redis is the benchmark's own, on a free loopback port).
 * Prints throughput, p50/p99 latency and the peak RSS of the server and worker processes (VmHWM).
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { haveRedisServer, LocalRedis } from "../server/local_redis.ts";

const ROOT = new URL("..", import.meta.url).pathname;

interface Result {
  queue: string;
  requests: number;
  failed: number;
  seconds: number;
  throughput: number;
  p50_ms: number;
  p99_ms: number;
  server_peak_rss_mb: number;
  worker_peak_rss_mb?: number;
}

function intFlag(name: string, v: unknown, min: number): number {
  if (typeof v !== "string" || !/^\d+$/.test(v) || Number(v) < min) {
    throw new Error(`--${name} expects an integer of at least ${min}, got "${v}"`);
  }
  return Number(v);
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Peak resident memory of a process (Linux /proc VmHWM), in MiB; undefined elsewhere. */
async function peakRssMb(pid: number): Promise<number | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = /^VmHWM:\s+(\d+) kB/m.exec(status);
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

function spawn(script: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(ROOT, script), ...args],
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

async function waitHealthy(base: string, proc: Deno.ChildProcess): Promise<void> {
  const deadline = Date.now() + 60_000;
  let exited = false;
  proc.status.then(() => exited = true);
  for (;;) {
    try {
      const r = await fetch(`${base}/health`);
      await r.body?.cancel();
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    if (exited) throw new Error("the server exited at start");
    if (Date.now() > deadline) throw new Error("the server did not start within 60 s");
    await new Promise((r) => setTimeout(r, 100));
  }
}

function percentile(sorted: readonly number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
}

/** N clients against one server until `requests` answers or `seconds` pass. */
async function load(
  base: string,
  opts: { clients: number; requests: number; seconds: number; steps: number; size: number },
): Promise<{ latencies: number[]; failed: number; seconds: number }> {
  const latencies: number[] = [];
  let failed = 0;
  let issued = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const deadline = start + opts.seconds * 1000;
  const client = async (c: number) => {
    while (issued < opts.requests && performance.now() < deadline) {
      const seed = issued++;
      const t0 = performance.now();
      try {
        const r = await fetch(`${base}/sdapi/v1/txt2img`, {
          method: "POST",
          body: JSON.stringify({
            prompt: `bench client ${c}`,
            steps: opts.steps,
            width: opts.size,
            height: opts.size,
            seed,
            sampler_name: "Euler",
          }),
          signal: AbortSignal.timeout(Math.max(1, deadline + 30_000 - performance.now())),
        });
        if (r.ok) {
          await r.body?.cancel();
          latencies.push(performance.now() - t0);
        } else {
          failed++;
          firstError ??= `HTTP ${r.status}: ${(await r.text()).slice(0, 200)}`;
        }
      } catch (e) {
        failed++;
        firstError ??= (e as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: opts.clients }, (_, c) => client(c)));
  if (firstError) console.error(`bench serve: ${failed} request(s) failed; the first: ${firstError}`);
  return { latencies: latencies.sort((a, b) => a - b), failed, seconds: (performance.now() - start) / 1000 };
}

/** One configuration: the server (and workers) as subprocesses, a warm-up request, then the load. */
async function runCase(
  queue: "memory" | string,
  workers: number,
  opts: { clients: number; requests: number; seconds: number; steps: number; size: number },
): Promise<Result> {
  const tmp = await Deno.makeTempDir({ prefix: "sdflow-bench-serve-" });
  const port = freePort();
  const base = `http://127.0.0.1:${port}`;
  const procs: Deno.ChildProcess[] = [];
  try {
    const server = spawn("server/main.ts", [
      "--port",
      String(port),
      "--outputs",
      join(tmp, "server"),
      "--queue",
      queue,
      "--max-queue",
      String(opts.clients * 4),
    ]);
    procs.push(server);
    const workerProcs = queue === "memory"
      ? []
      : Array.from({ length: workers }, (_, i) =>
        spawn("server/worker.ts", ["--queue", queue, "--outputs", join(tmp, `w${i}`)]));
    procs.push(...workerProcs);
    await waitHealthy(base, server);
    // Warm-up: every worker loads the tiny model once (the first request per process pays for it).
    await load(base, { ...opts, clients: Math.max(1, workers), requests: Math.max(1, workers) * 2, seconds: 120 });
    const r = await load(base, opts);
    const workerRss = await Promise.all(workerProcs.map((p) => peakRssMb(p.pid)));
    return {
      queue: queue === "memory" ? "memory" : `redis, ${workers} workers`,
      requests: r.latencies.length,
      failed: r.failed,
      seconds: r.seconds,
      throughput: r.latencies.length / r.seconds,
      p50_ms: percentile(r.latencies, 0.5),
      p99_ms: percentile(r.latencies, 0.99),
      server_peak_rss_mb: (await peakRssMb(server.pid)) ?? NaN,
      ...(workerProcs.length ? { worker_peak_rss_mb: Math.max(...workerRss.map((v) => v ?? NaN)) } : {}),
    };
  } finally {
    for (const p of procs) {
      try {
        p.kill("SIGTERM");
      } catch {
        // gone
      }
    }
    for (const p of procs) {
      await p.stderr.cancel().catch(() => {});
      await p.status;
    }
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** Runs the benchmark; returns the exit code. */
export async function benchServe(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv].filter((a) => a !== "serve"),
    strict: true,
    allowPositionals: false,
    options: {
      clients: { type: "string", default: "4" },
      requests: { type: "string", default: "24" },
      seconds: { type: "string", default: "60" },
      steps: { type: "string", default: "2" },
      size: { type: "string", default: "64" },
      workers: { type: "string", default: "2" },
      json: { type: "boolean", default: false },
      // bench/main.ts's shared flags
      threads: { type: "string" },
      isa: { type: "string" },
    },
  });
  const opts = {
    clients: intFlag("clients", values.clients, 1),
    requests: intFlag("requests", values.requests, 1),
    seconds: intFlag("seconds", values.seconds, 1),
    steps: intFlag("steps", values.steps, 1),
    size: intFlag("size", values.size, 64),
  };
  const workers = intFlag("workers", values.workers, 1);
  if (opts.size % 8) throw new Error(`--size must be a multiple of 8, got ${opts.size}`);
  const results: Result[] = [await runCase("memory", 0, opts)];
  if (await haveRedisServer()) {
    const redis = await LocalRedis.start();
    try {
      results.push(await runCase(redis.url, workers, opts));
    } finally {
      await redis.stop();
    }
  } else {
    console.error(
      "bench serve: redis-server is not installed; the Redis queue is skipped (apt-get install redis-server)",
    );
  }
  if (values.json) {
    for (const r of results) console.log(JSON.stringify(r));
    return 0;
  }
  console.log(
    `${opts.clients} clients, at most ${opts.requests} requests or ${opts.seconds} s; tiny model, ` +
      `${opts.size}x${opts.size}, ${opts.steps} steps (sd-webui txt2img)`,
  );
  const rows = [
    ["queue", "answered", "failed", "req/s", "p50 ms", "p99 ms", "server peak RSS MiB", "worker peak RSS MiB"],
    ...results.map((r) => [
      r.queue,
      String(r.requests),
      String(r.failed),
      r.throughput.toFixed(2),
      r.p50_ms.toFixed(0),
      r.p99_ms.toFixed(0),
      r.server_peak_rss_mb.toFixed(0),
      r.worker_peak_rss_mb === undefined ? "-" : r.worker_peak_rss_mb.toFixed(0),
    ]),
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  for (const row of rows) {
    console.log(row.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join("  "));
  }
  return 0;
}
