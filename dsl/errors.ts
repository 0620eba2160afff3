/**
 * Graph diagnostics: one line per problem, naming the file, the node, the
 * field and the JSON pointer, e.g.
 * `graph.json: node "sampler" input "steps": must be >= 1, got 0 (at /nodes/sampler/inputs/steps)`.
 */

/** One problem found in a graph. */
export interface Diagnostic {
  readonly message: string;
  /** The file (or `--set …` / flag) the problem comes from. */
  readonly source?: string;
  readonly node?: string;
  /** The node input concerned. */
  readonly input?: string;
  /** A field that is not an input (`type`, `version`, `plugins`…). */
  readonly field?: string;
  /** JSON pointer into the graph document. */
  readonly pointer?: string;
  /** 1-based position in the source text, when known. */
  readonly line?: number;
  readonly column?: number;
}

/** Formats a diagnostic as one line. */
export function formatDiagnostic(d: Diagnostic): string {
  let where = d.source ?? "graph";
  if (d.line !== undefined) where += `:${d.line}:${d.column ?? 1}`;
  const subject: string[] = [];
  if (d.node !== undefined) subject.push(`node "${d.node}"`);
  if (d.input !== undefined) subject.push(`input "${d.input}"`);
  else if (d.field !== undefined) subject.push(`field "${d.field}"`);
  const at = d.pointer !== undefined ? ` (at ${d.pointer || "/"})` : "";
  return `${where}: ${subject.length ? subject.join(" ") + ": " : ""}${d.message}${at}`;
}

/** A graph that cannot be loaded or run as written. `diagnostics` has every problem found. */
export class GraphError extends Error {
  readonly diagnostics: readonly Diagnostic[];

  constructor(diagnostics: readonly Diagnostic[]) {
    super(diagnostics.map(formatDiagnostic).join("\n"));
    this.name = "GraphError";
    this.diagnostics = diagnostics;
  }
}

/** Escapes one JSON pointer segment (RFC 6901). */
export function pointerSegment(s: string): string {
  return s.replaceAll("~", "~0").replaceAll("/", "~1");
}

/** Builds a JSON pointer from segments. */
export function pointer(...segments: (string | number)[]): string {
  return segments.map((s) => "/" + pointerSegment(String(s))).join("");
}

/** Splits a JSON pointer into segments. */
export function splitPointer(p: string): string[] {
  return p === "" ? [] : p.slice(1).split("/").map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"));
}

/** The closest of `candidates` to `word` (edit distance ≤ 1/3 of its length), for "did you mean". */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

/** Optimal string alignment distance: edits and adjacent transpositions ("vea" → "vae" is 1). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => i || j));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/** ` (did you mean "x"?)` or "". */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const c = closest(word, candidates);
  return c ? ` (did you mean "${c}"?)` : "";
}
