/**
 * A plugin's backend manifest is the same type and validator as a manifest.json
 * (`backends/manifest.ts`), and its relative `libraries` AND `sources` resolve against the plugin
 * module — not the working directory of whoever runs the graph (issue 13).
 */

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { loadBackendFromManifest, SDF_ABI_VERSION } from "../backends/mod.ts";
import { findCompiler } from "../backends/build.ts";
import { loadPlugin, PluginError } from "./plugin.ts";

const EXAMPLE = join(dirname(fileURLToPath(import.meta.url)), "../examples/plugins/backend-plugin");
const hasCompiler = await findCompiler().then(() => true, () => false);

/** A plugin folder: plugin.ts exporting a manifest with relative paths, the example backend's C source and header. */
async function pluginDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-plugin-" });
  await Deno.mkdir(`${dir}/src`);
  await Deno.mkdir(`${dir}/include`);
  await Deno.copyFile(`${EXAMPLE}/src/ref_backend.c`, `${dir}/src/ref_backend.c`);
  await Deno.copyFile(`${EXAMPLE}/../../../backends/sdflow_backend.h`, `${dir}/include/sdflow_backend.h`);
  await Deno.writeTextFile(
    `${dir}/plugin.ts`,
    `export default { backends: [${
      JSON.stringify({
        name: "sdflow-ref-example",
        abiVersion: SDF_ABI_VERSION,
        libraries: {
          [`${Deno.build.os}-${Deno.build.arch}`]: "lib/libref.so",
          windows: "lib/ref.dll",
        },
        sources: ["src/ref_backend.c", "include/sdflow_backend.h"],
      })
    }] };\n`,
  );
  return dir;
}

Deno.test("plugin backends: libraries and sources resolve against the plugin module, not the cwd", async () => {
  const dir = await pluginDir();
  try {
    const plugin = await loadPlugin("./plugin.ts", pathToFileURL(`${dir}/`));
    const [m] = plugin.backends;
    const key = `${Deno.build.os}-${Deno.build.arch}`;
    assert.equal((m.libraries as Record<string, string>)[key], pathToFileURL(`${dir}/lib/libref.so`).href);
    assert.deepEqual(m.sources, [
      pathToFileURL(`${dir}/src/ref_backend.c`).href,
      pathToFileURL(`${dir}/include/sdflow_backend.h`).href,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "plugin backends: a plugin's backend builds from its relative sources from any working directory",
  ignore: !hasCompiler || Deno.build.os === "windows",
  async fn() {
    const dir = await pluginDir();
    try {
      const plugin = await loadPlugin(pathToFileURL(`${dir}/plugin.ts`).href, "file:///");
      // The runner passes the working directory as the base; the plugin's paths must not depend on it.
      const be = await loadBackendFromManifest(plugin.backends[0], "/nonexistent-cwd", { threads: 1 });
      assert.equal(be.info.name, "sdflow-ref-example");
      assert.ok((await Deno.stat(`${dir}/lib/libref.so`)).isFile, "built where the plugin's manifest says");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("plugin backends: a malformed manifest is reported by the manifest validator, naming the field", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cases: [unknown, RegExp][] = [
      [{ name: "x", libraries: { linux: 3 } }, /backends\[0\]: "libraries\.linux" must be a library path/],
      [{ name: "x", libraries: { beos: "a.so" } }, /backends\[0\]: "libraries\.beos" is not a platform/],
      [{ name: "x", libraries: { linux: "a.so" }, sources: ["a.py"] }, /"sources\[0\]" must be the path of a \.c/],
      [{ name: "x", libraries: { linux: "a.so" }, abiVersion: 0 }, /"abiVersion" must be a positive integer/],
      [{ name: "x y", libraries: { linux: "a.so" } }, /"name" must be a backend name/],
    ];
    for (const [i, [manifest, want]] of cases.entries()) {
      await Deno.writeTextFile(`${dir}/p${i}.ts`, `export default { backends: [${JSON.stringify(manifest)}] };\n`);
      await assert.rejects(() => loadPlugin(`./p${i}.ts`, pathToFileURL(`${dir}/`)), (e: Error) => {
        assert.ok(e instanceof PluginError, String(e));
        assert.match(e.message, want);
        return true;
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
