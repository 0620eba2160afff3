/**
 * The add-on flags through the CLI: -M upscale, --upscale-model, --taesd, --preview, --vae-tiling, with good and
 * bad files. Bad input ends the process with ONE line on stderr naming the problem (exit 1; 2 for a bad command
 * line), never a stack trace. Models are tiny: the ESRGAN and TAESD of models/testdata/addons_reference.safetensors
 * and the tiny random checkpoint.
 */

import assert from "node:assert/strict";
import { parseSafetensors } from "../models/testdata/helpers.ts";
import { encodeSafetensors } from "../models/weights/mod.ts";
import { decodePngImage, encodePngImage } from "../plugins/image/png.ts";
import { tinyCheckpointPath } from "../plugins/nodes/checkpoint.ts";

const root = new URL("../", import.meta.url).pathname;
const dec = new TextDecoder();
const STACK = /^\s+at .+:\d+:\d+/m;
const FIXTURE = new URL("../models/testdata/addons_reference.safetensors", import.meta.url);

async function gen(...args: string[]) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/gen.ts", "-t", "2", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return { code: r.code, stderr: dec.decode(r.stderr) };
}

/** The tensors of one fixture case (`prefix/…`, weights only) as a safetensors file of their own. */
function fixtureFile(prefix: string, keep: (name: string) => boolean = () => true): Uint8Array {
  const ref = parseSafetensors(Deno.readFileSync(FIXTURE));
  const entries = ref.tensors
    .filter((t) => t.name.startsWith(`${prefix}/`) && !/\/(in|out)/.test(t.name))
    .map((t) => ({ ...t, name: t.name.slice(prefix.length + 1) }))
    .filter((t) => keep(t.name))
    .map((t) => ({
      name: t.name,
      dtype: "F32",
      shape: t.shape,
      data: new Uint8Array(ref.f32(`${prefix}/${t.name}`).buffer),
    }));
  return encodeSafetensors(entries);
}

function oneLine(r: { code: number; stderr: string }, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, r.stderr);
  // Progress lines of nodes that finished before the failing one ("✓ checkpoint (checkpoint) 1.3 s") may precede it.
  const lines = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("\u2713 "));
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, STACK);
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-addons-cli-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A 20x12 test picture. */
function picture(): Uint8Array {
  const data = Uint8Array.from({ length: 20 * 12 * 3 }, (_, i) => (i * 37) % 256);
  return encodePngImage({ width: 20, height: 12, channels: 3, data });
}

Deno.test("gen -M upscale: an ESRGAN (old names) upscales a PNG x4, repeats and tiles as asked", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/in.png`, picture());
    await Deno.writeFile(`${dir}/esrgan.safetensors`, fixtureFile("esrgan_x4"));
    const r = await gen(
      "-M",
      "upscale",
      "-i",
      `${dir}/in.png`,
      "--upscale-model",
      `${dir}/esrgan.safetensors`,
      "--upscale-tile-size",
      "8",
      "--upscale-repeats",
      "2",
      "-o",
      `${dir}/out.png`,
    );
    assert.equal(r.code, 0, r.stderr);
    const out = decodePngImage(await Deno.readFile(`${dir}/out.png`)).image;
    assert.deepEqual([out.width, out.height], [320, 192]);
  });
});

Deno.test("gen: bad upscaler files and flags: one line each", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/in.png`, picture());
    const up = (model: string, ...extra: string[]) =>
      gen("-M", "upscale", "-i", `${dir}/in.png`, "--upscale-model", model, "-o", `${dir}/out.png`, ...extra);
    await Deno.writeFile(`${dir}/noise.pth`, Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251));
    oneLine(await up(`${dir}/noise.pth`), 1, /^error: node "upscaler" .*noise\.pth is not a safetensors, PyTorch/);
    const whole = fixtureFile("esrgan_x4");
    await Deno.writeFile(`${dir}/cut.safetensors`, whole.subarray(0, whole.length >> 1));
    oneLine(await up(`${dir}/cut.safetensors`), 1, /^error: node "upscaler" .*cut\.safetensors is truncated/);
    await Deno.writeFile(`${dir}/taesd.safetensors`, fixtureFile("taesd"));
    oneLine(
      await up(`${dir}/taesd.safetensors`),
      1,
      /taesd\.safetensors: not an ESRGAN \(RRDBNet\) model: no conv_first/,
    );
    oneLine(await up(`${dir}/missing.pth`), 1, /upscaler file not found: .*missing\.pth/);
    oneLine(await gen("-M", "upscale", "-i", `${dir}/in.png`), 2, /^error: -M upscale needs a model: --upscale-model/);
    assert.equal(await Deno.stat(`${dir}/out.png`).then(() => true, () => false), false, "no image is written");
  });
});

Deno.test("gen --taesd: TAESD decodes, previews are written; a TAESD half missing is one line", async () => {
  const tiny = await tinyCheckpointPath(0);
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/taesd.safetensors`, fixtureFile("taesd"));
    const base = ["-m", tiny, "-p", "a cat", "-W", "64", "-H", "64", "--steps", "2", "-o", `${dir}/out.png`];
    const ok = await gen(
      ...base,
      "--taesd",
      `${dir}/taesd.safetensors`,
      "--preview",
      "tae",
      "--preview-path",
      `${dir}/preview.png`,
      "--vae-tiling",
      "--vae-tile-size",
      "4",
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual([decodePngImage(await Deno.readFile(`${dir}/preview.png`)).image.width], [64]);
    const proj = await gen(...base, "--preview", "proj", "--preview-path", `${dir}/proj.png`);
    assert.equal(proj.code, 0, proj.stderr);
    assert.equal(decodePngImage(await Deno.readFile(`${dir}/proj.png`)).image.width, 8, "proj previews at latent size");

    await Deno.writeFile(`${dir}/enc.safetensors`, fixtureFile("taesd", (n) => n.startsWith("encoder.")));
    oneLine(await gen(...base, "--taesd", `${dir}/enc.safetensors`), 1, /enc\.safetensors has no TAESD decoder/);
    await Deno.writeFile(`${dir}/dec.safetensors`, fixtureFile("taesd", (n) => n.startsWith("decoder.")));
    await Deno.writeFile(
      `${dir}/in.png`,
      encodePngImage({ width: 64, height: 64, channels: 3, data: new Uint8Array(64 * 64 * 3) }),
    );
    oneLine(
      await gen(...base, "-i", `${dir}/in.png`, "--taesd", `${dir}/dec.safetensors`),
      1,
      /dec\.safetensors has no TAESD encoder/,
    );
    await Deno.writeFile(`${dir}/esrgan.safetensors`, fixtureFile("esrgan_x2"));
    oneLine(await gen(...base, "--taesd", `${dir}/esrgan.safetensors`), 1, /^error: node "taesd" .*not a TAESD model/);
    oneLine(await gen(...base, "--preview", "tae"), 2, /^error: --preview tae needs a TAESD file/);
    oneLine(await gen(...base, "--vae-tiling", "--vae-tile-size", "32x16"), 2, /VAE tiles are square/);
  });
});
