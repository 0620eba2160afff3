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

/** Longest name or value echoed into a message; a hostile file's 50 MB string must not become a 50 MB error. */
export const MAX_ECHO = 80;

/** `s` itself, or its first {@link MAX_ECHO} characters and how long it really is. */
export function clip(s: string, max = MAX_ECHO): string {
  return s.length <= max ? s : `${s.slice(0, max)}… (${s.length} characters)`;
}

/** Formats a diagnostic as one line. */
export function formatDiagnostic(d: Diagnostic): string {
  let where = clip(d.source ?? "graph", 4 * MAX_ECHO);
  if (d.line !== undefined) where += `:${d.line}:${d.column ?? 1}`;
  const subject: string[] = [];
  if (d.node !== undefined) subject.push(`node "${clip(d.node)}"`);
  if (d.input !== undefined) subject.push(`input "${clip(d.input)}"`);
  else if (d.field !== undefined) subject.push(`field "${clip(d.field)}"`);
  const at = d.pointer !== undefined ? ` (at ${clip(d.pointer || "/", 4 * MAX_ECHO)})` : "";
  return `${where}: ${subject.length ? subject.join(" ") + ": " : ""}${clip(d.message, 1000)}${at}`;
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

/** Words longer than this get no "did you mean": no name is that long, and the distance costs length². */
const MAX_SUGGEST_LENGTH = 64;

/** The closest of `candidates` to `word` (edit distance ≤ 1/3 of its length), for "did you mean". */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  if (word.length > MAX_SUGGEST_LENGTH) return undefined;
  const limit = Math.max(1, Math.floor(word.length / 3));
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    // The distance is at least the difference in length: skip the table for hopeless candidates.
    if (Math.abs(c.length - word.length) > limit || c.length > MAX_SUGGEST_LENGTH) continue;
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= limit ? best : undefined;
}

/** Optimal string alignment distance: edits and adjacent transpositions ("vea" → "vae" is 1). */
export function editDistance(a: string, b: string): number {
  // Three rolling rows (the transposition looks two rows back): O(|b|) memory.
  let prev2 = new Array<number>(b.length + 1).fill(0);
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  let row = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j], prev2[j - 2] + 1);
      }
    }
    [prev2, prev, row] = [prev, row, prev2];
  }
  return prev[b.length];
}

/** ` (did you mean "x"?)` or "". */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const c = closest(word, candidates);
  return c ? ` (did you mean "${c}"?)` : "";
}
