/**
 * `--set node.input=value` overrides. The value is parsed by the input's
 * declared type (integer, number, boolean, string, enum); a socket input takes
 * a reference `other_node.output`. Range and enum checks then happen in
 * schema validation, reported against the `--set` that caused them.
 */

import type { InputSpec, JsonSchema } from "../plugins/node.ts";
import { isSocketInput } from "../plugins/node.ts";
import type { NodeRegistry } from "../plugins/plugin.ts";
import { type Diagnostic, didYouMean, GraphError, pointer } from "./errors.ts";
import type { GraphFile, InputValue, NodeSpec } from "./format.ts";

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
  overrides: readonly string[],
  registry: NodeRegistry,
  origins: Map<string, string>,
): GraphFile {
  const nodes: Record<string, NodeSpec> = structuredClone(doc.nodes) as Record<string, NodeSpec>;
  const diags: Diagnostic[] = [];
  for (const o of overrides) {
    const source = `--set ${o}`;
    const m = /^([^.=]+)\.([^=]+)=(.*)$/s.exec(o);
    if (!m) {
      diags.push({ source, message: `expected node.input=value, e.g. --set sampler.seed=42` });
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
      if (isSocketInput(decl) || text.trimStart().startsWith("{")) {
        const from = text.trim().startsWith("{") ? JSON.parse(text).from : text.trim();
        value = { from };
      } else {
        value = parseValue(text, decl.schema);
      }
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
