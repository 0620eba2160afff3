/**
 * `sdflow schema [--plugin path]… [--out file|-] [--check]` (or `deno task schema …`) writes the graph
 * JSON Schema generated from the node catalog and any plugins.
 *
 * - Without `--plugin`, it regenerates sdflow's own `schema/graph.schema.json` (in the sdflow checkout,
 *   from whatever folder it runs), or writes `--out`.
 * - With `--plugin`, `--out` is required (`--out -` prints to stdout): sdflow's own file describes the
 *   built-in nodes only and is never overwritten with a plugin's.
 * - Relative `--plugin` and `--out` paths are read from the current folder (the caller's, under `deno task`).
 * - `--check` fails (exit 1) when the file on disk is out of date (for CI).
 *
 * @module
 */

import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import yargsParser from "yargs-parser";
import { graphSchema } from "../dsl/schema.ts";
import { builtinRegistry } from "../dsl/validate.ts";
import { loadPlugin, PluginError } from "../plugins/plugin.ts";
import { reportError, useCallerFolder, wantsVerbose } from "./common.ts";
import { UsageError } from "./sdcpp.ts";

/** sdflow's own schema file (the one graphs in the checkout point their `$schema` at). */
export const SCHEMA_FILE = fileURLToPath(new URL("../schema/graph.schema.json", import.meta.url));

const HELP = `usage: sdflow schema [--plugin path]… [--out file|-] [--check]     (or: deno task schema …)

Writes the graph JSON Schema of the built-in nodes (and of the plugins given) for editors and validators.

options:
  --plugin PATH     add a plugin's node types (repeatable; a path from the current folder, or a URL)
  --out FILE        where to write it; - prints it. Default: sdflow's own schema/graph.schema.json,
                    which only the built-in nodes go into: with --plugin, --out is required
  --check           do not write: exit 1 if the file differs from what would be written
  -v, --verbose     stack traces on errors
  -h, --help        this text`;

/** The schema text for the built-in catalog plus `plugins` (paths relative to the current folder, or URLs). */
export async function schemaText(plugins: readonly string[] = []): Promise<string> {
  const reg = builtinRegistry().clone();
  for (const p of plugins) {
    try {
      reg.add(await loadPlugin(p, pathToFileURL(resolve(".") + "/")));
    } catch (e) {
      if (e instanceof PluginError) throw new UsageError(`--plugin ${p}: ${e.message}`);
      throw e;
    }
  }
  return JSON.stringify(graphSchema(reg), null, 2) + "\n";
}

/** Runs the `schema` command; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    if (argv.includes("-h") || argv.includes("--help")) {
      console.log(HELP);
      return 0;
    }
    // yargs reads a lone "-" as an argument, not as the value of --out.
    const args = argv.map((x, i) => (x === "-" && argv[i - 1] === "--out" ? "--out=-" : x))
      .filter((x, i) => !(x === "--out" && argv[i + 1] === "-"));
    const a = yargsParser(args, {
      string: ["out", "plugin"],
      boolean: ["check", "verbose"],
      alias: { v: ["verbose"] },
      configuration: { "camel-case-expansion": false, "strip-aliased": true },
    });
    for (const k of Object.keys(a)) {
      if (!["_", "out", "plugin", "check", "verbose"].includes(k)) throw new UsageError(`unknown flag --${k}`);
    }
    if (a._.length) throw new UsageError(`unexpected argument "${a._[0]}"`);
    const plugins = a.plugin === undefined ? [] : [a.plugin].flat().map(String);
    const given = a.out === undefined ? undefined : String([a.out].flat().pop());
    if (given === "") throw new UsageError("--out needs a file name (or - for stdout)");
    if (plugins.length && given === undefined) {
      throw new UsageError(
        "--plugin needs --out FILE (or --out - to print it): sdflow's own schema/graph.schema.json " +
          "describes the built-in nodes only",
      );
    }
    const out = given ?? SCHEMA_FILE;
    const text = await schemaText(plugins);
    if (out === "-") {
      if (a.check) throw new UsageError("--check compares with a file: give --out FILE");
      await Deno.stdout.write(new TextEncoder().encode(text));
      return 0;
    }
    if (a.check) {
      const current = await Deno.readTextFile(out).catch(() => "");
      if (current !== text) {
        console.error(`${out} is out of date: run sdflow schema${given ? ` --out ${given}` : ""}`);
        return 1;
      }
      console.log(`${out} is up to date`);
      return 0;
    }
    const dir = out.includes("/") ? out.slice(0, out.lastIndexOf("/")) : "";
    if (dir) await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(out, text);
    console.log(`wrote ${out}`);
    return 0;
  } catch (e) {
    return reportError(e, wantsVerbose(argv));
  }
}

if (import.meta.main) {
  useCallerFolder();
  Deno.exit(await main(Deno.args));
}
