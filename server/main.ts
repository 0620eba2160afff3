/**
 * `sdflow serve [--port 7860] [--host 127.0.0.1] [--models DIR] [--outputs DIR] [--api-key KEY]
 * [--queue memory|redis://HOST:PORT]` (or `deno task serve …`): the HTTP server, with the in-process job
 * queue or BullMQ on Redis (then `deno task worker` processes run the jobs).
 *
 * @module
 */

import parse from "yargs-parser";
import { startServer } from "./server.ts";

const HELP = `usage: sdflow serve [options]     (or: deno task serve …)

options:
  --port N          port to listen on (default 7860; 0: any free port)
  --host ADDR       address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  --models DIR      folder of checkpoints (flat, or in Stable-diffusion/ or checkpoints/), named by file name
                    with or without extension; the tiny demo model "tiny" is always there
  --outputs DIR     where pictures are written and served from (default ./outputs)
  --api-key KEY     require this key (Authorization: Bearer KEY, or HTTP Basic auth's password);
                    also read from SDFLOW_API_KEY
  --cors ORIGIN     allow browser pages from ORIGIN (or *) to call the server
  --queue Q         memory (default: jobs run in this process) or redis://HOST:PORT (BullMQ on Redis;
                    jobs run in \`deno task worker --queue redis://HOST:PORT\` processes, on any machine)
  --redis-prefix P  Redis key prefix (default bull), as the workers'
  --max-queue N     jobs that may wait before requests get 429 (default 16)
  --job-timeout S   a running job taking longer than S seconds fails (default: no limit; a request's
                    ?timeout=S sets its own)
  --max-body-mb N   largest request body in MiB (default 32; more gets 413)
  --model-memory MB model weights kept loaded between requests, in MiB (default: half the physical
                    memory); the least recently used model is unloaded beyond it (GET /v1/stats)
  -h, --help        this text

Endpoints:
  web UI    GET / (the pages; see the README's "Web UI")
  native    POST /v1/graphs, GET|DELETE /v1/jobs/:id, GET /v1/jobs/:id/events (SSE), GET /v1/outputs/:file,
            GET /v1/outputs, GET /v1/schema, GET /v1/stats, POST /v1/uploads, POST /v1/graphs/from-comfy
  sd-webui  POST /sdapi/v1/{txt2img,img2img,interrupt,options}
            GET /sdapi/v1/{sd-models,samplers,schedulers,loras,progress,options}
  OpenAI    POST /v1/images/generations, /v1/images/edits, GET /v1/models
  ComfyUI   POST /prompt, GET /history[/:id], GET /view?filename=…, POST /upload/image, GET /queue,
            POST /interrupt, GET /object_info[/:class], GET /system_stats, GET /ws?clientId=… (websocket)
Requests that queue a job take ?priority=-100..100 (higher first) and ?timeout=SECONDS.`;

const FLAGS = [
  "port",
  "host",
  "models",
  "outputs",
  "api-key",
  "cors",
  "max-queue",
  "max-body-mb",
  "queue",
  "redis-prefix",
  "job-timeout",
  "model-memory",
  "help",
  "h",
];

/** Runs `serve`; returns the exit code once the server stops (Ctrl-C). */
export async function main(argv: readonly string[]): Promise<number> {
  const args = parse([...argv], {
    string: [
      "port",
      "host",
      "models",
      "outputs",
      "api-key",
      "cors",
      "max-queue",
      "max-body-mb",
      "queue",
      "redis-prefix",
      "job-timeout",
      "model-memory",
    ],
    boolean: ["help", "h"],
    configuration: { "camel-case-expansion": false },
  });
  if (args.help || args.h) {
    console.log(HELP);
    return 0;
  }
  const unknown = Object.keys(args).filter((k) => k !== "_" && !FLAGS.includes(k));
  if (unknown.length || args._.length) {
    console.error(`error: unknown argument "${unknown[0] ? `--${unknown[0]}` : args._[0]}"; see sdflow serve --help`);
    return 2;
  }
  const count = (flag: string, dflt: number, min: number, max: number): number | undefined => {
    const v = args[flag] as string | undefined;
    if (v === undefined) return dflt;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      console.error(`error: --${flag} expects an integer from ${min} to ${max}, got "${v}"`);
      return undefined;
    }
    return Number(v);
  };
  const port = count("port", 7860, 0, 65535);
  const maxQueued = count("max-queue", 16, 0, 100000);
  const maxBodyMb = count("max-body-mb", 32, 1, 4096);
  const jobTimeout = args["job-timeout"] === undefined ? 0 : count("job-timeout", 0, 1, 86400);
  const modelMemory = args["model-memory"] === undefined
    ? undefined
    : count("model-memory", 0, 1, 16 * 1024 * 1024) ?? null;
  if (
    port === undefined || maxQueued === undefined || maxBodyMb === undefined || jobTimeout === undefined ||
    modelMemory === null
  ) return 2;
  const queue = (args.queue as string | undefined) ?? "memory";
  if (queue !== "memory" && !/^rediss?:\/\//.test(queue)) {
    console.error(`error: --queue expects "memory" or redis://HOST:PORT, got "${queue}"`);
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
  const apiKey = (args["api-key"] as string | undefined) ?? Deno.env.get("SDFLOW_API_KEY");
  if (apiKey === "") {
    console.error("error: --api-key is empty");
    return 2;
  }
  let server;
  try {
    server = await startServer({
      port,
      hostname: (args.host as string | undefined) ?? "127.0.0.1",
      modelsDir,
      outputDir: args.outputs as string | undefined,
      apiKey,
      corsOrigin: args.cors as string | undefined,
      maxQueued,
      maxBodyBytes: maxBodyMb * 1024 * 1024,
      queue,
      redisPrefix: args["redis-prefix"] as string | undefined,
      jobTimeoutMs: jobTimeout ? jobTimeout * 1000 : undefined,
      modelMemoryBytes: modelMemory === undefined ? undefined : modelMemory * 1024 * 1024,
      onListen: (a) =>
        console.error(
          `sdflow serving on http://${a.hostname}:${a.port}/ (queue: ${queue})${apiKey ? " (API key required)" : ""}`,
        ),
    });
  } catch (e) {
    console.error(`error: ${(e as Error).message.split("\n")[0]}`);
    return 1;
  }
  const stop = () => void server.shutdown();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const sig of signals) Deno.addSignalListener(sig, stop);
  await server.finished;
  for (const sig of signals) Deno.removeSignalListener(sig, stop);
  return 0;
}

/** `deno task serve` runs in sdflow's folder; relative --models/--outputs mean the folder it was started in. */
function useCallerFolder(): void {
  const dir = Deno.env.get("SDFLOW_CALLER_DIR");
  Deno.env.delete("SDFLOW_CALLER_DIR");
  try {
    if (dir) Deno.chdir(dir);
  } catch {
    // A folder that is gone: stay where the task started.
  }
}

if (import.meta.main) {
  useCallerFolder();
  Deno.exit(await main(Deno.args));
}
