/**
 * Helpers of the tests that compare with stable-diffusion.cpp's pictures on the random SD 1.5 checkpoint:
 * making the random files of ../shared/tools when missing (python3 + numpy) and checking their sha256,
 * and running `deno task gen` with a command line taken from a README.
 */

import { createHash } from "node:crypto";
import { sharedUrl } from "./shared.ts";

export const REPO = new URL("../", import.meta.url);
export const CACHE_DIR = new URL(".cache/", REPO);
export const CHECKPOINT = new URL("sd15-random-f16.safetensors", CACHE_DIR);
const PYTHON = Deno.env.get("SDFLOW_PYTHON") || "/usr/bin/python3";

/** Splits a shell command line into words (double and single quotes). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  for (const m of line.matchAll(/"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g)) {
    words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2] ?? m[3]);
  }
  return words;
}

export function withFlag(args: string[], flag: string, value: string): string[] {
  const i = args.indexOf(flag);
  if (i < 0) return [...args, flag, value];
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

export async function run(cmd: string, args: string[], cwd?: URL): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: (dec.decode(r.stdout) + dec.decode(r.stderr)).trim() };
}

/** Makes `file` with a shared python tool when missing (into a temporary name), then checks its sha256. */
export async function ensureFile(file: URL, tool: string[], sha256: string): Promise<void> {
  try {
    Deno.statSync(file);
  } catch {
    await Deno.mkdir(CACHE_DIR, { recursive: true });
    const partial = new URL(`${file.pathname.split("/").pop()}.partial-${Deno.pid}`, CACHE_DIR);
    console.log(`making ${file.pathname} with ${tool[0]}`);
    try {
      const r = await run(PYTHON, [sharedUrl(tool[0]).pathname, ...tool.slice(1), "--out", partial.pathname]);
      if (r.code !== 0) throw new Error(`${tool[0]} exited with ${r.code} (python3 + numpy needed):\n${r.out}`);
      await Deno.rename(partial, file);
    } finally {
      await Deno.remove(partial).catch(() => {});
    }
  }
  const sha = await sha256File(file);
  if (sha !== sha256) {
    throw new Error(`${file.pathname}: sha256 ${sha}, the README expects ${sha256}; delete it so the test remakes it`);
  }
}

/** The random SD 1.5 checkpoint, made when missing and checked against ../shared/reference/README.md's sha256. */
export async function ensureCheckpoint(): Promise<void> {
  const readme = sharedUrl("reference/README.md");
  const sha = /Expected sha256 of that file:\s*`([0-9a-f]{64})`/.exec(await Deno.readTextFile(readme));
  if (!sha) throw new Error(`${readme.pathname}: no checkpoint sha256 where tests/sd15_random.ts looks`);
  await ensureFile(CHECKPOINT, ["tools/make_random_sd.py", "--dtype", "f16"], sha[1]);
}
