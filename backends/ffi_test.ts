/**
 * Loader, buffer and plan-validation tests of the CPU backend: every bad
 * input must come back as a BackendError naming the problem, never a crash.
 */

import assert from "node:assert";
import {
  BackendBuildError,
  BackendError,
  buildBackend,
  builtLibraryPath,
  libraryFileName,
  loadNativeBackend,
  PlanWriter,
  PlanWriterError,
  SDF_DTYPE,
  SDF_OP,
  SDF_PLAN_MAGIC,
  SDF_STATUS,
} from "./mod.ts";
import { assertBackendError, rng } from "./test_helpers.ts";

const F32: number = SDF_DTYPE.f32;

Deno.test("loading the cpu backend by name builds it and reports its info", async () => {
  const path = await buildBackend("cpu");
  assert.strictEqual(path, builtLibraryPath("cpu"));
  assert.ok((await Deno.stat(path)).isFile);
  const be = await loadNativeBackend("cpu", { threads: 2 });
  assert.strictEqual(be.info.name, "cpu");
  assert.strictEqual(be.info.abi, 1);
  assert.strictEqual(be.info.threads, 2);
  assert.ok(be.info.isas.includes("scalar"));
  for (const op of ["attention", "bmm", "group_norm", "softmax", "gather_rows", "slice"]) {
    assert.ok(be.info.ops.includes(op), `ops lists ${op}`);
  }
  // by explicit path too
  const again = await loadNativeBackend(path, { threads: 1, isa: "scalar" });
  assert.strictEqual(again.info.isa, "scalar");
  assert.strictEqual(again.info.threads, 1);
});

Deno.test("a missing library is a BackendError naming the path", async () => {
  await assertBackendError(
    () => loadNativeBackend("/nonexistent/dir/libnope.so"),
    /\/nonexistent\/dir\/libnope\.so.*not found/,
  );
  await assertBackendError(() => loadNativeBackend("no_such_backend"), /backend "no_such_backend" not found/);
});

Deno.test("a garbage file is a BackendError naming the path, not a crash", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/${libraryFileName("garbage")}`;
    const r = rng(7);
    await Deno.writeFile(path, Uint8Array.from({ length: 4096 }, () => Math.floor(r() * 256)));
    const e = await assertBackendError(() => loadNativeBackend(path), /cannot load backend library/);
    assert.ok(e.message.includes(path), e.message);
    // an empty file, and an ELF header followed by junk
    await Deno.writeFile(path, new Uint8Array(0));
    await assertBackendError(() => loadNativeBackend(path), /cannot load backend library/);
    await Deno.writeFile(path, Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, ...new Array(200).fill(0x41)]));
    await assertBackendError(() => loadNativeBackend(path), /cannot load backend library/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function buildTiny(name: string, source: string): Promise<{ dir: string; lib: string }> {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(`${dir}/src`);
  await Deno.writeTextFile(`${dir}/src/${name}.c`, source);
  const lib = await buildBackend(name, { srcDir: `${dir}/src`, libDir: `${dir}/lib` });
  return { dir, lib };
}

Deno.test("a library of another ABI version is refused with both versions named", async () => {
  const { dir, lib } = await buildTiny(
    "abi2",
    `#include <stdint.h>\n__attribute__((visibility("default"))) int32_t sdf_abi_version(void) { return 2; }\n`,
  );
  try {
    const e = await assertBackendError(() => loadNativeBackend(lib), /ABI version 2, this sdflow needs 1/);
    assert.strictEqual(e.code, SDF_STATUS.E_UNSUPPORTED);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a library with the right version but missing functions is a BackendError", async () => {
  const { dir, lib } = await buildTiny(
    "partial",
    `#include <stdint.h>\n__attribute__((visibility("default"))) int32_t sdf_abi_version(void) { return 1; }\n`,
  );
  try {
    await assertBackendError(() => loadNativeBackend(lib), /is incomplete/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build errors: compiler failure carries its stderr; no compiler is named clearly", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeTextFile(`${dir}/src/broken.c`, "int f(void) { return undeclared_thing; }\n");
    await assert.rejects(
      () => buildBackend("broken", { srcDir: `${dir}/src`, libDir: `${dir}/lib` }),
      (e: unknown) =>
        e instanceof BackendBuildError && /compiling broken\.c failed/.test(e.message) &&
        /undeclared_thing/.test(e.message),
    );
    const oldPath = Deno.env.get("PATH") ?? "";
    const oldCC = Deno.env.get("CC");
    Deno.env.set("PATH", `${dir}/empty`);
    Deno.env.delete("CC");
    try {
      await assert.rejects(
        () => buildBackend("broken", { srcDir: `${dir}/src`, libDir: `${dir}/lib`, force: true }),
        (e: unknown) =>
          e instanceof BackendBuildError && e.message === "no C compiler found: install gcc or clang, or set CC",
      );
    } finally {
      Deno.env.set("PATH", oldPath);
      if (oldCC !== undefined) Deno.env.set("CC", oldCC);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("init errors: unknown or unavailable isa, bad threads", async () => {
  await assertBackendError(() => loadNativeBackend("cpu", { isa: "mmx" as "auto" }), /unknown isa "mmx"/);
  const otherArch = Deno.build.arch === "x86_64" ? "neon" : "avx512";
  const e = await assertBackendError(() => loadNativeBackend("cpu", { isa: otherArch }), /not available on this CPU/);
  assert.strictEqual(e.code, SDF_STATUS.E_UNSUPPORTED);
  await assertBackendError(() => loadNativeBackend("cpu", { threads: -1 }), /threads must be/);
});

Deno.test("buffers: write/read round trip, bounds are checked", async () => {
  const be = await loadNativeBackend("cpu", { threads: 2 });
  const b = be.alloc(256);
  try {
    assert.strictEqual(b.size, 256);
    b.write(8, new Float32Array([1.5, -2, 3]));
    assert.deepStrictEqual([...b.readInto(8, new Float32Array(3))], [1.5, -2, 3]);
    assert.deepStrictEqual([...b.read(8, 4)], [0, 0, 0xc0, 0x3f]);
    await assertBackendError(() => b.write(250, new Float32Array(2)), /outside the 256-byte buffer/);
    await assertBackendError(() => b.read(257, 0), /outside the 256-byte buffer/);
  } finally {
    b.free();
  }
  b.free(); // idempotent
  await assertBackendError(() => b.read(0, 4), /freed/);
  await assertBackendError(() => be.alloc(2 ** 52), /cannot allocate|too large/);
});

Deno.test("fromFile maps a file range at an odd offset; read-only; bounds checked", async () => {
  const be = await loadNativeBackend("cpu", { threads: 2 });
  const path = await Deno.makeTempFile();
  try {
    const bytes = Uint8Array.from({ length: 20000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff);
    await Deno.writeFile(path, bytes);
    for (const [offset, n] of [[4099, 3000], [1, 19999], [8192, 100], [0, 20000], [19999, 1], [20000, 0]]) {
      const b = be.fromFile(path, offset, n);
      try {
        assert.strictEqual(b.size, n);
        assert.deepStrictEqual(b.read(0, n), bytes.slice(offset, offset + n));
      } finally {
        b.free();
      }
    }
    await assertBackendError(() => be.fromFile(path, 19000, 1001), /beyond its end/);
    await assertBackendError(() => be.fromFile(path, 30000, 0), /beyond its end/);
    await assertBackendError(() => be.fromFile(`${path}.missing`, 0, 1), /cannot open/);
    const ro = be.fromFile(path, 5, 64);
    try {
      await assertBackendError(() => ro.write(0, new Uint8Array(4)), /read-only/);
      // a plan that writes into a file buffer is refused at run time
      const w = new PlanWriter(2);
      const x = w.tensor(0, F32, 0, [4]);
      const y = w.tensor(1, F32, 0, [4]);
      w.op(SDF_OP.SCALE, [x], [y], [], [2], []);
      const plan = be.compile(w.finish());
      const buf = be.alloc(64);
      try {
        await assertBackendError(() => plan.run([buf, ro]), /binding 1 is a read-only file buffer/);
        await plan.run([ro, buf]); // reading from it is fine
      } finally {
        plan.free();
        buf.free();
      }
    } finally {
      ro.free();
    }
  } finally {
    await Deno.remove(path);
  }
});

// ---- plan validation ----------------------------------------------------------

/** An unchecked plan encoder, to write plans PlanWriter would refuse. */
function rawPlan(h: {
  magic?: number;
  version?: number;
  nBindings: number;
  tensors: { binding: number; dtype: number; offset: number; dims: number[] }[];
  ops: { code: number; ins: number[]; outs: number[]; p?: number[]; f?: number[]; deps?: number[] }[];
}): Uint8Array {
  const out: number[] = [];
  const u32 = (v: number) => out.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  const i64 = (v: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigInt64(0, BigInt(v), true);
    out.push(...b);
  };
  const f64 = (v: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    out.push(...b);
  };
  u32(h.magic ?? SDF_PLAN_MAGIC);
  u32(h.version ?? 1);
  u32(h.nBindings);
  u32(h.tensors.length);
  u32(h.ops.length);
  for (const t of h.tensors) {
    u32(t.binding);
    u32(t.dtype);
    i64(t.offset);
    u32(t.dims.length);
    t.dims.forEach(i64);
  }
  for (const o of h.ops) {
    const p = o.p ?? [], f = o.f ?? [], deps = o.deps ?? [];
    [o.code, o.ins.length, o.outs.length, p.length, f.length, deps.length].forEach(u32);
    o.ins.forEach(u32);
    o.outs.forEach(u32);
    p.forEach(i64);
    f.forEach(f64);
    deps.forEach(u32);
  }
  return Uint8Array.from(out);
}

/** Two ops: scale then softmax over [4, 8] f32. */
function validPlan(): Uint8Array {
  const w = new PlanWriter(1);
  const a = w.tensor(0, F32, 0, [4, 8]);
  const b = w.tensor(0, F32, 128, [4, 8]);
  const c = w.tensor(0, F32, 256, [4, 8]);
  const s = w.op(SDF_OP.SCALE, [a], [b], [], [2, 1], []);
  w.op(SDF_OP.SOFTMAX, [b], [c], [], [1], [s]);
  return w.finish();
}

const t2 = (dims: number[], offset = 0, binding = 0, dtype = F32) => ({ binding, dtype, offset, dims });

Deno.test("plan validation: each malformed plan names its problem", async () => {
  const be = await loadNativeBackend("cpu", { threads: 2 });
  const compile = (bytes: Uint8Array) => () => be.compile(bytes).free();
  const ok = validPlan();
  be.compile(ok).free();
  await assertBackendError(compile(ok.slice(0, 10)), /truncated: the header needs 20 bytes, got 10/);
  const bad = ok.slice();
  bad[0] ^= 0xff;
  await assertBackendError(compile(bad), /bad magic/);
  await assertBackendError(
    compile(rawPlan({ version: 9, nBindings: 1, tensors: [], ops: [] })),
    /version 9 is not supported/,
  );
  await assertBackendError(
    compile(rawPlan({ nBindings: 1, tensors: [t2([2], 0, 3)], ops: [] })),
    /tensor 0: binding 3/,
  );
  await assertBackendError(
    compile(rawPlan({ nBindings: 1, tensors: [t2([2], 0, 0, 99)], ops: [] })),
    /tensor 0: unknown dtype 99/,
  );
  await assertBackendError(
    compile(rawPlan({ nBindings: 1, tensors: [t2([2], 0, 0, 9)], ops: [] })),
    /tensor 0: 2 q2_K elements do not fill whole blocks of 256/,
  );
  await assertBackendError(
    compile(rawPlan({ nBindings: 1, tensors: [t2([2, 0, 3])], ops: [] })),
    /tensor 0: dim 1 is 0/,
  );
  await assertBackendError(
    compile(rawPlan({ nBindings: 1, tensors: [t2([1, 1, 1, 1, 1, 1, 1])], ops: [] })),
    /tensor 0: ndim 7 exceeds 6/,
  );
  await assertBackendError(
    compile(rawPlan({ nBindings: 1, tensors: [t2([2 ** 31, 2 ** 31, 2 ** 31])], ops: [] })),
    /tensor 0: element count overflows/,
  );
  const two = [t2([4, 8]), t2([4, 8], 128)];
  await assertBackendError(
    compile(rawPlan({ nBindings: 1, tensors: two, ops: [{ code: SDF_OP.SOFTMAX, ins: [0], outs: [5] }] })),
    /op 0 \(softmax\): output 0: tensor index 5 out of range/,
  );
  await assertBackendError(
    compile(rawPlan({
      nBindings: 1,
      tensors: two,
      ops: [
        { code: SDF_OP.SOFTMAX, ins: [0], outs: [1] },
        { code: SDF_OP.SOFTMAX, ins: [1], outs: [0], deps: [1] },
      ],
    })),
    /op 1 \(softmax\): dependency on op 1, which is not an earlier op/,
  );
  const e = await assertBackendError(
    compile(rawPlan({
      nBindings: 1,
      tensors: two,
      ops: [{ code: SDF_OP.SOFTMAX, ins: [0], outs: [1] }, { code: 99, ins: [0], outs: [1] }],
    })),
    /op 1 .*unknown opcode 99/,
  );
  assert.strictEqual(e.code, SDF_STATUS.E_UNSUPPORTED);
  await assertBackendError(
    compile(rawPlan({
      nBindings: 1,
      tensors: [t2([1, 320, 4, 4]), t2([320], 0), t2([320], 0), t2([1, 320, 4, 4], 4096)],
      ops: [{ code: SDF_OP.GROUP_NORM, ins: [0, 1, 2], outs: [3], p: [33, 0], f: [1e-5] }],
    })),
    /op 0 \(group_norm\): group_norm: 320 channels not divisible by 33 groups/,
  );
  await assertBackendError(
    compile(rawPlan({
      nBindings: 1,
      tensors: [t2([2, 16, 64]), t2([2, 16, 64]), t2([2, 9, 64]), t2([2, 16, 64])],
      ops: [{ code: SDF_OP.ATTENTION, ins: [0, 1, 2], outs: [3], p: [8, 0] }],
    })),
    /op 0 \(attention\): .*disagree/,
  );
  await assertBackendError(
    compile(rawPlan({ nBindings: 1, tensors: two, ops: [{ code: SDF_OP.SOFTMAX, ins: [0, 1, 1], outs: [1] }] })),
    /softmax: expects 1 inputs, got 3/,
  );
  const trailing = new Uint8Array(ok.length + 3);
  trailing.set(ok);
  await assertBackendError(compile(trailing), /3 unexpected trailing bytes/);
  await assertBackendError(
    compile(rawPlan({ nBindings: 1, tensors: [], ops: [] }).slice(0, 16)),
    /truncated/,
  );
});

Deno.test("plan validation: every truncation and random corruption is rejected cleanly", async () => {
  const be = await loadNativeBackend("cpu", { threads: 1 });
  const ok = validPlan();
  for (let n = 0; n < ok.length; n++) {
    await assertBackendError(() => be.compile(ok.slice(0, n)).free(), /truncated|tensor|op/);
  }
  const r = rng(11);
  for (let k = 0; k < 400; k++) {
    const bad = ok.slice();
    const flips = 1 + Math.floor(r() * 4);
    for (let j = 0; j < flips; j++) bad[Math.floor(r() * bad.length)] = Math.floor(r() * 256);
    try {
      be.compile(bad).free(); // some corruptions are still valid plans
    } catch (e) {
      if (!(e instanceof BackendError)) throw e;
      assert.ok(e.message.length > 0);
    }
  }
});

Deno.test("run-time validation: binding count and tensor range vs buffer size", async () => {
  const be = await loadNativeBackend("cpu", { threads: 2 });
  const plan = be.compile(validPlan());
  const small = be.alloc(300);
  const big = be.alloc(384);
  try {
    await assertBackendError(() => plan.run([]), /the plan has 1 bindings, 0 buffers were given/);
    await assertBackendError(() => plan.run([big, big]), /the plan has 1 bindings, 2 buffers were given/);
    await assertBackendError(
      () => plan.run([small]),
      /tensor 2 f32 \[4, 8\] needs bytes \[256, 384\) of binding 0, but that buffer has 300 bytes/,
    );
    big.write(0, new Float32Array(32).fill(1));
    await plan.run([big]);
    assert.strictEqual(plan.progress(), 2);
    const prof = plan.profile();
    assert.strictEqual(prof.length, 2);
    const out = big.readInto(256, new Float32Array(32));
    for (const v of out) assert.ok(Math.abs(v - 1 / 8) < 1e-7);
  } finally {
    plan.free();
    small.free();
    big.free();
  }
});

Deno.test("a run-time kernel error (gather index out of range) reaches JS from the nonblocking run", async () => {
  const be = await loadNativeBackend("cpu", { threads: 2 });
  const w = new PlanWriter(1);
  const table = w.tensor(0, F32, 0, [10, 4]);
  const idx = w.tensor(0, SDF_DTYPE.i32, 256, [3]);
  const y = w.tensor(0, F32, 512, [3, 4]);
  w.op(SDF_OP.GATHER_ROWS, [table, idx], [y], [], [], []);
  const plan = be.compile(w.finish());
  const buf = be.alloc(1024);
  try {
    buf.write(256, new Int32Array([1, 12, 3]));
    const e = await assertBackendError(
      () => plan.run([buf]),
      /op 0 \(gather_rows\): gather_rows: index 12 at position 1 is out of range \[0, 10\)/,
    );
    assert.strictEqual(e.code, SDF_STATUS.E_INVALID);
    // the plan stays usable
    buf.write(256, new Int32Array([1, 9, 3]));
    await plan.run([buf]);
  } finally {
    plan.free();
    buf.free();
  }
});

Deno.test("freeing a plan or buffer while the plan runs is refused", async () => {
  const be = await loadNativeBackend("cpu", { threads: 2 });
  const plan = be.compile(validPlan());
  const buf = be.alloc(384);
  const running = plan.run([buf]);
  await assertBackendError(() => plan.free(), /plan is running/);
  await assertBackendError(() => buf.free(), /in use by a running plan/);
  await running;
  plan.free();
  buf.free();
});

Deno.test("PlanWriter refuses malformed plans with precise messages", () => {
  const w = new PlanWriter(2);
  assert.throws(() => w.tensor(2, F32, 0, [1]), PlanWriterError);
  assert.throws(() => w.tensor(0, 99, 0, [1]), /unknown dtype 99/);
  assert.throws(() => w.tensor(0, F32, 0, [1, 0]), /dim 1 is 0/);
  assert.throws(() => w.tensor(0, F32, 0, [1, 1, 1, 1, 1, 1, 1]), /7 dims exceed 6/);
  const t = w.tensor(0, F32, 0, [4]);
  assert.throws(() => w.op(SDF_OP.UNARY, [t], [3]), /tensor index 3 out of range/);
  assert.throws(() => w.op(SDF_OP.UNARY, [t], [t], [0], [], [0]), /dependency on op 0/);
  assert.throws(() => w.op(SDF_OP.UNARY, [t], []), /no outputs/);
  assert.strictEqual(w.op(SDF_OP.UNARY, [t], [t], [0]), 0);
  const bytes = w.finish();
  const v = new DataView(bytes.buffer);
  assert.strictEqual(v.getUint32(0, true), SDF_PLAN_MAGIC);
  assert.strictEqual(v.getUint32(8, true), 2);
  assert.strictEqual(v.getUint32(12, true), 1);
  assert.strictEqual(v.getUint32(16, true), 1);
  assert.strictEqual(bytes.length, 20 + (20 + 8) + (24 + 8 + 8));
});
