/**
 * `deno task import-comfy workflow_api.json [-o graph.json]`: translates a ComfyUI workflow saved in API
 * format ("Export (API)") into an sdflow graph, written to stdout (or -o). Model names stay names: give the
 * graph's `path` inputs real paths before `deno task gen graph.json`, or post the graph to `deno task
 * serve`, which finds them in its --models folder. `-` reads the workflow from stdin.
 *
 * @module
 */

import { ComfyError, comfyToGraph } from "../server/comfy.ts";
import { useCallerFolder } from "./common.ts";

const HELP = `usage: deno task import-comfy WORKFLOW_API.json [-o GRAPH.json]

Translates a ComfyUI workflow in API format (ComfyUI: Workflow > Export (API)) into an sdflow graph.
Nodes: CheckpointLoaderSimple, CLIPTextEncode, CLIPSetLastLayer, KSampler, KSamplerAdvanced,
EmptyLatentImage, VAEEncode, VAEDecode, VAELoader, LoadImage, SaveImage, PreviewImage, LoraLoader,
ControlNetLoader, ControlNetApply, ControlNetApplyAdvanced, UpscaleModelLoader, ImageUpscaleWithModel.
"-" reads stdin; without -o the graph goes to stdout.`;

/** Runs the command; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const args = [...argv];
  if (args.includes("-h") || args.includes("--help")) {
    console.log(HELP);
    return 0;
  }
  let output: string | undefined;
  const o = args.findIndex((a) => a === "-o" || a === "--output");
  if (o >= 0) {
    output = args[o + 1];
    if (output === undefined) {
      console.error("error: -o needs a file name");
      return 2;
    }
    args.splice(o, 2);
  }
  if (args.length !== 1) {
    console.error(`error: expected one workflow file, got ${args.length ? args.join(" ") : "none"}; see --help`);
    return 2;
  }
  const file = args[0];
  let text: string;
  try {
    text = file === "-" ? await new Response(Deno.stdin.readable).text() : await Deno.readTextFile(file);
  } catch (e) {
    console.error(`error: ${file}: ${e instanceof Deno.errors.NotFound ? "no such file" : (e as Error).message}`);
    return 1;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    console.error(`error: ${file}: not JSON: ${(e as Error).message}`);
    return 1;
  }
  try {
    const { graph } = comfyToGraph(body);
    const out = JSON.stringify(graph, null, 2) + "\n";
    if (output === undefined) await Deno.stdout.write(new TextEncoder().encode(out));
    else await Deno.writeTextFile(output, out);
    return 0;
  } catch (e) {
    if (e instanceof ComfyError) {
      console.error(`error: ${file}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) {
  useCallerFolder();
  Deno.exit(await main(Deno.args));
}
