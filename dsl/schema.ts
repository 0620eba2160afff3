/**
 * The JSON Schema of graph files, generated from a node registry: one
 * definition per node type with its inputs (value inputs as their JSON Schema,
 * socket inputs as references); every input also accepts a reference.
 * `deno task schema` writes it to `schema/graph.schema.json`.
 */

import type { AnyNodeDef, InputSpec, JsonSchema } from "../plugins/node.ts";
import { isRequiredInput, isSocketInput } from "../plugins/node.ts";
import type { NodeRegistry } from "../plugins/plugin.ts";
import { GRAPH_VERSION, NODE_ID_PATTERN, REF_PATTERN } from "./format.ts";

/** A JSON Schema document (draft-07), as plain data. */
export type SchemaObject = Record<string, unknown>;

/** The `{ "from": "node.output" }` reference object. */
export const REFERENCE_SCHEMA: SchemaObject = {
  type: "object",
  description: 'A reference to another node\'s output: { "from": "<node id>.<output name>" }.',
  required: ["from"],
  properties: { from: { type: "string", pattern: REF_PATTERN, description: '"<node id>.<output name>"' } },
  additionalProperties: false,
};

const ANNOTATIONS = new Set(["description", "default", "title", "examples"]);

function inputSchema(spec: InputSpec): SchemaObject {
  if (isSocketInput(spec)) {
    const desc = `${spec.type}${spec.description ? ": " + spec.description : ""}`;
    return { description: desc, allOf: [{ $ref: "#/definitions/reference" }] };
  }
  const schema = spec.schema as JsonSchema & Record<string, unknown>;
  const annotations: SchemaObject = {};
  const value: SchemaObject = {};
  for (const [k, v] of Object.entries(schema)) (ANNOTATIONS.has(k) ? annotations : value)[k] = v;
  return { ...annotations, if: { type: "object" }, then: { $ref: "#/definitions/reference" }, else: value };
}

/** The schema definition of one node type. */
export function nodeSchema(def: AnyNodeDef): SchemaObject {
  const inputs = Object.entries(def.inputs as Record<string, InputSpec>);
  const required = inputs.filter(([, s]) => isRequiredInput(s)).map(([k]) => k);
  const outputs = Object.entries(def.outputs as Record<string, string>).map(([k, t]) => `${k}: ${t}`).join(", ");
  return {
    type: "object",
    description: `${def.description}${outputs ? ` Outputs: ${outputs}.` : ""}`,
    required: required.length ? ["type", "inputs"] : ["type"],
    properties: {
      type: { const: def.type },
      inputs: {
        type: "object",
        properties: Object.fromEntries(inputs.map(([k, s]) => [k, inputSchema(s)])),
        ...(required.length ? { required } : {}),
        additionalProperties: false,
      },
    },
    additionalProperties: false,
  };
}

/** The top-level fields, with nodes checked only as far as `{ type: string }` (before plugins are loaded). */
export function envelopeSchema(): SchemaObject {
  return {
    $schema: "http://json-schema.org/draft-07/schema#",
    type: "object",
    required: ["version", "nodes"],
    properties: {
      $schema: { type: "string", description: "The schema this file follows (for editors)." },
      version: { const: GRAPH_VERSION, description: `Graph format version; this sdflow reads ${GRAPH_VERSION}.` },
      plugins: {
        type: "array",
        description: "Plugin modules (paths relative to this file, or URLs) that add node types or backends.",
        items: { type: "string", minLength: 1 },
      },
      nodes: {
        type: "object",
        description: "The nodes, by id. Inputs refer to other nodes' outputs by id and output name.",
        minProperties: 1,
        propertyNames: { pattern: NODE_ID_PATTERN },
        additionalProperties: {
          type: "object",
          required: ["type"],
          properties: { type: { type: "string" }, inputs: { type: "object" } },
        },
      },
    },
    additionalProperties: false,
  };
}

/** The full graph schema for the node types in `registry`. */
export function graphSchema(registry: NodeRegistry): SchemaObject {
  const env = envelopeSchema();
  const defs = registry.defs();
  const definitions: SchemaObject = { reference: REFERENCE_SCHEMA };
  for (const d of defs) definitions[`node_${d.type}`] = nodeSchema(d);
  definitions.node = {
    type: "object",
    required: ["type"],
    properties: {
      type: { enum: defs.map((d) => d.type), description: "The node type." },
      inputs: { type: "object", description: "Input values, or references to other nodes' outputs." },
    },
    allOf: defs.map((d) => ({
      if: { properties: { type: { const: d.type } }, required: ["type"] },
      then: { $ref: `#/definitions/node_${d.type}` },
    })),
  };
  const props = env.properties as Record<string, SchemaObject>;
  return {
    $schema: "http://json-schema.org/draft-07/schema#",
    title: "sdflow pipeline graph",
    ...env,
    properties: { ...props, nodes: { ...props.nodes, additionalProperties: { $ref: "#/definitions/node" } } },
    definitions,
  };
}
