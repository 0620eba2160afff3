/**
 * Builds a backend's C sources into a shared library with the system C
 * compiler (`$CC`, else `cc`, `gcc`, `clang`).
 *
 * Every `*.c` under `backends/<name>/src/` is compiled (two at a time) into
 * `.cache/build/<name>/`, with per-ISA flags chosen by file suffix
 * (`_avx512.c`, `_avx2.c`: x86-64 only; `_neon.c`: aarch64 only), and linked
 * into `.cache/lib/lib<name>.so` (`.dylib` on macOS, `<name>.dll` on Windows).
 * Nothing is rebuilt unless the library is missing or older than a source or
 * header.
 *
 * @example
 * ```ts
 * const path = await buildBackend("cpu");
 * ```
 * Command line: `deno task build [--force] [--verbose] [name]`.
 */

const ROOT = new URL("../", import.meta.url);

/** Raised when no compiler is found or a compile / link step fails. */
export class BackendBuildError extends Error {
  override name = "BackendBuildError";
}

export interface BuildOptions {
  /** Rebuild even if the library is up to date. */
  force?: boolean;
  /** Print each compiler command. */
  verbose?: boolean;
  /** Sources folder (default `backends/<name>/src`), e.g. for an out-of-tree backend. */
  srcDir?: string;
  /** Output folder of the library (default `.cache/lib`); objects go to `<libDir>/../build/<name>`. */
  libDir?: string;
}

const COMMON_FLAGS = [
  "-O3",
  "-std=c11",
  "-fPIC",
  "-Wall",
  "-Wextra",
  "-fvisibility=hidden",
  "-pthread",
  "-D_GNU_SOURCE",
];
const AVX512_FLAGS = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma", "-mf16c"];
const AVX2_FLAGS = ["-mavx2", "-mfma", "-mf16c"];

function fsPath(url: URL): string {
  return decodeURIComponent(url.pathname.replace(/^\/([A-Za-z]:)/, "$1"));
}

/** The root folder of the repository (where `backends/` lives). */
export function repoRoot(): string {
  return fsPath(ROOT).replace(/\/$/, "");
}

/** The shared-library file name of backend `name` on this OS. */
export function libraryFileName(name: string): string {
  switch (Deno.build.os) {
    case "darwin":
      return `lib${name}.dylib`;
    case "windows":
      return `${name}.dll`;
    default:
      return `lib${name}.so`;
  }
}

/** Where buildBackend puts backend `name`'s library. */
export function builtLibraryPath(name: string): string {
  return `${repoRoot()}/.cache/lib/${libraryFileName(name)}`;
}

/** A file's modification time in ms, or undefined when it does not exist. */
export async function mtime(path: string): Promise<number | undefined> {
  try {
    return (await Deno.stat(path)).mtime?.getTime();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

async function listFiles(dir: string, exts: string[]): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await listFiles(p, exts));
    else if (e.isFile && exts.some((x) => e.name.endsWith(x))) out.push(p);
  }
  return out.sort();
}

async function works(cc: string): Promise<boolean> {
  try {
    const r = await new Deno.Command(cc, { args: ["--version"], stdout: "null", stderr: "null" }).output();
    return r.success;
  } catch {
    return false;
  }
}

/** The C compiler to use: `$CC`, else the first of cc, gcc, clang that runs. */
export async function findCompiler(): Promise<string> {
  const env = Deno.env.get("CC");
  if (env) {
    if (await works(env)) return env;
    throw new BackendBuildError(`CC="${env}" does not run: install gcc or clang, or set CC to a working C compiler`);
  }
  for (const cc of ["cc", "gcc", "clang"]) if (await works(cc)) return cc;
  throw new BackendBuildError("no C compiler found: install gcc or clang, or set CC");
}

/** Extra flags for a source file by its ISA suffix; null = skip it on this machine. */
function isaFlags(file: string): string[] | null {
  const arch = Deno.build.arch;
  if (file.endsWith("_avx512.c")) return arch === "x86_64" ? AVX512_FLAGS : null;
  if (file.endsWith("_avx2.c")) return arch === "x86_64" ? AVX2_FLAGS : null;
  if (file.endsWith("_neon.c")) return arch === "aarch64" ? [] : null;
  return [];
}

async function run(cc: string, args: string[], verbose: boolean, what: string): Promise<void> {
  if (verbose) console.error(`${cc} ${args.join(" ")}`);
  let r: Deno.CommandOutput;
  try {
    r = await new Deno.Command(cc, { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    throw new BackendBuildError(`${what}: cannot run ${cc}: ${(e as Error).message}`);
  }
  const err = new TextDecoder().decode(r.stderr).trim();
  if (!r.success) {
    throw new BackendBuildError(`${what} failed (${cc} exited with ${r.code}):\n${err}`);
  }
  if (verbose && err) console.error(err);
}

/** Runs `jobs` async tasks at most `limit` at a time; rejects with the first failure. */
async function parallel(tasks: (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (next < tasks.length && failure === undefined) {
      const t = tasks[next++];
      try {
        await t();
      } catch (e) {
        failure ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  if (failure !== undefined) throw failure;
}

/**
 * Builds backend `name` (sources in `backends/<name>/src/`) unless its library
 * is up to date; returns the library's path.
 */
export async function buildBackend(name: string, opts: BuildOptions = {}): Promise<string> {
  if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new BackendBuildError(`invalid backend name "${name}"`);
  const root = repoRoot();
  const srcDir = (opts.srcDir ?? `${root}/backends/${name}/src`).replace(/[\\/]$/, "");
  const libDir = (opts.libDir ?? `${root}/.cache/lib`).replace(/[\\/]$/, "");
  let sources: string[];
  let headers: string[];
  try {
    sources = await listFiles(srcDir, [".c"]);
    headers = [...await listFiles(srcDir, [".h"]), ...await listFiles(`${root}/backends`, [".h"]).catch(() => [])];
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new BackendBuildError(`backend "${name}" has no sources in ${srcDir}`);
    throw e;
  }
  if (sources.length === 0) throw new BackendBuildError(`backend "${name}" has no .c files in ${srcDir}`);
  const lib = `${libDir}/${libraryFileName(name)}`;
  const libTime = await mtime(lib);
  if (!opts.force && libTime !== undefined) {
    let newest = 0;
    for (const f of [...sources, ...headers]) newest = Math.max(newest, (await mtime(f)) ?? 0);
    if (newest <= libTime) return lib;
  }
  const cc = await findCompiler();
  const objDir = `${libDir}/../build/${name}`;
  await Deno.mkdir(objDir, { recursive: true });
  await Deno.mkdir(libDir, { recursive: true });
  const objects: string[] = [];
  const tasks: (() => Promise<void>)[] = [];
  for (const src of sources) {
    const extra = isaFlags(src);
    if (extra === null) continue;
    const rel = src.slice(srcDir.length + 1);
    const obj = `${objDir}/${rel.replace(/[\\/]/g, "__").replace(/\.c$/, ".o")}`;
    objects.push(obj);
    // Compile to a private name (unique per worker: parallel test workers share a pid), then rename.
    const tmpObj = `${obj}.${Deno.pid}.${crypto.randomUUID()}.tmp`;
    tasks.push(async () => {
      try {
        await run(cc, [...COMMON_FLAGS, ...extra, "-c", src, "-o", tmpObj], !!opts.verbose, `compiling ${rel}`);
        await Deno.rename(tmpObj, obj);
      } finally {
        await Deno.remove(tmpObj).catch(() => {});
      }
    });
  }
  await parallel(tasks, 2);
  // Link to a temporary name, then rename: a reader never sees a half-written library.
  const tmp = `${lib}.${Deno.pid}.${crypto.randomUUID()}.tmp`;
  const shared = Deno.build.os === "darwin" ? ["-dynamiclib"] : ["-shared"];
  try {
    await run(
      cc,
      [...shared, "-o", tmp, ...objects, "-lm", "-lpthread", "-pthread"],
      !!opts.verbose,
      `linking ${name}`,
    );
    await Deno.rename(tmp, lib);
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
  return lib;
}

if (import.meta.main) {
  const args = Deno.args;
  const force = args.includes("--force");
  const verbose = args.includes("--verbose") || args.includes("-v");
  const names = args.filter((a) => !a.startsWith("-"));
  try {
    for (const name of names.length ? names : ["cpu"]) {
      const path = await buildBackend(name, { force, verbose });
      console.log(path);
    }
  } catch (e) {
    if (e instanceof BackendBuildError) {
      console.error(`error: ${e.message}`);
      Deno.exit(1);
    }
    throw e;
  }
}
