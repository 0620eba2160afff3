/**
 * The entry points of the model layer (`models/mod.ts`) that the built-in
 * nodes call, imported statically so their signatures are type-checked
 * against the nodes that use them.
 */

import {
  applyPatches,
  estimateNetwork as estimateModelNetwork,
  loadCheckpoint,
  loadLora,
  loadTaesd,
  loadUpscaler,
  loadVae,
  LoraError,
  PatchError,
  resolveScheduler,
  sample,
  type SampleOptions,
} from "../../models/mod.ts";
import type { BackendCapabilities } from "../../backends/mod.ts";
import type { OpEstimate } from "../node.ts";

export {
  applyPatches,
  loadCheckpoint,
  loadLora,
  loadTaesd,
  loadUpscaler,
  loadVae,
  LoraError,
  PatchError,
  resolveScheduler,
  sample,
  type SampleOptions,
};

let estimateTarget: BackendCapabilities | undefined;

/**
 * Runs `fn` (a pipeline's estimates) planning for a backend with these
 * capabilities (`deno task plan --backend NAME`), so the plan shows the ops
 * placed on the CPU.
 */
export async function withEstimateBackend<T>(caps: BackendCapabilities | undefined, fn: () => Promise<T>): Promise<T> {
  const before = estimateTarget;
  estimateTarget = caps;
  try {
    return await fn();
  } finally {
    estimateTarget = before;
  }
}

/** The networks `estimateNetwork` prices, one evaluation each. */
export type NetworkKind = Parameters<typeof estimateModelNetwork>[0];
/** What `estimateNetwork` is told about one evaluation (checkpoint path, input shape, tokens). */
export type NetworkEstimateOptions = Parameters<typeof estimateModelNetwork>[1];

/**
 * Ops of one network evaluation, for `deno task plan`; when the model layer
 * cannot price it (the checkpoint is absent or unreadable), no ops and a note
 * saying why, so that a plan still prints.
 */
export async function estimateNetwork(
  kind: NetworkKind,
  opts: NetworkEstimateOptions,
): Promise<{ ops?: readonly OpEstimate[]; note?: string }> {
  try {
    return { ops: await estimateModelNetwork(kind, { capabilities: estimateTarget, ...opts }) };
  } catch (e) {
    return { note: `${kind} cost unknown: ${(e as Error).message}` };
  }
}
