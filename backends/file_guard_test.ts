/**
 * Weight files changed under a running program (issue 13). The CPU backend maps weights in place;
 * a model file truncated or rewritten meanwhile must end in one clear line naming the file, never
 * a bare SIGBUS and never a picture made from changed weights:
 *  - changed before a run (or during one that then completes): the run fails with SDF_E_IO naming
 *    the file (size or mtime differ from when it was mapped);
 *  - truncated while a run reads it: the backend's SIGBUS handler prints one line naming the file
 *    and exits with status 1 (checked in a subprocess, since the process ends).
 * Also: backend errors carry the C ABI's status code (`sdf_last_status`), not one guessed from
 * the message text.
 */

import assert from "node:assert/strict";
import {
  BackendError,
  loadNativeBackend,
  type NativeBackend as Backend,
  PlanWriter,
  SDF_DTYPE,
  SDF_OP,
  SDF_STATUS,
} from "./mod.ts";

const F32: number = SDF_DTYPE.f32;
const I32: number = SDF_DTYPE.i32;
const root = new URL("../", import.meta.url).pathname;

let cpu: Promise<Backend> | undefined;
const backend = () => cpu ??= loadNativeBackend("cpu", { threads: 1 });

/** A plan reading `n` f32 from binding 0 (the file) and writing 2x them to binding 1. */
function scalePlan(n: number): Uint8Array {
  const w = new PlanWriter(2);
  const x = w.tensor(0, F32, 0, [n]);
  const y = w.tensor(1, F32, 0, [n]);
  w.op(SDF_OP.SCALE, [x], [y], [], [2, 0], []);
  return w.finish();
}

async function catchError(fn: () => unknown): Promise<BackendError> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof BackendError, `expected a BackendError, got ${e}`);
    return e;
  }
  throw new Error("expected a BackendError");
}

Deno.test("file guard: a mapped file truncated, rewritten or replaced between runs", async () => {
  const be = await backend();
  const dir = await Deno.makeTempDir();
  const path = `${dir}/weights.bin`;
  const n = 4096;
  const values = Float32Array.from({ length: n }, (_, i) => i);
  try {
    for (const change of ["truncate", "rewrite", "replace"] as const) {
      await Deno.writeFile(path, new Uint8Array(values.buffer));
      const file = be.fromFile(path, 0, n * 4);
      const out = be.alloc(n * 4);
      const plan = be.compile(scalePlan(n));
      try {
        await plan.run([file, out]);
        assert.equal(out.readInto(4 * 7, new Float32Array(1))[0], 14);
        // A file's mtime has at least 1 ns resolution here; make sure the rewrite lands on another tick.
        await new Promise((r) => setTimeout(r, 20));
        if (change === "truncate") await Deno.truncate(path, 100);
        else if (change === "rewrite") {
          // Same size, new bytes: without the check the next run would quietly use them.
          await Deno.writeFile(path, new Uint8Array(new Float32Array(n).fill(-1).buffer));
        } else {
          // Replaced by rename (how downloads and copies usually land): the mapping keeps the old inode.
          await Deno.writeFile(`${path}.new`, new Uint8Array(8));
          await Deno.rename(`${path}.new`, path);
        }
        if (change === "replace") {
          await plan.run([file, out]);
          assert.equal(out.readInto(4 * 7, new Float32Array(1))[0], 14, "the old bytes, intact");
          continue;
        }
        const e = await catchError(() => plan.run([file, out]));
        assert.equal(e.code, SDF_STATUS.E_IO);
        assert.ok(e.message.startsWith(`sdflow: ${path} was `), e.message);
        assert.match(
          e.message,
          change === "truncate"
            ? /was truncated or resized while mapped \(16384 bytes when opened, 100 before the run\)/
            : /was rewritten while mapped \(its modification time changed before the run\)/,
        );
        assert.doesNotMatch(e.message, /\n/);
      } finally {
        plan.free();
        out.free();
        file.free();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs `code` (a module body with `be`, `path` in scope) in a subprocess; returns its exit code and output. */
async function subprocess(code: string, path: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const dir = await Deno.makeTempDir();
  const script = `${dir}/child.ts`;
  await Deno.writeTextFile(
    script,
    `import { loadNativeBackend, PlanWriter, SDF_DTYPE, SDF_OP } from ${JSON.stringify(`${root}backends/mod.ts`)};
const be = await loadNativeBackend("cpu", { threads: 1 });
const path = ${JSON.stringify(path)};
${code}
`,
  );
  try {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const dec = new TextDecoder();
    return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const TRUNCATED_LINE =
  /^sdflow: (.+) changed or was truncated while mapped \(a read past its new end\); the run was stopped and nothing was written\. Do not modify a model file while sdflow uses it\.$/;

Deno.test({
  name: "file guard: truncated after mapping, before the first touch: one line naming the file, exit 1",
  ignore: Deno.build.os === "windows",
  async fn() {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/model.safetensors`;
    try {
      await Deno.writeFile(path, new Uint8Array(1 << 20).fill(7));
      const r = await subprocess(
        `const buf = be.fromFile(path, 0, 1 << 20);
await Deno.truncate(path, 0);
const got = buf.read(65536, 16); // reads the mapping: SIGBUS
console.log("read", got.join(","));`,
        path,
      );
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, "", "nothing after the fault ran");
      const lines = r.stderr.split("\n").filter((l) => l !== "");
      assert.equal(lines.length, 1, r.stderr);
      assert.equal(lines[0].match(TRUNCATED_LINE)?.[1], path, lines[0]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "file guard: truncated while a plan reads it: one line naming the file, exit 1, no result",
  ignore: Deno.build.os === "windows",
  async fn() {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/unet.safetensors`;
    try {
      const n = 1 << 20; // 4 MiB of f32, read by each of 2000 ops: seconds of work, truncated after the first op
      await Deno.writeFile(path, new Uint8Array(n * 4));
      const r = await subprocess(
        `const n = ${n};
const w = new PlanWriter(2);
const x = w.tensor(0, SDF_DTYPE.f32, 0, [n]);
const y = w.tensor(1, SDF_DTYPE.f32, 0, [n]);
let prev = -1;
for (let i = 0; i < 2000; i++) prev = w.op(SDF_OP.SCALE, [x], [y], [], [1, 0], prev < 0 ? [] : [prev]);
const plan = be.compile(w.finish());
const file = be.fromFile(path, 0, n * 4);
const out = be.alloc(n * 4);
const done = plan.run([file, out]).then(() => "finished", (e) => "failed: " + e.message);
while (plan.progress() < 1) await new Promise((r) => setTimeout(r, 1));
if (plan.progress() >= 2000) { console.log("too fast"); Deno.exit(3); }
await Deno.truncate(path, 4096);
console.log(await done);`,
        path,
      );
      assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
      assert.equal(r.stdout, "", "the run never completed");
      const lines = r.stderr.split("\n").filter((l) => l !== "");
      assert.equal(lines.length, 1, r.stderr);
      assert.equal(lines[0].match(TRUNCATED_LINE)?.[1], path, lines[0]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "file guard: a SIGBUS that is not about a mapping goes to the previous handler, as without sdflow's",
  ignore: Deno.build.os === "windows",
  async fn() {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/w.bin`;
    try {
      await Deno.writeFile(path, new Uint8Array(4096));
      // A SIGBUS sent by kill: its si_addr lies in no mapping. The process must fare exactly as it
      // does when the backend never installed its handler (Deno's runtime handles SIGBUS itself).
      const body = `Deno.kill(Deno.pid, "SIGBUS");
await new Promise((r) => setTimeout(r, 500));
console.log("after");`;
      const without = await subprocess(body, path);
      const withGuard = await subprocess(`be.fromFile(path, 0, 4096); // installs the handler\n${body}`, path);
      assert.equal(withGuard.code, without.code);
      assert.equal(withGuard.stdout, without.stdout);
      assert.doesNotMatch(withGuard.stderr, /sdflow: /, "not reported as a changed model file");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("backend errors carry the C ABI's status code, not one guessed from the message", async () => {
  const be = await backend();
  // Channel mismatch: the kernel says "(groups unsupported)" but reports SDF_E_INVALID.
  const bad = new PlanWriter(1);
  const x = bad.tensor(0, F32, 0, [1, 3, 8, 8]);
  const w = bad.tensor(0, F32, 1024, [4, 2, 3, 3]);
  const y = bad.tensor(0, F32, 2048, [1, 4, 6, 6]);
  bad.op(SDF_OP.CONV2D, [x, w], [y], [1, 1, 0, 0], [], []);
  const e1 = await catchError(() => be.compile(bad.finish()));
  assert.match(e1.message, /unsupported/);
  assert.equal(e1.code, SDF_STATUS.E_INVALID, e1.message);

  // An i32 weight: a dtype the kernel does not implement, SDF_E_UNSUPPORTED whatever the wording.
  const dt = new PlanWriter(1);
  const x2 = dt.tensor(0, F32, 0, [1, 2, 8, 8]);
  const w2 = dt.tensor(0, I32, 1024, [4, 2, 3, 3]);
  const y2 = dt.tensor(0, F32, 2048, [1, 4, 6, 6]);
  dt.op(SDF_OP.CONV2D, [x2, w2], [y2], [1, 1, 0, 0], [], []);
  const e2 = await catchError(() => be.compile(dt.finish()));
  assert.equal(e2.code, SDF_STATUS.E_UNSUPPORTED, e2.message);

  // Files: a folder, a missing file, a range past the end are I/O errors.
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/f`, new Uint8Array(16));
    for (const [p, off, n] of [[dir, 0, 1], [`${dir}/missing`, 0, 1], [`${dir}/f`, 8, 16]] as const) {
      const e = await catchError(() => be.fromFile(p, off, n));
      assert.equal(e.code, SDF_STATUS.E_IO, e.message);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // The ABI function itself.
  assert.equal(be.symbols.sdf_last_status?.(), SDF_STATUS.E_IO);
});
