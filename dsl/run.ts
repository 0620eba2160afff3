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
import type { Latent } from "../models/types.ts";
import type { LivePreviewInfo, NodeContext, ProvenanceGraph, RunSettings, UpstreamNode } from "../plugins/node.ts";
import { GRAPH_VERSION } from "./format.ts";
import { isNodeInputError } from "../plugins/node.ts";
import type { Pipeline, PipelineNode } from "./validate.ts";

/** One cached node result. */
export interface CacheEntry {
  readonly outputs: Readonly<Record<string, unknown>>;
  readonly meta: Readonly<Record<string, unknown>>;
  /** Releases what the outputs hold (a loaded checkpoint); called when the entry leaves the cache. */
  readonly dispose?: () => void;
  /**
   * Memory the entry's resources hold (a loaded checkpoint's weights, as its node reported them with
   * {@link NodeContext.onDispose}); such entries are bounded by the cache's `maxBytes`, the others by `maxEntries`.
   */
  readonly bytes?: number;
  /**
   * For outputs that hold resources of upstream nodes (a LoRA-patched model holds its checkpoint's): the
   * upstream entries they were made from, by input name. A hit is used only while the same entries are
   * upstream, so a node never returns a model made from a checkpoint that was evicted and loaded again.
   */
  readonly deps?: Readonly<Record<string, CacheEntry>>;
}

function release(e: CacheEntry): void {
  try {
    e.dispose?.();
  } catch {
    // A failing cleanup must not break the run that evicted the entry.
  }
}

/** Options of {@link OutputCache}. */
export interface OutputCacheOptions {
  /** Most entries that hold no reported memory (prompts' conditioning, latents, pictures). Default 64. */
  maxEntries?: number;
  /**
   * Most bytes of the entries that report memory (loaded checkpoints), summed; the least recently used
   * are evicted (and disposed) beyond it. An entry larger than the budget on its own stays until the next
   * one arrives. Default: no limit.
   */
  maxBytes?: number;
  /** Called when an entry that reported memory is evicted to keep within `maxBytes`. */
  onEvict?: (entry: CacheEntry) => void;
}

/** What an {@link OutputCache} holds now. */
export interface OutputCacheStats {
  readonly entries: number;
  /** Entries that reported memory (loaded models) and the sum of their bytes. */
  readonly resident: number;
  readonly residentBytes: number;
  readonly maxBytes: number;
  /** Entries that reported memory evicted so far to stay within `maxBytes`. */
  readonly evictions: number;
}

/**
 * Node outputs by cache key, least recently used evicted first: entries that hold memory (loaded
 * models) within a byte budget, the others within an entry count. Keep one per session to reuse work
 * across runs. An entry's `dispose` runs when it is evicted, replaced or cleared — deferred while a
 * run that uses it is in progress ({@link OutputCache.pin}). Call {@link OutputCache.clear} when done.
 *
 * @example
 * ```ts
 * const cache = new OutputCache({ maxBytes: 4 * 1024 ** 3 }); // checkpoints: 4 GiB at most
 * ```
 */
export class OutputCache {
  readonly #entries = new Map<string, CacheEntry>();
  readonly #pins = new Map<string, number>();
  /** Entries evicted while pinned, released on the last unpin. */
  readonly #pending = new Map<string, CacheEntry[]>();
  readonly maxEntries: number;
  readonly maxBytes: number;
  readonly #onEvict?: (entry: CacheEntry) => void;
  #evictions = 0;

  constructor(opts: OutputCacheOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 64;
    this.maxBytes = opts.maxBytes ?? Infinity;
    this.#onEvict = opts.onEvict;
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
    const old = this.#entries.get(key);
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    if (old && old !== entry) this.#drop(key, old);
    // Least recently used first (Map order); each pool is bounded on its own.
    let count = 0, bytes = 0;
    for (const e of this.#entries.values()) {
      if (e.bytes) bytes += e.bytes;
      else count++;
    }
    for (const [k, e] of this.#entries) {
      if (count <= this.maxEntries && bytes <= this.maxBytes) break;
      if (k === key) continue;
      if (e.bytes) {
        if (bytes <= this.maxBytes) continue;
        bytes -= e.bytes;
        this.#evictions++;
        this.#onEvict?.(e);
      } else {
        if (count <= this.maxEntries) continue;
        count--;
      }
      this.#entries.delete(k);
      this.#drop(k, e);
    }
  }

  #drop(key: string, e: CacheEntry): void {
    if (this.#pins.has(key)) this.#pending.set(key, [...(this.#pending.get(key) ?? []), e]);
    else release(e);
  }

  /** Marks keys as in use by a run: their entries are released only after {@link OutputCache.unpin}. */
  pin(keys: Iterable<string>): void {
    for (const k of keys) this.#pins.set(k, (this.#pins.get(k) ?? 0) + 1);
  }

  /** Ends a {@link OutputCache.pin}; entries evicted meanwhile are released now. */
  unpin(keys: Iterable<string>): void {
    for (const k of keys) {
      const n = (this.#pins.get(k) ?? 0) - 1;
      if (n > 0) {
        this.#pins.set(k, n);
        continue;
      }
      this.#pins.delete(k);
      for (const e of this.#pending.get(k) ?? []) release(e);
      this.#pending.delete(k);
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The entries that hold memory (loaded models), least recently used first. */
  resident(): CacheEntry[] {
    return [...this.#entries.values()].filter((e) => e.bytes);
  }

  stats(): OutputCacheStats {
    const resident = this.resident();
    return {
      entries: this.#entries.size,
      resident: resident.length,
      residentBytes: resident.reduce((a, e) => a + e.bytes!, 0),
      maxBytes: this.maxBytes,
      evictions: this.#evictions,
    };
  }

  /** Empties the cache, releasing every entry (those in use by a run: when it ends). */
  clear(): void {
    const all = [...this.#entries];
    this.#entries.clear();
    for (const [k, e] of all) this.#drop(k, e);
  }
}

/**
 * Whether outputs hold something beyond plain data — a function or a class instance (a model, a loaded
 * network) — which may belong to an upstream node's resources.
 */
function holdsResources(v: unknown, seen = new Set<object>()): boolean {
  if (typeof v === "function") return true;
  if (v === null || typeof v !== "object" || seen.has(v)) return false;
  seen.add(v);
  if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return false;
  if (Array.isArray(v) || v instanceof Set) return [...v].some((x) => holdsResources(x, seen));
  if (v instanceof Map) return [...v.values()].some((x) => holdsResources(x, seen));
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return true;
  return Object.values(v).some((x) => holdsResources(x, seen));
}

/** What the runner tells the outside world (the CLI draws progress bars from it). */
export interface RunReporter {
  /** A node starts running; `category` is its definition's (e.g. `loaders`). */
  nodeStart?(id: string, type: string, info?: { category?: string }): void;
  nodeEnd?(id: string, info: { cached: boolean; ms: number }): void;
  progress?(id: string, done: number, total: number, unit?: string): void;
  log?(id: string, message: string): void;
  /** A node's live preview latent (see {@link NodeContext.livePreview}); given, samplers report every step. */
  preview?(id: string, latent: Latent, info: LivePreviewInfo): Promise<void> | void;
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
  /**
   * Nodes that ran, in completion order. Without `opts.cache`, resources behind the outputs (loaded
   * checkpoints) are released when the run returns; keep an {@link OutputCache} to use them after.
   */
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

/**
 * A private copy of the plain data in `v` (arrays, plain objects, typed arrays, ArrayBuffers,
 * Maps and Sets), sharing only class instances (a loaded model is a resource, not data). Each node
 * receives its inputs through this, so a node that edits an input in place (a plugin that
 * brightens an image's pixels) changes its own copy — never the cached output, the node that made
 * it, or a sibling reading the same output.
 *
 * @example
 * ```ts
 * const latent = { shape: [1, 4, 8, 8], data: new Float32Array(256) };
 * const mine = isolate(latent);
 * mine.data[0] = 1; // latent.data[0] is still 0
 * ```
 */
export function isolate<T>(v: T, memo: Map<object, unknown> = new Map()): T {
  if (v === null || typeof v !== "object") return v;
  const known = memo.get(v);
  if (known !== undefined) return known as T;
  let copy: unknown;
  if (ArrayBuffer.isView(v)) {
    copy = v instanceof DataView
      ? new DataView(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength))
      : (v as unknown as { slice(): unknown }).slice();
  } else if (v instanceof ArrayBuffer) copy = v.slice(0);
  else if (Array.isArray(v)) {
    const a: unknown[] = [];
    memo.set(v, a);
    for (const x of v) a.push(isolate(x, memo));
    return a as T;
  } else if (v instanceof Map) {
    const m = new Map();
    memo.set(v, m);
    for (const [k, x] of v) m.set(k, isolate(x, memo));
    return m as T;
  } else if (v instanceof Set) {
    const st = new Set();
    memo.set(v, st);
    for (const x of v) st.add(isolate(x, memo));
    return st as T;
  } else {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return v; // a class instance: shared as it is
    const o: Record<PropertyKey, unknown> = Object.create(proto);
    memo.set(v, o);
    for (const k of Reflect.ownKeys(v)) o[k] = isolate((v as Record<PropertyKey, unknown>)[k], memo);
    return o as T;
  }
  memo.set(v, copy);
  return copy as T;
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

/** `precision`: a run setting that changes numbers, so part of every key (absent for the default f32). */
async function cacheKeys(
  p: Pipeline,
  precision: string | undefined,
): Promise<{ keys: Map<string, string>; volatile: Set<string> }> {
  if (precision === "f32") precision = undefined;
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
    const h = createHash("sha256").update(
      stable({ type: n.type, values: n.values, refs, fingerprint, nonce, precision }),
    );
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

  // Checks that need no node's output (an output path can be written) come before any node runs.
  for (const id of p.order) {
    const n = p.nodes.get(id)!;
    try {
      await n.def.preflight?.(isolate(n.values));
    } catch (e) {
      throw new NodeRunError(n.id, n.type, isNodeInputError(e) ? e.input : undefined, e);
    }
  }
  const { keys, volatile } = await cacheKeys(p, opts.settings?.precision);
  const pluginBackends = p.registry.backends();
  const settings = pluginBackends.length ? { ...opts.settings, pluginBackends } : opts.settings ?? {};
  // Outputs of this run stay alive until it ends; resources of uncached nodes are released then.
  const pinned = [...keys.values()];
  cache.pin(pinned);
  const uncached: CacheEntry[] = [];
  const outputs = new Map<string, Record<string, unknown>>();
  const meta = new Map<string, Record<string, unknown>>();
  const executed: string[] = [];
  const cached: string[] = [];
  /** The cache entry each node's outputs came from (or went to) in this run. */
  const entries = new Map<string, CacheEntry>();

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
    const found = volatile.has(n.id) ? undefined : cache.get(key);
    // Outputs made from upstream resources are reused only with the same upstream entries.
    const hit = found?.deps && Object.entries(n.refs).some(([input, r]) => entries.get(r.node) !== found.deps![input])
      ? undefined
      : found;
    if (hit) {
      entries.set(n.id, hit);
      outputs.set(n.id, { ...hit.outputs });
      meta.set(n.id, { ...hit.meta });
      cached.push(n.id);
      rep.nodeEnd?.(n.id, { cached: true, ms: 0 });
      return;
    }
    // Private copies: a node that edits an input in place must not corrupt the cache or its siblings.
    const inputs: Record<string, unknown> = isolate({ ...n.values });
    for (const [name, r] of Object.entries(n.refs)) inputs[name] = isolate(outputs.get(r.node)![r.output]);
    const published: Record<string, unknown> = {};
    meta.set(n.id, published);
    const disposers: (() => void)[] = [];
    let bytes = 0;
    const dispose = () => {
      for (const d of disposers.splice(0).reverse()) d();
    };
    const ctx: NodeContext = {
      nodeId: n.id,
      settings,
      signal: abort.signal,
      progress: (done, total, unit) => rep.progress?.(n.id, done, total, unit),
      log: (message) => rep.log?.(n.id, message),
      publish: (m) => void Object.assign(published, m),
      upstream: () => ancestors(p, n.id, meta),
      graph: () => provenanceGraph(p, n.id, meta),
      onDispose: (fn, info) => {
        disposers.push(fn);
        if (info?.bytes !== undefined && Number.isFinite(info.bytes) && info.bytes > 0) bytes += info.bytes;
      },
      ...(rep.preview
        ? { livePreview: (latent: Latent, info: LivePreviewInfo) => rep.preview!(n.id, latent, info) }
        : {}),
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
      release({ outputs: {}, meta: {}, dispose });
      throw new NodeRunError(n.id, n.type, isNodeInputError(e) ? e.input : undefined, e);
    }
    outputs.set(n.id, out);
    executed.push(n.id);
    const deps = holdsResources(out)
      ? Object.fromEntries(
        Object.entries(n.refs).flatMap(([input, r]) => {
          const e = entries.get(r.node);
          return e ? [[input, e]] : [];
        }),
      )
      : undefined;
    const entry: CacheEntry = {
      outputs: out,
      meta: published,
      ...(disposers.length ? { dispose } : {}),
      ...(disposers.length && bytes ? { bytes } : {}),
      ...(deps && Object.keys(deps).length ? { deps } : {}),
    };
    entries.set(n.id, entry);
    if (!volatile.has(n.id)) cache.set(key, entry);
    else if (disposers.length) uncached.push(entry);
    rep.nodeEnd?.(n.id, { cached: false, ms: performance.now() - t0 });
  }

  try {
    await schedule();
  } finally {
    for (const e of uncached) release(e);
    cache.unpin(pinned);
    if (!opts.cache) cache.clear();
  }
  if (failure) throw failure;
  return { outputs, executed, cached, keys, meta };

  function schedule(): Promise<void> {
    return new Promise<void>((resolve) => {
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
  }
}
