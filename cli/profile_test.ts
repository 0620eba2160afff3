/** `--profile`: per-op times accumulated per network, kind and label, and the report's layout. */

import assert from "node:assert/strict";
import { opGroup, OpProfiler } from "./profile.ts";

Deno.test("opGroup: Winograd stages by tile size, other ops by kind", () => {
  assert.equal(opGroup({ kind: "wino_gemm", note: "F(4,3) 64 tiles" }), "wino_gemm F(4,3)");
  assert.equal(opGroup({ kind: "wino_input", note: "F(2,3)" }), "wino_input F(2,3)");
  assert.equal(opGroup({ kind: "wino_gemm" }), "wino_gemm");
  assert.equal(opGroup({ kind: "matmul", note: "F(4,3)" }), "matmul");
});

Deno.test("OpProfiler: totals per network, kind and op over runs; shares of the summed op time; GFLOP/s", () => {
  const p = new OpProfiler();
  assert.equal(p.empty, true);
  const unetRun = [
    { kind: "wino_gemm", note: "F(4,3)", label: "unet.in.1", flops: 4e9, ms: 2 },
    { kind: "matmul", label: "unet.attn.q", flops: 1e9, ms: 1 },
    { kind: "group_norm", label: "unet.in.1", flops: 0, ms: 1 },
  ];
  p.add("unet", unetRun, 3); // 4 ms of op time in 3 ms of wall time: ops overlapped
  p.add("unet", unetRun, 3);
  p.add("vae decoder", [{ kind: "conv2d", label: "decoder.conv_in", flops: 2e9, ms: 2 }], 2);
  const lines = p.report({ top: 3 });
  const text = lines.join("\n");
  assert.match(lines[0], /overlap/);
  assert.match(lines[0], /\(0\.01 s\)/); // 10 ms of op time in all
  // networks, slowest first: unet 2 runs, 6 ms wall, 8 ms of op time, 10 GFLOP → 1666.7 GFLOP/s of wall time
  assert.match(text, /^unet\s+2\s+6\.00\s+3\.00\s+8\.00\s+10\.0\s+1666\.7$/m);
  assert.match(text, /^vae decoder\s+1\s+2\.00\s+2\.00\s+2\.00\s+2\.0\s+1000\.0$/m);
  // by kind: the unet's Winograd GEMMs are 4 of 10 ms at 8 GFLOP / 4 ms
  assert.match(text, /^unet\s+wino_gemm F\(4,3\)\s+2\s+4\.00\s+40\.0%\s+2000\.0$/m);
  assert.match(text, /^unet\s+group_norm\s+2\s+2\.00\s+20\.0%\s+-$/m);
  // top ops: the same label under two kinds stays two rows; only `top` rows
  const top = lines.slice(lines.findIndex((l) => l.startsWith("top 3 ops")) + 2);
  assert.equal(top.length, 3);
  assert.match(top[0], /^4\.00\s+40\.0%\s+2000\.0\s+2\s+unet\s+wino_gemm F\(4,3\)\s+unet\.in\.1$/);
});

Deno.test("OpProfiler: an empty profile says why", () => {
  assert.match(new OpProfiler().report().join("\n"), /no network ran/);
});
