/**
 * Turns a graph document into a {@link Pipeline}: the top-level fields are
 * checked, plugins loaded, `--set` overrides applied, the document validated
 * against the schema generated from the node catalog (ajv), and then a second
 * pass checks references, output types, cycles and orders the nodes.
 */

import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { builtinNodes } from "../plugins/catalog.ts";
import type { AnyNodeDef, InputSpec, JsonSchema } from "../plugins/node.ts";
import { isSocketInput, socketsForSchema } from "../plugins/node.ts";
import { type LoadedPlugin, loadPlugin, NodeRegistry, PluginError } from "../plugins/plugin.ts";
import { clip, type Diagnostic, didYouMean, GraphError, MAX_ECHO, pointer, splitPointer } from "./errors.ts";
import { GRAPH_VERSION, type GraphFile, isRef, type NodeSpec, parseRef } from "./format.ts";
import { applyOverrides, type Override } from "./overrides.ts";
import { describePath, MAX_GRAPH_DEPTH, nestsDeeperThan, parseGraphText, tooDeepDiagnostic } from "./parse.ts";
import { envelopeSchema, graphSchema, type SchemaObject } from "./schema.ts";

/** A wired input: which node and output feed it. */
export interface PipelineRef {
  readonly node: string;
  readonly output: string;
}

/** A validated node: literal values (defaults applied) and references. */
export interface PipelineNode {
  readonly id: string;
  readonly type: string;
  readonly def: AnyNodeDef;
  readonly values: Readonly<Record<string, unknown>>;
  readonly refs: Readonly<Record<string, PipelineRef>>;
}

/** A validated graph, ready to run or plan. */
export interface Pipeline {
  readonly source: string;
  readonly file: GraphFile;
  readonly nodes: ReadonlyMap<string, PipelineNode>;
  /** A topological order (ties broken by the order nodes appear in the file). */
  readonly order: readonly string[];
  readonly registry: NodeRegistry;
  readonly plugins: readonly LoadedPlugin[];
}

/** Options of {@link validateGraph}. */
export interface ValidateOptions {
  /** The file name used in messages. */
  source?: string;
  /** Where relative plugin paths resolve from (the graph file's URL). Default: the working directory. */
  base?: string | URL;
  /** The node types before plugins. Default: the built-in catalog. */
  registry?: NodeRegistry;
  /** Extra node definitions (from a TypeScript graph's builder). */
  nodes?: readonly AnyNodeDef[];
  /** `node.input=value` overrides (`--set`), and references `{ ref: "node.input=node.output" }` (`--set-ref`). */
  overrides?: readonly Override[];
  /** Labels for values that came from elsewhere: JSON pointer → source (e.g. `--steps 0`). */
  origins?: ReadonlyMap<string, string>;
}

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const validators = new WeakMap<NodeRegistry, { key: string; fn: ValidateFunction }>();
let envelopeValidator: ValidateFunction | undefined;

function compiled(registry: NodeRegistry): ValidateFunction {
  const key = registry.types().join(",");
  const hit = validators.get(registry);
  if (hit && hit.key === key) return hit.fn;
  const fn = ajv.compile(graphSchema(registry));
  validators.set(registry, { key, fn });
  return fn;
}

let builtins: NodeRegistry | undefined;

/** The registry of the built-in catalog (shared; clone it before adding to it). */
export function builtinRegistry(): NodeRegistry {
  builtins ??= new NodeRegistry(builtinNodes);
  return builtins;
}

function show(v: unknown): string {
  if (typeof v === "string") {
    return v.length > MAX_ECHO
      ? `${JSON.stringify(v.slice(0, MAX_ECHO))}… (${v.length} characters)`
      : JSON.stringify(v);
  }
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  return String(v);
}

function valueAt(doc: unknown, ptr: string): unknown {
  let v = doc;
  for (const seg of splitPointer(ptr)) v = (v as Record<string, unknown> | undefined)?.[seg];
  return v;
}

function inputSpecAt(registry: NodeRegistry, doc: GraphFile, path: string[]): InputSpec | undefined {
  if (path[0] !== "nodes" || path[2] !== "inputs" || path.length < 4) return undefined;
  const def = registry.get(doc.nodes[path[1]]?.type);
  return (def?.inputs as Record<string, InputSpec> | undefined)?.[path[3]];
}

/** Rewrites one ajv error as a diagnostic in graph terms; undefined for wrapper errors (if/then/else…). */
function fromAjv(
  e: ErrorObject,
  doc: GraphFile,
  registry: NodeRegistry | undefined,
  source: string,
): Diagnostic | undefined {
  if (e.keyword === "if" || e.keyword === "allOf" || e.keyword === "anyOf" || e.keyword === "$ref") return undefined;
  let ptr = e.instancePath;
  let path = splitPointer(ptr);
  if (e.propertyName !== undefined) {
    // A property name failed (an invalid node id): report it on the name itself.
    path = [...path, e.propertyName];
    ptr = pointer(...path);
  }
  const got = valueAt(doc, ptr);
  let message = e.message ?? "invalid";
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case "required": {
      const missing = String(p.missingProperty);
      path = [...path, missing];
      ptr = pointer(...path);
      const spec = registry && inputSpecAt(registry, doc, path);
      if (spec) {
        message = isSocketInput(spec)
          ? `missing required input: connect a ${spec.type} output, e.g. { "from": "<node>.<output>" }`
          : `missing required input${spec.schema.description ? ` (${spec.schema.description})` : ""}`;
      } else if (path.length === 1) {
        message = missing === "version" ? `missing: add "version": ${GRAPH_VERSION}` : `missing: a graph needs "nodes"`;
      } else if (missing === "inputs") {
        const def = registry?.get(doc.nodes[path[1]]?.type);
        const req = def
          ? Object.entries(def.inputs as Record<string, InputSpec>).filter(([, s]) =>
            isSocketInput(s) ? !s.optional : !s.optional && !("default" in s.schema)
          ).map(([k]) => k)
          : [];
        message = `missing: this node needs the inputs ${req.join(", ")}`;
      } else message = `missing required field "${missing}"`;
      break;
    }
    case "additionalProperties": {
      const extra = String(p.additionalProperty);
      path = [...path, extra];
      ptr = pointer(...path);
      if (path.length === 4 && path[2] === "inputs") {
        const def = registry?.get(doc.nodes[path[1]]?.type);
        const known = Object.keys(def?.inputs ?? {});
        message = `unknown input for ${def?.type ?? "this node"}${didYouMean(extra, known)}; inputs are: ${
          known.join(", ") || "none"
        }`;
      } else if (path.length === 3) {
        message = `unknown field${didYouMean(extra, ["type", "inputs"])}; a node has "type" and "inputs"`;
      } else if (path.length === 1) {
        message = `unknown top-level field${didYouMean(extra, ["$schema", "version", "plugins", "nodes"])}; ` +
          `a graph has "$schema", "version", "plugins" and "nodes" (no layout data)`;
      } else message = `unknown field "${clip(extra)}"`;
      break;
    }
    case "enum": {
      const allowed = (p.allowedValues as unknown[]) ?? [];
      if (path.length === 3 && path[0] === "nodes" && path[2] === "type") {
        message = `unknown node type ${show(got)}${didYouMean(String(got), allowed.map(String))}` +
          ` (is the plugin that defines it missing from "plugins"?)`;
      } else {
        message = `must be one of ${allowed.map(show).join(", ")}; got ${show(got)}${
          typeof got === "string" ? didYouMean(got, allowed.map(String)) : ""
        }`;
      }
      break;
    }
    case "const":
      message = path.length === 1 && path[0] === "version"
        ? `unsupported graph version ${show(got)}; this sdflow reads version ${GRAPH_VERSION}`
        : `must be ${show(p.allowedValue)}, got ${show(got)}`;
      break;
    case "type": {
      const spec = registry && inputSpecAt(registry, doc, path);
      if (spec && isSocketInput(spec) && path.length === 4) {
        message = `expects a ${spec.type} output, written { "from": "<node>.<output>" }; got ${show(got)}`;
      } else message = `${message}, got ${show(got)}`;
      break;
    }
    case "pattern":
      if (path[path.length - 1] === "from") {
        message = `malformed reference ${show(got)}: write "<node id>.<output name>", e.g. "checkpoint.clip"`;
      } else if (path.length === 2 && path[0] === "nodes" && e.propertyName !== undefined) {
        message = `invalid node id: ids use letters, digits, "_" and "-", and start with a letter or "_"`;
      } else {
        // A pattern says little to a user: the input's description says what is expected.
        const spec = registry && inputSpecAt(registry, doc, path);
        const said = spec && !isSocketInput(spec) ? spec.schema.description : undefined;
        message = said ? `got ${show(got)}; expected: ${said}` : `${message}, got ${show(got)}`;
      }
      break;
    case "propertyNames":
      return undefined; // reported by the error on the name itself
    case "minProperties":
      message = path[0] === "nodes" ? "the graph has no nodes" : message;
      break;
    case "multipleOf":
      message = `must be a multiple of ${p.multipleOf}, got ${show(got)}`;
      break;
    case "minimum":
    case "maximum":
    case "exclusiveMinimum":
    case "exclusiveMaximum":
    case "minLength":
    case "maxLength":
      message = `${message}, got ${show(got)}`;
      break;
  }
  // An invalid node id is reported on the id, not as a field of the node.
  if (e.propertyName !== undefined && path.length === 2 && path[0] === "nodes") {
    return { source, node: path[1], message, pointer: ptr };
  }
  return { source, ...describePath(path), message, pointer: ptr };
}

function ajvDiagnostics(
  fn: ValidateFunction,
  doc: GraphFile,
  registry: NodeRegistry | undefined,
  source: string,
  origins?: ReadonlyMap<string, string>,
): Diagnostic[] {
  if (fn(doc)) return [];
  const out: Diagnostic[] = [];
  const seen = new Set<string>();
  for (const e of fn.errors ?? []) {
    const d = fromAjv(e, doc, registry, source);
    if (!d) continue;
    // An input whose reference object is malformed also fails "else": report the reference only.
    const line = `${d.pointer}|${d.message}`;
    if (seen.has(line)) continue;
    seen.add(line);
    const origin = d.pointer !== undefined ? origins?.get(d.pointer) : undefined;
    out.push(origin ? { ...d, source: origin } : d);
  }
  // When an input has a problem deeper inside it (e.g. its "from"), drop the shallower duplicates.
  return out.filter((d) => !out.some((o) => o !== d && o.pointer?.startsWith(d.pointer + "/")));
}

async function loadPlugins(
  doc: GraphFile,
  registry: NodeRegistry,
  base: string | URL,
  source: string,
): Promise<LoadedPlugin[]> {
  const loaded: LoadedPlugin[] = [];
  const diags: Diagnostic[] = [];
  for (const [i, spec] of (doc.plugins ?? []).entries()) {
    try {
      const p = await loadPlugin(spec, base);
      registry.add(p);
      loaded.push(p);
    } catch (e) {
      if (!(e instanceof PluginError)) throw e;
      diags.push({ source, field: "plugins", message: e.message, pointer: pointer("plugins", i) });
    }
  }
  if (diags.length) throw new GraphError(diags);
  return loaded;
}

/** Orders nodes topologically, or returns the nodes of one cycle. */
function topoOrder(nodes: ReadonlyMap<string, PipelineNode>): { order: string[]; cycle?: string[] } {
  const indeg = new Map<string, number>();
  const users = new Map<string, string[]>();
  for (const n of nodes.values()) {
    const deps = new Set(Object.values(n.refs).map((r) => r.node));
    indeg.set(n.id, deps.size);
    for (const d of deps) users.set(d, [...(users.get(d) ?? []), n.id]);
  }
  const index = new Map([...nodes.keys()].map((k, i) => [k, i]));
  const ready = [...nodes.keys()].filter((k) => indeg.get(k) === 0);
  const order: string[] = [];
  while (ready.length) {
    ready.sort((a, b) => index.get(a)! - index.get(b)!);
    const id = ready.shift()!;
    order.push(id);
    for (const u of users.get(id) ?? []) {
      indeg.set(u, indeg.get(u)! - 1);
      if (indeg.get(u) === 0) ready.push(u);
    }
  }
  if (order.length === nodes.size) return { order };
  // Walk dependencies from a node left over until one repeats: that loop is a cycle.
  let cur = [...nodes.keys()].find((k) => indeg.get(k)! > 0)!;
  const path: string[] = [];
  while (!path.includes(cur)) {
    path.push(cur);
    cur = Object.values(nodes.get(cur)!.refs).map((r) => r.node).find((d) => indeg.get(d)! > 0)!;
  }
  return { order, cycle: [...path.slice(path.indexOf(cur)), cur] };
}

/** The second pass: references, their types, and cycles. */
function link(doc: GraphFile, registry: NodeRegistry, source: string): Pipeline["nodes"] {
  const diags: Diagnostic[] = [];
  const nodes = new Map<string, PipelineNode>();
  const ids = Object.keys(doc.nodes);
  for (const [id, spec] of Object.entries(doc.nodes) as [string, NodeSpec][]) {
    const def = registry.get(spec.type)!;
    const values: Record<string, unknown> = {};
    const refs: Record<string, PipelineRef> = {};
    const given = spec.inputs ?? {};
    for (const [name, decl] of Object.entries(def.inputs as Record<string, InputSpec>)) {
      const v = given[name];
      const at = { source, node: id, input: name, pointer: pointer("nodes", id, "inputs", name) };
      if (v === undefined) {
        if (!isSocketInput(decl) && "default" in decl.schema) values[name] = structuredClone(decl.schema.default);
        continue;
      }
      if (!isRef(v)) {
        values[name] = v;
        continue;
      }
      const ref = parseRef(v.from)!;
      const up = doc.nodes[ref.node];
      if (ref.node === id) {
        diags.push({ ...at, message: `refers to its own output "${v.from}" (a node cannot feed itself)` });
        continue;
      }
      if (!up) {
        diags.push({ ...at, message: `refers to unknown node "${ref.node}"${didYouMean(ref.node, ids)}` });
        continue;
      }
      const upDef = registry.get(up.type)!;
      const outputs = upDef.outputs as Record<string, string>;
      const outType = outputs[ref.output];
      if (outType === undefined) {
        const names = Object.keys(outputs);
        diags.push({
          ...at,
          message: `node "${ref.node}" (${up.type}) has no output "${ref.output}"${didYouMean(ref.output, names)}; ` +
            `its outputs are: ${names.length ? names.map((k) => `${k} (${outputs[k]})`).join(", ") : "none"}`,
        });
        continue;
      }
      const accepts = isSocketInput(decl) ? [decl.type] : socketsForSchema(decl.schema as JsonSchema);
      if (!accepts.includes(outType)) {
        const want = accepts.length ? accepts.join(" or ") : "a literal value (it takes no connections)";
        diags.push({ ...at, message: `expects ${want}, but "${v.from}" is ${outType}` });
        continue;
      }
      refs[name] = ref;
    }
    nodes.set(id, { id, type: spec.type, def, values, refs });
  }
  if (diags.length) throw new GraphError(diags);
  const { cycle } = topoOrder(nodes);
  if (cycle) {
    const [a, b] = cycle;
    const input = Object.entries(nodes.get(a)!.refs).find(([, r]) => r.node === b)![0];
    throw new GraphError([{
      source,
      node: a,
      input,
      pointer: pointer("nodes", a, "inputs", input),
      message: `cycle: ${cycle.map((c) => `"${c}"`).join(" needs ")}; a graph must not loop`,
    }]);
  }
  return nodes;
}

/**
 * Validates a graph (JSON text or a parsed document) and links it into a
 * {@link Pipeline}. Throws {@link GraphError} listing every problem found
 * in the first stage that fails.
 *
 * @example
 * ```ts
 * const p = await validateGraph(await Deno.readTextFile("graphs/txt2img.json"), { source: "txt2img.json" });
 * console.log(p.order);
 * ```
 */
export async function validateGraph(input: string | unknown, opts: ValidateOptions = {}): Promise<Pipeline> {
  const source = opts.source ?? "graph.json";
  if (typeof input !== "string" && nestsDeeperThan(input, MAX_GRAPH_DEPTH)) {
    throw new GraphError([tooDeepDiagnostic(source)]);
  }
  const doc = (typeof input === "string" ? parseGraphText(input, source) : structuredClone(input)) as GraphFile;
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new GraphError([{ source, message: `a graph must be a JSON object, got ${show(doc)}` }]);
  }
  envelopeValidator ??= ajv.compile(envelopeSchema() as SchemaObject);
  const envErrors = ajvDiagnostics(envelopeValidator, doc, undefined, source);
  if (envErrors.length) throw new GraphError(envErrors);

  const registry = (opts.registry ?? builtinRegistry()).clone();
  for (const d of opts.nodes ?? []) {
    if (registry.get(d.type) !== d) {
      try {
        registry.register(d, "the graph's builder");
      } catch (e) {
        throw new GraphError([{ source, message: (e as Error).message }]);
      }
    }
  }
  const plugins = await loadPlugins(doc, registry, opts.base ?? `file://${Deno.cwd()}/`, source);

  const origins = new Map(opts.origins ?? []);
  const file = opts.overrides?.length ? applyOverrides(doc, opts.overrides, registry, origins) : doc;

  const schemaErrors = ajvDiagnostics(compiled(registry), file, registry, source, origins);
  if (schemaErrors.length) throw new GraphError(schemaErrors);

  let nodes: Pipeline["nodes"];
  try {
    nodes = link(file, registry, source);
  } catch (e) {
    if (e instanceof GraphError) {
      throw new GraphError(e.diagnostics.map((d) => {
        const o = d.pointer !== undefined ? origins.get(d.pointer) : undefined;
        return o ? { ...d, source: o } : d;
      }));
    }
    throw e;
  }
  return { source, file, nodes, order: topoOrder(nodes).order, registry, plugins };
}
