/**
 * What `gen` and `plan` share: reading the command line (a graph file, or
 * stable-diffusion.cpp's flags), loading the pipeline, and reporting errors
 * as plain lines — with a stack trace only under `-v`.
 */

import { GraphError } from "../dsl/errors.ts";
import { loadGraph } from "../dsl/load.ts";
import { NodeRunError } from "../dsl/run.ts";
import { type Pipeline, validateGraph } from "../dsl/validate.ts";
import { graphFromSdcppFlags, linkSeedOverrides, parseArgs, type ParsedArgs, UsageError } from "./sdcpp.ts";

/** Whether a command-line argument names a graph file rather than starting sd.cpp-style flags. */
export function isGraphPath(arg: string | undefined): arg is string {
  return arg !== undefined && !arg.startsWith("-") && /\.(json|[cm]?[jt]s)$/i.test(arg);
}

/** The pipeline a command line describes, with the parsed flags and lines for the user (e.g. a drawn seed). */
export async function pipelineFromArgs(
  argv: readonly string[],
): Promise<{ pipeline: Pipeline; args: ParsedArgs; notes: readonly string[] }> {
  if (isGraphPath(argv[0])) {
    const args = parseArgs(argv.slice(1), false);
    if (args.positional.length) {
      throw new UsageError(`unexpected argument "${args.positional[0]}" after the graph file`);
    }
    return { pipeline: await loadGraph(argv[0], { overrides: args.sets }), args, notes: [] };
  }
  const args = parseArgs(argv, true);
  if (args.positional.length) {
    const p = args.positional[0];
    throw new UsageError(`"${p}" is not a graph file (.json or .ts); for sd.cpp-style flags, start with -m model`);
  }
  const built = graphFromSdcppFlags(args.flags, args.spelled);
  const linked = linkSeedOverrides(built.file, args.sets);
  const pipeline = await validateGraph(built.file, {
    source: "command line",
    overrides: linked.sets,
    origins: built.origins,
  });
  return { pipeline, args, notes: [...built.notes, ...linked.notes] };
}

/** Whether -v/--verbose appears, checked before parsing so that parse errors honour it too. */
export function wantsVerbose(argv: readonly string[]): boolean {
  return argv.some((a) => a === "-v" || a === "--verbose");
}

/** Prints an error the way the CLI does and returns the exit code (2: usage, 1: anything else). */
export function reportError(e: unknown, verbose: boolean, write: (line: string) => void = console.error): number {
  if (e instanceof UsageError) {
    write(`error: ${e.message}`);
    return 2;
  }
  if (e instanceof GraphError) {
    write(e.message);
    if (verbose && e.stack) write(e.stack);
    return 1;
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
