/**
 * The graph file format (version 1):
 *
 * ```json
 * {
 *   "$schema": "../schema/graph.schema.json",
 *   "version": 1,
 *   "plugins": ["./my_nodes.ts"],
 *   "nodes": {
 *     "checkpoint": { "type": "checkpoint", "inputs": { "path": "model.safetensors" } },
 *     "positive": { "type": "clip_encode", "inputs": { "clip": { "from": "checkpoint.clip" }, "text": "a cat" } }
 *   }
 * }
 * ```
 *
 * Inputs are literal values or references `{ "from": "<node id>.<output name>" }`:
 * outputs are named, never numbered. There is no layout data.
 */

/** The graph format version this sdflow reads and writes. */
export const GRAPH_VERSION = 1;

/** Node ids: letters, digits, `_` and `-`, not starting with a digit or `-`. */
export const NODE_ID_PATTERN = "^[A-Za-z_][A-Za-z0-9_-]*$";
/** A reference's `from`: `<node id>.<output name>`. */
export const REF_PATTERN = "^[A-Za-z_][A-Za-z0-9_-]*\\.[a-z][a-z0-9_]*$";

/** A reference to another node's named output. */
export interface InputRef {
  readonly from: string;
}

/** An input: a literal or a reference. */
export type InputValue = string | number | boolean | null | readonly unknown[] | InputRef;

/** One node of a graph file. */
export interface NodeSpec {
  readonly type: string;
  readonly inputs?: Readonly<Record<string, InputValue>>;
}

/** A graph file. */
export interface GraphFile {
  readonly $schema?: string;
  readonly version: number;
  readonly plugins?: readonly string[];
  readonly nodes: Readonly<Record<string, NodeSpec>>;
}

/** Whether an input value is a reference. */
export function isRef(v: unknown): v is InputRef {
  return typeof v === "object" && v !== null && !Array.isArray(v) && "from" in v;
}

/** Splits `node.output`; undefined when malformed. */
export function parseRef(from: string): { node: string; output: string } | undefined {
  if (!new RegExp(REF_PATTERN).test(from)) return undefined;
  const dot = from.lastIndexOf(".");
  return { node: from.slice(0, dot), output: from.slice(dot + 1) };
}
