/**
 * The node API: what a pipeline node declares (typed inputs and outputs), how
 * it runs, and how it estimates its cost for `deno task plan`.
 *
 * A node's inputs are either *values* described by JSON Schema (numbers,
 * strings, enums…) or *sockets* (typed connections such as `LATENT` or `VAE`)
 * that must be wired to another node's output of the same type. The types are
 * carried through to `run`, and to the typed graph builder in `dsl/`, so a
 * miswired graph fails to compile.
 *
 * @example
 * ```ts
 * import { defineNode } from "./node.ts";
 *
 * export const invert = defineNode({
 *   type: "invert",
 *   description: "Inverts the colours of every image in a batch.",
 *   inputs: {
 *     images: { type: "IMAGE" },
 *     amount: { schema: { type: "number", minimum: 0, maximum: 1, default: 1 } },
 *   },
 *   outputs: { images: "IMAGE" },
 *   run({ images, amount }) {
 *     return Promise.resolve({ images: images.map((im) => ({ ...im, data: im.data.map((v) => v + amount * (255 - 2 * v)) })) });
 *   },
 * });
 * ```
 */

import type { Checkpoint, Conditioning, Denoiser, Image, Latent, TextEncoder, Vae } from "../models/types.ts";
import type { OpEstimate } from "../models/estimate.ts";
import type { Upscaler } from "../models/esrgan/upscaler.ts";
import type { BackendManifest } from "./plugin.ts";

/**
 * The socket types and the JavaScript values they carry. `IMAGE` is a batch.
 * Plugins may use further socket names (UPPER_SNAKE); they carry `unknown`.
 */
export interface SocketTypes {
  LATENT: Latent;
  IMAGE: readonly Image[];
  CONDITIONING: Conditioning;
  MODEL: Denoiser;
  CLIP: TextEncoder;
  VAE: Vae;
  CHECKPOINT: Checkpoint;
  /** An image upscaling model (ESRGAN). */
  UPSCALE_MODEL: Upscaler;
  INT: number;
  FLOAT: number;
  STRING: string;
  BOOLEAN: boolean;
}

/** A built-in socket type name. */
export type SocketType = Extract<keyof SocketTypes, string>;

/** The value a socket of type `T` carries. */
export type SocketValue<T extends string> = T extends SocketType ? SocketTypes[T] : unknown;

/** Socket names must look like this (`LATENT`, `MY_MASK`). */
export const SOCKET_NAME: RegExp = /^[A-Z][A-Z0-9_]*$/;
/** Node type and input/output names must look like this (`clip_encode`). */
export const IDENT: RegExp = /^[a-z][a-z0-9_]*$/;

/** The subset of JSON Schema (draft-07) that value inputs use. */
export interface JsonSchema {
  readonly type?: "integer" | "number" | "string" | "boolean" | "array";
  readonly enum?: readonly (string | number | boolean)[];
  readonly const?: string | number | boolean;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly exclusiveMaximum?: number;
  readonly multipleOf?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: string;
  readonly items?: JsonSchema;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly default?: unknown;
  readonly description?: string;
  readonly title?: string;
  readonly examples?: readonly unknown[];
}

/** The TypeScript type of a value described by schema `S`. */
export type SchemaValue<S> = S extends { enum: readonly (infer E)[] } ? E
  : S extends { type: "integer" | "number" } ? number
  : S extends { type: "string" } ? string
  : S extends { type: "boolean" } ? boolean
  : S extends { type: "array"; items: infer It } ? SchemaValue<It>[]
  : unknown;

/** A value input: a literal in the graph (or a reference to an INT/FLOAT/STRING/BOOLEAN output). */
export interface ValueInputSpec<S extends JsonSchema = JsonSchema> {
  readonly schema: S;
  readonly kind?: "value";
  /** Without a default, a value input is required unless this is true. */
  readonly optional?: boolean;
}

/** A socket input: must be wired to another node's output of the same type. */
export interface SocketInputSpec<T extends string = string> {
  readonly type: T;
  readonly optional?: boolean;
  readonly description?: string;
}

/** One input declaration. */
export type InputSpec = ValueInputSpec | SocketInputSpec;
/** A node's inputs by name. */
export type InputSpecs = Readonly<Record<string, InputSpec>>;
/** A node's outputs: name → socket type. */
export type OutputSpecs = Readonly<Record<string, string>>;

/** Whether an input must be given in a graph. */
export type IsRequired<S> = S extends { optional: true } ? false
  : S extends { schema: { default: unknown } } ? false
  : true;

type RuntimeInput<S> = S extends { type: infer T extends string }
  ? (S extends { optional: true } ? SocketValue<T> | undefined : SocketValue<T>)
  : S extends { schema: infer Sc } ? (IsRequired<S> extends true ? SchemaValue<Sc>
      : Sc extends { default: unknown } ? SchemaValue<Sc>
      : SchemaValue<Sc> | undefined)
  : never;

/** What `run` receives: values (defaults applied) and socket values. */
export type RunInputs<I extends InputSpecs> = { -readonly [K in keyof I]: RuntimeInput<I[K]> };

/** What `run` returns: one value per declared output. */
export type RunOutputs<O extends OutputSpecs> = { -readonly [K in keyof O]: SocketValue<O[K]> };

/** Static facts about a value flowing between nodes, propagated by estimates (shapes, the checkpoint path…). */
export interface ValueMeta {
  readonly shape?: readonly number[];
  readonly checkpoint?: string;
  readonly [key: string]: unknown;
}

type EstimateInput<S> = S extends { type: string } ? ValueMeta | undefined : RuntimeInput<S>;

/** What `estimate` receives: literal values, and for sockets what the upstream estimate said about them. */
export type EstimateInputs<I extends InputSpecs> = { -readonly [K in keyof I]: EstimateInput<I[K]> };

/** One compute op (or group of identical ops) a node lowers to (the model layer's estimates have this form). */
export type { OpEstimate };

/** A node's estimated cost, and facts about its outputs for the nodes downstream. */
export interface NodeEstimate {
  readonly ops: readonly OpEstimate[];
  /** Peak resident memory while the node runs; default: the largest op's bytes. */
  readonly peakBytes?: number;
  readonly outputs?: Readonly<Record<string, ValueMeta>>;
  /** Why the estimate is partial or missing, if it is. */
  readonly note?: string;
}

/** Options a run passes to every node (from the CLI: `-t`, `--backend`). */
export interface RunSettings {
  readonly threads?: number;
  /** `--precision`: "f32" (default) or "bf16" for the backend's GEMM ops (models' LoadOptions.precision). */
  readonly precision?: "f32" | "bf16";
  /** `--backend`: a backend name (`cpu`, or one a plugin of the graph registers) or a library path. */
  readonly backend?: string;
  /** Backends the graph's plugins register (set by the runner), selectable by name. */
  readonly pluginBackends?: readonly BackendManifest[];
  /**
   * `--profile`: model nodes pass this to the model layer, which calls it after every network
   * run with the per-op wall times of `Program.profile()` and the run's wall time.
   */
  readonly onProfile?: (
    network: string,
    ops: readonly { kind: string; label?: string; note?: string; flops: number; ms: number }[],
    runMs: number,
  ) => void;
}

/**
 * How pictures were generated, as `save_image` writes it into the `parameters` chunk (sd-webui infotext).
 * A node that generates — the built-in `sampler`, or a plugin's sampler — publishes it with
 * `ctx.publish({ generation })`; `save_image` takes it from the nearest ancestor that published one,
 * whatever that node's type.
 */
export interface GenerationInfo {
  readonly prompt: string;
  readonly negativePrompt?: string;
  readonly steps: number;
  /** Display names as sd-webui writes them: "Euler a", "Karras", "GPU" (or the method's own name). */
  readonly sampler: string;
  readonly scheduler?: string;
  readonly cfgScale: number;
  /** The seed of each picture of the batch, in order (picture i of a batch from seed s used s + i). */
  readonly seeds: readonly number[];
  /** The checkpoint's name. */
  readonly model?: string;
  readonly clipSkip?: number;
  /** img2img strength (below 1). */
  readonly denoisingStrength?: number;
  readonly rng?: string;
}

/** The {@link GenerationInfo} published under `generation` by the nearest ancestor that published one. */
export function findGeneration(upstream: readonly UpstreamNode[]): GenerationInfo | undefined {
  const g = upstream.find((u) => isGenerationInfo(u.meta.generation))?.meta.generation;
  return g as GenerationInfo | undefined;
}

function isGenerationInfo(v: unknown): v is GenerationInfo {
  const g = v as Partial<GenerationInfo> | undefined;
  return typeof g === "object" && g !== null && typeof g.prompt === "string" && Array.isArray(g.seeds) &&
    g.seeds.length > 0 && typeof g.steps === "number" && typeof g.sampler === "string" &&
    typeof g.cfgScale === "number";
}

/** Facts about an ancestor node, for nodes that describe their provenance (save_image's `parameters`). */
export interface UpstreamNode {
  readonly id: string;
  readonly type: string;
  /** The node's literal input values (defaults applied). */
  readonly values: Readonly<Record<string, unknown>>;
  /** Wired inputs: input name → `{ node, output }`. */
  readonly refs: Readonly<Record<string, { readonly node: string; readonly output: string }>>;
  /** What the node published with `ctx.publish` (e.g. the seed a random seed resolved to). */
  readonly meta: Readonly<Record<string, unknown>>;
}

/** What a running node may use besides its inputs. */
export interface NodeContext {
  readonly nodeId: string;
  readonly settings: RunSettings;
  readonly signal: AbortSignal;
  /**
   * Reports progress of a long node (drawn as a progress bar by the CLI). With `unit: "step"`
   * each call marks the end of one step (a sampling step), and `-v` reports time per step.
   */
  progress(done: number, total: number, unit?: string): void;
  /** A line for the user (printed above progress bars). */
  log(message: string): void;
  /**
   * Records facts about this run of the node (kept with cached outputs; seen downstream via `upstream`).
   * A fact published under the name of one of the node's value inputs is the value the node actually
   * used (a random seed drawn for `seed: -1`); {@link NodeContext.graph} records it in place of the literal.
   */
  publish(meta: Record<string, unknown>): void;
  /** Every ancestor of this node, nearest first. */
  upstream(): readonly UpstreamNode[];
  /**
   * The graph that makes this node's inputs: this node and its ancestors as a graph file (version,
   * the graph's plugins as resolved URLs, literal inputs as the run used them), e.g. to store with an image.
   */
  graph(): ProvenanceGraph;
  /**
   * Registers cleanup of resources behind this node's outputs (a loaded checkpoint's native memory):
   * it runs when the cached outputs are evicted or the cache is cleared (at the latest when the CLI
   * exits), or when the run ends if the outputs are not cached. `info.bytes` is the memory the resource
   * holds (a checkpoint's weights): a server's cache keeps such outputs within its memory budget.
   */
  onDispose(fn: () => void, info?: { bytes?: number }): void;
  /**
   * Set when the run's caller shows live previews (the server's event stream): a sampler passes it the
   * latent [1, C, h, w] of each step, whatever its own `preview` input says; the caller renders it.
   */
  readonly livePreview?: (latent: Latent, info: LivePreviewInfo) => Promise<void> | void;
}

/** Where a {@link NodeContext.livePreview} latent comes from. */
export interface LivePreviewInfo {
  /** Step just finished (1-based) of `steps`, for picture `image` of the batch. */
  readonly step: number;
  readonly steps: number;
  readonly image: number;
  /** The model family the latent belongs to (picks the latent-to-RGB projection). */
  readonly family: "sd1" | "sd2" | "sdxl";
}

/** A graph file as {@link NodeContext.graph} returns it (the shape of `dsl/format.ts`'s `GraphFile`). */
export interface ProvenanceGraph {
  readonly version: number;
  readonly plugins?: readonly string[];
  readonly nodes: Readonly<
    Record<string, { readonly type: string; readonly inputs: Readonly<Record<string, unknown>> }>
  >;
}

/** The values of a node's literal inputs, as `fingerprint`/`cacheable` see them. */
export type NodeValues = Readonly<Record<string, unknown>>;

/** A node type. Build with {@link defineNode} to keep its input and output types. */
export interface NodeDef<
  I extends InputSpecs = InputSpecs,
  O extends OutputSpecs = OutputSpecs,
  T extends string = string,
> {
  /** The name graphs use, e.g. `clip_encode` (lower snake case). */
  readonly type: T;
  /** One or two sentences for the schema, the docs and editors. */
  readonly description: string;
  readonly category?: string;
  readonly inputs: I;
  readonly outputs: O;
  run(inputs: RunInputs<I>, ctx: NodeContext): Promise<RunOutputs<O>>;
  /** Cost model for `deno task plan`. */
  estimate?(inputs: EstimateInputs<I>): NodeEstimate | Promise<NodeEstimate>;
  /**
   * Extra identity for the output cache beyond the input values: a loader
   * returns the file's size and mtime so an edited file is reloaded.
   */
  fingerprint?(values: NodeValues): unknown | Promise<unknown>;
  /** False (or a function returning false) when outputs must not be reused, e.g. a random seed. */
  readonly cacheable?: boolean | ((values: NodeValues) => boolean);
  /** Sinks (files written) always run and are never cached. */
  readonly sideEffects?: boolean;
  /**
   * Checks made before any node of a run starts, from the literal input values (a wired input is absent
   * here), so that a run does not fail after minutes of work for a reason known at the start: save_image
   * checks that its path can be written. Throw ({@link NodeInputError} names the input) to stop the run.
   */
  preflight?(values: NodeValues): void | Promise<void>;
}

/** Any node definition, whatever its inputs and outputs. */
// deno-lint-ignore no-explicit-any
export type AnyNodeDef = NodeDef<any, any, string>;

/**
 * Declares a node type, keeping the literal types of its inputs and outputs so
 * that `run` is typed and the graph builder can check wiring.
 *
 * @example
 * ```ts
 * const scale = defineNode({
 *   type: "scale_latent",
 *   description: "Multiplies a latent by a factor.",
 *   inputs: { latent: { type: "LATENT" }, factor: { schema: { type: "number", default: 1 } } },
 *   outputs: { latent: "LATENT" },
 *   run: ({ latent, factor }) =>
 *     Promise.resolve({ latent: { shape: latent.shape, data: latent.data.map((v) => v * factor) } }),
 * });
 * ```
 */
export function defineNode<const T extends string, const I extends InputSpecs, const O extends OutputSpecs>(
  def: NodeDef<I, O, T>,
): NodeDef<I, O, T> {
  return def;
}

/** Whether an input declaration is a socket. */
export function isSocketInput(spec: InputSpec): spec is SocketInputSpec {
  return typeof (spec as SocketInputSpec).type === "string";
}

/** Whether a graph must give this input. */
export function isRequiredInput(spec: InputSpec): boolean {
  if (spec.optional) return false;
  return isSocketInput(spec) || !("default" in spec.schema);
}

/** The socket type an output must have to feed a value input with this schema (INT into integer…). */
export function socketsForSchema(schema: JsonSchema): readonly string[] {
  switch (schema.type) {
    case "integer":
      return ["INT"];
    case "number":
      return ["FLOAT", "INT"];
    case "string":
      return ["STRING"];
    case "boolean":
      return ["BOOLEAN"];
    default:
      return [];
  }
}

/**
 * The brand every {@link NodeInputError} carries. `Symbol.for` gives the same symbol in every copy
 * of this module (a plugin may import node.ts from another checkout, version or URL), where
 * `instanceof` would compare two different classes.
 */
export const NODE_INPUT_ERROR: unique symbol = Symbol.for("sdflow.NodeInputError");

/**
 * Thrown by a node when an input is unusable; the runner names the node and input. Recognised
 * from any copy of this module: `e instanceof NodeInputError` and {@link isNodeInputError} check
 * the brand, not the class.
 */
export class NodeInputError extends Error {
  readonly [NODE_INPUT_ERROR] = true;
  /** A stable code for code that checks errors without importing this module. */
  readonly code = "SDFLOW_NODE_INPUT";
  constructor(readonly input: string, message: string) {
    super(message);
    this.name = "NodeInputError";
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // Subclasses keep ordinary instanceof; NodeInputError itself recognises any branded copy.
    if (this !== NodeInputError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return isNodeInputError(value);
  }
}

/** Whether `e` is a {@link NodeInputError} from any copy of this module. */
export function isNodeInputError(e: unknown): e is NodeInputError {
  return e instanceof Error && (e as unknown as Record<symbol, unknown>)[NODE_INPUT_ERROR] === true &&
    typeof (e as { input?: unknown }).input === "string";
}
