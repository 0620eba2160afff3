/**
 * sdflow's pipeline-graph language: the graph format and its schema, the
 * typed builder, validation, the runner and the planner.
 *
 * @example
 * ```ts
 * import { loadGraph, OutputCache, runPipeline } from "./mod.ts";
 * const cache = new OutputCache();
 * await runPipeline(await loadGraph("graphs/demo.json"), { cache });
 * ```
 *
 * @module
 */

export * from "./builder.ts";
export * from "./errors.ts";
export * from "./format.ts";
export * from "./load.ts";
export * from "./overrides.ts";
export * from "./parse.ts";
export * from "./plan.ts";
export * from "./run.ts";
export * from "./schema.ts";
export * from "./validate.ts";
