/** The CLI end to end (spawned `deno run`) and stable-diffusion.cpp flag handling. */

import assert from "node:assert/strict";
import { validateGraph } from "../dsl/validate.ts";
import { graphFromSdcppFlags, linkSeedOverrides, parseArgs, positionalIndexes, UsageError } from "./sdcpp.ts";

/** vae_encode's tiling inputs at their defaults (no --vae-tiling). */
const UNTILED = { tiled: false, tile_size: 32, tile_overlap: 0.5 };

const root = new URL("../", import.meta.url).pathname;
const dec = new TextDecoder();

async function cli(script: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `cli/${script}.ts`, ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const STACK = /^\s+at .+:\d+:\d+/m;

Deno.test("gen: an invalid graph exits 1 with one line and no stack trace; -v adds the stack", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const f = `${dir}/bad.json`;
    await Deno.writeTextFile(
      f,
      '{ "version": 1, "nodes": { "s": { "type": "empty_latent", "inputs": { "width": 100 } } } }',
    );
    const r = await cli("gen", f);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr.trim(),
      `${f}: node "s" input "width": must be a multiple of 8, got 100 (at /nodes/s/inputs/width)`,
    );
    assert.doesNotMatch(r.stderr, STACK);
    const v = await cli("gen", f, "-v");
    assert.equal(v.code, 1);
    assert.match(v.stderr, STACK);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen: bad JSON exits 1 and a bad --set exits 2, naming the place", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const f = `${dir}/broken.json`;
    await Deno.writeTextFile(f, '{\n  "version": 1,\n  "nodes": {\n}');
    const r = await cli("gen", f);
    assert.equal(r.code, 1);
    assert.match(r.stderr.trim(), new RegExp(`^${f}:4:2: invalid JSON: expected '}'$`));
    const s = await cli("gen", "graphs/txt2img.json", "--set", "sampler.steps=0", "--dry-run");
    assert.equal(s.code, 2);
    assert.equal(
      s.stderr.trim(),
      '--set sampler.steps=0: node "sampler" input "steps": must be >= 1, got 0 (at /nodes/sampler/inputs/steps)',
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen: --dry-run prints the order; an unknown flag exits 2", async () => {
  const r = await cli("gen", "graphs/txt2img.json", "--dry-run", "--set", "sampler.seed=7");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /graphs\/txt2img\.json: valid, 7 nodes/);
  assert.match(r.stdout, /5\. sampler \(sampler\) {2}stage 2, after checkpoint, positive, negative, latent/);
  const u = await cli("gen", "graphs/txt2img.json", "--sedd", "3");
  assert.equal(u.code, 2);
  assert.equal(u.stderr.trim(), "error: unknown flag --sedd");
});

Deno.test("gen: with no model, the main command says what is missing and how to get it", async () => {
  const r = await cli("gen", "graphs/txt2img.json");
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /node "checkpoint" input "path": model file not found: models\/v1-5-pruned-emaonly\.safetensors/,
  );
  assert.match(r.stderr, /huggingface\.co/);
  assert.match(r.stderr, /--set checkpoint\.path=/);
  assert.doesNotMatch(r.stderr, STACK);
});

Deno.test("gen: the SDXL graphs without their models name the SDXL and SDXL-Turbo weights", async () => {
  const xl = await cli("gen", "graphs/sdxl.json");
  assert.equal(xl.code, 1);
  assert.match(
    xl.stderr,
    /model file not found: models\/sd_xl_base_1\.0\.safetensors\. The official Stable Diffusion XL/,
  );
  assert.match(xl.stderr, /stabilityai\/stable-diffusion-xl-base-1\.0/);
  const turbo = await cli("gen", "graphs/sdxl_turbo.json");
  assert.equal(turbo.code, 1);
  assert.match(
    turbo.stderr,
    /The official SDXL-Turbo weights are published at https:\/\/huggingface\.co\/stabilityai\/sdxl-turbo/,
  );
  assert.doesNotMatch(xl.stderr + turbo.stderr, STACK);
});

Deno.test("plan: explains nodes in order with their ops", async () => {
  const r = await cli("plan", "graphs/txt2img.json");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^graphs\/txt2img\.json: 7 nodes/);
  assert.match(r.stdout, /4\. latent \(empty_latent\)\n\s+fill: 0 FLOP, 64\.0 KiB/);
  assert.match(r.stdout, /UNet evaluations at \[2,4,64,64\]/);
});

Deno.test("sd.cpp flags: txt2img graph with sd.cpp's defaults", async () => {
  const a = parseArgs(["-m", "m.safetensors", "-p", "a cat", "-s", "-1", "-W", "768", "--steps", "8"], true);
  const { file, origins } = graphFromSdcppFlags(a.flags);
  const p = await validateGraph(file, { origins });
  assert.deepEqual(p.order, ["checkpoint", "positive", "negative", "latent", "sampler", "decode", "save"]);
  const s = p.nodes.get("sampler")!.values;
  assert.deepEqual(
    {
      seed: s.seed,
      steps: s.steps,
      cfg: s.cfg,
      sampler: s.sampler,
      scheduler: s.scheduler,
      rng: s.rng,
      denoise: s.denoise,
    },
    { seed: -1, steps: 8, cfg: 7, sampler: "euler_a", scheduler: "default", rng: "cuda", denoise: 1 },
  );
  assert.deepEqual(p.nodes.get("latent")!.values, { width: 768, height: 512, batch: 1 });
  assert.equal(p.nodes.get("positive")!.values.text, "a cat");
  assert.equal(p.nodes.get("positive")!.values.clip_skip, undefined);
  assert.equal(p.nodes.get("save")!.values.path, "output.png");
});

Deno.test("sd.cpp flags: -i makes img2img with --strength, -b and --clip-skip", async () => {
  const a = parseArgs(
    [
      "-m",
      "m.ckpt",
      "-i",
      "in.png",
      "--strength",
      "0.5",
      "-b",
      "3",
      "--clip-skip",
      "2",
      "--scheduler",
      "karras",
      "-o",
      "x.png",
    ],
    true,
  );
  const { file } = graphFromSdcppFlags(a.flags);
  const p = await validateGraph(file);
  assert.deepEqual(p.order, ["checkpoint", "positive", "negative", "image", "encode", "sampler", "decode", "save"]);
  const s = p.nodes.get("sampler")!;
  assert.equal(s.values.denoise, 0.5);
  assert.equal(s.values.batch, 3);
  assert.equal(s.values.scheduler, "karras");
  assert.deepEqual(s.refs.latent, { node: "encode", output: "latent" });
  // The posterior is sampled with the run's seed and RNG, as stable-diffusion.cpp's img2img does.
  assert.deepEqual(p.nodes.get("encode")!.values, { seed: 42, rng: "cuda", ...UNTILED });
  assert.equal(p.nodes.get("negative")!.values.clip_skip, 2);
  assert.equal(p.nodes.get("save")!.values.path, "x.png");
});

Deno.test("sd.cpp flags: --embd-dir sets the checkpoint's embeddings_dir (absent: not set)", async () => {
  const a = parseArgs(["-m", "m.safetensors", "-p", "a easynegative cat", "--embd-dir", "models/embeddings"], true);
  const { file, origins } = graphFromSdcppFlags(a.flags, a.spelled);
  const p = await validateGraph(file, { origins });
  assert.deepEqual(p.nodes.get("checkpoint")!.values, { path: "m.safetensors", embeddings_dir: "models/embeddings" });
  const plain = await validateGraph(graphFromSdcppFlags(parseArgs(["-m", "m.safetensors"], true).flags).file);
  assert.deepEqual(plain.nodes.get("checkpoint")!.values, { path: "m.safetensors" });
});

Deno.test("sd.cpp flags: --eta and --rng cpu reach the sampler; without --eta the sampler's default applies", async () => {
  const sampler = async (argv: string[]) => {
    const a = parseArgs(["-m", "m.safetensors", ...argv], true);
    const { file, origins } = graphFromSdcppFlags(a.flags);
    return (await validateGraph(file, { origins })).nodes.get("sampler")!.values;
  };
  const s = await sampler(["--sampling-method", "tcd", "--eta", "0.3", "--rng", "cpu"]);
  assert.deepEqual([s.sampler, s.eta, s.rng, s.scheduler], ["tcd", 0.3, "cpu", "default"]);
  assert.equal((await sampler([])).eta, undefined);
});

Deno.test("sd.cpp flags: img2img's encode follows the sampler's seed and rng, also through --set and -s -1", async () => {
  const built = (argv: string[]) => {
    const a = parseArgs(["-m", "m.ckpt", "-i", "in.png", ...argv], true);
    const g = graphFromSdcppFlags(a.flags, a.spelled);
    const linked = linkSeedOverrides(g.file, a.sets);
    return { ...g, sets: linked.sets, notes: [...g.notes, ...linked.notes] };
  };
  const std = built(["-s", "7", "--rng", "std_default"]);
  let p = await validateGraph(std.file, { overrides: std.sets });
  assert.deepEqual(p.nodes.get("encode")!.values, { seed: 7, rng: "std_default", ...UNTILED });
  assert.deepEqual(std.notes, []);

  const random = built(["-s", "-1"]);
  p = await validateGraph(random.file, { overrides: random.sets });
  const seed = p.nodes.get("sampler")!.values.seed as number;
  assert.ok(seed >= 0);
  assert.equal(p.nodes.get("encode")!.values.seed, seed);
  assert.deepEqual(random.notes, [`random seed ${seed}`]);

  const set = built(["--set", "sampler.seed=99", "--set", "sampler.rng=std_default"]);
  p = await validateGraph(set.file, { overrides: set.sets });
  assert.deepEqual(p.nodes.get("encode")!.values, { seed: 99, rng: "std_default", ...UNTILED });
  assert.equal(p.nodes.get("sampler")!.values.seed, 99);

  const setRandom = built(["--set", "sampler.seed=-5"]);
  p = await validateGraph(setRandom.file, { overrides: setRandom.sets });
  assert.ok((p.nodes.get("sampler")!.values.seed as number) >= 0);
  assert.equal(p.nodes.get("encode")!.values.seed, p.nodes.get("sampler")!.values.seed);

  // An explicit encode seed wins.
  const own = built(["--set", "sampler.seed=99", "--set", "encode.seed=3"]);
  p = await validateGraph(own.file, { overrides: own.sets });
  assert.equal(p.nodes.get("encode")!.values.seed, 3);

  // txt2img has no encode node: nothing is linked.
  const a = parseArgs(["-m", "m", "--set", "sampler.seed=5"], true);
  assert.deepEqual(linkSeedOverrides(graphFromSdcppFlags(a.flags).file, a.sets).sets, ["sampler.seed=5"]);
});

Deno.test("flags: -v and -t come back under their long names in both modes", () => {
  assert.deepEqual(parseArgs(["-v", "-t", "3"], false).flags, { verbose: true, threads: "3" });
  const a = parseArgs(["-m", "m", "-v", "-t", "2"], true);
  assert.equal(a.flags.verbose, true);
  assert.equal(a.flags.threads, "2");
});

Deno.test("sd.cpp flags: bad values name the flag; unsupported flags say so", async () => {
  assert.throws(() =>
    (() => {
      const a = parseArgs(["-m", "m", "-s", "x"], true);
      graphFromSdcppFlags(a.flags, a.spelled);
    })(), /-s "x": node "sampler" input "seed": expected an integer/);
  const { file, origins } = graphFromSdcppFlags(parseArgs(["-m", "m", "--sampling-method", "euler_b"], true).flags);
  await assert.rejects(
    () => validateGraph(file, { origins }),
    /--sampling-method "euler_b": node "sampler" input "sampler": must be one of/,
  );
  assert.throws(
    () => parseArgs(["-m", "m", "--t5xxl", "t5.safetensors"], true),
    (e: Error) => e instanceof UsageError && /not support yet/.test(e.message),
  );
  assert.throws(() => graphFromSdcppFlags(parseArgs(["-p", "a cat"], true).flags), /no model: give one with -m/);
});

Deno.test("flags: --set and --set-ref keep their order; positional arguments are found among flags and after --", () => {
  const a = parseArgs(["--set", "a.b={x|y}", "--set-ref", "a.c=d.e", "--set=a.d=1", "-p=-dash"], true);
  assert.deepEqual(a.sets, ["a.b={x|y}", { ref: "a.c=d.e" }, "a.d=1"]);
  assert.equal(a.flags.prompt, "-dash");
  assert.deepEqual(positionalIndexes(["-s", "-1", "g.json", "--steps", "4", "--", "-x.json"]), [2, 6]);
  assert.deepEqual(positionalIndexes(["--dry-run", "g.json", "-p", "a.json"]), [1]);
});
