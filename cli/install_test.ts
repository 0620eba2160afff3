/**
 * The `sdflow` command installed from this checkout (README, "Install") into a temporary
 * DENO_INSTALL_ROOT, run from another folder: relative paths are the caller's; `schema --plugin`
 * resolves from there and never overwrites sdflow's own schema; `deno task` keeps the caller's folder too.
 */

import assert from "node:assert/strict";
import { SCHEMA_FILE } from "./schema.ts";

const root = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const dec = new TextDecoder();

/** Runs a command in `cwd`, without an inherited INIT_CWD (which `deno task test` sets, and nested tasks keep). */
async function run(cmd: string, args: string[], cwd: string, extra: Record<string, string> = {}) {
  const env: Record<string, string> = { ...Deno.env.toObject(), NO_COLOR: "1", ...extra };
  delete env.INIT_CWD;
  const out = await new Deno.Command(cmd, {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
    env,
    clearEnv: true,
  }).output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A plugin with one node type, `shout`, as a user would write next to their graphs. */
const PLUGIN = `import { defineNode } from "${root}/plugins/node.ts";
export const shout = defineNode({
  type: "shout",
  description: "Upper-cases a text.",
  inputs: { text: { schema: { type: "string", default: "" } } },
  outputs: { text: "STRING" },
  run: ({ text }) => Promise.resolve({ text: text.toUpperCase() }),
});
export default { nodes: [shout] };
`;

Deno.test("sdflow installs from the checkout and runs gen, plan, schema and serve from any folder", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "sdflow-install-" });
  try {
    const install = await run(
      Deno.execPath(),
      ["install", "-g", "-A", "-n", "sdflow", "--config", `${root}/deno.json`, `${root}/cli/main.ts`],
      tmp,
      { DENO_INSTALL_ROOT: `${tmp}/root` },
    );
    assert.equal(install.code, 0, install.stderr);
    const sdflow = `${tmp}/root/bin/sdflow`;
    const work = `${tmp}/work`;
    await Deno.mkdir(`${work}/plugins`, { recursive: true });
    const demo = JSON.parse(await Deno.readTextFile(`${root}/graphs/demo.json`));
    delete demo.$schema;
    demo.nodes.save.inputs.path = "out/demo.png"; // relative: the caller's folder
    await Deno.writeTextFile(`${work}/graph.json`, JSON.stringify(demo));
    await Deno.writeTextFile(`${work}/plugins/shout.ts`, PLUGIN);

    const help = await run(sdflow, ["--help"], work);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /gen .*\n\s+plan .*\n\s+schema .*\n\s+serve /);
    const unknown = await run(sdflow, ["serv"], work);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "serv" \(did you mean "serve"\?\)/);
    const serveHelp = await run(sdflow, ["serve", "--help"], work);
    assert.equal(serveHelp.code, 0, serveHelp.stderr);
    assert.match(serveHelp.stdout, /usage: sdflow serve/);

    const gen = await run(sdflow, ["gen", "graph.json"], work);
    assert.equal(gen.code, 0, gen.stderr);
    assert.ok((await Deno.stat(`${work}/out/demo.png`)).isFile);

    const plan = await run(sdflow, ["plan", "graph.json"], work);
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(plan.stdout, /^graph\.json: 7 nodes/);

    const before = await Deno.readTextFile(SCHEMA_FILE);
    const noOut = await run(sdflow, ["schema", "--plugin", "./plugins/shout.ts"], work);
    assert.equal(noOut.code, 2);
    assert.match(noOut.stderr, /--plugin needs --out FILE/);
    const schema = await run(sdflow, ["schema", "--plugin", "./plugins/shout.ts", "--out", "my.schema.json"], work);
    assert.equal(schema.code, 0, schema.stderr);
    assert.match(await Deno.readTextFile(`${work}/my.schema.json`), /"shout"/);
    const stdout = await run(sdflow, ["schema", "--plugin", "plugins/shout.ts", "--out", "-"], work);
    assert.equal(stdout.code, 0, stdout.stderr);
    assert.equal(stdout.stdout, await Deno.readTextFile(`${work}/my.schema.json`));
    const missing = await run(sdflow, ["schema", "--plugin", "./nowhere.ts", "--out", "-"], work);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, new RegExp(`plugin "./nowhere.ts" not found \\(looked for ${work}/nowhere\\.ts\\)`));

    // deno task, started from another folder, reads relative paths from there too.
    const task = await run(
      Deno.execPath(),
      ["task", "--config", `${root}/deno.json`, "schema", "--plugin", "./plugins/shout.ts", "--out", "task.json"],
      work,
    );
    assert.equal(task.code, 0, task.stderr);
    assert.match(await Deno.readTextFile(`${work}/task.json`), /"shout"/);
    assert.equal(await Deno.readTextFile(SCHEMA_FILE), before, "sdflow's own schema is untouched");

    // A process that deno task did not start (a test's deno run, under `deno task test` from elsewhere)
    // keeps its own folder, whatever INIT_CWD it inherits.
    const direct = await run(Deno.execPath(), ["run", "-A", "cli/gen.ts", "graphs/txt2img.json", "--dry-run"], root, {
      INIT_CWD: work,
    });
    assert.equal(direct.code, 0, direct.stderr);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
