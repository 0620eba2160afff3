/**
 * The plan of a pipeline without running it: nodes in order, and per node the
 * compute ops it lowers to with estimated FLOPs and memory, from each node's
 * `estimate` (model nodes get theirs from the model layer).
 */

import type { InputSpec, NodeEstimate, OpEstimate, ValueMeta } from "../plugins/node.ts";
import { isSocketInput } from "../plugins/node.ts";
import type { Pipeline } from "./validate.ts";
import type { BackendCapabilities } from "../backends/mod.ts";
import { withEstimateBackend } from "../plugins/nodes/model_layer.ts";

/** One node of a plan. */
export interface PlanStep {
  readonly id: string;
  readonly type: string;
  readonly ops: readonly OpEstimate[];
  /** Sum over ops of flops × count. */
  readonly flops: number;
  /** Peak memory while the node runs. */
  readonly peakBytes: number;
  readonly note?: string;
}

/** The whole plan. */
export interface Plan {
  readonly steps: readonly PlanStep[];
  readonly flops: number;
  readonly peakBytes: number;
}

/**
 * Estimates every node in order, passing shapes and such downstream; with
 * `backend`, the networks are planned for that backend (ops it lacks show as
 * placed on the CPU).
 */
export function planPipeline(
  p: Pipeline,
  backend?: { name: string; capabilities: BackendCapabilities },
): Promise<Plan> {
  return withEstimateBackend(backend?.capabilities, () => estimateAll(p));
}

async function estimateAll(p: Pipeline): Promise<Plan> {
  const metas = new Map<string, Readonly<Record<string, ValueMeta>>>();
  const steps: PlanStep[] = [];
  for (const id of p.order) {
    const n = p.nodes.get(id)!;
    const inputs: Record<string, unknown> = { ...n.values };
    for (const [name, spec] of Object.entries(n.def.inputs as Record<string, InputSpec>)) {
      const r = n.refs[name];
      if (r) inputs[name] = isSocketInput(spec) ? metas.get(r.node)?.[r.output] : undefined;
    }
    let est: NodeEstimate;
    try {
      est = n.def.estimate ? await n.def.estimate(inputs) : { ops: [], note: "this node gives no estimate" };
    } catch (e) {
      est = { ops: [], note: `estimate failed: ${(e as Error).message}` };
    }
    metas.set(id, est.outputs ?? {});
    const flops = est.ops.reduce((a, o) => a + o.flops * (o.count ?? 1), 0);
    const peakBytes = est.peakBytes ?? est.ops.reduce((a, o) => Math.max(a, o.bytes), 0);
    steps.push({ id, type: n.type, ops: est.ops, flops, peakBytes, note: est.note });
  }
  return {
    steps,
    flops: steps.reduce((a, s) => a + s.flops, 0),
    peakBytes: steps.reduce((a, s) => Math.max(a, s.peakBytes), 0),
  };
}

function si(v: number, unit: string, base = 1000): string {
  const prefixes = ["", "k", "M", "G", "T", "P"];
  let i = 0;
  while (Math.abs(v) >= base && i < prefixes.length - 1) [v, i] = [v / base, i + 1];
  return `${i ? v.toFixed(v < 10 ? 2 : 1) : v} ${prefixes[i]}${unit}`;
}

/** FLOPs as `12.3 GFLOP`. */
export function formatFlops(v: number): string {
  return si(v, "FLOP");
}

/** Bytes as `1.50 GiB`. */
export function formatBytes(v: number): string {
  return si(v, "B", 1024).replace(/ ([kMGTP])B/, " $1iB").replace("kiB", "KiB");
}

/** A human-readable plan. */
export function formatPlan(p: Pipeline, plan: Plan): string {
  const lines = [`${p.source}: ${plan.steps.length} nodes`];
  for (const [i, s] of plan.steps.entries()) {
    const n = p.nodes.get(s.id)!;
    const from = Object.entries(n.refs).map(([k, r]) => `${k}←${r.node}.${r.output}`).join(" ");
    lines.push(`${i + 1}. ${s.id} (${s.type})${from ? "  " + from : ""}`);
    for (const o of s.ops) {
      const count = (o.count ?? 1) > 1 ? ` ×${o.count}` : "";
      lines.push(
        `     ${o.op}${count}: ${formatFlops(o.flops * (o.count ?? 1))}, ${formatBytes(o.bytes)}` +
          (o.note ? ` — ${o.note}` : ""),
      );
    }
    lines.push(`     total ${formatFlops(s.flops)}, peak ${formatBytes(s.peakBytes)}${s.note ? ` (${s.note})` : ""}`);
  }
  lines.push(`total: ${formatFlops(plan.flops)}; largest node footprint ${formatBytes(plan.peakBytes)}`);
  return lines.join("\n");
}
