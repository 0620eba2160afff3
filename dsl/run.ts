/**
 * The runner: executes a {@link Pipeline} in dependency order, independent
 * branches concurrently (up to a limit), reusing outputs from an
 * {@link OutputCache} whose keys hash a node's type, its input values and the
 * keys of everything upstream — so a second run that changes only the
 * sampler's seed reloads nothing and re-encodes no prompt.
 *
 * @example
 * ```ts
 * const cache = new OutputCache();
 * await runPipeline(await loadGraph("graphs/txt2img.json"), { cache });
 * await runPipeline(await loadGraph("graphs/txt2img.json", { overrides: ["sampler.seed=7"] }), { cache });
 * ```
 */

import { createHash } from "node:crypto";
import type { NodeContext, ProvenanceGraph, RunSettings, UpstreamNode } from "../plugins/node.ts";
import { GRAPH_VERSION } from "./format.ts";
import { NodeInputError } from "../plugins/node.ts";
import type { Pipeline, PipelineNode } from "./validate.ts";

/** One cached node result. */
export interface CacheEntry {
  readonly outputs: Readonly<Record<string, unknown>>;
  readonly meta: Readonly<Record<string, unknown>>;
}

/** Node outputs by cache key, least recently used evicted first. Keep one per session to reuse work across runs. */
export class OutputCache {
  readonly #entries = new Map<string, CacheEntry>();
  readonly maxEntries: number;

  constructor(opts: { maxEntries?: number } = {}) {
    this.maxEntries = opts.maxEntries ?? 64;
  }

  get(key: string): CacheEntry | undefined {
    const e = this.#entries.get(key);
    if (e) {
      this.#entries.delete(key);
      this.#entries.set(key, e);
    }
    return e;
  }

  set(key: string, entry: CacheEntry): void {
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    while (this.#entries.size > this.maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
  }

  get size(): number {
    return this.#entries.size;
  }

  clear(): void {
    this.#entries.clear();
  }
}

/** What the runner tells the outside world (the CLI draws progress bars from it). */
export interface RunReporter {
  /** A node starts running; `category` is its definition's (e.g. `loaders`). */
  nodeStart?(id: string, type: string, info?: { category?: string }): void;
  nodeEnd?(id: string, info: { cached: boolean; ms: number }): void;
  progress?(id: string, done: number, total: number, unit?: string): void;
  log?(id: string, message: string): void;
}

/** Options of {@link runPipeline}. */
export interface RunOptions {
  /** How many nodes may run at once (independent branches). Default 2. */
  concurrency?: number;
  cache?: OutputCache;
  settings?: RunSettings;
  reporter?: RunReporter;
  signal?: AbortSignal;
}

/** What a run produced. */
export interface RunResult {
  /** Outputs of every node, by id. */
  readonly outputs: ReadonlyMap<string, Readonly<Record<string, unknown>>>;
  /** Nodes that ran, in completion order. */
  readonly executed: readonly string[];
  /** Nodes whose outputs came from the cache. */
  readonly cached: readonly string[];
  /** Cache key of every node. */
  readonly keys: ReadonlyMap<string, string>;
  /** What nodes published (e.g. resolved seeds). */
  readonly meta: ReadonlyMap<string, Readonly<Record<string, unknown>>>;
}

/** A node failed while running. The message names the node (and the input, if the node said which). */
export class NodeRunError extends Error {
  constructor(readonly node: string, readonly type: string, readonly input: string | undefined, cause: unknown) {
    const msg = cause instanceof Error ? cause.message : String(cause);
    super(`node "${node}" ${input ? `input "${input}"` : `(${type})`}: ${msg}`, { cause });
    this.name = "NodeRunError";
  }
}

function stable(v: unknown): string {
  if (v === undefined) return "null";
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(stable).join(",")}]`;
  return `{${
    Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stable((v as Record<string, unknown>)[k])}`).join(",")
  }}`;
}

async function cacheKeys(p: Pipeline): Promise<{ keys: Map<string, string>; volatile: Set<string> }> {
  const keys = new Map<string, string>();
  const volatile = new Set<string>();
  for (const id of p.order) {
    const n = p.nodes.get(id)!;
    const { def } = n;
    const cacheable = !def.sideEffects &&
      (typeof def.cacheable === "function" ? def.cacheable(n.values) : def.cacheable !== false);
    if (!cacheable) volatile.add(id);
    const refs = Object.fromEntries(Object.entries(n.refs).map(([k, r]) => [k, [keys.get(r.node), r.output]]));
    const fingerprint = def.fingerprint ? await def.fingerprint(n.values) : null;
    const nonce = cacheable ? null : crypto.randomUUID();
    const h = createHash("sha256").update(stable({ type: n.type, values: n.values, refs, fingerprint, nonce }));
    keys.set(id, h.digest("hex"));
  }
  return { keys, volatile };
}

function ancestors(p: Pipeline, id: string, meta: ReadonlyMap<string, Record<string, unknown>>): UpstreamNode[] {
  const out: UpstreamNode[] = [];
  const seen = new Set([id]);
  let frontier = [id];
  while (frontier.length) {
    const next: string[] = [];
    for (const f of frontier) {
      for (const r of Object.values(p.nodes.get(f)!.refs)) {
        if (seen.has(r.node)) continue;
        seen.add(r.node);
        const n = p.nodes.get(r.node)!;
        out.push({ id: n.id, type: n.type, values: n.values, refs: n.refs, meta: meta.get(n.id) ?? {} });
        next.push(r.node);
      }
    }
    frontier = next;
  }
  return out;
}

/**
 * Node `id` and its ancestors as a graph file: literal inputs as the run used them (defaults
 * applied; an input the node published a value for — a drawn random seed — gets that value),
 * references by `node.output`, and the pipeline's plugins by resolved URL.
 */
export function provenanceGraph(
  p: Pipeline,
  id: string,
  meta: ReadonlyMap<string, Readonly<Record<string, unknown>>>,
): ProvenanceGraph {
  const self = p.nodes.get(id)!;
  const chain = [
    { id, type: self.type, values: self.values, refs: self.refs, meta: meta.get(id) ?? {} },
    ...ancestors(p, id, meta),
  ];
  const included = new Set(chain.map((n) => n.id));
  const nodes: Record<string, { type: string; inputs: Record<string, unknown> }> = {};
  for (const id of p.order) {
    if (!included.has(id)) continue;
    const n = chain.find((c) => c.id === id)!;
    const inputs: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(n.values)) {
      if (v === undefined) continue;
      inputs[k] = k in n.meta && typeof n.meta[k] === typeof v ? n.meta[k] : v;
    }
    for (const [k, r] of Object.entries(n.refs)) inputs[k] = { from: `${r.node}.${r.output}` };
    nodes[id] = { type: n.type, inputs };
  }
  const plugins = p.plugins.map((pl) => pl.url);
  return { version: GRAPH_VERSION, ...(plugins.length ? { plugins } : {}), nodes };
}

/**
 * Runs a pipeline. Throws {@link NodeRunError} for the first node that fails
 * (after letting nodes already running finish).
 */
export async function runPipeline(p: Pipeline, opts: RunOptions = {}): Promise<RunResult> {
  const limit = Math.max(1, opts.concurrency ?? 2);
  const cache = opts.cache ?? new OutputCache();
  const rep = opts.reporter ?? {};
  const abort = new AbortController();
  opts.signal?.addEventListener("abort", () => abort.abort(opts.signal!.reason), { once: true });

  const { keys, volatile } = await cacheKeys(p);
  const outputs = new Map<string, Record<string, unknown>>();
  const meta = new Map<string, Record<string, unknown>>();
  const executed: string[] = [];
  const cached: string[] = [];

  const waiting = new Map<string, number>();
  const users = new Map<string, string[]>();
  for (const n of p.nodes.values()) {
    const deps = new Set(Object.values(n.refs).map((r) => r.node));
    waiting.set(n.id, deps.size);
    for (const d of deps) users.set(d, [...(users.get(d) ?? []), n.id]);
  }
  const ready = p.order.filter((id) => waiting.get(id) === 0);
  let running = 0;
  let failure: NodeRunError | undefined;

  async function execute(n: PipelineNode): Promise<void> {
    const key = keys.get(n.id)!;
    const hit = volatile.has(n.id) ? undefined : cache.get(key);
    if (hit) {
      outputs.set(n.id, { ...hit.outputs });
      meta.set(n.id, { ...hit.meta });
      cached.push(n.id);
      rep.nodeEnd?.(n.id, { cached: true, ms: 0 });
      return;
    }
    const inputs: Record<string, unknown> = { ...n.values };
    for (const [name, r] of Object.entries(n.refs)) inputs[name] = outputs.get(r.node)![r.output];
    const published: Record<string, unknown> = {};
    meta.set(n.id, published);
    const ctx: NodeContext = {
      nodeId: n.id,
      settings: opts.settings ?? {},
      signal: abort.signal,
      progress: (done, total, unit) => rep.progress?.(n.id, done, total, unit),
      log: (message) => rep.log?.(n.id, message),
      publish: (m) => void Object.assign(published, m),
      upstream: () => ancestors(p, n.id, meta),
      graph: () => provenanceGraph(p, n.id, meta),
    };
    const t0 = performance.now();
    rep.nodeStart?.(n.id, n.type, { category: n.def.category });
    let out: Record<string, unknown>;
    try {
      out = await n.def.run(inputs, ctx);
      for (const name of Object.keys(n.def.outputs)) {
        if (out?.[name] === undefined) throw new Error(`run() returned no "${name}" output`);
      }
    } catch (e) {
      throw new NodeRunError(n.id, n.type, e instanceof NodeInputError ? e.input : undefined, e);
    }
    outputs.set(n.id, out);
    executed.push(n.id);
    if (!volatile.has(n.id)) cache.set(key, { outputs: out, meta: published });
    rep.nodeEnd?.(n.id, { cached: false, ms: performance.now() - t0 });
  }

  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (!failure && ready.length && running < limit) {
        const id = ready.shift()!;
        running++;
        execute(p.nodes.get(id)!).then(() => {
          for (const u of users.get(id) ?? []) {
            waiting.set(u, waiting.get(u)! - 1);
            if (waiting.get(u) === 0) ready.push(u);
          }
          ready.sort((a, b) => p.order.indexOf(a) - p.order.indexOf(b));
        }, (e) => {
          failure ??= e instanceof NodeRunError ? e : new NodeRunError(id, p.nodes.get(id)!.type, undefined, e);
          abort.abort(failure);
        }).finally(() => {
          running--;
          pump();
        });
      }
      if (running === 0) resolve();
    };
    pump();
  });
  if (failure) throw failure;
  return { outputs, executed, cached, keys, meta };
}
