/**
 * Bounded, seeded fuzzing (issue 13): random mutations of valid files through the PNG decoder
 * (plugins/image/png.ts), graph parsing and validation (dsl/), and the safetensors, GGUF and
 * PyTorch checkpoint header readers (models/weights/). Every case must give a value or the
 * module's own error (tests/fuzz_targets.ts says which): never a crash (any other exception), a
 * hang (no result within FUZZ_TIMEOUT_MS, in a worker that is then terminated) or exhausted
 * memory (a V8 heap limit on the fuzzing process, and 2 GiB resident at most).
 *
 * Deterministic: case i of an area always mutates the same seed file the same way
 * (tests/fuzz_runner.ts). The defaults take about a minute in all on a quiet 2-core machine; set
 * FUZZ_CASES (a multiplier, e.g. 10) and FUZZ_SEED to search further, and rerun a failure with
 * the seed and case it names:
 *
 *   deno run -A --v8-flags=--max-old-space-size=768 tests/fuzz_runner.ts png 1 <cases> 5000
 */

import assert from "node:assert/strict";
import type { FuzzSummary } from "./fuzz_runner.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 20261202);
const SCALE = Number(Deno.env.get("FUZZ_CASES") ?? 1);
const FUZZ_TIMEOUT_MS = 5000;
/** Cases per area: each area gets roughly 15-25 s on the shared 2-core machine. */
const CASES: Record<string, number> = { png: 3000, graph: 600, weights: 1000 };

async function fuzz(area: string): Promise<void> {
  const cases = Math.max(1, Math.round(CASES[area] * SCALE));
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--max-old-space-size=768",
      new URL("./fuzz_runner.ts", import.meta.url).pathname,
      area,
      String(SEED),
      String(cases),
      String(FUZZ_TIMEOUT_MS),
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const out = new TextDecoder().decode(r.stdout).trim().split("\n");
  const last = out[out.length - 1] ?? "";
  if (!r.success || !last.startsWith("{")) {
    // The process itself died (out of memory, a fatal error): name the case it was running.
    const started = out.filter((l) => l.startsWith("start ")).pop();
    const err = new TextDecoder().decode(r.stderr).trim().split("\n").slice(-8).join("\n");
    assert.fail(`fuzz ${area} (seed ${SEED}) died with code ${r.code} at ${started ?? "startup"}:\n${err}`);
  }
  const s: FuzzSummary = JSON.parse(last);
  const report = s.failures.map((f) =>
    `case ${f.case}: ${f.kind}: ${f.detail}${f.stack ? `\n${f.stack}` : ""}\n  input starts ${f.head}`
  ).join("\n");
  assert.equal(s.failures.length, 0, `fuzz ${area} (seed ${SEED}):\n${report}`);
  assert.equal(s.values + s.ownErrors, cases);
  // Both outcomes occur: the mutations reach past the first check (not only rejected), and reject.
  assert.ok(s.values > 0 && s.ownErrors > 0, JSON.stringify(s));
}

for (const area of Object.keys(CASES)) {
  Deno.test(`fuzz ${area}: mutated files give a value or the module's own error, never a crash, hang or OOM`, () =>
    fuzz(area));
}
