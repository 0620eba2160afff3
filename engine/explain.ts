/** Human-readable account of a plan: what runs, what it costs, and why convs were lowered as they were. */

import type { CompiledPlan, PlannedOp } from "./plan.ts";

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;
const gflop = (f: number): string => `${(f / 1e9).toFixed(2)} GFLOP`;

/** Summary lines; with `ops`, one line per op as well. */
export function explainPlan(p: CompiledPlan, opts: { ops?: boolean } = {}): string {
  const s = p.stats;
  const lines = [
    `step plan: ${s.stepOps} ops, ${
      gflop(s.stepFlops)
    }, critical path ${s.criticalPathOps} ops, up to ${s.maxParallelOps} ops ready at once`,
    `activation arena peak: ${mib(s.arenaPeakBytes)}; hoisted constants: ${
      mib(s.hoistedBytes)
    } (${s.constOps} constant ops run once); weights: ${mib(s.constantBytes)}`,
    `convolutions: ${s.winogradConvs} Winograd, ${s.otherConvs} direct/im2col`,
  ];
  if (opts.ops) {
    const row = (op: PlannedOp, i: number): string =>
      `  ${String(i).padStart(5)} ${op.kind.padEnd(18)} ${(op.flops / 1e6).toFixed(1).padStart(10)} MFLOP ${
        mib(op.bytes).padStart(11)
      }  ${op.label ?? ""}${op.note ? `  (${op.note})` : ""}`;
    if (p.constOps.length) lines.push("constant plan (once):", ...p.constOps.map(row));
    lines.push("step plan:", ...p.stepOps.map(row));
  }
  return lines.join("\n");
}
