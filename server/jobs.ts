/**
 * Jobs and the queues that run them. {@link GraphQueue} is what the server talks to; two implement it:
 * {@link MemoryGraphQueue} (the default: in this process, nothing to install) and `RedisGraphQueue`
 * (redis_queue.ts: BullMQ on Redis, run by `deno task worker` processes on any number of machines).
 *
 * The in-process queue runs one job at a time on the engine; the others wait by priority, then in order, at
 * most `maxQueued` of them (more is refused with {@link QueueFullError} → HTTP 429); a job can be cancelled
 * and may have a time limit. Each job keeps its status, progress and outputs for `GET /v1/jobs/:id`, and
 * tells listeners (the SSE stream) what happens.
 */

import type { Latent } from "../models/types.ts";
import type { LivePreviewInfo } from "../plugins/node.ts";
import type { Engine } from "./engine.ts";

/** Where a job stands. */
export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled";

/** Progress of the running node. */
export interface JobProgress {
  node?: string;
  done: number;
  total: number;
  unit?: string;
  /** 0..1 over the sampler's steps when known. */
  fraction: number;
}

/** One event of a job's stream. */
export interface JobEvent {
  readonly type: "status" | "progress" | "node" | "preview";
  readonly data: Record<string, unknown>;
}

/** What a job's work reports while it runs. */
export interface JobContext {
  readonly id: string;
  /** Aborted when the job is cancelled or runs past its time limit. */
  readonly signal: AbortSignal;
  progress(p: Omit<JobProgress, "fraction">): void;
  node(id: string, type: string): void;
  /** A live preview (the SSE stream's `preview` event). */
  preview(data: Record<string, unknown>): void;
  /** Whether anyone listens (a preview is only rendered for someone). */
  readonly watched: boolean;
}

/** How long a new job counts as watched before anyone subscribes (ms). */
export const SUBMIT_GRACE_MS = 3000;

/** A job: its work, its state and its listeners. */
export class Job<R = unknown> {
  status: JobStatus = "queued";
  progress: JobProgress = { done: 0, total: 0, fraction: 0 };
  result?: R;
  error?: string;
  readonly created = Date.now();
  started?: number;
  finished?: number;
  /** Set by {@link JobQueue.cancel} on a running job: its next progress report stops it. */
  cancelRequested = false;
  /** The latest live preview (sd-webui's `current_image`), as the SSE `preview` event carried it. */
  preview?: Readonly<Record<string, unknown>>;
  readonly #listeners = new Set<(e: JobEvent) => void>();
  /**
   * Until when a poller (sd-webui's progress) counts as watching (ms since the epoch). A new job counts as
   * watched for its first {@link SUBMIT_GRACE_MS}: its submitter subscribes right after the POST returns, and
   * a fast first step must not lose its preview to that gap.
   */
  #polledUntil = Date.now() + SUBMIT_GRACE_MS;
  readonly done: Promise<void>;
  #resolve!: () => void;

  /** `work` is absent for a job that runs elsewhere (a Redis worker): this object mirrors its state. */
  constructor(readonly id: string, readonly kind: string, readonly work?: (ctx: JobContext) => Promise<R>) {
    this.done = new Promise((r) => this.#resolve = r);
  }

  get finishedState(): boolean {
    return this.status === "succeeded" || this.status === "failed" || this.status === "cancelled";
  }

  /** Calls `fn` for each later event; returns the unsubscribe function. */
  listen(fn: (e: JobEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Whether someone follows the job: a listener is subscribed, or a poller asked within the last seconds. */
  get watched(): boolean {
    return this.#listeners.size > 0 || Date.now() < this.#polledUntil;
  }

  /** A poller (sd-webui's `GET /sdapi/v1/progress`) looked: previews are drawn for the next `ms`. */
  polled(ms = 5000): void {
    this.#polledUntil = Math.max(this.#polledUntil, Date.now() + ms);
  }

  /** A live preview: kept as the latest and sent to the listeners. */
  showPreview(data: Record<string, unknown>): void {
    this.preview = data;
    this.emit({ type: "preview", data });
  }

  emit(e: JobEvent): void {
    for (const fn of [...this.#listeners]) {
      try {
        fn(e);
      } catch {
        // A listener whose client went away must not stop the job.
      }
    }
  }

  setStatus(status: JobStatus): void {
    this.status = status;
    if (this.finishedState) {
      this.finished = Date.now();
      this.#resolve();
    }
    this.emit({ type: "status", data: this.toJSON() });
  }

  /** The job as `GET /v1/jobs/:id` shows it. */
  toJSON(): Record<string, unknown> {
    return {
      id: this.id,
      kind: this.kind,
      status: this.status,
      progress: this.progress,
      ...(this.result !== undefined ? { result: this.result } : {}),
      ...(this.error !== undefined ? { error: this.error } : {}),
      created: new Date(this.created).toISOString(),
      ...(this.started ? { started: new Date(this.started).toISOString() } : {}),
      ...(this.finished ? { finished: new Date(this.finished).toISOString() } : {}),
    };
  }
}

/** Thrown into a running job's work from its progress reports once it is cancelled. */
export class JobCancelled extends Error {
  constructor() {
    super("cancelled");
    this.name = "JobCancelled";
  }
}

/** The queue is at its maximum length. */
export class QueueFullError extends Error {
  constructor(max: number) {
    super(`the queue is full (${max} jobs waiting); try again later`);
    this.name = "QueueFullError";
  }
}

/** How a job is queued. */
export interface SubmitOptions {
  /** -100..100; higher runs sooner; equal priorities run in the order they came. Default 0. */
  priority?: number;
  /** A running job that takes longer fails with "timed out after N s". */
  timeoutMs?: number;
}

/** Answer of a cancel request. */
export type CancelResult = "cancelled" | "cancelling" | "finished" | "unknown";

/** The highest and lowest priority a client may ask for. */
export const MAX_PRIORITY = 100;

/** Runs jobs one at a time, by priority, then in the order they came. */
export class JobQueue {
  readonly #jobs = new Map<string, Job>();
  readonly #waiting: { job: Job; priority: number; timeoutMs?: number }[] = [];
  #running?: Job;
  /** Finished jobs kept for `GET /v1/jobs/:id`; the oldest are forgotten first. */
  readonly #history: string[] = [];

  constructor(readonly maxQueued = 16, readonly keepFinished = 256) {}

  get running(): Job | undefined {
    return this.#running;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  get(id: string): Job | undefined {
    return this.#jobs.get(id);
  }

  /** Queues work; throws {@link QueueFullError} when `maxQueued` jobs wait already. */
  submit<R>(
    kind: string,
    work: (ctx: JobContext) => Promise<R>,
    id: string = crypto.randomUUID(),
    opts: SubmitOptions = {},
  ): Job<R> {
    if (this.#waiting.length >= this.maxQueued) throw new QueueFullError(this.maxQueued);
    const job = new Job<R>(id, kind, work);
    this.#jobs.set(id, job as Job);
    const priority = opts.priority ?? 0;
    // After every waiting job of the same or a higher priority.
    let at = this.#waiting.length;
    while (at > 0 && this.#waiting[at - 1].priority < priority) at--;
    this.#waiting.splice(at, 0, { job: job as Job, priority, timeoutMs: opts.timeoutMs });
    queueMicrotask(() => this.#pump());
    return job;
  }

  /**
   * Cancels a job. A queued one is removed at once ("cancelled"). A running one is asked to stop
   * ("cancelling"): its next progress report or node start (each sampler step) throws {@link JobCancelled},
   * which ends the run like a failing node, and the job ends "cancelled".
   */
  cancel(id: string): CancelResult {
    const job = this.#jobs.get(id);
    if (!job) return "unknown";
    if (job.finishedState) return "finished";
    const i = this.#waiting.findIndex((w) => w.job === job);
    if (i < 0) {
      job.cancelRequested = true;
      this.#abort?.abort(new JobCancelled());
      return "cancelling";
    }
    this.#waiting.splice(i, 1);
    job.error = "cancelled before it started";
    job.setStatus("cancelled");
    this.#remember(job);
    return "cancelled";
  }

  #remember(job: Job): void {
    this.#history.push(job.id);
    while (this.#history.length > this.keepFinished) this.#jobs.delete(this.#history.shift()!);
  }

  #abort?: AbortController;

  async #pump(): Promise<void> {
    if (this.#running) return;
    const next = this.#waiting.shift();
    if (!next) return;
    const job = next.job;
    this.#running = job;
    job.started = Date.now();
    job.setStatus("running");
    const abort = this.#abort = new AbortController();
    let timedOut = false;
    const timer = next.timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      abort.abort(new Error(`timed out after ${next.timeoutMs! / 1000} s`));
    }, next.timeoutMs);
    const stopIfCancelled = () => {
      if (job.cancelRequested) throw new JobCancelled();
      if (timedOut) throw abort.signal.reason;
    };
    const ctx: JobContext = {
      id: job.id,
      signal: abort.signal,
      progress: (p) => {
        stopIfCancelled();
        job.progress = { ...p, fraction: p.total > 0 ? Math.min(1, p.done / p.total) : 0 };
        job.emit({ type: "progress", data: { ...job.progress } });
      },
      node: (id, type) => {
        stopIfCancelled();
        job.emit({ type: "node", data: { node: id, type } });
      },
      preview: (data) => job.showPreview(data),
      get watched() {
        return job.watched;
      },
    };
    try {
      job.result = await job.work!(ctx);
      job.progress = { ...job.progress, fraction: 1 };
      job.setStatus("succeeded");
    } catch (e) {
      if (job.cancelRequested) {
        job.error = "cancelled while running";
        job.setStatus("cancelled");
      } else if (timedOut) {
        job.error = (abort.signal.reason as Error).message;
        job.setStatus("failed");
      } else {
        job.error = e instanceof Error ? e.message : String(e);
        job.setStatus("failed");
      }
    } finally {
      clearTimeout(timer);
      this.#abort = undefined;
      this.#running = undefined;
      this.#remember(job);
      queueMicrotask(() => this.#pump());
    }
  }
}

/**
 * What a graph job runs: sdflow graph documents as a client sent them (before the server's rewriting of
 * file names, which each runner does against its own folders), run in order as one job.
 */
export interface GraphJobSpec {
  readonly kind: string;
  readonly graphs: readonly unknown[];
  /**
   * Files the graphs' `load_image` nodes read, by plain name, base64: put into the runner's output folder
   * first (a Redis worker on another machine does not see the server's).
   */
  readonly inputs?: Readonly<Record<string, string>>;
}

/**
 * What a finished graph job made: its output files (in the server's output folder); the nodes that ran and
 * those served from the output cache (over all its graphs, in order), and the same per graph in `runs`.
 */
export interface GraphJobResult {
  readonly files: string[];
  readonly executed: string[];
  readonly cached: string[];
  readonly runs: { executed: string[]; cached: string[] }[];
}

/** The queue as the server uses it: in-process ({@link MemoryGraphQueue}) or on Redis (redis_queue.ts). */
export interface GraphQueue {
  /** Queues a job; throws {@link QueueFullError} when full. The job's state is followed in the returned object. */
  submitGraphs(spec: GraphJobSpec, id: string, opts?: SubmitOptions): Promise<Job<GraphJobResult>>;
  /** A job this server queued (kept for a while after it ends). */
  get(id: string): Job | undefined;
  cancel(id: string): CancelResult | Promise<CancelResult>;
  /** The running job this server knows of (sd-webui's progress), and how many of its jobs wait. */
  readonly running: Job | undefined;
  readonly waiting: number;
  /** Human-readable kind, for logs and /health. */
  readonly description: string;
  close(): Promise<void>;
}

/** Draws a live preview latent as what the SSE `preview` event carries (see ui_api.ts). */
export type PreviewDrawer = (latent: Latent, family: LivePreviewInfo["family"]) => Promise<object>;

/**
 * Runs a graph job on an engine: each graph validated against the engine's folders, then run. With
 * `drawPreview`, live previews are drawn while someone watches the job, at most one per `previewEveryMs`
 * (0: every sampler step).
 */
export async function runGraphJob(
  engine: Engine,
  spec: GraphJobSpec,
  ctx: JobContext,
  drawPreview?: PreviewDrawer,
  previewEveryMs = 0,
): Promise<GraphJobResult> {
  let lastPreview = -Infinity;
  const report = {
    nodeStart: (node: string, type: string) => ctx.node(node, type),
    progress: (node: string, done: number, total: number, unit?: string) => ctx.progress({ node, done, total, unit }),
    ...(drawPreview
      ? {
        // Live previews are rendered only while someone watches the job's event stream.
        preview: async (node: string, latent: Latent, info: LivePreviewInfo) => {
          if (!ctx.watched || performance.now() - lastPreview < previewEveryMs) return;
          lastPreview = performance.now();
          let shown;
          try {
            shown = await drawPreview(latent, info.family);
          } catch {
            return; // A preview that cannot be drawn (an unusual latent) must not fail the job.
          }
          ctx.preview({ node, ...info, ...shown });
        },
      }
      : {}),
  };
  const files: string[] = [];
  const runs: { executed: string[]; cached: string[] }[] = [];
  for (const doc of spec.graphs) {
    // The engine rewrites file names in place; the spec stays as the client sent it.
    const pipeline = await engine.pipelineFromNetwork(structuredClone(doc), ctx.id);
    const r = await engine.run(pipeline, ctx.id, report, ctx.signal);
    files.push(...r.files);
    runs.push({ executed: [...r.executed], cached: [...r.cached] });
  }
  return {
    files: [...new Set(files)],
    executed: runs.flatMap((r) => r.executed),
    cached: runs.flatMap((r) => r.cached),
    runs,
  };
}

/** The plain file names a job's graphs read with `load_image` (sent along to Redis workers). */
export function loadedImageNames(graphs: readonly unknown[]): string[] {
  const names = new Set<string>();
  for (const g of graphs) {
    const nodes = (g as { nodes?: unknown })?.nodes;
    if (!nodes || typeof nodes !== "object") continue;
    for (const spec of Object.values(nodes as Record<string, { type?: unknown; inputs?: { path?: unknown } }>)) {
      if (spec?.type === "load_image" && typeof spec.inputs?.path === "string") names.add(spec.inputs.path);
    }
  }
  return [...names];
}

/** The in-process queue over one engine: the default, nothing to install. */
export class MemoryGraphQueue extends JobQueue implements GraphQueue {
  readonly description = "memory";

  constructor(readonly engine: Engine, maxQueued = 16, readonly drawPreview?: PreviewDrawer, keepFinished = 256) {
    super(maxQueued, keepFinished);
  }

  submitGraphs(spec: GraphJobSpec, id: string, opts: SubmitOptions = {}): Promise<Job<GraphJobResult>> {
    return Promise.resolve(
      this.submit(spec.kind, (ctx) => runGraphJob(this.engine, spec, ctx, this.drawPreview), id, opts),
    );
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
