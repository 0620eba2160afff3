/**
 * `deno task schema [--out schema/graph.schema.json] [--plugin path]… [--check]`
 * writes the graph JSON Schema generated from the node catalog (and plugins).
 * `--check` fails when the file on disk is out of date (for CI).
 *
 * @module
 */

import yargsParser from "yargs-parser";
import { graphSchema } from "../dsl/schema.ts";
import { builtinRegistry } from "../dsl/validate.ts";
import { loadPlugin } from "../plugins/plugin.ts";
import { reportError, wantsVerbose } from "./common.ts";
import { UsageError } from "./sdcpp.ts";

/** The schema text for the built-in catalog plus `plugins`. */
export async function schemaText(plugins: readonly string[] = []): Promise<string> {
  const reg = builtinRegistry().clone();
  for (const p of plugins) reg.add(await loadPlugin(p, `file://${Deno.cwd()}/`));
  return JSON.stringify(graphSchema(reg), null, 2) + "\n";
}

/** Runs the `schema` command; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    const a = yargsParser([...argv], {
      string: ["out", "plugin"],
      boolean: ["check", "verbose"],
      alias: { v: ["verbose"] },
      configuration: { "camel-case-expansion": false, "strip-aliased": true },
    });
    for (const k of Object.keys(a)) {
      if (!["_", "out", "plugin", "check", "verbose"].includes(k)) throw new UsageError(`unknown flag --${k}`);
    }
    const out = String([a.out ?? "schema/graph.schema.json"].flat().pop());
    const text = await schemaText(a.plugin === undefined ? [] : [a.plugin].flat().map(String));
    if (a.check) {
      const current = await Deno.readTextFile(out).catch(() => "");
      if (current !== text) {
        console.error(`${out} is out of date: run deno task schema`);
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

if (import.meta.main) Deno.exit(await main(Deno.args));
