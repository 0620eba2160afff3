/**
 * `sdflow gen <graph.json|graph.ts> [--set node.input=value]… [--dry-run] [-v]`
 * (or `deno task gen …`) runs a pipeline graph; flags and the graph file may come in any order. Without a graph file it takes stable-diffusion.cpp's
 * flags (`-m model -p "a cat" -s 42 …`) and runs the default txt2img/img2img graph.
 *
 * Exit codes: 0 done, 1 invalid graph file or failed node, 2 bad command line (a flag, its value, a `--set`).
 *
 * @module
 */

import { OutputCache, runPipeline } from "../dsl/run.ts";
import type { Pipeline } from "../dsl/validate.ts";
import { pipelineFromArgs, reportError, useCallerFolder, wantsVerbose } from "./common.ts";
import { OpProfiler } from "./profile.ts";
import { ProgressDisplay } from "./progress.ts";
import { allReporters, RunTimings } from "./timings.ts";
import { sdcppHelp, UsageError } from "./sdcpp.ts";
import { convertArgs, runConvert } from "./convert.ts";

const HELP = `usage: sdflow gen <graph.json|graph.ts> [options]     (or: deno task gen …)
       sdflow gen -m model.safetensors -p "prompt" [stable-diffusion.cpp flags]
       sdflow gen -M convert -m model.safetensors -o model-q8_0.gguf --type q8_0     (or: deno task convert …)

Flags and the graph file may come in any order; after -- nothing is read as a flag. Relative paths
are read from the current folder (a graph's plugins: from the graph file's folder).

options:
  --set node.input=value       set an input to a value (repeatable), e.g. --set sampler.seed=7;
                               the value is always a literal (--set positive.text="{red|blue} cat"),
                               except for a socket input, which takes node.output
  --set-ref node.input=node.output
                               wire an input to another node's output, e.g. --set-ref sampler.latent=encode.latent
  --dry-run                    validate and print the order nodes would run in
  -t, --threads N              CPU threads for the backend
  --backend NAME               backend to run on: cpu, webgpu, a backend a plugin of the graph registers,
                               or a library path (default: cpu, unless a loader node's backend input says);
                               ops a backend lacks run on the CPU (deno task backends lists what is here)
  --precision f32|bf16         GEMM precision of the CPU backend (default f32); bf16 rounds the operands of
                               linear layers and im2col / 1x1 convolutions to bf16 and accumulates in f32
                               (AMX or AVX512-BF16; an error on CPUs without them)
  --concurrency N              how many independent nodes may run at once (default 2)
  --profile                    print per-op times of the networks at the end (top ops, time by op kind)
  --timings-json FILE          write load, per-step, decode, PNG write times and peak RSS as JSON (bench gen reads it)
  -v, --verbose                progress of every node; stack traces on errors
  -h, --help                   this text

stable-diffusion.cpp flags (when no graph file is given):
${sdcppHelp()}

Exit codes: 0 done, 1 invalid graph file or failed node, 2 bad command line (flag, flag value, --set).

Try: sdflow gen graphs/demo.json   (a tiny random-weight model, no download)`;

/** The order of a pipeline as lines, with the stage each node can start in. */
export function describeOrder(p: Pipeline): string {
  const stage = new Map<string, number>();
  const lines = [
    `${p.source}: valid, ${p.order.length} nodes${p.plugins.length ? `, ${p.plugins.length} plugins` : ""}`,
  ];
  for (const [i, id] of p.order.entries()) {
    const n = p.nodes.get(id)!;
    const s = Math.max(0, ...Object.values(n.refs).map((r) => stage.get(r.node)! + 1));
    stage.set(id, s);
    const from = [...new Set(Object.values(n.refs).map((r) => r.node))];
    lines.push(
      `${String(i + 1).padStart(3)}. ${id} (${n.type})  stage ${s}${from.length ? `, after ${from.join(", ")}` : ""}`,
    );
  }
  return lines.join("\n");
}

/** Runs the `gen` command; returns the exit code. */
export async function main(argv: readonly string[], cache?: OutputCache): Promise<number> {
  // A cache made here lives for this command: its entries (loaded checkpoints) are released at the end.
  const own = cache ? undefined : new OutputCache();
  try {
    return await generate(argv, cache ?? own!);
  } finally {
    own?.clear();
  }
}

async function generate(argv: readonly string[], cache: OutputCache): Promise<number> {
  let verbose = wantsVerbose(argv);
  const display = new ProgressDisplay({ verbose });
  try {
    if (argv.length === 0 || argv.includes("-h") || argv.includes("--help")) {
      console.log(HELP);
      return argv.length === 0 ? 2 : 0;
    }
    const convert = convertArgs(argv);
    if (convert) return await runConvert(convert);
    const { pipeline, args, notes } = await pipelineFromArgs(argv);
    verbose = args.flags.verbose === true;
    for (const n of notes) console.error(n);
    if (args.flags["dry-run"]) {
      console.log(describeOrder(pipeline));
      return 0;
    }
    const threads = args.flags.threads as string | undefined;
    if (threads !== undefined && !/^\d+$/.test(threads)) {
      throw new UsageError(`-t expects a thread count, got "${threads}"`);
    }
    const precision = args.flags.precision as string | undefined;
    if (precision !== undefined && precision !== "f32" && precision !== "bf16") {
      throw new UsageError(`--precision expects f32 or bf16, got "${precision}"`);
    }
    const conc = args.flags.concurrency as string | undefined;
    if (conc !== undefined && !/^[1-9]\d*$/.test(conc)) {
      throw new UsageError(`--concurrency expects a positive integer, got "${conc}"`);
    }
    const profiler = args.flags.profile ? new OpProfiler() : undefined;
    const timingsPath = args.flags["timings-json"] as string | undefined;
    if (timingsPath === "") throw new UsageError("--timings-json expects a file path");
    const timings = timingsPath === undefined ? undefined : new RunTimings();
    const t0 = performance.now();
    const result = await runPipeline(pipeline, {
      cache,
      concurrency: conc ? Number(conc) : undefined,
      reporter: timings ? allReporters(display, timings) : display,
      settings: {
        threads: threads ? Number(threads) : undefined,
        precision: precision as "f32" | "bf16" | undefined,
        backend: args.flags.backend as string | undefined,
        onProfile: profiler && ((network, ops, ms) => profiler.add(network, ops, ms)),
      },
    });
    display.close();
    if (verbose) { for (const line of display.summary()) console.error(line); }
    if (profiler) console.log(profiler.report().join("\n"));
    if (timings) {
      const report = timings.report({ threads: threads ? Number(threads) : undefined });
      await Deno.writeTextFile(timingsPath!, JSON.stringify(report, null, 2) + "\n");
    }
    const cached = result.cached.length ? `, ${result.cached.length} from cache` : "";
    console.error(
      `done in ${((performance.now() - t0) / 1000).toFixed(1)} s (${result.executed.length} nodes ran${cached})`,
    );
    return 0;
  } catch (e) {
    display.close();
    return reportError(e, verbose);
  }
}

if (import.meta.main) {
  useCallerFolder();
  Deno.exit(await main(Deno.args));
}
