/**
 * The README's TypeScript example runs as written (issue 13: it imported an unmapped
 * `sdflow/backends/mod.ts` and used an undefined `graph`): saved in sdflow's root folder, as the
 * README says, and run with `deno run -A`, it prints the backend's name and silu(x @ w^T).
 */

import assert from "node:assert/strict";

const root = new URL("../../../", import.meta.url).pathname;

Deno.test("backend-plugin README: the TypeScript example runs as written", async () => {
  const readme = await Deno.readTextFile(new URL("./README.md", import.meta.url));
  const blocks = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  const example = blocks.find((b) => b.includes("loadBackendManifest"));
  assert.ok(example, "the README has a TypeScript example that loads the manifest");
  assert.doesNotMatch(example, /from "sdflow\//, "imports must be paths that resolve without an import map");
  const file = `${root}try_backend.${crypto.randomUUID()}.ts`;
  await Deno.writeTextFile(file, example);
  try {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", file],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const out = new TextDecoder().decode(r.stdout);
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    assert.match(out, /^sdflow-ref-example Float32Array\(3\)/);
    // silu(1), silu(-2), silu(-1) (x = [1, -2], w rows [1,0], [0,1], [1,1]).
    const silu = (v: number) => v / (1 + Math.exp(-v));
    const got = [...out.matchAll(/-?\d+\.\d+/g)].map((m) => Number(m[0]));
    assert.equal(got.length, 3, out);
    [1, -2, -1].forEach((v, i) => assert.ok(Math.abs(got[i] - silu(v)) < 1e-6, `y[${i}] = ${got[i]}`));
  } finally {
    await Deno.remove(file);
  }
});
