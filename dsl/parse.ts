/**
 * Reads graph JSON text strictly: syntax errors with line and column, and
 * duplicate keys (which `JSON.parse` silently drops) reported by path.
 */

import { type JSONPath, type ParseErrorCode, printParseErrorCode, visit } from "jsonc-parser";
import { type Diagnostic, GraphError, pointer } from "./errors.ts";

function lineCol(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) [line, start] = [line + 1, i + 1];
  }
  return { line, column: offset - start + 1 };
}

const SYNTAX: Partial<Record<string, string>> = {
  InvalidSymbol: "unexpected character",
  InvalidNumberFormat: "invalid number",
  PropertyNameExpected: "expected a property name in double quotes",
  ValueExpected: "expected a value",
  ColonExpected: "expected ':'",
  CommaExpected: "expected ',' (or a closing bracket)",
  CloseBraceExpected: "expected '}'",
  CloseBracketExpected: "expected ']'",
  EndOfFileExpected: "unexpected content after the end of the document",
  InvalidCommentToken: "comments are not allowed in JSON",
  UnexpectedEndOfComment: "comments are not allowed in JSON",
  UnexpectedEndOfString: "unterminated string",
  UnexpectedEndOfNumber: "unterminated number",
  InvalidUnicode: "invalid unicode escape",
  InvalidEscapeCharacter: "invalid escape character",
  InvalidCharacter: "invalid character in string",
};

/** Names the subject of a JSON path in graph terms (node, input or field). */
export function describePath(path: readonly (string | number)[]): Pick<Diagnostic, "node" | "input" | "field"> {
  if (path[0] === "nodes" && path.length >= 2) {
    const node = String(path[1]);
    if (path[2] === "inputs" && path.length >= 4) return { node, input: String(path[3]) };
    if (path.length >= 3) return { node, field: String(path[2]) };
    return { node };
  }
  return path.length ? { field: String(path[0]) } : {};
}

/**
 * Deepest nesting of objects and arrays a graph may have. A graph is four levels deep plus its
 * input values; the JSON parser recurses once per level, so thousands of levels would overflow
 * its stack ("Maximum call stack size exceeded", with no file name).
 */
export const MAX_GRAPH_DEPTH = 64;

/**
 * The offset of the first bracket that opens level `max + 1` of `text`, or -1 when it nests no
 * deeper than `max`. Scans iteratively, skipping strings, so it is safe on any input.
 */
export function tooDeepAt(text: string, max: number): number {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) { // '"': skip the string, honouring backslash escapes
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
    } else if (c === 0x7b || c === 0x5b) { // '{' '['
      if (++depth > max) return i;
    } else if (c === 0x7d || c === 0x5d) depth--; // '}' ']'
  }
  return -1;
}

/** Whether a parsed value nests objects and arrays deeper than `max` (iterative: safe on any depth). */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  const seen = new Set<object>();
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== "object" || seen.has(v)) continue;
    if (depth + 1 > max) return true;
    seen.add(v);
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

/** The diagnostic for a document nested deeper than {@link MAX_GRAPH_DEPTH}. */
export function tooDeepDiagnostic(source: string, position?: { line: number; column: number }): Diagnostic {
  return {
    source,
    ...position,
    message: `nested more than ${MAX_GRAPH_DEPTH} levels deep; a graph is a few levels of objects ` +
      `("nodes" → node → "inputs" → value), so this is not a graph file`,
  };
}

/**
 * Parses graph JSON. Throws {@link GraphError} on a syntax error, a
 * duplicate key (a duplicate node id, input or field) or nesting deeper than
 * {@link MAX_GRAPH_DEPTH}.
 */
export function parseGraphText(text: string, source = "graph.json"): unknown {
  const deep = tooDeepAt(text, MAX_GRAPH_DEPTH);
  if (deep >= 0) throw new GraphError([tooDeepDiagnostic(source, lineCol(text, deep))]);
  const diagnostics: Diagnostic[] = [];
  const seen: Map<string, number>[] = [];
  visit(text, {
    onObjectBegin: () => void seen.push(new Map()),
    onObjectEnd: () => void seen.pop(),
    onObjectProperty: (prop: string, offset: number, _len, _line, _col, pathSupplier?: () => JSONPath) => {
      const keys = seen[seen.length - 1];
      const first = keys.get(prop);
      if (first === undefined) {
        keys.set(prop, offset);
        return;
      }
      const path = [...(pathSupplier?.() ?? []), prop];
      const subject = describePath(path);
      const what = path.length === 2 && path[0] === "nodes" ? "duplicate node id" : `duplicate key "${prop}"`;
      diagnostics.push({
        source,
        ...lineCol(text, offset),
        ...subject,
        message: `${what} (first defined at line ${lineCol(text, first).line})`,
        pointer: pointer(...path),
      });
    },
    onError: (code: ParseErrorCode, offset: number) => {
      if (diagnostics.some((d) => d.message.startsWith("invalid JSON"))) return;
      const name = printParseErrorCode(code);
      diagnostics.push({ source, ...lineCol(text, offset), message: `invalid JSON: ${SYNTAX[name] ?? name}` });
    },
  }, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  if (!text.trim()) throw new GraphError([{ source, message: "invalid JSON: the file is empty" }]);
  const syntax = diagnostics.filter((d) => d.message.startsWith("invalid JSON"));
  if (syntax.length) throw new GraphError(syntax.slice(0, 1));
  if (diagnostics.length) throw new GraphError(diagnostics);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new GraphError([{ source, message: `invalid JSON: ${(e as Error).message}` }]);
  }
}
