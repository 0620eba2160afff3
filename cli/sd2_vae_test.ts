/**
 * SD 2.x, `--prediction` and `--vae` through the CLI (issue 7): v-prediction at 768x768 end to end with
 * progress (tiny SD 2.x model; the full-size random SD 2.1 file runs in tests/sd21_reference_test.ts),
 * and bad input — `--prediction` contradicting the file's v_pred tensor, a VAE of another family or a
 * missing one (exit code 1), an unknown prediction (a bad flag value: exit code 2) — each one line on
 * stderr, nothing written.
 */

import assert from "node:assert/strict";
import { encodeSafetensors } from "../models/weights/mod.ts";
import { parseSafetensors } from "../models/testdata/helpers.ts";
import { tinyCheckpointBytes } from "../models/tiny/mod.ts";
import { decodePngImage } from "../plugins/image/mod.ts";

const root = new URL("../", import.meta.url).pathname;
const dec = new TextDecoder();
const STACK = /^\s+at .+:\d+:\d+/m;

async function gen(...args: string[]) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/gen.ts", "-t", "2", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

const dir = await Deno.makeTempDir({ prefix: "sdflow-sd2-cli-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const sd2 = `${dir}/tiny-sd2.safetensors`;
await Deno.writeFile(sd2, tinyCheckpointBytes({ seed: 2, arch: "sd2" }));

/** The tiny SD 2.x checkpoint with a `v_pred` tensor (the marker of v-prediction files). */
const marked = `${dir}/tiny-sd2-vpred.safetensors`;
{
  const p = parseSafetensors(tinyCheckpointBytes({ seed: 2, arch: "sd2" }));
  const entries = p.tensors.map((t) => {
    const v = p.f32(t.name);
    return { name: t.name, dtype: "F32", shape: t.shape, data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) };
  });
  entries.push({ name: "v_pred", dtype: "F32", shape: [], data: new Uint8Array(4) });
  await Deno.writeFile(marked, encodeSafetensors(entries, p.metadata));
}

/** A VAE whose latents have 16 channels (SD3/Flux-style): only the decoder's conv_in shape matters. */
const wideVae = `${dir}/wide-vae.safetensors`;
await Deno.writeFile(
  wideVae,
  encodeSafetensors([
    { name: "decoder.conv_in.weight", dtype: "F32", shape: [64, 16, 3, 3], data: new Uint8Array(64 * 16 * 9 * 4) },
    ...[0, 1, 2, 3].map((l) => ({
      name: `decoder.up.${l}.block.0.conv1.weight`,
      dtype: "F32",
      shape: [32, 32, 3, 3],
      data: new Uint8Array(32 * 32 * 9 * 4),
    })),
    { name: "decoder.conv_out.weight", dtype: "F32", shape: [3, 32, 3, 3], data: new Uint8Array(3 * 32 * 9 * 4) },
    { name: "decoder.mid.attn_1.q.weight", dtype: "F32", shape: [64, 64, 1, 1], data: new Uint8Array(64 * 64 * 4) },
  ]),
);

const small = ["-p", "a lovely cat", "-W", "64", "-H", "64", "--steps", "1"];

/** Exit code 1: the run failed; 2: a bad flag value, found before anything runs (the CLI's convention). */
const bad: { name: string; args: string[]; error: RegExp; code?: number }[] = [
  {
    name: "--prediction eps on a file whose v_pred tensor says v",
    args: ["-m", marked, "--prediction", "eps"],
    error:
      /^error: node "checkpoint" .*prediction "eps" contradicts the file: the file marks itself v-prediction \(a v_pred tensor\)/,
  },
  {
    name: "an unknown prediction",
    args: ["-m", sd2, "--prediction", "x0"],
    error: /^--prediction "x0": node "checkpoint" input "prediction": must be one of "eps", "v"/,
    code: 2,
  },
  {
    name: "a stable-diffusion.cpp prediction sdflow does not sample (edm_v)",
    args: ["-m", sd2, "--prediction", "edm_v"],
    error: /^--prediction "edm_v": node "checkpoint" input "prediction": must be one of "eps", "v"/,
    code: 2,
  },
  {
    name: "a VAE of another family (16 latent channels)",
    args: ["-m", sd2, "--vae", wideVae],
    error:
      /^error: node "checkpoint" .*wide-vae\.safetensors: a VAE of another model family: its latents have 16 channels, the SD 2\.x model uses 4/,
  },
  {
    name: "a missing VAE file",
    args: ["-m", sd2, "--vae", `${dir}/absent.safetensors`],
    error: /^error: node "checkpoint" input "vae": VAE file not found: .*absent\.safetensors/,
  },
];

for (const c of bad) {
  Deno.test(`gen: ${c.name}: one line on stderr, exit code ${c.code ?? 1}, nothing written`, async () => {
    const out = `${dir}/bad-${c.name.replace(/\W+/g, "_")}.png`;
    const r = await gen(...c.args, ...small, "-o", out);
    assert.equal(r.code, c.code ?? 1, r.stderr);
    const lines = r.stderr.split("\n").filter((l) => l !== "");
    assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
    assert.match(lines[0], c.error);
    assert.doesNotMatch(r.stderr, STACK);
    assert.equal(await Deno.stat(out).then(() => true, () => false), false, "no image is written");
  });
}

Deno.test("gen: --prediction v on a file whose v_pred tensor agrees runs; without it the tensor decides", async () => {
  for (const extra of [["--prediction", "v"], []]) {
    const out = `${dir}/marked-${extra.length}.png`;
    const r = await gen("-m", marked, ...small, "-o", out, ...extra);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /probe/, "a stated prediction needs no probe");
    assert.equal(decodePngImage(await Deno.readFile(out)).image.width, 64);
  }
});

Deno.test("gen: tiny SD 2.x, v-prediction at 768x768 end to end, with progress", async () => {
  const out = `${dir}/sd2_768_v.png`;
  const r = await gen(
    "-m",
    sd2,
    "--prediction",
    "v",
    "-p",
    "a lovely cat",
    "-W",
    "768",
    "-H",
    "768",
    "--steps",
    "2",
    "--sampling-method",
    "euler",
    "-o",
    out,
    "-v",
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /sampler: step 1\/2/);
  assert.match(r.stderr, /sampler: step 2\/2/);
  assert.match(r.stderr, /decode \(decode\): [\d.]+ s/);
  const png = decodePngImage(await Deno.readFile(out));
  assert.deepEqual([png.image.width, png.image.height], [768, 768]);
  const graph = png.graph as { nodes: Record<string, { inputs: Record<string, unknown> }> };
  assert.equal(graph.nodes.checkpoint.inputs.prediction, "v", "the graph stored with the image has the prediction");
});
