/**
 * The job queue on Redis, with BullMQ: the server puts jobs on it ({@link RedisGraphQueue}) and `deno task
 * worker` processes on any number of machines run them ({@link runWorker}).
 *
 * - A job's data is the graph documents as the client sent them (each worker resolves model names in its own
 *   `--models`), plus the input pictures its `load_image` nodes read.
 * - Each worker runs one job at a time and holds a BullMQ lock on it, renewed while it runs. A worker that
 *   dies (SIGKILL, machine lost) stops renewing; BullMQ's stalled-job check (every worker runs it) puts the
 *   job back in the queue and another worker runs it. A job is completed once: BullMQ refuses the completion
 *   of a worker whose lock was taken over, and output files are named by job id, so a re-run overwrites the
 *   same names with the same pictures (seeds are fixed before queueing).
 * - Results come back through Redis (a hash of the output files per job, read and deleted by the server),
 *   so workers need no folder shared with the server.
 * - Progress goes through BullMQ's job progress, read by the server with QueueEvents; a cancel of a running
 *   job is a Redis publish that the worker running it hears.
 * - Live previews: while someone watches a job on a server (its SSE stream, sd-webui's progress polls), that
 *   server keeps the key `<prefix>:sdflow:watch:<job>` alive (a few seconds' expiry, renewed every poll); the
 *   worker running the job checks it, draws previews at most every 500 ms while it exists, and publishes
 *   them on `<prefix>:sdflow:preview` (pub/sub: nothing stored), which every server hears.
 */

import { type Job as BullJob, Queue, QueueEvents, UnrecoverableError, Worker } from "bullmq";
import { Redis, type RedisOptions } from "ioredis";
import { Buffer } from "node:buffer";
import type { Latent } from "../models/types.ts";
import type { LivePreviewInfo } from "../plugins/node.ts";
import { join } from "node:path";
import { type Engine, isPlainName } from "./engine.ts";
import { PreviewRenderer } from "./ui_api.ts";
import {
  type CancelResult,
  type GraphJobResult,
  type GraphJobSpec,
  type GraphQueue,
  Job,
  JobCancelled,
  type JobContext,
  loadedImageNames,
  MAX_PRIORITY,
  QueueFullError,
  runGraphJob,
  type SubmitOptions,
} from "./jobs.ts";

/** BullMQ queue name (keys are `<prefix>:sdflow:…`). */
export const QUEUE_NAME = "sdflow";
/** How long a job's result files wait in Redis for the server (seconds). */
const FILES_TTL_S = 24 * 3600;

/** What a BullMQ job carries. */
interface JobData {
  spec: GraphJobSpec;
  timeoutMs?: number;
}

/** What a worker's job returns (the files themselves are in the `files` hash). */
type JobReturn = GraphJobResult;

/** ioredis options from `redis://[user:password@]host[:port][/db]` (or `rediss://` for TLS). */
export function redisOptions(url: string): RedisOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--queue: expected "memory" or redis://HOST:PORT, got ${JSON.stringify(url.slice(0, 200))}`);
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") {
    throw new Error(`--queue: expected "memory" or redis://HOST:PORT, got ${JSON.stringify(url.slice(0, 200))}`);
  }
  const db = u.pathname.replace(/^\//, "");
  if (db !== "" && !/^\d+$/.test(db)) throw new Error(`--queue: the database in ${url} must be a number`);
  return {
    host: u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1",
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db ? { db: Number(db) } : {}),
    ...(u.protocol === "rediss:" ? { tls: {} } : {}),
    // BullMQ's blocking commands must wait through a Redis restart rather than fail.
    maxRetriesPerRequest: null,
    retryStrategy: (times: number) => Math.min(100 * times, 2000),
  };
}

/** Connects and pings; a Redis that does not answer within `ms` is a one-line error (not endless retries). */
async function connect(url: string, ms = 5000): Promise<Redis> {
  const opts = redisOptions(url);
  const client = new Redis({ ...opts, lazyConnect: true });
  let lastError: Error | undefined;
  client.on("error", (e: Error) => lastError = e); // reconnects are retried; the first connection is checked below
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      client.connect().then(() => client.ping()),
      new Promise((_, reject) => timer = setTimeout(() => reject(new Error("no answer")), ms)),
    ]);
  } catch (e) {
    client.disconnect();
    throw new Error(`cannot reach Redis at ${url}: ${(lastError ?? e as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
  return client;
}

/** How long a request waits for Redis before the client gets a 503 (Redis down or restarting). */
const REDIS_ANSWER_MS = 10_000;

/** Redis did not answer in time: HTTP 503. */
export class QueueUnavailableError extends Error {
  constructor(url: string) {
    super(`the job queue at ${url} does not answer; try again later`);
    this.name = "QueueUnavailableError";
  }
}

/** `p`, or a {@link QueueUnavailableError} after `ms` (the command itself stays queued in ioredis). */
async function answerWithin<T>(p: Promise<T>, ms: number, url: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => timer = setTimeout(() => reject(new QueueUnavailableError(url)), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const filesKey = (prefix: string, id: string) => `${prefix}:${QUEUE_NAME}:files:${id}`;
const cancelChannel = (prefix: string) => `${prefix}:${QUEUE_NAME}:cancel`;
const previewChannel = (prefix: string) => `${prefix}:${QUEUE_NAME}:preview`;
const watchKey = (prefix: string, id: string) => `${prefix}:${QUEUE_NAME}:watch:${id}`;
/** How long a watch key lives without renewal (ms); the server renews it every `pollMs`. */
const WATCH_TTL_MS = 3000;
/** A worker draws at most one preview per this many ms (≤ 2 a second through Redis). */
const PREVIEW_EVERY_MS = 500;
/** How often a worker checks whether its job is watched (ms). */
const WATCH_CHECK_MS = 500;

/** What a worker publishes on the preview channel. */
interface PreviewMessage {
  id: string;
  preview: Record<string, unknown>;
}

/** Options of {@link RedisGraphQueue.open}. */
export interface RedisQueueOptions {
  url: string;
  /** The server's engine: input pictures are read from, results written to its output folder. */
  engine: Engine;
  /** Jobs that may wait (over all servers on this queue) before a submit is refused with 429. */
  maxQueued: number;
  /** Key prefix (default "bull"); tests use their own. */
  prefix?: string;
  /** Finished jobs remembered locally. */
  keepFinished?: number;
  /** How often unfinished jobs are checked in Redis, besides the event stream (ms, default 1000). */
  pollMs?: number;
  /** How long a request waits for Redis before a 503 (ms, default 10000). */
  answerMs?: number;
}

/** The server's side: queues jobs on BullMQ and mirrors their state into local {@link Job} objects. */
export class RedisGraphQueue implements GraphQueue {
  readonly description: string;
  readonly #jobs = new Map<string, Job<GraphJobResult>>();
  readonly #history: string[] = [];
  readonly #finishing = new Set<string>();
  #poll?: ReturnType<typeof setInterval>;

  private constructor(
    readonly opts: RedisQueueOptions,
    readonly queue: Queue,
    readonly events: QueueEvents,
    readonly client: Redis,
    /** The connections given to BullMQ, ours to drop when Redis is gone. */
    readonly connections: readonly Redis[],
    /** Subscribed to the workers' previews. */
    readonly previews: Redis,
  ) {
    this.description = `redis ${opts.url}`;
  }

  static async open(opts: RedisQueueOptions): Promise<RedisGraphQueue> {
    const client = await connect(opts.url);
    const prefix = opts.prefix ?? "bull";
    // Own connections (QueueEvents' blocking reads need one of their own), so that close() can drop them.
    const queueConnection = new Redis(redisOptions(opts.url));
    const eventsConnection = new Redis(redisOptions(opts.url));
    for (const c of [queueConnection, eventsConnection]) c.on("error", () => {});
    const queue = new Queue(QUEUE_NAME, { connection: queueConnection, prefix });
    const events = new QueueEvents(QUEUE_NAME, { connection: eventsConnection, prefix });
    queue.on("error", () => {}); // reconnection is automatic; errors surface on the requests that fail
    events.on("error", () => {});
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    const previews = await connect(opts.url);
    previews.on("error", () => {}); // reconnects resubscribe
    await previews.subscribe(previewChannel(prefix));
    const q = new RedisGraphQueue(opts, queue, events, client, [queueConnection, eventsConnection], previews);
    q.#listen();
    q.#poll = setInterval(() => void q.#reconcile(), opts.pollMs ?? 1000);
    return q;
  }

  get #prefix(): string {
    return this.opts.prefix ?? "bull";
  }

  #listen(): void {
    this.previews.on("message", (_channel: string, text: string) => {
      let m: PreviewMessage;
      try {
        m = JSON.parse(text);
      } catch {
        return;
      }
      const job = this.#jobs.get(String(m?.id));
      if (job && !job.finishedState && m.preview && typeof m.preview === "object") job.showPreview(m.preview);
    });
    this.events.on("active", ({ jobId }) => {
      const job = this.#jobs.get(jobId);
      if (job && job.status === "queued") {
        job.started = Date.now();
        job.setStatus("running");
      }
    });
    this.events.on("progress", ({ jobId, data }) => {
      const job = this.#jobs.get(jobId);
      if (!job || job.finishedState || !data || typeof data !== "object") return;
      const d = data as Record<string, unknown>;
      if (job.status === "queued") {
        job.started = Date.now();
        job.setStatus("running");
      }
      if (d.type === "node") job.emit({ type: "node", data: { node: d.node, type: d.nodeType } });
      else if (d.type === "progress") {
        const done = Number(d.done), total = Number(d.total);
        job.progress = {
          node: d.node as string | undefined,
          done,
          total,
          ...(d.unit !== undefined ? { unit: String(d.unit) } : {}),
          fraction: total > 0 ? Math.min(1, done / total) : 0,
        };
        job.emit({ type: "progress", data: { ...job.progress } });
      }
    });
    this.events.on("stalled", ({ jobId }) => {
      // Its worker stopped answering: BullMQ put it back in the queue for another worker.
      const job = this.#jobs.get(jobId);
      if (job && job.status === "running") job.setStatus("queued");
    });
    this.events.on("completed", ({ jobId, returnvalue }) => {
      void this.#complete(jobId, returnvalue as unknown);
    });
    this.events.on("failed", ({ jobId, failedReason }) => this.#fail(jobId, failedReason));
    this.events.on("removed", ({ jobId }) => this.#fail(jobId, "cancelled before it started"));
  }

  /** Events can be missed (the server's Redis connection was down): unfinished jobs are also checked here. */
  async #reconcile(): Promise<void> {
    // Jobs someone watches here: their workers draw previews while the keys live.
    const watched = [...this.#jobs.values()].filter((j) => !j.finishedState && j.watched);
    if (watched.length) {
      const p = this.client.pipeline();
      for (const j of watched) p.set(watchKey(this.#prefix, j.id), "1", "PX", WATCH_TTL_MS);
      await p.exec().catch(() => {});
    }
    for (const job of [...this.#jobs.values()]) {
      if (job.finishedState) continue;
      try {
        const bj = await this.queue.getJob(job.id);
        if (!bj) continue;
        const state = await bj.getState();
        if (state === "completed") await this.#complete(job.id, bj.returnvalue);
        else if (state === "failed") this.#fail(job.id, bj.failedReason);
        else if (state === "active" && job.status === "queued") {
          job.started = Date.now();
          job.setStatus("running");
        }
      } catch {
        // Redis is away; the next round tries again.
      }
    }
  }

  async #complete(id: string, returnvalue: unknown): Promise<void> {
    const job = this.#jobs.get(id);
    if (!job || job.finishedState || this.#finishing.has(id)) return;
    this.#finishing.add(id);
    try {
      const r = (typeof returnvalue === "string" ? JSON.parse(returnvalue) : returnvalue) as JobReturn;
      const key = filesKey(this.#prefix, id);
      const stored = await this.client.hgetallBuffer(key);
      const outDir = this.opts.engine.outputDir;
      await Deno.mkdir(outDir, { recursive: true });
      for (const [name, bytes] of Object.entries(stored)) {
        // Only the job's own names, inside the output folder.
        if (!isPlainName(name) || !name.startsWith(`${id}_`)) continue;
        await Deno.writeFile(join(outDir, name), new Uint8Array(bytes));
      }
      await this.client.del(key);
      const missing = r.files.filter((f) => !(f in stored));
      if (missing.length) throw new Error(`the worker's output files did not reach the server: ${missing.join(", ")}`);
      job.result = { files: r.files, executed: r.executed, cached: r.cached, runs: r.runs };
      job.progress = { ...job.progress, fraction: 1 };
      job.setStatus("succeeded");
    } catch (e) {
      job.error = (e as Error).message;
      job.setStatus("failed");
    } finally {
      this.#finishing.delete(id);
      this.#remember(id);
    }
  }

  #fail(id: string, reason: string): void {
    const job = this.#jobs.get(id);
    if (!job || job.finishedState || this.#finishing.has(id)) return;
    job.error = reason;
    job.setStatus(reason.startsWith("cancelled") ? "cancelled" : "failed");
    this.#remember(id);
  }

  #remember(id: string): void {
    this.#history.push(id);
    while (this.#history.length > (this.opts.keepFinished ?? 256)) this.#jobs.delete(this.#history.shift()!);
  }

  async submitGraphs(spec: GraphJobSpec, id: string, opts: SubmitOptions = {}): Promise<Job<GraphJobResult>> {
    const counts = await answerWithin(
      this.queue.getJobCounts("wait", "prioritized", "delayed", "paused"),
      this.opts.answerMs ?? REDIS_ANSWER_MS,
      this.opts.url,
    );
    const waiting = Object.values(counts).reduce((a, b) => a + b, 0);
    if (waiting >= this.opts.maxQueued) throw new QueueFullError(this.opts.maxQueued);
    // The pictures the graphs read travel with the job.
    const inputs: Record<string, string> = { ...spec.inputs };
    for (const name of loadedImageNames(spec.graphs)) {
      const path = await this.opts.engine.outputPath(name);
      if (path && !(name in inputs)) inputs[name] = encodeBase64(await Deno.readFile(path));
    }
    const job = new Job<GraphJobResult>(id, spec.kind);
    this.#jobs.set(id, job);
    const data: JobData = { spec: { ...spec, inputs }, timeoutMs: opts.timeoutMs };
    await answerWithin(
      this.queue.add(spec.kind, data, {
        // The id dedupes: adding a job id that exists already adds nothing.
        jobId: id,
        // BullMQ: 1 is the highest priority.
        priority: 1 + MAX_PRIORITY - (opts.priority ?? 0),
        // A failing job (bad graph, timeout, cancel) is not retried; a worker that dies is (stalled check).
        attempts: 1,
        removeOnComplete: { count: 1000 },
        removeOnFail: { count: 1000 },
      }),
      REDIS_ANSWER_MS,
      this.opts.url,
    ).catch((e) => {
      this.#jobs.delete(id);
      throw e;
    });
    return job;
  }

  get(id: string): Job | undefined {
    return this.#jobs.get(id);
  }

  cancel(id: string): Promise<CancelResult> {
    return answerWithin(this.#cancel(id), this.opts.answerMs ?? REDIS_ANSWER_MS, this.opts.url);
  }

  async #cancel(id: string): Promise<CancelResult> {
    const job = this.#jobs.get(id);
    if (!job) return "unknown";
    if (job.finishedState) return "finished";
    const bj = await this.queue.getJob(id);
    const state = bj ? await bj.getState() : "unknown";
    if (bj && (state === "waiting" || state === "prioritized" || state === "delayed")) {
      try {
        await bj.remove();
        this.#fail(id, "cancelled before it started");
        return "cancelled";
      } catch {
        // A worker took it meanwhile: cancel it where it runs.
      }
    }
    if (state === "completed" || state === "failed") return "finished";
    job.cancelRequested = true;
    await this.client.publish(cancelChannel(this.#prefix), id);
    return "cancelling";
  }

  get running(): Job | undefined {
    let last: Job | undefined;
    for (const j of this.#jobs.values()) if (j.status === "running") last = j;
    return last;
  }

  get waiting(): number {
    let n = 0;
    for (const j of this.#jobs.values()) if (j.status === "queued") n++;
    return n;
  }

  async close(): Promise<void> {
    clearInterval(this.#poll);
    // Redis may be gone: give the orderly close a moment, then drop the connections.
    await answerWithin(Promise.all([this.events.close(), this.queue.close()]), 2000, this.opts.url).catch(() => {});
    for (const c of [...this.connections, this.client, this.previews]) c.disconnect();
  }
}

function encodeBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

/** Options of {@link runWorker}. */
export interface WorkerOptions {
  url: string;
  engine: Engine;
  prefix?: string;
  /**
   * A job whose worker has not renewed its lock for this long is given to another worker (ms; default
   * 30000). It must exceed the longest stretch in which a worker cannot answer (one blocking step).
   */
  stallMs?: number;
  /** One line per job event (`active <id>`, `completed <id>`, `failed <id>: reason`). */
  log?: (line: string) => void;
  /** Live previews of a watched job: at most one per this many ms (default 500). */
  previewEveryMs?: number;
}

/** A running worker. */
export interface RunningWorker {
  /** Stops taking jobs, lets the running one finish, disconnects. */
  close(): Promise<void>;
}

/** Runs jobs from the queue on `engine`, one at a time, until closed. */
export async function runWorker(opts: WorkerOptions): Promise<RunningWorker> {
  const prefix = opts.prefix ?? "bull";
  const client = await connect(opts.url);
  const subscriber = await connect(opts.url);
  const log = opts.log ?? (() => {});
  const stallMs = opts.stallMs ?? 30_000;
  /** The job running here and how to stop it. */
  let current: { id: string; cancel: () => void } | undefined;
  subscriber.on("message", (_channel: string, id: string) => {
    if (current?.id === id) current.cancel();
  });
  await subscriber.subscribe(cancelChannel(prefix));
  // Previews are drawn here (TAESD from this worker's --models, else the projection) and sent drawn.
  const renderer = new PreviewRenderer(opts.engine.modelsDir, encodeBase64);
  const drawPreview = (latent: Latent, family: LivePreviewInfo["family"]) => renderer.render(latent, family);

  const process = async (bj: BullJob<JobData, JobReturn>): Promise<JobReturn> => {
    const id = bj.id!;
    const { spec, timeoutMs } = bj.data;
    const engine = opts.engine;
    await Deno.mkdir(engine.outputDir, { recursive: true });
    for (const [name, b64] of Object.entries(spec.inputs ?? {})) {
      if (!isPlainName(name)) throw new UnrecoverableError(`input file name ${JSON.stringify(name)} is not plain`);
      await Deno.writeFile(join(engine.outputDir, name), Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    }
    const abort = new AbortController();
    let cancelled = false, timedOut = false;
    current = {
      id,
      cancel: () => {
        cancelled = true;
        abort.abort(new JobCancelled());
      },
    };
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      abort.abort(new Error(`timed out after ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const stop = () => {
      if (cancelled) throw new JobCancelled();
      if (timedOut) throw abort.signal.reason;
    };
    // Progress is sent without waiting: the engine does not stop for Redis; order is kept per connection.
    const send = (data: Record<string, unknown>) => void bj.updateProgress(data).catch(() => {});
    // Whether a server has someone watching: checked in the background, at most every WATCH_CHECK_MS.
    let watched = false, checked = -Infinity;
    const checkWatched = () => {
      if (performance.now() - checked < WATCH_CHECK_MS) return;
      checked = performance.now();
      client.exists(watchKey(prefix, id)).then((n) => watched = n > 0, () => {});
    };
    checkWatched();
    const ctx: JobContext = {
      id,
      signal: abort.signal,
      progress: (p) => {
        stop();
        send({ type: "progress", ...p });
      },
      node: (node, type) => {
        stop();
        send({ type: "node", node, nodeType: type });
      },
      preview: (preview) => {
        const m: PreviewMessage = { id, preview };
        void client.publish(previewChannel(prefix), JSON.stringify(m)).catch(() => {});
      },
      get watched() {
        checkWatched();
        return watched;
      },
    };
    try {
      const r = await runGraphJob(engine, spec, ctx, drawPreview, opts.previewEveryMs ?? PREVIEW_EVERY_MS);
      const key = filesKey(prefix, id);
      const multi = client.multi().del(key);
      for (const f of r.files) multi.hset(key, f, Buffer.from(await Deno.readFile(join(engine.outputDir, f))));
      await multi.expire(key, FILES_TTL_S).exec();
      return r;
    } catch (e) {
      // Not retried: the same graph would fail the same way.
      if (cancelled) throw new UnrecoverableError("cancelled while running");
      if (timedOut) throw new UnrecoverableError((abort.signal.reason as Error).message);
      throw new UnrecoverableError(e instanceof Error ? e.message.split("\n")[0] : String(e));
    } finally {
      clearTimeout(timer);
      current = undefined;
    }
  };

  const worker = new Worker<JobData, JobReturn>(QUEUE_NAME, process, {
    connection: redisOptions(opts.url),
    prefix,
    concurrency: 1,
    lockDuration: stallMs,
    stalledInterval: Math.max(500, Math.floor(stallMs / 2)),
    // A job that stalls this often (its workers keep dying) fails rather than killing more workers.
    maxStalledCount: 3,
  });
  worker.on("active", (j) => log(`active ${j.id}`));
  worker.on("completed", (j) => log(`completed ${j.id}`));
  worker.on("failed", (j, e) => log(`failed ${j?.id}: ${e.message}`));
  worker.on("error", () => {}); // connection errors: BullMQ reconnects
  await worker.waitUntilReady();
  return {
    async close() {
      await worker.close();
      subscriber.disconnect();
      client.disconnect();
      await renderer.close();
    },
  };
}
