/**
 * What a new user meets first, through the real CLI in a subprocess (issue 13): flags in any order,
 * `--set` text that stays text, exit codes, per-picture seeds, output formats, safe writes, `plan` of the demo.
 * The runs use the tiny random-weight demo model (seconds each).
 */

import assert from "node:assert/strict";
import jpeg from "jpeg-js";
import { parseParameters, readPng } from "../plugins/image/png.ts";

const root = new URL("../", import.meta.url).pathname;
const dec = new TextDecoder();

/** Runs `deno <args>` from `cwd`; with `shell`, through `bash -c shell` with the command as "$@". */
async function run(args: string[], opts: { cwd?: string; shell?: string } = {}) {
  const argv = opts.shell ? ["-c", opts.shell, "sdflow", Deno.execPath(), ...args] : args;
  const out = await new Deno.Command(opts.shell ? "bash" : Deno.execPath(), {
    args: argv,
    cwd: opts.cwd ?? root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

function cli(script: string, ...args: string[]) {
  return run(["run", "-A", `cli/${script}.ts`, ...args]);
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-usage-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);
/** The demo's checkpoint node logs this when it runs: its absence shows that no node ran. */
const RAN = /weights are RANDOM/;

Deno.test("gen: flags may come before the graph file; -- ends flags", async () => {
  for (const argv of [["--dry-run", "graphs/txt2img.json"], ["--dry-run", "--", "graphs/txt2img.json"]]) {
    const r = await cli("gen", ...argv);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /graphs\/txt2img\.json: valid, 7 nodes/);
  }
  // After --, a flag-like word is an argument, not a flag.
  const r = await cli("gen", "graphs/txt2img.json", "--", "--dry-run");
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim(), 'error: unexpected argument "--dry-run" besides the graph file graphs/txt2img.json');
});

Deno.test("gen: a flag missing its value, and bad flag values, exit 2", async () => {
  const p = await cli("gen", "-m", "model.safetensors", "-p");
  assert.equal(p.code, 2);
  assert.equal(p.stderr.trim(), "error: -p needs a value");
  const q = await cli("gen", "-m", "model.safetensors", "-p", "--steps", "3");
  assert.equal(q.code, 2);
  assert.equal(
    q.stderr.trim(),
    'error: -p needs a value, got the flag --steps (a value starting with "-": -p=VALUE)',
  );
  // The way to give such a value works.
  const dash = await cli("gen", "-m", "model.safetensors", "-p=-a cat-", "--dry-run");
  assert.equal(dash.code, 0, dash.stderr);
  const s = await cli("gen", "-m", "model.safetensors", "-s", "x");
  assert.equal(s.code, 2);
  assert.equal(s.stderr.trim(), '-s "x": node "sampler" input "seed": expected an integer, got "x"');
  const w = await cli("gen", "-m", "model.safetensors", "-W", "100");
  assert.equal(w.code, 2);
  assert.match(w.stderr, /^-W "100": node "latent" input "width": must be a multiple of 8/);
  const flag = await cli("gen", "graphs/txt2img.json", "-p", "a cat");
  assert.equal(flag.code, 2);
  assert.equal(
    flag.stderr.trim(),
    "error: -p is a stable-diffusion.cpp flag, used without a graph file; with a graph, set inputs with " +
      "--set node.input=value (e.g. --set positive.text=…, if the graph has that node)",
  );
  const prec = await cli("gen", "-m", "model.safetensors", "--precision", "f16");
  assert.equal(prec.code, 2);
  assert.equal(prec.stderr.trim(), 'error: --precision expects f32 or bf16, got "f16"');
  const set = await cli("gen", "graphs/txt2img.json", "--set");
  assert.equal(set.code, 2);
  assert.equal(set.stderr.trim(), "error: --set needs a value");
});

Deno.test("gen --help: --backend's default is cpu, --set-ref is documented, no command that does not exist", async () => {
  const r = await cli("gen", "--help");
  assert.equal(r.code, 0);
  assert.match(r.stdout, /--backend NAME .*\n.*\(default: cpu/);
  assert.doesNotMatch(r.stdout, /best available/);
  assert.match(r.stdout, /--set-ref node\.input=node\.output/);
  assert.doesNotMatch(r.stdout, /serve/);
});

Deno.test("gen: --set text stays text; --set-ref wires; a batch records seed + i per picture", async () => {
  await withTemp(async (dir) => {
    const r = await cli(
      "gen",
      "--set",
      "positive.text={red|blue} cat",
      "--set-ref",
      "sampler.latent=latent.latent",
      "--set",
      "latent.batch=2",
      "graphs/demo.json",
      "--set",
      `save.path=${dir}/pic.png`,
    );
    assert.equal(r.code, 0, r.stderr);
    for (const [i, seed] of [[1, 42], [2, 43]]) {
      const png = await readPng(`${dir}/pic_${i}.png`);
      const p = parseParameters(png.parameters!);
      assert.equal(p.prompt, "{red|blue} cat");
      assert.equal(p.fields.Seed, String(seed));
      assert.equal(p.fields["Batch pos"], String(i - 1));
    }
    // A --set-ref to a node that does not exist is reported against the flag, exit 2.
    const bad = await cli("gen", "graphs/demo.json", "--set-ref", "sampler.latent=nothing.latent", "--dry-run");
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /^--set-ref sampler\.latent=nothing\.latent: node "sampler" input "latent": refers to unknown/,
    );
  });
});

Deno.test("gen: -o .jpg and .webp write those formats; other extensions are refused (exit 2) before any node runs", async () => {
  await withTemp(async (dir) => {
    for (const name of ["pic.jpg", "pic.webp"]) {
      const r = await cli("gen", "graphs/demo.json", "--set", `save.path=${dir}/${name}`);
      assert.equal(r.code, 0, r.stderr);
    }
    const jpg = await Deno.readFile(`${dir}/pic.jpg`);
    const decoded = jpeg.decode(jpg, { useTArray: true });
    assert.deepEqual([decoded.width, decoded.height], [64, 64]);
    assert.match(decoded.comments?.[0] ?? "", /^a cat wearing a tiny hat\nSteps: 4, Sampler: Euler, .*Seed: 42/);
    const webp = await Deno.readFile(`${dir}/pic.webp`);
    assert.equal(dec.decode(webp.subarray(0, 4)) + dec.decode(webp.subarray(8, 12)), "RIFFWEBP");

    // Another extension is a bad value (exit 2), found when the graph is checked: nothing runs.
    const gif = await cli("gen", "graphs/demo.json", "--set", `save.path=${dir}/pic.gif`);
    assert.equal(gif.code, 2);
    assert.match(
      gif.stderr,
      /^--set save\.path=.*pic\.gif: node "save" input "path": got ".*pic\.gif"; expected: Output file: \.png, \.jpg \(\.jpeg\) or \.webp\./,
    );
    assert.doesNotMatch(gif.stderr, RAN);
    const o = await cli("gen", "-m", "model.safetensors", "-o", "x.bmp", "--dry-run");
    assert.equal(o.code, 2);
    assert.match(o.stderr, /^-o "x\.bmp": node "save" input "path": got "x\.bmp"; expected: /);
  });
});

Deno.test("gen: the output path is checked before generating", async () => {
  await withTemp(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "");
    const r = await cli("gen", "graphs/demo.json", "--set", `save.path=${dir}/file/pic.png`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /node "save" input "path": cannot write .*file\/pic\.png: .*file is a file, not a folder/);
    assert.doesNotMatch(r.stderr, RAN);
    await Deno.mkdir(`${dir}/folder.png`);
    const f = await cli("gen", "graphs/demo.json", "--set", `save.path=${dir}/folder.png`);
    assert.equal(f.code, 1);
    assert.match(f.stderr, /cannot write .*folder\.png: it is a folder/);
    assert.doesNotMatch(f.stderr, RAN);
  });
});

Deno.test("gen: a write that fails (file size limit, as a full disk) keeps the older picture and leaves no file", async () => {
  await withTemp(async (dir) => {
    await Deno.writeTextFile(`${dir}/pic.png`, "an older picture");
    // Writes past 4 KiB fail with EFBIG (SIGXFSZ ignored), as writes to a full disk fail with ENOSPC.
    const r = await run(["run", "-A", "cli/gen.ts", "graphs/demo.json", "--set", `save.path=${dir}/pic.png`], {
      shell: `trap '' XFSZ; ulimit -f 4; exec "$@"`,
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /could not write .*pic\.png: File too large/);
    assert.equal(await Deno.readTextFile(`${dir}/pic.png`), "an older picture");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["pic.png"]);
    assert.ok(!(await exists(`${dir}/pic_1.png`)));
  });
});

Deno.test("plan: the demo's model nodes are priced (no 'cost unknown')", async () => {
  const r = await cli("plan", "graphs/demo.json");
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /cost unknown/);
  assert.match(r.stdout, /2\. positive \(clip_encode\).*\n\s+text_encoder\./);
  assert.match(r.stdout, /sampler \(sampler\)[^\n]*\n\s+unet\./);
  assert.match(r.stdout, /decode \(vae_decode\)[^\n]*\n\s+vae_decoder\./);
  assert.match(r.stdout, /4 UNet evaluations at \[2,4,8,8\]/);
});
