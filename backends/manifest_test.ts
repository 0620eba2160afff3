/**
 * Backend manifests: validation (every error names its field), platform
 * selection, building from sources when the library is missing or stale, and
 * the errors of each way loading can fail. (The example backend in
 * `examples/plugins/backend-plugin/` is loaded and run by its own test.)
 */

import assert from "node:assert/strict";
import {
  BackendBuildError,
  BackendError,
  type BackendManifest,
  BackendManifestError,
  buildManifestLibrary,
  loadBackendFromManifest,
  loadBackendManifest,
  parseBackendManifest,
  platformKey,
  resolveManifestPath,
  selectLibrary,
} from "./mod.ts";

const HERE = platformKey();

async function rejectsWith(fn: () => Promise<unknown>, cls: new (...a: never[]) => Error, re: RegExp): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof cls, `expected a ${cls.name}, got ${e}`);
    assert.match((e as Error).message, re);
    return e as Error;
  }
  throw new Error(`expected a ${cls.name} matching ${re}`);
}

Deno.test("manifest: malformed manifests name the field", () => {
  const cases: [unknown, string, RegExp][] = [
    [[], "", /must be a JSON object, got an array/],
    [{ libraries: { linux: "a.so" } }, "name", /"name" must be a backend name/],
    [{ name: "x y", libraries: { linux: "a.so" } }, "name", /"name" must be a backend name/],
    [{ name: "x" }, "libraries", /"libraries" must be an object/],
    [{ name: "x", libraries: {} }, "libraries", /must name at least one platform/],
    [{ name: "x", libraries: { "linux-riscv64": "a.so" } }, "libraries.linux-riscv64", /is not a platform/],
    [{ name: "x", libraries: { "linux-x86_64": 3 } }, "libraries.linux-x86_64", /must be a library path, got number/],
    [{ name: "x", libraries: { linux: "a.so" }, sources: "a.c" }, "sources", /must be an array/],
    [{ name: "x", libraries: { linux: "a.so" }, sources: ["a.cpp"] }, "sources[0]", /\.c or \.h file/],
    [{ name: "x", libraries: { linux: "a.so" }, sources: ["a.h"] }, "sources", /lists no \.c file/],
    [{ name: "x", libraries: { linux: "a.so" }, abiVersion: "1" }, "abiVersion", /positive integer/],
    [{ name: "x", libraries: { linux: "a.so" }, description: 1 }, "description", /must be a string/],
    [{ name: "x", libraries: { linux: "a.so" }, librarys: {} }, "librarys", /is not a manifest field/],
  ];
  for (const [value, field, re] of cases) {
    assert.throws(() => parseBackendManifest(value, "m.json"), (e: unknown) => {
      assert.ok(e instanceof BackendManifestError, String(e));
      assert.match(e.message, /^m\.json: /);
      assert.match(e.message, re);
      assert.equal(e.field ?? "", field);
      return true;
    });
  }
  // the plugin API's per-OS form is accepted as is
  parseBackendManifest({ name: "x", libraries: { linux: "file:///a.so", darwin: "/b.dylib" } });
});

const POSIX = Deno.build.os !== "windows"; // path assertions and the tiny C library below are POSIX-specific

Deno.test(
  { name: "manifest: the library is picked by <os>-<arch>, then <os>; none is a clear error", ignore: !POSIX },
  () => {
    const m: BackendManifest = {
      name: "demo",
      libraries: { "linux-x86_64": "l64.so", "linux-aarch64": "la.so", darwin: "d.dylib" },
    };
    assert.deepEqual(selectLibrary(m, "linux", "aarch64"), { key: "linux-aarch64", file: "la.so" });
    assert.deepEqual(selectLibrary(m, "darwin", "aarch64"), { key: "darwin", file: "d.dylib" });
    assert.throws(
      () => selectLibrary(m, "windows", "x86_64"),
      /^BackendManifestError: backend "demo" has no library for windows-x86_64 \(its manifest lists: linux-x86_64, linux-aarch64, darwin\)$/,
    );
    assert.equal(resolveManifestPath("lib/a.so", "/opt/p"), "/opt/p/lib/a.so");
    assert.equal(resolveManifestPath("file:///x/a.so", "/opt/p"), "/x/a.so");
    assert.equal(resolveManifestPath("/abs/a.so", "/opt/p"), "/abs/a.so");
    assert.equal(resolveManifestPath("a.so", new URL("file:///opt/q/")), "/opt/q/a.so");
    assert.throws(() => resolveManifestPath("https://example.com/a.so", "/opt"), /must be a local file/);
  },
);

Deno.test("manifest: reading a manifest file reports missing files, bad JSON and remote URLs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await rejectsWith(() => loadBackendManifest(`${dir}/none.json`), BackendManifestError, /none\.json not found/);
    await Deno.writeTextFile(`${dir}/bad.json`, "{ name: ");
    await rejectsWith(() => loadBackendManifest(`${dir}/bad.json`), BackendManifestError, /bad\.json: not valid JSON/);
    await Deno.writeTextFile(`${dir}/m.json`, JSON.stringify({ name: "x", libraries: { [HERE]: "lib/x.so" } }));
    const f = await loadBackendManifest(new URL(`file://${dir}/m.json`));
    assert.equal(f.baseDir, dir);
    assert.equal(f.manifest.name, "x");
    await rejectsWith(() => loadBackendManifest("https://example.com/m.json"), BackendManifestError, /only local/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("manifest: a missing library with no sources, and an ABI mismatch, are clear errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const m: BackendManifest = { name: "gone", libraries: { [HERE]: "lib/libgone.so" } };
    const e = await rejectsWith(
      () => loadBackendFromManifest(m, dir),
      BackendManifestError,
      /backend "gone": its library for .+, .*lib\/libgone\.so, is missing and the manifest lists no sources/,
    );
    assert.equal((e as BackendManifestError).field, `libraries.${HERE}`);
    await rejectsWith(
      () => loadBackendFromManifest({ ...m, abiVersion: 7 }, dir),
      BackendManifestError,
      /implements backend ABI 7, this sdflow needs 1/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "manifest: builds from sources when missing or stale; compile errors are BackendBuildErrors",
  ignore: !POSIX,
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A library that is not an sdflow backend of this ABI: it builds, and loading it says so.
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeTextFile(`${dir}/src/tiny.h`, "#define TINY_ABI 999\n");
    await Deno.writeTextFile(
      `${dir}/src/tiny.c`,
      '#include <stdint.h>\n#include "tiny.h"\n' +
        '__attribute__((visibility("default"))) int32_t sdf_abi_version(void) { return TINY_ABI; }\n',
    );
    const m: BackendManifest = {
      name: "tiny",
      libraries: { [HERE]: "out/libtiny.so" },
      sources: ["src/tiny.c", "src/tiny.h"],
    };
    const lib = await buildManifestLibrary(m, dir);
    assert.equal(lib, `${dir}/out/libtiny.so`);
    const t1 = (await Deno.stat(lib)).mtime!.getTime();
    assert.equal(await buildManifestLibrary(m, dir), lib, "up to date: not rebuilt");
    assert.equal((await Deno.stat(lib)).mtime!.getTime(), t1);
    // a library older than a source (here: made older than the header) is rebuilt
    const past = new Date(Date.now() - 3600_000);
    await Deno.utime(lib, past, past);
    await buildManifestLibrary(m, dir);
    assert.ok((await Deno.stat(lib)).mtime!.getTime() > past.getTime() + 1000, "rebuilt");
    await rejectsWith(() => loadBackendFromManifest(m, dir), BackendError, /has ABI version 999, this sdflow needs 1/);
    // a source that does not compile
    await Deno.writeTextFile(`${dir}/src/broken.c`, "int f(void) { return }\n");
    await rejectsWith(
      () => buildManifestLibrary({ ...m, libraries: { [HERE]: "out/libbroken.so" }, sources: ["src/broken.c"] }, dir),
      BackendBuildError,
      /building backend "tiny" failed \(.+ exited with \d+\):\n.*broken\.c/,
    );
    // a listed source that does not exist, with no library to fall back on
    await rejectsWith(
      () => buildManifestLibrary({ ...m, libraries: { [HERE]: "out/libnone.so" }, sources: ["src/none.c"] }, dir),
      BackendManifestError,
      /libnone\.so is missing and source .*none\.c was not found/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
