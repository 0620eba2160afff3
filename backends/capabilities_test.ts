/**
 * Capabilities: the CPU backend's cost model (moved from engine/lower.ts, values unchanged), what a native
 * library's info JSON may state, and the plan reader TypeScript backends compile from.
 */

import assert from "node:assert/strict";
import { cpuCapabilities, cpuChooseWinograd } from "./cpu/capabilities.ts";
import { nativeCapabilities } from "./native_capabilities.ts";
import { readPlan } from "./plan_reader.ts";
import { PlanWriter } from "./plan_writer.ts";
import { ALL_OPS, type BackendInfo, missingOps } from "./backend.ts";
import { SDF_DTYPE, SDF_OP } from "./abi.ts";

const info = (extra: Partial<BackendInfo> & Record<string, unknown>): BackendInfo => ({
  name: "x",
  abi: 1,
  isa: "",
  isas: [],
  threads: 1,
  dtypes: ["f32"],
  ops: [],
  ...extra,
});

Deno.test("the CPU cost model picks the tiles it always did", () => {
  assert.equal(cpuChooseWinograd(2, 320, 320, 64, 64), 6);
  assert.equal(cpuChooseWinograd(2, 640, 640, 32, 32), 4);
  assert.equal(cpuChooseWinograd(2, 1280, 1280, 8, 8), 2);
  assert.equal(cpuChooseWinograd(2, 4, 320, 64, 64), 0);
  const c = cpuCapabilities();
  assert.equal(c.conv.kind, "winograd");
  assert.deepEqual(missingOps(c), []);
  assert.equal(c.alignment, 64);
});

Deno.test("native capabilities: ops, dtypes and the optional conv/alignment/memory keys", () => {
  const all = nativeCapabilities(info({ ops: [...ALL_OPS], dtypes: ["f32", "f16"] }));
  assert.equal(all.conv.kind, "winograd");
  assert.equal(all.alignment, 64);
  assert.ok(all.dtypes.has("f16") && !all.dtypes.has("bf16"));
  // Without the Winograd stages, or saying so, a library convolves directly.
  assert.equal(nativeCapabilities(info({ ops: ["conv2d", "matmul"] })).conv.kind, "direct");
  assert.equal(nativeCapabilities(info({ ops: [...ALL_OPS], conv: "direct" })).conv.kind, "direct");
  // Only F(2,3): the model's choice is kept to the tiles it has.
  const two = nativeCapabilities(info({ ops: [...ALL_OPS], winograd_tiles: [2] }));
  assert.ok(two.conv.kind === "winograd" && two.conv.choose(2, 320, 320, 64, 64) === 2);
  const gpu = nativeCapabilities(
    info({ ops: ["unary"], alignment: 200, memory_bytes: 2 ** 30, device_memory: true, max_tensor_bytes: 2 ** 27 }),
  );
  assert.deepEqual([gpu.alignment, gpu.memoryBytes, gpu.deviceMemory, gpu.maxTensorBytes], [
    256,
    2 ** 30,
    true,
    2 ** 27,
  ]);
  assert.ok(missingOps(gpu).includes("conv2d"));
  // bf16 on AMX: F(2,3) / F(4,3) convs go to im2col (its AMX GEMM), F(6,3) stays; AVX512-BF16 and f32 keep the model.
  const amx = nativeCapabilities(info({ ops: [...ALL_OPS], precision: "bf16", bf16_unit: "amx" })).conv;
  assert.ok(amx.kind === "winograd");
  assert.deepEqual(
    [[2, 320, 320, 64, 64], [2, 640, 640, 32, 32], [2, 1280, 1280, 8, 8]].map((s) =>
      amx.choose(s[0], s[1], s[2], s[3], s[4])
    ),
    [6, 0, 0],
  );
  const avx = nativeCapabilities(info({ ops: [...ALL_OPS], precision: "bf16", bf16_unit: "avx512_bf16" })).conv;
  assert.ok(avx.kind === "winograd" && avx.choose(2, 640, 640, 32, 32) === 4);
});

Deno.test("plan reader: reads what the writer writes, and names what is wrong in a malformed plan", () => {
  const w = new PlanWriter(2);
  const x = w.tensor(0, SDF_DTYPE.f32, 0, [2, 3]);
  const y = w.tensor(1, SDF_DTYPE.f16, 256, [6]);
  w.op(SDF_OP.SCALE, [x], [y], [], [2, 0.5]);
  w.op(SDF_OP.UNARY, [y], [x], [3], [], [0]);
  const bytes = w.finish();
  const p = readPlan(bytes);
  assert.equal(p.nBindings, 2);
  assert.deepEqual(p.tensors[1], { binding: 1, dtype: SDF_DTYPE.f16, offset: 256, dims: [6], count: 6, bytes: 12 });
  assert.deepEqual(p.ops.map((o) => [o.kind, o.p, o.f, o.deps]), [["scale", [], [2, 0.5], []], ["unary", [3], [], [
    0,
  ]]]);
  assert.throws(() => readPlan(bytes.subarray(0, bytes.length - 3)), /plan truncated at byte \d+/);
  assert.throws(() => readPlan(new Uint8Array([...bytes, 0])), /1 trailing bytes after the last op/);
  const bad = bytes.slice();
  new DataView(bad.buffer).setUint32(0, 0x12345678, true);
  assert.throws(() => readPlan(bad, "mine"), /mine: not an sdflow plan \(bad magic\)/);
  const badBinding = bytes.slice();
  new DataView(badBinding.buffer).setUint32(20, 7, true); // tensor 0's binding
  assert.throws(() => readPlan(badBinding), /tensor 0: binding 7 out of range \(2 bindings\)/);
});
