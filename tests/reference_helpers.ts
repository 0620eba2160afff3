/**
 * What the end-to-end reference tests (sd15, sdxl, LoRA, ControlNet, add-ons) share: reading a section of
 * ../shared/reference/README.md (checkpoint sha256, pixel sha256, the sd-cli command), making a random
 * checkpoint or add-on file with a python tool into .cache/ (under a temporary name, renamed when complete,
 * then checked against its sha256), and running `deno task gen` with the README's flags and comparing its
 * picture with sd.cpp's ({@link genAndCompare}).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { assert } from "./assert.ts";
import { sharedUrl } from "./shared.ts";
import { type DecodedImage, decodePngImage } from "../plugins/image/png.ts";
import { compareImages, type ImageComparison } from "../tools/psnr.ts";
import type { Image } from "../models/types.ts";

export const README = sharedUrl("reference/README.md");
export const MAKE_RANDOM_SD = sharedUrl("tools/make_random_sd.py");
export const REPO = new URL("../", import.meta.url);
export const CACHE_DIR = new URL(".cache/", REPO);
/** Debian's python3 (with python3-numpy); `SDFLOW_PYTHON` names another interpreter. */
export const PYTHON = Deno.env.get("SDFLOW_PYTHON") || "/usr/bin/python3";

export function exists(url: URL): boolean {
  try {
    Deno.statSync(url);
    return true;
  } catch {
    return false;
  }
}

/** The README's facts a reference test depends on: the file's sha256, the pixels' sha256, and the command line. */
export interface ReadmeFacts {
  checkpointSha256: string;
  pixelsSha256: string;
  args: string[];
}

/** Splits a shell command line into words (double/single quotes and backslash-newline continuations). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (const m of line.replace(/\\\n/g, " ").matchAll(re)) {
    words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2] ?? m[3]);
  }
  return words;
}

/**
 * The text of the README section `## <heading>` up to the next `## ` heading (the whole text when
 * `heading` is undefined).
 */
export function readmeSection(text: string, heading?: string): string {
  if (heading === undefined) return text;
  const start = text.search(new RegExp(`^## ${heading.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}\\s*$`, "m"));
  if (start < 0) throw new Error(`${README.pathname}: no section "## ${heading}"`);
  const rest = text.slice(start + 3);
  const end = rest.search(/^## /m);
  return end < 0 ? text.slice(start) : text.slice(start, start + 3 + end);
}

/**
 * Reads the facts from a README section. The checkpoint's sha256 follows "Expected sha256", the pixels'
 * follows "sha256 of the decoded 8-bit RGB pixels" or "Pixel sha256", and the command is the indented
 * block that starts with `sd-cli` (continued over lines ending in a backslash).
 */
export function readmeFacts(text: string, testFile: string): ReadmeFacts {
  const ckpt = /Expected sha256[^`]*`([0-9a-f]{64})`/.exec(text);
  const pixels = /(?:sha256 of the decoded 8-bit RGB pixels|Pixel sha256)[^`]*`([0-9a-f]{64})`/.exec(text);
  const cmd = /^[ \t]*sd-cli[ \t]((?:[^\n]*\\\n)*[^\n]*)$/m.exec(text);
  if (!ckpt || !pixels || !cmd) {
    throw new Error(
      `${README.pathname}: could not find ${
        [!ckpt && "the checkpoint's sha256", !pixels && "the pixels' sha256", !cmd && "the sd-cli command"]
          .filter(Boolean).join(", ")
      }; update ${testFile} to the README's new wording`,
    );
  }
  return { checkpointSha256: ckpt[1], pixelsSha256: pixels[1], args: shellWords(cmd[1]) };
}

/** Replaces the value of `flag` (which must be present) in an argument list. */
export function withFlag(args: string[], flag: string, value: string): string[] {
  const i = args.indexOf(flag);
  if (i < 0 || i + 1 >= args.length) throw new Error(`the README's command has no ${flag} <value>`);
  return [...args.slice(0, i + 1), value, ...args.slice(i + 2)];
}

export async function sha256File(path: URL): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  const buf = new Uint8Array(8 << 20);
  for (;;) {
    const n = await file.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
  }
  return hash.digest("hex");
}

export function pixelsSha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export async function run(cmd: string, args: string[], cwd?: URL): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: (dec.decode(r.stdout) + dec.decode(r.stderr)).trim() };
}

export function tail(text: string, lines = 25): string {
  return text.split("\n").slice(-lines).join("\n");
}

/** Fails, naming what to install, when python3 or numpy is missing. */
async function requirePythonNumpy(forWhat: URL): Promise<void> {
  const install = "install Python 3 and numpy (Debian/Ubuntu: apt-get install python3-numpy; CI does this)";
  let r;
  try {
    r = await run(PYTHON, ["-c", "import numpy"]);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`${PYTHON} not found: it is needed to make ${forWhat.pathname}; ${install}`);
    }
    throw e;
  }
  if (r.code !== 0) throw new Error(`${PYTHON} cannot import numpy (${tail(r.out, 1)}); ${install}`);
}

/**
 * Makes `checkpoint` with make_random_sd.py and `makeArgs` if it is missing, then checks its sha256
 * (see {@link ensureMadeFile}).
 */
export function ensureCheckpoint(
  checkpoint: URL,
  makeArgs: readonly string[],
  expectedSha256: string,
  about: string,
): Promise<void> {
  return ensureMadeFile(checkpoint, MAKE_RANDOM_SD, makeArgs, expectedSha256, about);
}

/**
 * Makes `file` with the shared python `tool` and `toolArgs` (then `--out`) if it is missing (into a
 * temporary name, renamed when complete), then checks its sha256.
 */
export async function ensureMadeFile(
  file: URL,
  tool: URL,
  toolArgs: readonly string[],
  expectedSha256: string,
  about: string,
): Promise<void> {
  const toolName = tool.pathname.split("/").pop();
  if (!exists(file)) {
    await requirePythonNumpy(file);
    await Deno.mkdir(new URL(".", file), { recursive: true });
    // Unique per process and call: tests running at once never write or rename each other's partial file.
    const partial = new URL(`${file.pathname.split("/").pop()}.partial-${Deno.pid}-${crypto.randomUUID()}`, file);
    console.log(`making ${file.pathname} with ${tool.pathname} (${about})`);
    try {
      const r = await run(PYTHON, [tool.pathname, ...toolArgs, "--out", partial.pathname]);
      if (r.code !== 0) throw new Error(`${toolName} exited with ${r.code}:\n${tail(r.out)}`);
      await Deno.rename(partial, file);
    } finally {
      await Deno.remove(partial).catch(() => {});
    }
  }
  const sha = await sha256File(file);
  if (sha !== expectedSha256) {
    throw new Error(
      `${file.pathname}: sha256 ${sha}, the README expects ${expectedSha256}. ` +
        `Delete the file so the test makes it again; if it still differs, ${toolName} or numpy ` +
        `changed and the reference data must be regenerated.`,
    );
  }
}

/** What {@link genAndCompare} found: the comparison with sd.cpp's picture and the decoded output. */
export interface GenComparison {
  readonly comparison: ImageComparison;
  /** The PNG written (its `parameters` chunk for further checks). */
  readonly decoded: DecodedImage;
  /** What the command printed (stdout, then stderr). */
  readonly output: string;
}

/**
 * Runs `deno task gen` (cli/gen.ts in the repository) with `args`, which write the PNG `out`; compares it
 * with sd.cpp's `reference` (a PNG file, or decoded pixels) over the RGB samples (tools/psnr.ts); logs the
 * PSNR, max |diff|, mean RGB and run time; fails when the PSNR is under `minPsnrDb`.
 */
export async function genAndCompare(
  args: readonly string[],
  out: string,
  reference: URL | Image,
  minPsnrDb: number,
): Promise<GenComparison> {
  console.log(`deno task gen ${args.map((a) => (/[\s<>]/.test(a) ? JSON.stringify(a) : a)).join(" ")}`);
  const t0 = performance.now();
  const r = await run(Deno.execPath(), ["run", "-A", "cli/gen.ts", ...args], REPO);
  if (r.code !== 0) throw new Error(`deno task gen exited with ${r.code}:\n${tail(r.out)}`);
  const decoded = decodePngImage(await Deno.readFile(out));
  const theirs = reference instanceof URL ? decodePngImage(await Deno.readFile(reference)).image : reference;
  const c = compareImages(decoded.image, theirs);
  const m = (v: number[]) => v.map((x) => x.toFixed(3)).join(", ");
  const name = reference instanceof URL ? `${reference.pathname.split("/").pop()}: ` : "";
  console.log(
    `${name}PSNR ${c.psnr.toFixed(2)} dB (bound ${minPsnrDb} dB), max |diff| ${c.maxAbs}, ` +
      `mean RGB ${m(c.meanA)} vs sd.cpp ${m(c.meanB)}, run ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  assert(c.psnr >= minPsnrDb, `${name}PSNR ${c.psnr.toFixed(2)} dB < ${minPsnrDb} dB against sd.cpp's picture`);
  return { comparison: c, decoded, output: r.out };
}

/** The PNG's `parameters` chunk records the README command's prompt, steps and seed (sd-webui format). */
export function assertReadmeParameters(decoded: DecodedImage): void {
  const params = decoded.parameters ?? "";
  assert(params.startsWith("a lovely cat"), `parameters chunk: ${JSON.stringify(params)}`);
  assert(/Steps: 4\b/.test(params) && /Seed: 42\b/.test(params), `parameters chunk: ${JSON.stringify(params)}`);
}
