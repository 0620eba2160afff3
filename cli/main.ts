/**
 * `sdflow <command> …`: the one command a checkout installs (README, "Install"):
 *
 * ```sh
 * deno install -g -A -n sdflow --config /path/to/sdflow/deno.json /path/to/sdflow/cli/main.ts
 * sdflow gen graph.json      # relative paths are read from the current folder
 * ```
 *
 * @module
 */

import { didYouMean } from "../dsl/errors.ts";
import { main as gen } from "./gen.ts";
import { main as plan } from "./plan.ts";
import { main as schema } from "./schema.ts";
import { main as serve } from "../server/main.ts";
import { main as worker } from "../server/worker.ts";
import { main as importComfy } from "./import_comfy.ts";

const COMMANDS: Readonly<Record<string, (argv: readonly string[]) => Promise<number>>> = {
  gen,
  plan,
  schema,
  serve,
  worker,
  "import-comfy": importComfy,
};

const HELP = `usage: sdflow <command> [arguments]

commands:
  gen       run a pipeline graph, or stable-diffusion.cpp-style flags (sdflow gen --help)
  plan      explain a graph without running it: nodes, compute ops, FLOPs, memory
  schema    write the graph JSON Schema (with plugins' nodes: --plugin x.ts --out schema.json)
  serve     HTTP server: sd-webui, OpenAI images, ComfyUI and native graph APIs (sdflow serve --help)
  worker    runs jobs of a server started with --queue redis://… (sdflow worker --help)
  import-comfy  a ComfyUI workflow (API format) as an sdflow graph (sdflow import-comfy --help)

Relative paths are read from the current folder. Try: sdflow gen <sdflow>/graphs/demo.json`;

/** Runs `sdflow <command> …`; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "-h" || command === "--help" || command === "help") {
    console.log(HELP);
    return command === undefined ? 2 : 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    console.error(
      `error: unknown command "${command}"${didYouMean(command, Object.keys(COMMANDS))}; see sdflow --help`,
    );
    return 2;
  }
  return await run(rest);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
