/**
 * The Redis queue end to end: a Redis of the test's own (a free loopback port, a temporary folder,
 * appendonly), the server in this process with `queue: redis://…`, and `server/worker.ts` subprocesses on
 * the tiny model. Without `redis-server` on the PATH these tests print "ignored" (CI installs it).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Redis } from "ioredis";
import { decodePngImage } from "../plugins/image/png.ts";
import { haveRedisServer, LocalRedis } from "./local_redis.ts";
import { type SdflowServer, startServer } from "./server.ts";
import { tinyGraph } from "./test_graphs.ts";

const HAVE_REDIS = await haveRedisServer();
const WORKER = new URL("./worker.ts", import.meta.url).pathname;
/**
 * Short lock: a killed worker's job is handed on within ~1.5 × this. Not shorter: a worker loading its model
 * on a loaded machine must still renew its lock in time.
 */
const STALL_MS = 6000;

/** A `deno task worker` subprocess; its stdout lines are collected. */
class TestWorker {
  readonly lines: string[] = [];
  /** When each line arrived (ms). */
  readonly times = new Map<string, number>();
  readonly #waiters: (() => void)[] = [];
  readonly proc: Deno.ChildProcess;
  readonly reading: Promise<void>;

  constructor(url: string, readonly outputs: string, extra: readonly string[] = []) {
    const proc = this.proc = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        WORKER,
        "--queue",
        url,
        "--outputs",
        outputs,
        "--stall-ms",
        String(STALL_MS),
        "--prefix",
        "t",
        ...extra,
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.reading = (async () => {
      let rest = "";
      for await (const chunk of proc.stdout.pipeThrough(new TextDecoderStream())) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        this.lines.push(...parts);
        for (const part of parts) this.times.set(part, performance.now());
        for (const w of this.#waiters.splice(0)) w();
      }
    })();
  }

  /** Waits for a line matching `re` (rechecked on each new line). */
  async waitFor(re: RegExp, ms = 60_000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.lines.find((l) => re.test(l));
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`no worker line like ${re}; got: ${this.lines.slice(-5).join(" | ")}`);
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }

  count(prefix: string): Map<string, number> {
    const m = new Map<string, number>();
    for (const l of this.lines) {
      if (l.startsWith(prefix + " ")) m.set(l.slice(prefix.length + 1), (m.get(l.slice(prefix.length + 1)) ?? 0) + 1);
    }
    return m;
  }

  async stop(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    try {
      this.proc.kill(signal);
    } catch {
      // gone already
    }
    await this.proc.status;
    await this.reading;
  }
}

function graph(seed: number, steps: number, size = 64) {
  return tinyGraph({ seed, steps, size });
}

async function submit(base: string, seed: number, steps: number, query = "", size = 64): Promise<string> {
  const r = await fetch(`${base}/v1/graphs${query}`, {
    method: "POST",
    body: JSON.stringify(graph(seed, steps, size)),
  });
  const body = await r.json();
  assert.equal(r.status, 202, JSON.stringify(body));
  return body.id;
}

async function withRedisServer(
  fn: (ctx: { redis: LocalRedis; server: SdflowServer; base: string; tmp: string }) => Promise<void>,
  maxQueued = 200,
  redisAnswerMs?: number,
): Promise<void> {
  const redis = await LocalRedis.start();
  const tmp = await Deno.makeTempDir({ prefix: "sdflow-rq-" });
  let server: SdflowServer | undefined;
  try {
    server = await startServer({
      port: 0,
      outputDir: join(tmp, "server"),
      queue: redis.url,
      redisPrefix: "t",
      maxQueued,
      redisAnswerMs,
    });
    await fn({ redis, server, base: `http://127.0.0.1:${server.addr.port}`, tmp });
  } finally {
    await server?.shutdown();
    await redis.stop();
    await Deno.remove(tmp, { recursive: true });
  }
}

/**
 * How often each job reached "completed" in Redis: BullMQ's event stream, kept in Redis (and in its
 * append-only file), has one "completed" entry per completion.
 */
async function completionsInRedis(redis: LocalRedis): Promise<Map<string, number>> {
  const client = new Redis({ host: "127.0.0.1", port: redis.port, maxRetriesPerRequest: 3 });
  try {
    const entries = await client.xrange("t:sdflow:events", "-", "+");
    const counts = new Map<string, number>();
    for (const [, fields] of entries) {
      const f = new Map<string, string>();
      for (let i = 0; i < fields.length; i += 2) f.set(fields[i], fields[i + 1]);
      if (f.get("event") === "completed") counts.set(f.get("jobId")!, (counts.get(f.get("jobId")!) ?? 0) + 1);
    }
    return counts;
  } finally {
    client.disconnect();
  }
}

/** Waits until every job ends. */
async function allDone(server: SdflowServer, ids: readonly string[], ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (const id of ids) {
    const job = server.queue.get(id)!;
    const left = deadline - Date.now();
    const timer = Promise.withResolvers<void>();
    const t = setTimeout(timer.resolve, Math.max(0, left));
    await Promise.race([job.done, timer.promise]);
    clearTimeout(t);
    assert.ok(job.finishedState, `job ${id} still ${job.status} after ${ms} ms`);
  }
}

Deno.test({
  name: "redis queue: 2 workers, 50 jobs, one worker SIGKILLed mid-job: all complete exactly once",
  ignore: !HAVE_REDIS,
  fn: async () => {
    await withRedisServer(async ({ server, base, tmp, redis }) => {
      // One-step jobs, and one of 200 steps at 128x128 (several seconds on the tiny model) among them: the
      // worker running it is killed mid-job. All are queued before the workers start.
      const ids: string[] = [];
      for (let i = 0; i < 50; i++) {
        ids.push(await submit(base, 1000 + i, i === 10 ? 200 : 1, "", i === 10 ? 128 : 64));
      }
      const a = new TestWorker(redis.url, join(tmp, "a"));
      const b = new TestWorker(redis.url, join(tmp, "b"));
      try {
        const victim = ids[10];
        // The worker running it now: its latest line is the victim's start. (Under heavy load a busy worker's
        // job can be handed on when its lock renewal comes late, so a start line alone does not say who runs it.)
        const latest = (w: TestWorker) =>
          w.lines.filter((l) => l.startsWith("active ") || l.startsWith("completed ")).at(-1);
        let killed: TestWorker | undefined;
        for (const until = Date.now() + 90_000; !killed && Date.now() < until;) {
          killed = [a, b].find((w) => latest(w) === `active ${victim}`);
          if (!killed) await new Promise((r) => setTimeout(r, 20));
        }
        assert.ok(
          killed,
          `no worker is running ${victim}: ${
            [a, b].map((w) =>
              `${w.times.get(`completed ${victim}`)! - w.times.get(`active ${victim}`)!} ms; ${w.proc.pid}: ${
                w.lines.join(" | ")
              }`
            ).join("\n")
          }`,
        );
        const survivor = killed === a ? b : a;
        killed.proc.kill("SIGKILL");
        await killed.proc.status;
        await killed.reading;
        assert.ok(
          !killed.lines.includes(`completed ${victim}`),
          `the killed job finished before the kill: a: ${a.lines.join(" | ")}\nb: ${b.lines.join(" | ")}`,
        );

        await allDone(server, ids, 120_000);
        for (const id of ids) {
          const job = server.queue.get(id)!;
          assert.equal(job.status, "succeeded", `${id}: ${job.error}`);
          const files = (job.result as { files: string[] }).files;
          assert.deepEqual(files, [`${id}_out.png`]);
          // The picture came back through Redis into the server's own folder.
          const png = await Deno.readFile(join(tmp, "server", files[0]));
          assert.equal(decodePngImage(png).image.width, id === victim ? 128 : 64);
        }
        // Each worker keeps its loaded model between jobs: only its first job (and the killed worker's
        // last, re-run elsewhere) loads the checkpoint; the others take it from the worker's cache.
        const warm = ids.filter((id) =>
          (server.queue.get(id)!.result as { cached: string[] }).cached.includes("checkpoint")
        );
        assert.ok(warm.length >= 47, `only ${warm.length} of 50 jobs found the model loaded`);
        // The killed worker's job was picked up by the other one and finished there.
        assert.ok(survivor.lines.includes(`completed ${victim}`), `the surviving worker never finished ${victim}`);
        // Completed exactly once over both workers; none lost.
        const completed = new Map<string, number>();
        for (const w of [a, b]) {
          for (const [id, n] of w.count("completed")) completed.set(id, (completed.get(id) ?? 0) + n);
        }
        assert.equal(completed.size, 50);
        for (const id of ids) assert.equal(completed.get(id), 1, `job ${id} completed ${completed.get(id)} times`);
        assert.ok(survivor.count("completed").size >= 1);
        const inRedis = await completionsInRedis(redis);
        for (const id of ids) assert.equal(inRedis.get(id), 1, `job ${id}: ${inRedis.get(id)} completions in Redis`);
      } finally {
        await a.stop("SIGKILL");
        await b.stop();
      }
    });
  },
});

Deno.test({
  name: "redis queue: Redis killed and restarted mid-run (appendonly) loses no queued job",
  ignore: !HAVE_REDIS,
  fn: async () => {
    await withRedisServer(async ({ server, base, tmp, redis }) => {
      const w = new TestWorker(redis.url, join(tmp, "w"));
      try {
        const ids: string[] = [];
        for (let i = 0; i < 12; i++) ids.push(await submit(base, 2000 + i, 2));
        await w.waitFor(/^completed /);
        await redis.restart();
        // Queued after the restart too: the server's connection came back.
        for (let i = 12; i < 15; i++) ids.push(await submit(base, 2000 + i, 2));
        await allDone(server, ids, 90_000);
        for (const id of ids) assert.equal(server.queue.get(id)!.status, "succeeded", server.queue.get(id)!.error);
        // Completed once each in Redis. (The worker may not log a completion whose reply the dying Redis
        // never sent: the completion happened, and its re-sent command is refused as the job is done.)
        const inRedis = await completionsInRedis(redis);
        for (const id of ids) assert.equal(inRedis.get(id), 1, `job ${id}: ${inRedis.get(id)} completions in Redis`);
        for (const [id, n] of w.count("completed")) assert.equal(n, 1, `job ${id} logged completed ${n} times`);
      } finally {
        await w.stop();
      }
    });
  },
});

Deno.test({
  name: "redis queue: priorities, a full queue's 429, cancels (queued and running) and timeouts",
  ignore: !HAVE_REDIS,
  fn: async () => {
    await withRedisServer(
      async ({ server, base, tmp, redis }) => {
        // No worker yet: everything waits.
        const low = await submit(base, 1, 1, "?priority=-5");
        const high = await submit(base, 2, 1, "?priority=50");
        const dropped = await submit(base, 3, 1);
        const full = await fetch(`${base}/v1/graphs`, { method: "POST", body: JSON.stringify(graph(4, 1)) });
        assert.equal(full.status, 429);
        assert.match((await full.json()).error, /queue is full \(3 jobs waiting\)/);
        const del = await fetch(`${base}/v1/jobs/${dropped}`, { method: "DELETE" });
        assert.equal(del.status, 200);
        assert.equal((await del.json()).status, "cancelled");
        const slow = await submit(base, 5, 1000, "?priority=-100&timeout=2");

        const w = new TestWorker(redis.url, join(tmp, "w"));
        try {
          await allDone(server, [low, high, slow], 60_000);
          assert.equal(server.queue.get(high)!.status, "succeeded");
          assert.equal(server.queue.get(low)!.status, "succeeded");
          assert.equal(server.queue.get(slow)!.status, "failed");
          assert.equal(server.queue.get(slow)!.error, "timed out after 2 s");
          assert.equal(server.queue.get(dropped)!.status, "cancelled");
          // Highest priority first; the cancelled job never ran. (A job may show twice: a worker busy past the
          // lock time, e.g. loading the model on a loaded machine, has its job handed on — here, to itself.)
          const active = w.lines.filter((l) => l.startsWith("active ")).map((l) => l.slice(7));
          assert.deepEqual([...new Set(active)], [high, low, slow]);

          // A running job is stopped by its worker at the next step.
          const running = await submit(base, 6, 1000);
          const job = server.queue.get(running)!;
          const deadline = Date.now() + 30_000;
          while (!(job.progress.node === "sampler" && job.progress.done >= 1) && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 50));
          }
          assert.equal(job.status, "running");
          const stop = await fetch(`${base}/v1/jobs/${running}`, { method: "DELETE" });
          assert.equal(stop.status, 202);
          await stop.body?.cancel();
          await allDone(server, [running], 30_000);
          assert.equal(job.status, "cancelled", job.error);
          assert.ok(job.progress.done < 1000);
        } finally {
          await w.stop();
        }
        // Redis gone: a request gets a 503 in time, not a hang; the server keeps answering the rest.
        await redis.kill();
        const t0 = Date.now();
        const down = await fetch(`${base}/v1/graphs`, { method: "POST", body: JSON.stringify(graph(7, 1)) });
        assert.equal(down.status, 503);
        assert.match((await down.json()).error, /does not answer/);
        assert.ok(Date.now() - t0 < 10_000);
        const health = await fetch(`${base}/health`);
        assert.equal(health.status, 200);
        await health.body?.cancel();
      },
      3,
      1500,
    );
  },
});

Deno.test({
  name:
    "redis queue: a worker's live previews reach the SSE stream and sd-webui's progress, throttled, only when watched",
  ignore: !HAVE_REDIS,
  fn: async () => {
    await withRedisServer(async ({ server, base, tmp, redis }) => {
      // What the workers publish, as any server hears it.
      const published: { id: string; at: number; step: number }[] = [];
      const listener = new Redis({ host: "127.0.0.1", port: redis.port, maxRetriesPerRequest: 3 });
      listener.on("message", (_c: string, text: string) => {
        const m = JSON.parse(text);
        published.push({ id: m.id, at: performance.now(), step: m.preview.step });
      });
      await listener.subscribe("t:sdflow:preview");
      const w = new TestWorker(redis.url, join(tmp, "w"));
      let reader: ReadableStreamDefaultReader<string> | undefined;
      try {
        // Nobody watches: the worker draws and sends nothing.
        const quiet = await submit(base, 1, 60);
        await allDone(server, [quiet], 60_000);
        assert.equal(server.queue.get(quiet)!.status, "succeeded");
        assert.deepEqual(published.filter((p) => p.id === quiet), []);

        // A long job, followed on its event stream.
        const id = await submit(base, 2, 1000, "", 128);
        const r = await fetch(`${base}/v1/jobs/${id}/events`);
        reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
        const previews: { at: number; data: Record<string, unknown> }[] = [];
        let buffer = "";
        for (const until = Date.now() + 60_000; previews.length < 5;) {
          assert.ok(Date.now() < until, `only ${previews.length} previews; published: ${published.length}`);
          const { value, done } = await reader.read();
          assert.ok(!done, "the stream ended");
          buffer += value;
          const blocks = buffer.split("\n\n");
          buffer = blocks.pop()!;
          for (const b of blocks) {
            if (/^event: preview$/m.test(b)) {
              previews.push({ at: performance.now(), data: JSON.parse(/^data: (.*)$/m.exec(b)![1]) });
            }
          }
        }
        const first = previews[0].data;
        assert.deepEqual([first.node, first.method, first.width, first.height], ["sampler", "proj", 16, 16]);
        assert.match(String(first.image), /^data:image\/png;base64,/);
        // At most 2 a second (sent every ≥ 500 ms; arrival may jitter a little), over many steps.
        const span = previews.at(-1)!.at - previews[0].at;
        assert.ok(span / (previews.length - 1) >= 400, `${previews.length} previews in ${span.toFixed(0)} ms`);
        const steps = previews.map((p) => Number(p.data.step));
        assert.ok(steps.every((s, i) => i === 0 || s > steps[i - 1]), steps.join(","));
        assert.ok(steps.at(-1)! - steps[0] >= previews.length, `steps ${steps.join(",")}`);
        assert.ok(published.filter((p) => p.id === id).length >= previews.length);

        // sd-webui's progress shows the latest preview of the running job, as bare base64.
        const p = await (await fetch(`${base}/sdapi/v1/progress`)).json();
        assert.equal(p.state.job, id);
        const png = decodePngImage(Uint8Array.from(atob(p.current_image), (c) => c.charCodeAt(0)));
        assert.deepEqual([png.image.width, png.image.height], [16, 16]);

        const stop = await fetch(`${base}/v1/jobs/${id}`, { method: "DELETE" });
        assert.equal(stop.status, 202);
        await stop.body?.cancel();
        await allDone(server, [id], 30_000);
        assert.equal(server.queue.get(id)!.status, "cancelled");
      } finally {
        await reader?.cancel().catch(() => {});
        listener.disconnect();
        await w.stop();
      }
    });
  },
});

Deno.test({
  name: "redis queue: a worker keeps its loaded models within --model-memory",
  ignore: !HAVE_REDIS,
  fn: async () => {
    await withRedisServer(async ({ server, base, tmp, redis }) => {
      // 30 MiB: one tiny checkpoint's weights (about 20 MiB) fit, two do not.
      const w = new TestWorker(redis.url, join(tmp, "w"), ["--model-memory", "30"]);
      try {
        const run = async (checkpointSeed: number, seed: number) => {
          const r = await fetch(`${base}/v1/graphs`, {
            method: "POST",
            body: JSON.stringify(tinyGraph({ checkpointSeed, seed, steps: 1 })),
          });
          const { id } = await r.json();
          await allDone(server, [id], 60_000);
          const job = server.queue.get(id)!;
          assert.equal(job.status, "succeeded", job.error);
          return job.result as { executed: string[]; cached: string[] };
        };
        assert.ok((await run(1, 1)).executed.includes("checkpoint"));
        assert.ok((await run(1, 2)).cached.includes("checkpoint"));
        await run(2, 1);
        const line = await w.waitFor(/^unloaded /);
        assert.match(line, /^unloaded tiny \(random weights, seed 1\): \d+ bytes$/);
        assert.ok((await run(1, 1)).executed.includes("checkpoint"));
        await w.waitFor(/^unloaded tiny \(random weights, seed 2\)/);
        assert.equal(w.lines.filter((l) => l.startsWith("unloaded ")).length, 2);
      } finally {
        await w.stop();
      }
    });
  },
});

if (!HAVE_REDIS) console.log("redis_queue_test: ignored (redis-server is not on the PATH)");
