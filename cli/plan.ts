/**
 * `sdflow plan <graph.json|graph.ts> [--set …]` (or `deno task plan`, or sd.cpp flags) explains a
 * pipeline without running it: the nodes in order and, per node, the compute
 * ops it lowers to with estimated FLOPs and memory.
 *
 * @module
 */

import { formatPlan, planPipeline } from "../dsl/plan.ts";
import { pipelineFromArgs, reportError, useCallerFolder, wantsVerbose } from "./common.ts";
import { loadBackend } from "../backends/mod.ts";

/** Runs the `plan` command; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    if (argv.length === 0 || argv.includes("-h") || argv.includes("--help")) {
      console.log(
        "usage: sdflow plan <graph.json|graph.ts> [--set node.input=value]… [--set-ref node.input=node.output] " +
          "[--backend NAME] [-v]\n" +
          "       (or: deno task plan …; or stable-diffusion.cpp-style flags, as sdflow gen takes them)",
      );
      return argv.length === 0 ? 2 : 0;
    }
    const { pipeline, args } = await pipelineFromArgs(argv);
    const name = args.flags.backend as string | undefined;
    // Plan for the backend the run would use: its capabilities decide conv lowering and what goes to the CPU.
    const backend = name && name !== "cpu" ? await loadBackend(name) : undefined;
    if (backend) console.log(`backend: ${backend.name} (${backend.info.isa})`);
    console.log(formatPlan(pipeline, await planPipeline(pipeline, backend)));
    return 0;
  } catch (e) {
    return reportError(e, wantsVerbose(argv));
  }
}

if (import.meta.main) {
  useCallerFolder();
  Deno.exit(await main(Deno.args));
}
