/**
 * The OpenCL backend beyond op numerics (those are in cpu_ops_test.ts,
 * tests/ops_test.ts and tests/winograd_test.ts): its info, and bad input —
 * no platform, a kernel that does not compile, out of device memory, a bad
 * index found at run time — each one clear line naming the backend (and the
 * op). Ignored where this machine cannot build the backend or has no OpenCL
 * device.
 */

import assert from "node:assert";
import { BackendError, SDF_OP, SDF_STATUS } from "./mod.ts";
import { assertBackendError, optionalBackend, runOp } from "./test_helpers.ts";
import { builtLibraryPath } from "./build.ts";

const { backend: be, why } = await optionalBackend("opencl");
const ignore = !be;
if (ignore) console.log(`opencl_test: ignored (${why})`);

/** Runs `code` (a module body) in a fresh Deno with `env`; returns its stdout + stderr. */
async function inChild(code: string, env: Record<string, string>): Promise<{ ok: boolean; out: string }> {
  const mod = new URL("./mod.ts", import.meta.url).href;
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `import * as sdf from "${mod}";\n${code}`],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { ok: r.success, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

Deno.test({
  name: "opencl info names the device, its limits and capabilities",
  ignore,
  fn() {
    const info = be!.info;
    assert.strictEqual(info.name, "opencl");
    assert.ok(typeof info.device === "string" && info.device.length > 0);
    const devices = info.devices as { name: string; type: string }[];
    assert.ok(devices.length >= 1 && devices.some((d) => d.name === info.device));
    const limits = info.limits as Record<string, number>;
    for (const k of ["global_mem_bytes", "max_alloc_bytes", "local_mem_bytes", "max_work_group_size"]) {
      assert.ok(limits[k] > 0, `limits.${k}`);
    }
    const caps = info.capabilities as Record<string, unknown>;
    assert.strictEqual(caps.own_memory, true);
    assert.ok(info.ops.includes("attention") && info.ops.includes("wino_gemm") && info.ops.length === 22);
  },
});

Deno.test({
  name: "opencl: no OpenCL platform is one line naming the backend",
  ignore,
  async fn() {
    const empty = await Deno.makeTempDir();
    try {
      // ocl-icd reads the vendor list from OCL_ICD_VENDORS: an empty folder means no platform at all.
      const r = await inChild(
        `try { await sdf.loadBackend(${JSON.stringify(builtLibraryPath("opencl"))}); console.log("loaded"); }
         catch (e) { console.log("ERR " + e.message); }`,
        { OCL_ICD_VENDORS: empty },
      );
      const line = r.out.split("\n").find((l) => l.startsWith("ERR ")) ?? r.out;
      assert.match(line, /^ERR opencl: no OpenCL platform found .*install an OpenCL driver/, r.out);
    } finally {
      await Deno.remove(empty, { recursive: true });
    }
  },
});

Deno.test({
  name: "opencl: a kernel that does not compile fails the plan naming the op, kernel and file",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const src = new URL("./opencl/kernels/", import.meta.url);
      for await (const e of Deno.readDir(src)) await Deno.copyFile(new URL(e.name, src), `${dir}/${e.name}`);
      await Deno.writeTextFile(`${dir}/attention.cl`, "__kernel void attention(__global float *x) { x[0] = ; }\n");
      const r = await inChild(
        `const be = await sdf.loadBackend(${JSON.stringify(builtLibraryPath("opencl"))});
         const w = new sdf.PlanWriter(1);
         const q = w.tensor(0, 0, 0, [1, 4, 8]), o = w.tensor(0, 0, 128, [1, 4, 8]);
         w.op(sdf.SDF_OP.ATTENTION, [q, q, q], [o], [2, 0]);
         try { be.compile(w.finish()); console.log("compiled"); } catch (e) { console.log("ERR " + e.message); }
         const w2 = new sdf.PlanWriter(1);
         const x = w2.tensor(0, 0, 0, [4]), y = w2.tensor(0, 0, 64, [4]);
         w2.op(sdf.SDF_OP.SCALE, [x], [y], [], [2]);
         be.compile(w2.finish()).free();
         console.log("other kernels still build");`,
        { SDFLOW_OPENCL_KERNEL_DIR: dir },
      );
      const line = r.out.split("\n").find((l) => l.startsWith("ERR ")) ?? r.out;
      assert.match(
        line,
        /^ERR opencl: plan: op 0 \(attention\): kernel attention \(attention\.cl\) does not compile for ".+": CL_BUILD_PROGRAM_FAILURE.*error/,
        r.out,
      );
      assert.ok(r.out.includes("other kernels still build"), r.out);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "opencl: out of device memory is a NOMEM error naming the backend and the device",
  ignore,
  async fn() {
    const e = await assertBackendError(() => be!.alloc(2 ** 52), /^opencl: sdf_buffer_alloc: out of device memory/);
    assert.strictEqual(e.code, SDF_STATUS.E_NOMEM);
    // The backend still works afterwards.
    const [y] = await runOp(be!, SDF_OP.SCALE, [{ dims: [3], data: new Float32Array([1, 2, 3]) }], [[3]], [], [2]);
    assert.deepStrictEqual(Array.from(y), [2, 4, 6]);
  },
});

Deno.test({
  name: "opencl: an out-of-range gather index fails the run naming the op; invalid plans name the op",
  ignore,
  async fn() {
    const table = { dims: [4, 3], data: new Float32Array(12) };
    await assertBackendError(
      () => runOp(be!, SDF_OP.GATHER_ROWS, [table, { dims: [3], data: new Int32Array([0, 7, 1]) }], [[3, 3]]),
      /^opencl: op 0 \(gather_rows\): gather_rows: index 7 at position 1 is out of range/,
    );
    const e = await assertBackendError(
      () => runOp(be!, SDF_OP.CONV2D, [{ dims: [1, 3, 8, 8] }, { dims: [4, 2, 3, 3] }], [[1, 4, 6, 6]], [1, 1, 0, 0]),
      /^opencl: plan: op 0 \(conv2d\): CONV2D: x has 3 channels, w expects 2/,
    );
    assert.ok(e instanceof BackendError && e.code === SDF_STATUS.E_INVALID);
  },
});

Deno.test({
  name: "opencl: the GPU kernels (tiled GEMM, attention in local memory) pass the op tests on this device too",
  ignore: ignore || be!.info.device_type !== "cpu",
  async fn() {
    // On a CPU device the backend picks barrier-free kernels; SDFLOW_OPENCL_PORTABLE=1 forces the GPU ones.
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["test", "-A", new URL("./cpu_ops_test.ts", import.meta.url).pathname, "--filter", "/attention|bmm/"],
      env: { SDFLOW_OPENCL_PORTABLE: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
    assert.ok(r.success && /opencl \.\.\. .*ok/.test(out), out.slice(-3000));
  },
});
