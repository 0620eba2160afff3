/**
 * `sdflow gen -M convert -m IN -o OUT.gguf [--type q8_0|q4_0|…|f16|f32]` (or `deno task convert -m IN -o
 * OUT.gguf --type q8_0`): stable-diffusion.cpp's convert mode. Writes a GGUF file sd.cpp and sdflow load;
 * see models/weights/convert.ts for what is written.
 *
 * @module
 */

import { convertModel, isWeightType, WEIGHT_TYPES } from "../models/mod.ts";
import { parseArgs, type ParsedArgs, UsageError } from "./sdcpp.ts";

/** Flags of sd.cpp mode that mean something to a conversion. */
const CONVERT_FLAGS = new Set(["mode", "model", "output", "type", "verbose", "threads"]);

/** The parsed command line when it asks for `-M convert` (`--mode convert`, `--mode=convert`), else undefined. */
export function convertArgs(argv: readonly string[]): ParsedArgs | undefined {
  if (!argv.some((a) => a === "convert" || /^--?(M|mode)=convert$/.test(a))) return undefined;
  const args = parseArgs(argv, true);
  if (args.flags.mode !== "convert") return undefined;
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}" in -M convert`);
  return args;
}

/** Runs a conversion; returns the exit code (errors are thrown: UsageError for the command line). */
export async function runConvert(args: ParsedArgs, log: (line: string) => void = console.error): Promise<number> {
  const input = args.flags.model as string | undefined;
  const output = args.flags.output as string | undefined;
  const type = args.flags.type as string | undefined;
  if (!input) throw new UsageError("-M convert needs the model to convert: -m model.safetensors");
  if (!output) throw new UsageError("-M convert needs the output file: -o model-q8_0.gguf");
  if (type !== undefined && !isWeightType(type)) {
    throw new UsageError(`--type must be one of ${WEIGHT_TYPES.join(", ")}, got "${type}"`);
  }
  const ignored = Object.keys(args.flags).filter((k) =>
    args.flags[k] !== undefined && args.flags[k] !== false && !CONVERT_FLAGS.has(k)
  );
  if (ignored.length) {
    throw new UsageError(`-M convert takes -m, -o and --type only; remove ${ignored.map((k) => `--${k}`).join(", ")}`);
  }
  try {
    if (await Deno.realPath(input) === await Deno.realPath(output)) {
      throw new UsageError(`-o ${output} is the input model; give another output file`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  try {
    await Deno.stat(input);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UsageError(`model file not found: ${input}`);
    throw e;
  }
  const t0 = performance.now();
  let lastReport = 0;
  const result = await convertModel(input, output, {
    ...(type === undefined ? {} : { type }),
    onProgress: (done, total, bytes) => {
      const now = performance.now();
      if (done < total && now - lastReport < 1000) return;
      lastReport = now;
      log(`converting: ${done}/${total} tensors, ${(bytes / 2 ** 20).toFixed(0)} MiB written`);
    },
  });
  const types = Object.entries(result.types).map(([k, n]) => `${n} ${k}`).join(", ");
  log(
    `wrote ${output}: ${result.tensors} tensors (${types}), ${(result.bytes / 2 ** 20).toFixed(1)} MiB in ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return 0;
}
