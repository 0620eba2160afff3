/**
 * Loads a graph file — JSON, or a TypeScript module whose default export is a
 * builder (or a graph document) — and validates it into a {@link Pipeline}.
 */

import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { GraphBuilder } from "./builder.ts";
import { GraphError } from "./errors.ts";
import { type Pipeline, validateGraph, type ValidateOptions } from "./validate.ts";

/** Options of {@link loadGraph}: those of validation, minus what the file decides. */
export type LoadOptions = Omit<ValidateOptions, "source" | "base">;

function fileUrl(path: string): URL {
  return pathToFileURL(resolve(path));
}

/**
 * Reads and validates `path` (`.json` or `.ts`). Throws {@link GraphError}
 * with one line per problem; never a stack trace for a problem in the graph.
 *
 * @example
 * ```ts
 * const p = await loadGraph("graphs/txt2img.json", { overrides: ["sampler.seed=1"] });
 * ```
 */
export async function loadGraph(path: string, opts: LoadOptions = {}): Promise<Pipeline> {
  const source = path;
  const url = fileUrl(path);
  if (/\.[cm]?[jt]sx?$/.test(path)) {
    let mod: { default?: unknown };
    try {
      await Deno.stat(url);
    } catch {
      throw new GraphError([{ source, message: "file not found" }]);
    }
    try {
      mod = await import(url.href);
    } catch (e) {
      throw new GraphError([{
        source,
        message: `the module threw while loading: ${(e as Error).message.split("\n")[0]}`,
      }]);
    }
    const g = mod.default;
    if (g instanceof GraphBuilder) {
      const pipeline = await validateGraph(g.toJSON(), {
        ...opts,
        source,
        base: url,
        nodes: [...g.nodeDefs(), ...(opts.nodes ?? [])],
      });
      // The graph saved with a picture names its node types' modules only through "plugins".
      const fromPlugins = new Set(pipeline.plugins.flatMap((p) => p.nodes));
      const missing = g.nodeDefs().filter((d) => !fromPlugins.has(d));
      if (missing.length) {
        throw new GraphError(missing.map((d) => ({
          source,
          message: `node type "${d.type}" is given to graph({ nodes }) but no module in its plugins defines it: ` +
            `add the module that exports it, e.g. graph({ nodes: [...], plugins: ["./my_nodes.ts"] }), ` +
            `so that the graph saved with a picture can be run again`,
        })));
      }
      return pipeline;
    }
    if (g && typeof g === "object") return await validateGraph(g, { ...opts, source, base: url });
    throw new GraphError([{
      source,
      message: "a TypeScript graph must default-export a graph builder (export default g) or a graph document",
    }]);
  }
  let text: string;
  try {
    // Stat before reading: reading a named pipe blocks until something writes to it.
    const st = await Deno.stat(url);
    if (!st.isFile) {
      const kind = st.isDirectory ? "a folder" : st.isFifo ? "a named pipe (FIFO)" : "not a regular file";
      throw new GraphError([{ source, message: `${kind}, not a graph file` }]);
    }
    text = await Deno.readTextFile(url);
  } catch (e) {
    if (e instanceof GraphError) throw e;
    const why = e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message;
    throw new GraphError([{ source, message: why }]);
  }
  return await validateGraph(text, { ...opts, source, base: url });
}
