/**
 * A worker that runs weight merges (patch_weights.ts `runMergeJob`) for PatchedWeights.prepare:
 * each message is a MergeJob; the reply is `{ values }` (its buffer transferred) or `{ error }`.
 *
 * @module
 */

import { type MergeJob, runMergeJob } from "./patch_weights.ts";

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<MergeJob>) => void) | null;
  postMessage(message: unknown, transfer?: Transferable[]): void;
};

scope.onmessage = (e) => {
  try {
    const values = runMergeJob(e.data);
    scope.postMessage({ values }, [values.buffer as ArrayBuffer]);
  } catch (err) {
    scope.postMessage({ error: err instanceof Error ? err.message : String(err) });
  }
};
