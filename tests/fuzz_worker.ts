/**
 * Runs fuzz cases for tests/fuzz_runner.ts, one message per case, so that the runner can end a
 * case that hangs by terminating this worker. Replies `{ i, outcome, detail }` with outcome
 * "value", "own-error" (the module's error type) or "crash" (anything else thrown).
 */

/// <reference lib="deno.worker" />

import { FUZZ_TARGETS } from "./fuzz_targets.ts";

let scratch: string | undefined;

self.onmessage = async (ev: MessageEvent<{ area: string; i: number; bytes: Uint8Array }>) => {
  const { area, i, bytes } = ev.data;
  const target = FUZZ_TARGETS[area];
  scratch ??= await Deno.makeTempDir({ prefix: `sdflow-fuzz-${area}-` });
  try {
    await target.run(bytes, scratch);
    self.postMessage({ i, outcome: "value" });
  } catch (e) {
    const own = target.isOwnError(e);
    const detail = e instanceof Error ? `${e.constructor.name}: ${e.message.slice(0, 300)}` : `non-Error ${String(e)}`;
    const stack = !own && e instanceof Error ? (e.stack ?? "").split("\n").slice(1, 6).join("\n") : undefined;
    self.postMessage({ i, outcome: own ? "own-error" : "crash", detail, stack });
  }
};
