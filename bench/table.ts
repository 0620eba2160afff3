/** Tables the benchmarks print: aligned plain text for the terminal, Markdown for the README. */

/** Number formatting shared by the benchmarks: `-` for a missing value. */
export function fmt(x: number | null | undefined, digits = 2): string {
  return x === null || x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(digits);
}

/** A ratio as `4.25x`, `-` when missing. */
export function times(x: number | null | undefined, digits = 2): string {
  const s = fmt(x, digits);
  return s === "-" ? s : `${s}x`;
}

/**
 * Plain text: each column as wide as its widest cell, two spaces apart; the columns in `left` are
 * left-aligned (the others right-aligned, for numbers).
 */
export function textTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  left: ReadonlySet<number> = new Set([0]),
): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: readonly string[]) =>
    header.map((_, i) => (left.has(i) ? (r[i] ?? "").padEnd(widths[i]) : (r[i] ?? "").padStart(widths[i])))
      .join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/**
 * A Markdown table padded as `deno fmt` pads it (so a README holding it stays formatted); the
 * columns in `left` are left-aligned, the others right-aligned. `|` in a cell is escaped.
 */
export function markdownTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  left: ReadonlySet<number> = new Set([0]),
): string {
  const esc = (s: string) => s.replaceAll("|", "\\|");
  const cells = [header, ...rows].map((r) => header.map((_, i) => esc(r[i] ?? "")));
  const widths = header.map((_, i) => Math.max(3, ...cells.map((r) => r[i].length)));
  const line = (r: readonly string[]) =>
    `| ${r.map((c, i) => (left.has(i) ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ")} |`;
  const rule = `| ${widths.map((w, i) => (left.has(i) ? "-".repeat(w) : "-".repeat(w - 1) + ":")).join(" | ")} |`;
  return [line(cells[0]), rule, ...cells.slice(1).map(line)].join("\n");
}
