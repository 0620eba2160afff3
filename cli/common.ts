/**
 * What `gen` and `plan` share: reading the command line (a graph file, or
 * stable-diffusion.cpp's flags), loading the pipeline, and reporting errors
 * as plain lines — with a stack trace only under `-v`.
 */

import { GraphError } from "../dsl/errors.ts";
import { loadGraph } from "../dsl/load.ts";
import { NodeRunError } from "../dsl/run.ts";
import { type Pipeline, validateGraph } from "../dsl/validate.ts";
import {
  graphFromSdcppFlags,
  linkSeedOverrides,
  parseArgs,
  type ParsedArgs,
  positionalIndexes,
  UsageError,
} from "./sdcpp.ts";

const GRAPH_FILE = /\.(json|[cm]?[jt]s)$/i;

/**
 * The pipeline a command line describes, with the parsed flags and lines for the user (e.g. a drawn seed).
 * The graph file may stand anywhere among the flags (`gen --dry-run g.json`); after `--` nothing is a flag.
 */
export async function pipelineFromArgs(
  argv: readonly string[],
): Promise<{ pipeline: Pipeline; args: ParsedArgs; notes: readonly string[] }> {
  const at = positionalIndexes(argv).find((i) => GRAPH_FILE.test(argv[i]));
  if (at !== undefined) {
    const path = argv[at];
    const args = parseArgs(argv.filter((_, i) => i !== at), false);
    if (args.positional.length) {
      throw new UsageError(`unexpected argument "${args.positional[0]}" besides the graph file ${path}`);
    }
    return { pipeline: await loadGraph(path, { overrides: args.sets }), args, notes: [] };
  }
  const args = parseArgs(argv, true);
  if (args.positional.length) {
    const p = args.positional[0];
    throw new UsageError(`"${p}" is not a graph file (.json or .ts); for sd.cpp-style flags, start with -m model`);
  }
  const built = graphFromSdcppFlags(args.flags, args.spelled);
  const linked = linkSeedOverrides(built.file, args.sets);
  const pipeline = await validateGraph(built.file, {
    source: COMMAND_LINE,
    overrides: linked.sets,
    origins: built.origins,
  });
  return { pipeline, args, notes: [...built.notes, ...linked.notes] };
}

/**
 * Makes relative paths mean what the user meant: `deno task` runs a task in sdflow's root folder, and the
 * `gen`, `plan` and `schema` tasks pass the folder they were started in (`INIT_CWD`) as `SDFLOW_CALLER_DIR`;
 * the command goes back there. The variable is then removed, so that processes started from here (a test's
 * `deno run cli/gen.ts`) do not inherit it. (The installed `sdflow` command runs in the caller's folder already.)
 */
export function useCallerFolder(): void {
  const dir = Deno.env.get("SDFLOW_CALLER_DIR");
  Deno.env.delete("SDFLOW_CALLER_DIR");
  try {
    if (dir) Deno.chdir(dir);
  } catch {
    // A folder that is gone: stay where the task started.
  }
}

/** Whether -v/--verbose appears, checked before parsing so that parse errors honour it too. */
export function wantsVerbose(argv: readonly string[]): boolean {
  return argv.some((a) => a === "-v" || a === "--verbose");
}

/** Whether a graph problem comes from the command line (a flag's value, `--set`), not from a graph file. */
function fromCommandLine(source: string | undefined): boolean {
  return source === COMMAND_LINE || source?.startsWith("-") === true;
}

/** The source name of the graph that sd.cpp-style flags build. */
export const COMMAND_LINE = "command line";

/**
 * Prints an error the way the CLI does and returns the exit code: 2 for a bad command line (an unknown
 * flag, a missing or bad flag value, a bad `--set`), 1 for anything else (an invalid graph file, a node that failed).
 */
export function reportError(e: unknown, verbose: boolean, write: (line: string) => void = console.error): number {
  if (e instanceof UsageError) {
    write(`error: ${e.message}`);
    return 2;
  }
  if (e instanceof GraphError) {
    write(e.message);
    if (verbose && e.stack) write(e.stack);
    return e.diagnostics.length && e.diagnostics.every((d) => fromCommandLine(d.source)) ? 2 : 1;
  }
  if (e instanceof NodeRunError) {
    write(`error: ${oneLine(e.message)}`);
    if (verbose) write(String((e.cause as Error)?.stack ?? e.stack));
    return 1;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  write(`error: ${oneLine(err.message)}`);
  if (verbose) write(String(err.stack));
  return 1;
}

/** A failure is reported as one line (graph errors list one problem per line instead). */
function oneLine(message: string): string {
  return message.split(/\r?\n/).map((l) => l.trim()).filter(Boolean).join(" ");
}
