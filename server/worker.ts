/**
 * `deno task worker --queue redis://HOST:PORT [--models DIR] [--outputs DIR]`: runs jobs that `deno task
 * serve --queue redis://…` puts on the Redis queue, one at a time, until stopped (Ctrl-C or SIGTERM lets
 * the running job finish). Start any number, on any machine that reaches Redis.
 *
 * @module
 */

import parse from "yargs-parser";
import { Engine } from "./engine.ts";
import { runWorker } from "./redis_queue.ts";

const HELP = `usage: sdflow worker --queue redis://HOST:PORT [options]     (or: deno task worker …)

options:
  --queue URL       the Redis the server queues on (redis://[user:password@]host[:port][/db], rediss:// for TLS)
  --models DIR      this machine's folder of models (names in requests are looked up here)
  --outputs DIR     where this worker writes pictures before sending them to the server (default ./outputs)
  --stall-ms N      a job whose worker is silent this long is given to another worker (default 30000)
  --prefix NAME     Redis key prefix, as the server's (default bull)
  --model-memory MB model weights kept loaded between jobs, in MiB (default: half the physical memory);
                    the least recently used model is unloaded beyond it
  -h, --help        this text

Each line on stdout: "active <job>", "completed <job>", "failed <job>: <reason>" or "unloaded <model>: <bytes>
bytes" (a model unloaded to stay within --model-memory).`;

const FLAGS = ["queue", "models", "outputs", "stall-ms", "prefix", "model-memory", "help", "h"];

/** Runs the worker; returns the exit code once it stops. */
export async function main(argv: readonly string[]): Promise<number> {
  const args = parse([...argv], {
    string: ["queue", "models", "outputs", "stall-ms", "prefix", "model-memory"],
    boolean: ["help", "h"],
    configuration: { "camel-case-expansion": false },
  });
  if (args.help || args.h) {
    console.log(HELP);
    return 0;
  }
  const unknown = Object.keys(args).filter((k) => k !== "_" && !FLAGS.includes(k));
  if (unknown.length || args._.length) {
    console.error(`error: unknown argument "${unknown[0] ? `--${unknown[0]}` : args._[0]}"; see sdflow worker --help`);
    return 2;
  }
  const url = args.queue as string | undefined;
  if (!url || !/^rediss?:\/\//.test(url)) {
    console.error("error: --queue redis://HOST:PORT is required (the Redis the server queues on)");
    return 2;
  }
  const stall = (args["stall-ms"] as string | undefined) ?? "30000";
  if (!/^\d+$/.test(stall) || Number(stall) < 500) {
    console.error(`error: --stall-ms expects an integer of at least 500, got "${stall}"`);
    return 2;
  }
  const memory = args["model-memory"] as string | undefined;
  if (memory !== undefined && (!/^\d+$/.test(memory) || Number(memory) < 1)) {
    console.error(`error: --model-memory expects a positive integer (MiB), got "${memory}"`);
    return 2;
  }
  const modelsDir = args.models as string | undefined;
  if (modelsDir !== undefined) {
    try {
      if (!(await Deno.stat(modelsDir)).isDirectory) throw new Error("not a folder");
    } catch (e) {
      console.error(
        `error: --models ${modelsDir}: ${e instanceof Deno.errors.NotFound ? "no such folder" : (e as Error).message}`,
      );
      return 2;
    }
  }
  const engine = new Engine({
    modelsDir,
    outputDir: (args.outputs as string | undefined) ?? "outputs",
    ...(memory === undefined ? {} : { modelMemoryBytes: Number(memory) * 1024 * 1024 }),
    onUnload: (model, bytes) => console.log(`unloaded ${model}: ${bytes} bytes`),
  });
  let worker;
  try {
    worker = await runWorker({
      url,
      engine,
      prefix: args.prefix as string | undefined,
      stallMs: Number(stall),
      log: (line) => console.log(line),
    });
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return 1;
  }
  console.error(`sdflow worker on ${url}`);
  const stopped = Promise.withResolvers<void>();
  const stop = () => stopped.resolve();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const sig of signals) Deno.addSignalListener(sig, stop);
  await stopped.promise;
  for (const sig of signals) Deno.removeSignalListener(sig, stop);
  await worker.close();
  engine.close();
  return 0;
}

if (import.meta.main) {
  const dir = Deno.env.get("SDFLOW_CALLER_DIR");
  Deno.env.delete("SDFLOW_CALLER_DIR");
  try {
    if (dir) Deno.chdir(dir);
  } catch {
    // A folder that is gone: stay where the task started.
  }
  Deno.exit(await main(Deno.args));
}
