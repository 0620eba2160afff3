/**
 * The typed graph builder. Each node type is a method; calling it adds a node
 * and returns handles to its named outputs. Handles carry their socket type,
 * so wiring a VAE into a CONDITIONING input does not compile.
 *
 * @example
 * ```ts
 * import { graph } from "./mod.ts";
 *
 * const g = graph();
 * const ckpt = g.checkpoint({ path: "models/v1-5-pruned-emaonly.safetensors" });
 * const positive = g.clip_encode({ clip: ckpt.clip, text: "a cat" }, "positive");
 * const negative = g.clip_encode({ clip: ckpt.clip, text: "" }, "negative");
 * const latent = g.empty_latent({ width: 512, height: 512 });
 * const s = g.sampler({ model: ckpt.model, positive, negative: negative.conditioning, latent: latent.latent });
 * export default g;
 * ```
 */

import { type BuiltinNode, builtinNodes } from "../plugins/catalog.ts";
import type {
  AnyNodeDef,
  InputSpecs,
  IsRequired,
  JsonSchema,
  NodeDef,
  OutputSpecs,
  SchemaValue,
} from "../plugins/node.ts";
import { IDENT } from "../plugins/node.ts";
import { GraphError } from "./errors.ts";
import { GRAPH_VERSION, type GraphFile, type InputValue, NODE_ID_PATTERN, type NodeSpec } from "./format.ts";

/** A handle to one output of a node in a builder: pass it as another node's input. */
export interface OutputHandle<T extends string = string> {
  readonly node: string;
  readonly output: string;
  /** The socket type, which the type checker matches against the input's. */
  readonly socket: T;
  /** The reference as written in graph JSON. */
  toJSON(): { from: string };
}

/** The socket types that may feed a value input with schema `S` (an integer input takes an INT output…). */
export type PrimitiveSocket<S> = S extends { type: "integer" } ? "INT"
  : S extends { type: "number" } ? "FLOAT" | "INT"
  : S extends { type: "string" } ? "STRING"
  : S extends { type: "boolean" } ? "BOOLEAN"
  : never;

type BuilderInput<S> = S extends { type: infer T extends string } ? OutputHandle<T>
  : S extends { schema: infer Sc extends JsonSchema } ? SchemaValue<Sc> | OutputHandle<PrimitiveSocket<Sc>>
  : never;

type RequiredKeys<I> = { [K in keyof I]: IsRequired<I[K]> extends true ? K : never }[keyof I];

/**
 * The inputs a builder method takes: required inputs must be given; a node
 * with exactly one output may be passed itself where that output is wanted.
 */
export type BuilderInputs<I extends InputSpecs> =
  & { [K in RequiredKeys<I>]: BuilderInput<I[K]> }
  & { [K in Exclude<keyof I, RequiredKeys<I>>]?: BuilderInput<I[K]> };

/** What a builder method returns: a handle per output, plus, for a one-output node, that output's handle itself. */
export type NodeHandles<O extends OutputSpecs> =
  & { readonly [K in keyof O]: OutputHandle<O[K]> }
  & SoleOutput<O, keyof O>;

type IsUnion<T, U = T> = T extends unknown ? ([U] extends [T] ? false : true) : never;
type SoleOutput<O extends OutputSpecs, K extends keyof O> = [K] extends [never] ? unknown
  : IsUnion<K> extends true ? unknown
  : OutputHandle<O[K]>;

type NodeMethod<D> = D extends NodeDef<infer I, infer O, string>
  ? (inputs: BuilderInputs<I>, id?: string) => NodeHandles<O>
  : never;

/** A builder over node types `D`: a method per type. */
export type Graph<D extends AnyNodeDef = BuiltinNode> =
  & GraphBuilder
  & { readonly [N in D as N["type"]]: NodeMethod<N> };

function handle(node: string, output: string, socket: string): OutputHandle {
  return { node, output, socket, toJSON: () => ({ from: `${node}.${output}` }) };
}

function isHandle(v: unknown): v is OutputHandle {
  return typeof v === "object" && v !== null && "node" in v && "output" in v && "socket" in v;
}

/** The untyped core of a builder; {@link graph} adds one method per node type. */
export class GraphBuilder {
  readonly #nodes: Record<string, NodeSpec> = {};
  readonly #defs = new Map<string, AnyNodeDef>();
  readonly #plugins: string[];
  readonly #extra: AnyNodeDef[];

  constructor(defs: readonly AnyNodeDef[], extra: readonly AnyNodeDef[] = [], plugins: readonly string[] = []) {
    for (const d of [...defs, ...extra]) this.#defs.set(d.type, d);
    this.#extra = [...extra];
    this.#plugins = [...plugins];
  }

  /** Adds a node of any type by name (the typed methods call this). Returns its output handles. */
  addNode(type: string, inputs: Record<string, unknown>, id?: string): Record<string, OutputHandle> {
    const def = this.#defs.get(type);
    if (!def) throw new GraphError([{ source: "graph builder", message: `unknown node type "${type}"` }]);
    if (id === undefined) {
      id = type;
      for (let i = 2; id in this.#nodes; i++) id = `${type}_${i}`;
    } else if (!new RegExp(NODE_ID_PATTERN).test(id)) {
      throw new GraphError([{ source: "graph builder", node: id, message: "invalid node id" }]);
    } else if (id in this.#nodes) {
      throw new GraphError([{ source: "graph builder", node: id, message: "duplicate node id" }]);
    }
    const written: Record<string, InputValue> = {};
    for (const [k, v] of Object.entries(inputs)) {
      if (v === undefined) continue;
      written[k] = isHandle(v) ? v.toJSON() : v as InputValue;
    }
    this.#nodes[id] = { type, inputs: written };
    const outs = Object.entries(def.outputs as Record<string, string>);
    const handles: Record<string, OutputHandle> = {};
    for (const [name, socket] of outs) handles[name] = handle(id, name, socket);
    if (outs.length === 1) {
      const [[name, socket]] = outs;
      Object.assign(handles, { node: id, output: name, socket, toJSON: () => ({ from: `${id}.${name}` }) });
    }
    return handles;
  }

  /** The graph as a version-1 document. */
  toJSON(): GraphFile {
    return {
      version: GRAPH_VERSION,
      ...(this.#plugins.length ? { plugins: [...this.#plugins] } : {}),
      nodes: structuredClone(this.#nodes),
    };
  }

  /** Node types given to {@link graph} beyond the built-in catalog (validation registers them). */
  nodeDefs(): readonly AnyNodeDef[] {
    return this.#extra;
  }
}

/**
 * Starts a typed graph over the built-in nodes, plus `opts.nodes` (node
 * definitions imported from plugins). `opts.plugins` is written into the
 * graph's `plugins` list when it is saved as JSON.
 */
export function graph<const P extends readonly AnyNodeDef[] = []>(
  opts: { nodes?: P; plugins?: readonly string[] } = {},
): Graph<BuiltinNode | P[number]> {
  const b = new GraphBuilder(builtinNodes, opts.nodes ?? [], opts.plugins ?? []);
  for (const d of [...builtinNodes, ...(opts.nodes ?? [])]) {
    if (!IDENT.test(d.type)) continue; // rejected by validation with a clear message
    Object.defineProperty(b, d.type, {
      value: (inputs: Record<string, unknown>, id?: string) => b.addNode(d.type, inputs, id),
      enumerable: false,
    });
  }
  return b as Graph<BuiltinNode | P[number]>;
}
