/**
 * Backend manifests: how a third-party backend is shipped. A manifest names
 * the backend, its shared library per platform and (optionally) the C
 * sources to build it from:
 *
 * ```json
 * {
 *   "name": "sdflow-ref-example",
 *   "abiVersion": 1,
 *   "libraries": {
 *     "linux-x86_64": "lib/linux-x86_64/libsdflow-ref-example.so",
 *     "darwin-aarch64": "lib/darwin-aarch64/libsdflow-ref-example.dylib",
 *     "windows-x86_64": "lib/windows-x86_64/sdflow-ref-example.dll"
 *   },
 *   "sources": ["src/ref_backend.c", "include/sdflow_backend.h"]
 * }
 * ```
 *
 * `libraries` keys are `<os>-<arch>` (`Deno.build.os` - `Deno.build.arch`),
 * or a bare `<os>` for any architecture. Paths are relative
 * to the manifest's folder, absolute, or `file:` URLs. `sources` lists `.c`
 * files to compile and headers they depend on; each header's folder is added
 * to the include path. The library is built with the system C compiler
 * (`$CC`, else cc, gcc, clang) when it is missing or older than a source.
 *
 * @example
 * ```ts
 * const { manifest, baseDir } = await loadBackendManifest("examples/plugins/backend-plugin/manifest.json");
 * const backend = await loadBackendFromManifest(manifest, baseDir, { threads: 1 });
 * ```
 */

import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { SDF_ABI_VERSION } from "./abi.ts";
import { BackendBuildError, findCompiler, mtime } from "./build.ts";
import { type BackendConfig, loadNativeBackend, type NativeBackend } from "./ffi.ts";

/** Operating systems a manifest can name (values of `Deno.build.os` sdflow supports). */
export const MANIFEST_OSES = ["linux", "darwin", "windows"] as const;
/** CPU architectures a manifest can name (values of `Deno.build.arch`). */
export const MANIFEST_ARCHES = ["x86_64", "aarch64"] as const;

export type ManifestOs = typeof MANIFEST_OSES[number];
export type ManifestArch = typeof MANIFEST_ARCHES[number];
/** A `libraries` key: `linux-x86_64`, …, or a bare OS for any architecture. */
export type ManifestPlatform = `${ManifestOs}-${ManifestArch}` | ManifestOs;

/**
 * A backend shipped as a shared library per platform: what a `manifest.json`
 * holds and what a plugin module exports (`plugins/plugin.ts` uses this type
 * and {@link parseBackendManifest}; paths there are relative to the plugin).
 */
export interface BackendManifest {
  /** Unique backend name; the library's `sdf_backend_info().name` must match. */
  readonly name: string;
  /** Library file per platform (`<os>-<arch>` or `<os>`): relative to the manifest, absolute, or a `file:` URL. */
  readonly libraries: Readonly<Partial<Record<ManifestPlatform, string>>>;
  /** C sources (`.c`, compiled) and headers (`.h`, dependencies; their folders are include paths). */
  readonly sources?: readonly string[];
  /** The backend ABI version the library implements (`SDF_ABI_VERSION`). */
  readonly abiVersion?: number;
  readonly description?: string;
}

/** A manifest read from a file, with the folder its relative paths are resolved against. */
export interface ManifestFile {
  manifest: BackendManifest;
  /** Absolute folder of the manifest file. */
  baseDir: string;
  /** Absolute path of the manifest file. */
  path: string;
}

/** A malformed manifest, or one with nothing usable for this machine. `field` names the offending field. */
export class BackendManifestError extends Error {
  override name = "BackendManifestError";
  constructor(message: string, readonly field?: string) {
    super(message);
  }
}

const KNOWN_KEYS = new Set(["$schema", "name", "libraries", "sources", "abiVersion", "description"]);
const PLATFORMS: readonly string[] = [
  ...MANIFEST_OSES.flatMap((os) => MANIFEST_ARCHES.map((a) => `${os}-${a}`)),
  ...MANIFEST_OSES,
];

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `${typeof v} ${JSON.stringify(v)}`;
}

/**
 * Checks that `value` is a well-formed manifest (manifests are untrusted
 * input). Errors name the field, e.g. `libraries.linux-x86_64`. `where`
 * prefixes messages (a file name).
 */
export function parseBackendManifest(value: unknown, where = "backend manifest"): BackendManifest {
  const fail = (field: string, msg: string): never => {
    throw new BackendManifestError(`${where}: "${field}" ${msg}`, field);
  };
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new BackendManifestError(`${where}: must be a JSON object, got ${describe(value)}`);
  }
  const m = value as Record<string, unknown>;
  for (const k of Object.keys(m)) {
    if (!KNOWN_KEYS.has(k)) fail(k, `is not a manifest field (${[...KNOWN_KEYS].slice(1).join(", ")})`);
  }
  if (typeof m.name !== "string" || !/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(m.name)) {
    fail("name", `must be a backend name (letters, digits, _ . -), got ${describe(m.name)}`);
  }
  if (m.libraries === null || typeof m.libraries !== "object" || Array.isArray(m.libraries)) {
    fail("libraries", `must be an object mapping a platform (e.g. "linux-x86_64") to a library file`);
  }
  const libs = m.libraries as Record<string, unknown>;
  if (Object.keys(libs).length === 0) fail("libraries", "must name at least one platform");
  for (const [k, v] of Object.entries(libs)) {
    if (!PLATFORMS.includes(k)) {
      fail(`libraries.${k}`, `is not a platform (${PLATFORMS.join(", ")})`);
    }
    if (typeof v !== "string" || v.trim() === "") fail(`libraries.${k}`, `must be a library path, got ${describe(v)}`);
  }
  if (m.sources !== undefined) {
    if (!Array.isArray(m.sources)) fail("sources", `must be an array of C source and header paths`);
    (m.sources as unknown[]).forEach((s, i) => {
      if (typeof s !== "string" || !/\.[ch]$/.test(s)) {
        fail(`sources[${i}]`, `must be the path of a .c or .h file, got ${describe(s)}`);
      }
    });
    if (!(m.sources as string[]).some((s) => s.endsWith(".c"))) fail("sources", "lists no .c file");
  }
  if (m.abiVersion !== undefined && !(Number.isInteger(m.abiVersion) && (m.abiVersion as number) > 0)) {
    fail("abiVersion", `must be a positive integer, got ${describe(m.abiVersion)}`);
  }
  if (m.description !== undefined && typeof m.description !== "string") {
    fail("description", `must be a string, got ${describe(m.description)}`);
  }
  return m as unknown as BackendManifest;
}

function toPath(pathOrUrl: string | URL): string {
  if (pathOrUrl instanceof URL) {
    if (pathOrUrl.protocol !== "file:") {
      throw new BackendManifestError(`${pathOrUrl.href}: only local files (file: URLs) can hold a backend manifest`);
    }
    return fileURLToPath(pathOrUrl);
  }
  if (/^file:/i.test(pathOrUrl)) return fileURLToPath(pathOrUrl);
  if (/^[a-z][a-z0-9+.-]+:\/\//i.test(pathOrUrl)) {
    throw new BackendManifestError(`${pathOrUrl}: only local files (paths or file: URLs) can hold a backend manifest`);
  }
  return resolve(pathOrUrl);
}

/** Reads and checks a manifest file (`manifest.json`); a path or a `file:` URL. */
export async function loadBackendManifest(pathOrUrl: string | URL): Promise<ManifestFile> {
  const path = toPath(pathOrUrl);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new BackendManifestError(
      e instanceof Deno.errors.NotFound ? `backend manifest ${path} not found` : `${path}: ${(e as Error).message}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new BackendManifestError(`${path}: not valid JSON: ${(e as Error).message}`);
  }
  return { manifest: parseBackendManifest(json, path), baseDir: dirname(path), path };
}

/** This machine's platform key, e.g. `linux-x86_64`. */
export function platformKey(os: string = Deno.build.os, arch: string = Deno.build.arch): string {
  return `${os}-${arch}`;
}

/** The `libraries` entry for a platform: `<os>-<arch>` first, then a bare `<os>`. Throws if there is none. */
export function selectLibrary(
  manifest: BackendManifest,
  os: string = Deno.build.os,
  arch: string = Deno.build.arch,
): { key: string; file: string } {
  const libs = manifest.libraries as Record<string, string | undefined>;
  for (const key of [platformKey(os, arch), os]) {
    const file = libs[key];
    if (file) return { key, file };
  }
  const listed = Object.keys(libs).join(", ") || "none";
  throw new BackendManifestError(
    `backend "${manifest.name}" has no library for ${platformKey(os, arch)} (its manifest lists: ${listed})`,
    "libraries",
  );
}

/** Resolves a manifest path (relative to `baseDir`, absolute, or a `file:` URL) to an absolute path. */
export function resolveManifestPath(p: string, baseDir: string | URL): string {
  if (/^file:/i.test(p)) return fileURLToPath(p);
  if (/^[a-z][a-z0-9+.-]+:\/\//i.test(p)) {
    throw new BackendManifestError(`${p}: a backend library or source must be a local file, not a remote URL`);
  }
  if (isAbsolute(p) || /^[A-Za-z]:[\\/]/.test(p)) return p;
  return join(baseDir instanceof URL || /^file:/i.test(baseDir) ? fileURLToPath(baseDir) : baseDir, p);
}

/** Options for `buildManifestLibrary` / `loadBackendFromManifest`. */
export interface ManifestBuildOptions {
  /** Rebuild even if the library is up to date (needs `sources`). */
  force?: boolean;
  /** Print the compiler command and its warnings. */
  verbose?: boolean;
}

function compilerArgs(sources: string[], includes: string[], out: string): string[] {
  const os = Deno.build.os;
  const args = ["-O2", "-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden"];
  if (os !== "windows") args.push("-fPIC");
  for (const dir of includes) args.push(`-I${dir}`);
  args.push(os === "darwin" ? "-dynamiclib" : "-shared", "-o", out, ...sources);
  if (os !== "windows") args.push("-lm");
  return args;
}

/**
 * The path of the manifest's library for this platform, built from its
 * `sources` first when the file is missing or older than a source (with
 * `$CC`, else cc, gcc, clang: one compile-and-link command). Throws
 * BackendManifestError when there is no entry for this platform or the file
 * is missing with nothing to build it from, BackendBuildError when the build fails.
 */
export async function buildManifestLibrary(
  manifest: BackendManifest,
  baseDir: string | URL,
  opts: ManifestBuildOptions = {},
): Promise<string> {
  const { key, file } = selectLibrary(manifest);
  const lib = resolveManifestPath(file, baseDir);
  const sources = (manifest.sources ?? []).map((s) => resolveManifestPath(s, baseDir));
  const libTime = await mtime(lib);
  if (sources.length === 0) {
    if (libTime === undefined) {
      throw new BackendManifestError(
        `backend "${manifest.name}": its library for ${key}, ${lib}, is missing and the manifest lists no sources to build it from`,
        `libraries.${key}`,
      );
    }
    if (opts.force) {
      throw new BackendBuildError(`backend "${manifest.name}": cannot rebuild, the manifest lists no sources`);
    }
    return lib;
  }
  let newest = 0;
  const missing: string[] = [];
  for (const s of sources) {
    const t = await mtime(s);
    if (t === undefined) missing.push(s);
    else newest = Math.max(newest, t);
  }
  if (!opts.force && libTime !== undefined && newest <= libTime) return lib;
  if (missing.length) {
    // A shipped binary whose sources were left out is still usable.
    if (libTime !== undefined && !opts.force) return lib;
    throw new BackendManifestError(
      `backend "${manifest.name}": its library ${lib} is missing and source ${missing[0]} was not found`,
      "sources",
    );
  }
  let cc: string;
  try {
    cc = await findCompiler();
  } catch (e) {
    const why = libTime === undefined ? "is missing" : "is older than its sources";
    throw new BackendBuildError(
      `backend "${manifest.name}": its library ${lib} ${why} and cannot be built: ${(e as Error).message}`,
    );
  }
  const cfiles = sources.filter((s) => s.endsWith(".c"));
  const includes = [...new Set(sources.filter((s) => s.endsWith(".h")).map((h) => dirname(h)))];
  await Deno.mkdir(dirname(lib), { recursive: true });
  // Link to a private name, then rename: a concurrent loader never sees a half-written library.
  const tmp = `${lib}.${Deno.pid}.tmp`;
  const args = compilerArgs(cfiles, includes, tmp);
  if (opts.verbose) console.error(`${cc} ${args.join(" ")}`);
  try {
    let r: Deno.CommandOutput;
    try {
      r = await new Deno.Command(cc, { args, stdout: "piped", stderr: "piped" }).output();
    } catch (e) {
      throw new BackendBuildError(`building backend "${manifest.name}": cannot run ${cc}: ${(e as Error).message}`);
    }
    const err = new TextDecoder().decode(r.stderr).trim();
    if (!r.success) {
      throw new BackendBuildError(`building backend "${manifest.name}" failed (${cc} exited with ${r.code}):\n${err}`);
    }
    if (opts.verbose && err) console.error(err);
    await Deno.rename(tmp, lib);
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
  return lib;
}

/**
 * Loads the backend a manifest describes: picks the library for this
 * OS/arch, builds it when needed (see `buildManifestLibrary`), loads it with
 * `loadBackend` (which checks its ABI version and runs `sdf_init(config)`),
 * and checks that the library calls itself `manifest.name`.
 */
export async function loadBackendFromManifest(
  manifest: BackendManifest,
  baseDir: string | URL,
  config: BackendConfig = {},
  opts: ManifestBuildOptions = {},
): Promise<NativeBackend> {
  const m = parseBackendManifest(manifest, `backend "${(manifest as { name?: unknown })?.name ?? "?"}"`);
  if (m.abiVersion !== undefined && m.abiVersion !== SDF_ABI_VERSION) {
    throw new BackendManifestError(
      `backend "${m.name}" implements backend ABI ${m.abiVersion}, this sdflow needs ${SDF_ABI_VERSION}`,
      "abiVersion",
    );
  }
  const path = await buildManifestLibrary(m, baseDir, opts);
  const backend = await loadNativeBackend(path, config);
  if (backend.info.name !== m.name) {
    throw new BackendManifestError(
      `backend "${m.name}": library ${path} reports the name "${backend.info.name}"`,
      "name",
    );
  }
  return backend;
}
