/**
 * Plugins: a TypeScript module that default-exports node types and/or backend
 * manifests, and the registry that holds the node types of one graph.
 *
 * @example
 * ```ts
 * // my_plugin.ts — listed in a graph as "plugins": ["./my_plugin.ts"]
 * import { defineNode } from "sdflow/plugins/node.ts";
 * export default { nodes: [defineNode({ type: "noop", description: "…", inputs: {}, outputs: {}, run: () => Promise.resolve({}) })] };
 * ```
 */

import { isAbsolute } from "node:path";
import { pathToFileURL } from "node:url";
import { type BackendManifest, BackendManifestError, parseBackendManifest } from "../backends/manifest.ts";
import { type BackendFactory, registerBackend } from "../backends/registry.ts";
import { type AnyNodeDef, IDENT, type InputSpec, isSocketInput, SOCKET_NAME } from "./node.ts";

/**
 * A backend shipped by a plugin: the same manifest as a `manifest.json` (one type, one validator:
 * `backends/manifest.ts`). Its `libraries` and `sources` may be relative to the plugin module.
 */
export type { BackendManifest };

/** What a plugin module default-exports. */
export interface PluginModule {
  readonly nodes?: readonly AnyNodeDef[];
  readonly backends?: readonly BackendManifest[];
  /** Backends written in TypeScript (`backends/backend.ts`'s `Backend`), registered by name when the plugin loads. */
  readonly tsBackends?: readonly BackendFactory[];
}

/** A plugin after loading: where it came from and what it provides. */
export interface LoadedPlugin {
  /** As written in the graph. */
  readonly spec: string;
  /** The module URL it resolved to. */
  readonly url: string;
  readonly nodes: readonly AnyNodeDef[];
  /** Manifests with library and source paths resolved to absolute URLs. */
  readonly backends: readonly BackendManifest[];
  readonly tsBackends: readonly BackendFactory[];
}

/** A problem with a plugin or a node definition. `path` says which part (e.g. `nodes[0].inputs.x`). */
export class PluginError extends Error {
  constructor(message: string, readonly path?: string) {
    super(message);
    this.name = "PluginError";
  }
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `${typeof v} ${JSON.stringify(v)}`;
}

function checkInput(type: string, name: string, spec: InputSpec | undefined): void {
  const where = `node "${type}" input "${name}"`;
  if (!IDENT.test(name)) throw new PluginError(`${where}: input names must match ${IDENT}`);
  if (spec === null || typeof spec !== "object") {
    throw new PluginError(`${where}: must be an object, got ${describe(spec)}`);
  }
  if (isSocketInput(spec)) {
    if (!SOCKET_NAME.test(spec.type)) {
      throw new PluginError(`${where}: socket type "${spec.type}" must be UPPER_SNAKE_CASE (e.g. "LATENT")`);
    }
    return;
  }
  const schema = (spec as { schema?: unknown }).schema;
  if (schema === null || typeof schema !== "object" || Array.isArray(schema)) {
    throw new PluginError(`${where}: needs either "type" (a socket such as "LATENT") or "schema" (JSON Schema)`);
  }
}

/** Checks that `def` is a well-formed node definition (plugins are untrusted input). */
export function checkNodeDef(def: unknown, where = "node"): asserts def is AnyNodeDef {
  if (def === null || typeof def !== "object") {
    throw new PluginError(`${where}: must be an object, got ${describe(def)}`);
  }
  const d = def as Record<string, unknown>;
  if (typeof d.type !== "string" || !IDENT.test(d.type)) {
    throw new PluginError(`${where}: "type" must be a lower_snake_case string, got ${describe(d.type)}`);
  }
  const name = `node "${d.type}"`;
  if (typeof d.description !== "string") throw new PluginError(`${name}: "description" must be a string`);
  if (typeof d.run !== "function") throw new PluginError(`${name}: "run" must be a function, got ${describe(d.run)}`);
  for (const hook of ["estimate", "fingerprint", "preflight"]) {
    if (d[hook] !== undefined && typeof d[hook] !== "function") {
      throw new PluginError(`${name}: "${hook}" must be a function`);
    }
  }
  if (d.inputs === null || typeof d.inputs !== "object" || Array.isArray(d.inputs)) {
    throw new PluginError(`${name}: "inputs" must be an object of input declarations`);
  }
  for (const [k, spec] of Object.entries(d.inputs as Record<string, InputSpec>)) checkInput(d.type, k, spec);
  if (d.outputs === null || typeof d.outputs !== "object" || Array.isArray(d.outputs)) {
    throw new PluginError(`${name}: "outputs" must be an object mapping output names to socket types`);
  }
  for (const [k, t] of Object.entries(d.outputs as Record<string, unknown>)) {
    if (!IDENT.test(k)) throw new PluginError(`${name} output "${k}": output names must match ${IDENT}`);
    if (typeof t !== "string" || !SOCKET_NAME.test(t)) {
      throw new PluginError(
        `${name} output "${k}": socket type must be an UPPER_SNAKE_CASE string, got ${describe(t)}`,
      );
    }
  }
}

/** Checks a plugin module's default export. */
export function checkPluginModule(mod: unknown): asserts mod is PluginModule {
  if (mod === null || typeof mod !== "object" || Array.isArray(mod)) {
    throw new PluginError(`the default export must be an object { nodes?, backends? }, got ${describe(mod)}`);
  }
  const m = mod as Record<string, unknown>;
  for (const key of Object.keys(m)) {
    if (key !== "nodes" && key !== "backends" && key !== "tsBackends") {
      throw new PluginError(`unknown key "${key}" in the default export (expected "nodes", "backends", "tsBackends")`);
    }
  }
  if (m.nodes !== undefined) {
    if (!Array.isArray(m.nodes)) throw new PluginError(`"nodes" must be an array of node definitions`);
    m.nodes.forEach((n, i) => checkNodeDef(n, `nodes[${i}]`));
  }
  if (m.tsBackends !== undefined) {
    if (!Array.isArray(m.tsBackends)) throw new PluginError(`"tsBackends" must be an array of backend factories`);
    m.tsBackends.forEach((b, i) => {
      const f = b as Record<string, unknown>;
      if (f === null || typeof f !== "object" || typeof f.name !== "string" || typeof f.create !== "function") {
        throw new PluginError(`"tsBackends[${i}]" must be { name: string, create(options): Promise<Backend> }`);
      }
      if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(f.name) || f.name === "cpu" || f.name === "webgpu") {
        throw new PluginError(`"tsBackends[${i}].name" must be a new backend name, got ${JSON.stringify(f.name)}`);
      }
    });
  }
  if (m.backends !== undefined) {
    if (!Array.isArray(m.backends)) throw new PluginError(`"backends" must be an array of backend manifests`);
    m.backends.forEach((b, i) => {
      try {
        parseBackendManifest(b, `backends[${i}]`);
      } catch (e) {
        if (e instanceof BackendManifestError) throw new PluginError(e.message, `backends[${i}]`);
        throw e;
      }
    });
  }
}

/** A manifest path resolved against the plugin module's URL, as a URL string (absolute paths kept). */
function resolveAgainst(p: string, moduleUrl: URL): string {
  if (isAbsolute(p) || /^[A-Za-z]:[\\/]/.test(p)) return pathToFileURL(p).href;
  return new URL(p, moduleUrl).href;
}

/**
 * Imports a plugin module and checks what it exports. `spec` is a path
 * (relative to `base`) or a URL. Throws {@link PluginError} with a message
 * that says whether the module was not found, threw, or exported something malformed.
 */
export async function loadPlugin(spec: string, base: string | URL): Promise<LoadedPlugin> {
  let url: URL;
  try {
    url = /^[a-z][a-z0-9+.-]*:/i.test(spec) && !/^[a-z]:[\\/]/i.test(spec) ? new URL(spec) : new URL(spec, base);
  } catch {
    throw new PluginError(`"${spec}" is neither a path nor a URL`);
  }
  if (url.protocol === "file:") {
    try {
      const st = await Deno.stat(url);
      if (!st.isFile) throw new PluginError(`"${spec}" is not a file (${url.pathname})`);
    } catch (e) {
      if (e instanceof PluginError) throw e;
      throw new PluginError(`plugin "${spec}" not found (looked for ${decodeURIComponent(url.pathname)})`);
    }
  }
  let mod: { default?: unknown };
  try {
    mod = await import(url.href);
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    if (url.protocol !== "file:" && /not found|404|fetch|resolve/i.test(msg)) {
      throw new PluginError(`plugin "${spec}" could not be fetched: ${msg}`);
    }
    throw new PluginError(`plugin "${spec}" threw while loading: ${msg}`);
  }
  if (!("default" in mod)) throw new PluginError(`plugin "${spec}" has no default export ({ nodes?, backends? })`);
  try {
    checkPluginModule(mod.default);
  } catch (e) {
    throw new PluginError(`plugin "${spec}": ${(e as Error).message}`);
  }
  const m = mod.default;
  // Libraries AND sources resolve against the plugin module (as a manifest's do against its file),
  // never against the working directory of whoever runs the graph.
  const backends = (m.backends ?? []).map((b) => ({
    ...b,
    libraries: Object.fromEntries(Object.entries(b.libraries).map(([k, lib]) => [k, resolveAgainst(lib!, url)])),
    ...(b.sources ? { sources: b.sources.map((s) => resolveAgainst(s, url)) } : {}),
  }));
  return { spec, url: url.href, nodes: m.nodes ?? [], backends, tsBackends: m.tsBackends ?? [] };
}

/** The node types available to a graph: the built-in catalog plus its plugins'. */
export class NodeRegistry {
  readonly #nodes = new Map<string, { def: AnyNodeDef; origin: string }>();
  readonly #backends: BackendManifest[] = [];

  constructor(nodes: readonly AnyNodeDef[] = [], origin = "the built-in catalog") {
    for (const n of nodes) this.register(n, origin);
  }

  /**
   * Adds a node type. The same definition twice is fine (a TypeScript graph's builder and its `plugins`
   * list reach one module); another definition of a type already here is an error naming both origins.
   */
  register(def: AnyNodeDef, origin: string): void {
    checkNodeDef(def);
    const prev = this.#nodes.get(def.type);
    if (prev?.def === def) return;
    if (prev) {
      throw new PluginError(`node type "${def.type}" from ${origin} is already defined by ${prev.origin}`);
    }
    this.#nodes.set(def.type, { def, origin });
  }

  /** Adds a loaded plugin's nodes and backends. */
  add(plugin: LoadedPlugin): void {
    for (const n of plugin.nodes) this.register(n, `plugin "${plugin.spec}"`);
    for (const b of plugin.backends) {
      if (this.#backends.some((x) => x.name === b.name)) {
        throw new PluginError(`backend "${b.name}" from plugin "${plugin.spec}" is already defined`);
      }
      this.#backends.push(b);
    }
    // `loadBackend(name)` (and so `--backend name`, a loader's `backend` input) finds them by name.
    for (const f of plugin.tsBackends) registerBackend(f);
  }

  get(type: string): AnyNodeDef | undefined {
    return this.#nodes.get(type)?.def;
  }

  has(type: string): boolean {
    return this.#nodes.has(type);
  }

  /** Node types in registration order. */
  types(): string[] {
    return [...this.#nodes.keys()];
  }

  defs(): AnyNodeDef[] {
    return [...this.#nodes.values()].map((x) => x.def);
  }

  /** Backend manifests contributed by plugins. */
  backends(): readonly BackendManifest[] {
    return this.#backends;
  }

  /** A copy, to which a graph's plugins can be added without touching this one. */
  clone(): NodeRegistry {
    const r = new NodeRegistry();
    for (const [type, v] of this.#nodes) r.#nodes.set(type, v);
    r.#backends.push(...this.#backends);
    return r;
  }
}
