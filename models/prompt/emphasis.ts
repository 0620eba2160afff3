/**
 * sd-webui attention syntax and 77-token chunking, replicating stable-diffusion.cpp
 * (`parse_prompt_attention` in util.cpp, `FrozenCLIPEmbedderWithCustomWords::tokenize`,
 * `Tokenizer::pad_tokens`, `apply_token_weights` in conditioner.hpp).
 *
 * Syntax: `(text)` ×1.1, `[text]` ÷1.1, `(text:1.5)` ×1.5, nesting multiplies, `\(` → `(`,
 * unbalanced openers are closed at the end of the prompt, a stray `)` or `]` stays literal text, a stray
 * `:1.5)` is dropped, and `BREAK`
 * (upper case, whole word) pads the current chunk so the next text starts a new 77-token chunk.
 *
 * sd.cpp quirks kept on purpose, so that the same prompt gives the same conditioning:
 * - weights are float32 and multiplied in float32 (`1.1f`, `1 / 1.1f`, `std::stof`);
 * - only `\(` loses its backslash; `\)`, `\[`, `\]`, `\\` and a lone `\` stay literal text *with* the
 *   backslash (they still do not open or close a group);
 * - matching restarts on the unconsumed suffix after every token (`std::regex_search` on `m.suffix()`),
 *   so `\b` sees the start of the remaining text as a word boundary (e.g. "xBREAK" → "x" + BREAK);
 * - adjacent pieces with equal weight are merged (BREAK pieces carry the marker weight -1, so two
 *   adjacent BREAKs merge into text "BREAKBREAK" with weight -1, as in sd.cpp);
 * - BREAK pads with the EOS id (49407) and weight 1 whatever the pad id of the model.
 * Older sd.cpp builds (before BREAK support) treat BREAK as text: `breakKeyword: false`.
 */

/** One piece of a parsed prompt. `weight === BREAK_WEIGHT && text === "BREAK"` marks a chunk break. */
export interface AttentionPiece {
  text: string;
  weight: number;
}

export const BREAK_WEIGHT = -1;

const f32 = Math.fround;
const ROUND_MULT = f32(1.1);
const SQUARE_MULT = f32(1 / f32(1.1));

// sd.cpp's regexes (ECMAScript grammar in std::regex, the same semantics here). No `g` flag: each search
// runs on the remaining suffix, from its start, exactly as sd.cpp's loop does.
const RE_ATTENTION_BREAK = /\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:([+-]?[.\d]+)\)|\)|\]|\bBREAK\b|[^\\()[\]:B]+|:|\bB/;
const RE_ATTENTION_NO_BREAK = /\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:([+-]?[.\d]+)\)|\)|\]|[^\\()[\]:]+|:/;
const RE_BREAK = /\s*\bBREAK\b\s*/;

export interface ParseOptions {
  /** Recognise `BREAK` (sd.cpp since BREAK support was added; default true). */
  breakKeyword?: boolean;
}

/** `std::stof`: the longest leading decimal number; NaN when there is none (sd.cpp would throw). */
function stof(s: string): number {
  const m = /^[+-]?(\d+\.?\d*|\.\d+)/.exec(s);
  return m ? f32(parseFloat(m[0])) : NaN;
}

/** A prompt weight that cannot be used: it overflows float32, or weighting overflows the embedding. */
export class PromptWeightError extends Error {
  override name = "PromptWeightError";
}

/** Splits a prompt into (text, weight) pieces exactly as stable-diffusion.cpp's `parse_prompt_attention`. */
export function parsePromptAttention(text: string, opts: ParseOptions = {}): AttentionPiece[] {
  const re = (opts.breakKeyword ?? true) ? RE_ATTENTION_BREAK : RE_ATTENTION_NO_BREAK;
  const res: AttentionPiece[] = [];
  const round: number[] = [];
  const square: number[] = [];
  const multiplyRange = (start: number, mult: number) => {
    for (let p = start; p < res.length; p++) res[p].weight = f32(res[p].weight * mult);
  };

  let rest = text;
  for (;;) {
    const m = re.exec(rest);
    if (m === null) break;
    const tok = m[0];
    const weight = m[1];
    if (tok === "(") {
      round.push(res.length);
    } else if (tok === "[") {
      square.push(res.length);
    } else if (weight !== undefined && weight.length > 0) {
      if (round.length > 0) {
        const w = stof(weight);
        // sd.cpp aborts on an unparsable weight such as "(a:.)"; here the group closes with weight 1.
        multiplyRange(round.pop()!, Number.isNaN(w) ? 1 : w);
      }
    } else if (tok === ")" && round.length > 0) {
      multiplyRange(round.pop()!, ROUND_MULT);
    } else if (tok === "]" && square.length > 0) {
      multiplyRange(square.pop()!, SQUARE_MULT);
    } else if (tok === "\\(") {
      res.push({ text: tok.slice(1), weight: 1 });
    } else if (re === RE_ATTENTION_BREAK && RE_BREAK.test(tok)) {
      res.push({ text: "BREAK", weight: BREAK_WEIGHT });
    } else {
      res.push({ text: tok, weight: 1 });
    }
    rest = rest.slice(m.index + tok.length);
  }

  for (const pos of round) multiplyRange(pos, ROUND_MULT);
  for (const pos of square) multiplyRange(pos, SQUARE_MULT);

  if (res.length === 0) res.push({ text: "", weight: 1 });

  for (let i = 0; i + 1 < res.length;) {
    if (res[i].weight === res[i + 1].weight) {
      res[i].text += res[i + 1].text;
      res.splice(i + 1, 1);
    } else {
      i++;
    }
  }
  return res;
}

/** What the chunker needs from a tokenizer (models/clip/tokenizer.ts `ClipTokenizer` fits). */
export interface PromptTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  /** Ids without BOS/EOS. */
  encode(text: string): number[];
}

/** One 77-token window: BOS + up to 75 prompt tokens + EOS, padded. */
export interface TokenChunk {
  readonly ids: Int32Array;
  readonly weights: Float32Array;
}

export interface WeightedTokens {
  readonly chunks: TokenChunk[];
  /** The parsed pieces the tokens came from. */
  readonly pieces: AttentionPiece[];
}

export interface TokenizeWeightedOptions extends ParseOptions {
  /**
   * Id that fills a chunk after EOS: 49407 (EOS) for SD 1.x and SDXL's CLIP-L, 0 for SD 2.x's OpenCLIP
   * (sd.cpp: `CLIPTokenizer(sd_version_is_sd2(version) ? 0 : 49407)`).
   */
  padId?: number;
  /** Window length including BOS and EOS (77 for every SD text encoder). */
  chunkLength?: number;
}

/**
 * Tokenizes a prompt with weights and splits it into windows of `chunkLength` (77) tokens, as sd.cpp
 * does before running the text encoder once per window and concatenating the results:
 * each piece is tokenized on its own; BREAK pads the running token list with EOS (weight 1) up to a
 * multiple of 75; then every 75 tokens become `[BOS, ...75, EOS]`, and the last window is padded to 77
 * with `padId` (weight 1). An empty prompt gives one window `[BOS, EOS, pad × 75]`.
 */
export function tokenizeWeighted(
  prompt: string,
  tokenizer: PromptTokenizer,
  opts: TokenizeWeightedOptions = {},
): WeightedTokens {
  const chunkLength = opts.chunkLength ?? 77;
  const padId = opts.padId ?? tokenizer.eosId;
  const perChunk = chunkLength - 2;
  if (perChunk < 1) throw new Error("tokenizeWeighted: chunkLength must be at least 3");

  const pieces = parsePromptAttention(prompt, opts);
  for (const p of pieces) {
    if (!Number.isFinite(p.weight)) {
      const shown = p.text.length > 40 ? `${p.text.slice(0, 40)}…` : p.text;
      throw new PromptWeightError(
        `the weight of "${shown}" is ${p.weight}: it overflows float32 (weights multiply through nested ` +
          `parentheses); use weights well below 1e38, e.g. (cat:1.5)`,
      );
    }
  }
  const tokens: number[] = [];
  const weights: number[] = [];
  for (const p of pieces) {
    if (p.text === "BREAK" && p.weight === BREAK_WEIGHT) {
      // sd.cpp hard-codes 75 here (not chunk length - 2); equal for every SD encoder.
      const pad = (75 - (tokens.length % 75)) % 75;
      for (let i = 0; i < pad; i++) {
        tokens.push(tokenizer.eosId);
        weights.push(1);
      }
      continue;
    }
    const ids = tokenizer.encode(p.text);
    for (const id of ids) {
      tokens.push(id);
      weights.push(p.weight);
    }
  }

  const chunks: TokenChunk[] = [];
  let offset = 0;
  do {
    const take = Math.min(perChunk, tokens.length - offset);
    const ids = new Int32Array(chunkLength).fill(padId);
    const w = new Float32Array(chunkLength).fill(1);
    ids[0] = tokenizer.bosId;
    for (let i = 0; i < take; i++) {
      ids[1 + i] = tokens[offset + i];
      w[1 + i] = weights[offset + i];
    }
    ids[1 + take] = tokenizer.eosId;
    chunks.push({ ids, weights: w });
    offset += take;
  } while (offset < tokens.length);
  return { chunks, pieces };
}

/**
 * Applies per-token weights to one window's hidden states `[tokens, dim]` in place, then rescales the
 * whole window so its mean equals the mean before weighting (sd.cpp `apply_token_weights`; skipped when
 * every weight is 1, and the rescale is skipped when a mean is not finite or the new mean is 0).
 */
export function applyTokenWeights(hidden: Float32Array, weights: ArrayLike<number>, dim: number): void {
  const n = weights.length;
  if (hidden.length !== n * dim) throw new Error(`applyTokenWeights: ${hidden.length} values for ${n}×${dim}`);
  let allOne = true;
  for (let i = 0; i < n; i++) {
    if (weights[i] !== 1) {
      allOne = false;
      break;
    }
  }
  if (allOne) return;
  const mean = () => {
    let s = 0;
    for (let i = 0; i < hidden.length; i++) s += hidden[i];
    return Math.fround(s / hidden.length);
  };
  const before = mean();
  for (let t = 0; t < n; t++) {
    const w = weights[t];
    for (let j = t * dim, e = j + dim; j < e; j++) hidden[j] *= w;
  }
  const after = mean();
  if (Number.isFinite(before) && !Number.isFinite(after)) {
    const w = Math.max(...Array.from(weights, Math.abs));
    throw new PromptWeightError(
      `prompt weights up to ${w} make the text embedding overflow float32; use smaller weights, e.g. (cat:1.5)`,
    );
  }
  if (Number.isFinite(before) && Number.isFinite(after) && after !== 0) {
    const scale = Math.fround(before / after);
    for (let i = 0; i < hidden.length; i++) hidden[i] *= scale;
  }
}
