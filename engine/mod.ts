/**
 * The engine: tensor graph IR, planner (Winograd lowering, constant hoisting,
 * arena planning, dependency schedule) and the program that runs a plan on a
 * backend.
 *
 * @example
 * ```ts
 * import { compile, Graph } from "./mod.ts";
 * import { loadBackend } from "../backends/mod.ts";
 * const g = new Graph();
 * const x = g.input("x", [1, 4]);
 * g.output("y", g.silu(x));
 * const program = compile(g, await loadBackend("cpu"));
 * const { y } = await program.run({ x: new Float32Array(4) });
 * ```
 */

export * from "./graph.ts";
export { chooseWinograd, type LowerOptions, type WinogradChoice } from "./lower.ts";
export { type CompiledPlan, plan, type PlanOptions, type PlanStats } from "./plan.ts";
export { compile, type InputData, type OpProfile, Program, type ProgramOptions, SharedArena } from "./program.ts";
export { convFlops } from "./cost.ts";
