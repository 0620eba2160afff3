/**
 * `--set node.input=value` overrides. The value is parsed by the input's
 * declared type (integer, number, boolean, string, enum) and always stays a
 * literal there (`--set positive.text="{red|blue} cat"` is text); a socket input
 * (which takes no literal) takes a reference `other_node.output`. Wiring any
 * input to another node's output is written `--set-ref node.input=other_node.output`
 * ({ ref: "node.input=other_node.output" } here). Range and enum checks then happen
 * in schema validation, reported against the `--set` that caused them.
 */

import type { InputSpec, JsonSchema } from "../plugins/node.ts";
import { isSocketInput } from "../plugins/node.ts";
import type { NodeRegistry } from "../plugins/plugin.ts";
import { type Diagnostic, didYouMean, GraphError, pointer } from "./errors.ts";
import type { GraphFile, InputValue, NodeSpec } from "./format.ts";

/**
 * One override: `"node.input=value"` as `--set` gives it (a literal; a reference for a socket input),
 * or `{ ref: "node.input=other_node.output" }` as `--set-ref` gives it (a reference for any input).
 */
export type Override = string | { readonly ref: string };

/** How an override is written on the command line, for messages. */
export function overrideSource(o: Override): string {
  return typeof o === "string" ? `--set ${o}` : `--set-ref ${o.ref}`;
}

/** Parses a command-line string as a value of `schema`; throws a message on mismatch. */
export function parseValue(text: string, schema: JsonSchema): InputValue {
  const type = schema.type ?? (schema.enum?.every((e) => typeof e === "number") ? "number" : "string");
  switch (type) {
    case "integer":
      if (!/^[+-]?\d+$/.test(text.trim())) throw new Error(`expected an integer, got "${text}"`);
      return Number(text);
    case "number": {
      const n = Number(text);
      if (text.trim() === "" || !Number.isFinite(n)) throw new Error(`expected a number, got "${text}"`);
      return n;
    }
    case "boolean":
      if (/^(true|1|yes|on)$/i.test(text)) return true;
      if (/^(false|0|no|off)$/i.test(text)) return false;
      throw new Error(`expected true or false, got "${text}"`);
    case "array":
      try {
        const v = JSON.parse(text);
        if (!Array.isArray(v)) throw new Error();
        return v;
      } catch {
        throw new Error(`expected a JSON array, got "${text}"`);
      }
    default:
      return text;
  }
}

/**
 * Returns a copy of `doc` with the overrides applied. `origins` receives, for
 * each overridden input's JSON pointer, the `--set` text (so later errors name it).
 * Throws {@link GraphError} for malformed overrides, unknown nodes or inputs, and values of the wrong type.
 */
export function applyOverrides(
  doc: GraphFile,
  overrides: readonly Override[],
  registry: NodeRegistry,
  origins: Map<string, string>,
): GraphFile {
  const nodes: Record<string, NodeSpec> = structuredClone(doc.nodes) as Record<string, NodeSpec>;
  const diags: Diagnostic[] = [];
  for (const o of overrides) {
    const source = overrideSource(o);
    const isRef = typeof o !== "string";
    const m = /^([^.=]+)\.([^=]+)=(.*)$/s.exec(isRef ? o.ref : o);
    if (!m) {
      const example = isRef ? "--set-ref sampler.latent=encode.latent" : "--set sampler.seed=42";
      diags.push({ source, message: `expected node.input=${isRef ? "node.output" : "value"}, e.g. ${example}` });
      continue;
    }
    const [, id, input, text] = m;
    const spec = nodes[id];
    if (!spec) {
      const ids = Object.keys(nodes);
      diags.push({
        source,
        node: id,
        message: `no such node in the graph${didYouMean(id, ids)}; nodes are: ${ids.join(", ")}`,
      });
      continue;
    }
    const def = registry.get(spec.type);
    const decl = (def?.inputs as Record<string, InputSpec> | undefined)?.[input];
    if (!def || !decl) {
      const known = Object.keys(def?.inputs ?? {});
      diags.push({
        source,
        node: id,
        input,
        message: `${spec.type} has no such input${didYouMean(input, known)}; inputs are: ${known.join(", ") || "none"}`,
      });
      continue;
    }
    let value: InputValue;
    try {
      value = isRef || isSocketInput(decl) ? { from: text.trim() } : parseValue(text, decl.schema);
    } catch (e) {
      diags.push({ source, node: id, input, message: (e as Error).message });
      continue;
    }
    nodes[id] = { ...spec, inputs: { ...spec.inputs, [input]: value } };
    origins.set(pointer("nodes", id, "inputs", input), source);
  }
  if (diags.length) throw new GraphError(diags);
  return { ...doc, nodes };
}
