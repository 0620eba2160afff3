/**
 * The example backend as an sdflow plugin: list this module in a graph's
 * `"plugins"` and the `sdflow-ref-example` backend becomes available.
 *
 * The plugin API (`plugins/plugin.ts`) names one library per OS; this module
 * picks, from `manifest.json`'s per-platform table, the entry for the
 * architecture it runs on, and makes every path an absolute URL so the
 * manifest is usable wherever the plugin was loaded from. It imports nothing
 * from sdflow: a third-party plugin served by URL works the same way.
 *
 * @module
 */

import manifest from "./manifest.json" with { type: "json" };

type Os = "linux" | "darwin" | "windows";

const libs = manifest.libraries as Record<string, string | undefined>;
const libraries: Partial<Record<Os, string>> = {};
for (const os of ["linux", "darwin", "windows"] as const) {
  const file = libs[`${os}-${Deno.build.arch}`] ?? libs[os];
  if (file) libraries[os] = new URL(file, import.meta.url).href;
}

export default {
  backends: [{
    name: manifest.name,
    abiVersion: manifest.abiVersion,
    description: manifest.description,
    libraries,
    sources: manifest.sources.map((s) => new URL(s, import.meta.url).href),
  }],
};
