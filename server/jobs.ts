/**
 * The in-process job queue: one job runs at a time on the engine, the others wait in order, at most
 * `maxQueued` of them (more is refused with {@link QueueFullError} → HTTP 429); a job can be cancelled. Each job keeps its status,
 * progress and outputs for `GET /v1/jobs/:id`, and tells listeners (the SSE stream) what happens.
 */

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
  progress(p: Omit<JobProgress, "fraction">): void;
  node(id: string, type: string): void;
  /** A live preview (the SSE stream's `preview` event). */
  preview(data: Record<string, unknown>): void;
  /** Whether anyone listens (a preview is only rendered for someone). */
  readonly watched: boolean;
}

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
  readonly #listeners = new Set<(e: JobEvent) => void>();
  readonly done: Promise<void>;
  #resolve!: () => void;

  constructor(readonly id: string, readonly kind: string, readonly work: (ctx: JobContext) => Promise<R>) {
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

  /** Whether a listener is subscribed. */
  get watched(): boolean {
    return this.#listeners.size > 0;
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

/** Runs jobs one at a time, in the order they came. */
export class JobQueue {
  readonly #jobs = new Map<string, Job>();
  readonly #waiting: Job[] = [];
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
  submit<R>(kind: string, work: (ctx: JobContext) => Promise<R>, id: string = crypto.randomUUID()): Job<R> {
    if (this.#waiting.length >= this.maxQueued) throw new QueueFullError(this.maxQueued);
    const job = new Job<R>(id, kind, work);
    this.#jobs.set(id, job as Job);
    this.#waiting.push(job as Job);
    queueMicrotask(() => this.#pump());
    return job;
  }

  /**
   * Cancels a job. A queued one is removed at once ("cancelled"). A running one is asked to stop
   * ("cancelling"): its next progress report or node start (each sampler step) throws {@link JobCancelled},
   * which ends the run like a failing node, and the job ends "cancelled".
   */
  cancel(id: string): "cancelled" | "cancelling" | "finished" | "unknown" {
    const job = this.#jobs.get(id);
    if (!job) return "unknown";
    if (job.finishedState) return "finished";
    const i = this.#waiting.indexOf(job);
    if (i < 0) {
      job.cancelRequested = true;
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

  async #pump(): Promise<void> {
    if (this.#running) return;
    const job = this.#waiting.shift();
    if (!job) return;
    this.#running = job;
    job.started = Date.now();
    job.setStatus("running");
    const stopIfCancelled = () => {
      if (job.cancelRequested) throw new JobCancelled();
    };
    const ctx: JobContext = {
      id: job.id,
      progress: (p) => {
        stopIfCancelled();
        job.progress = { ...p, fraction: p.total > 0 ? Math.min(1, p.done / p.total) : 0 };
        job.emit({ type: "progress", data: { ...job.progress } });
      },
      node: (id, type) => {
        stopIfCancelled();
        job.emit({ type: "node", data: { node: id, type } });
      },
      preview: (data) => job.emit({ type: "preview", data }),
      get watched() {
        return job.watched;
      },
    };
    try {
      job.result = await job.work(ctx);
      job.progress = { ...job.progress, fraction: 1 };
      job.setStatus("succeeded");
    } catch (e) {
      if (job.cancelRequested) {
        job.error = "cancelled while running";
        job.setStatus("cancelled");
      } else {
        job.error = e instanceof Error ? e.message : String(e);
        job.setStatus("failed");
      }
    } finally {
      this.#running = undefined;
      this.#remember(job);
      queueMicrotask(() => this.#pump());
    }
  }
}
