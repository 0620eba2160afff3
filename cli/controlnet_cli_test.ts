/**
 * ControlNet through the sd.cpp flags, on the tiny checkpoints and the tiny ControlNets: a run with
 * --canny and a control image of another size (resized, and said so in one line), an SDXL run with a
 * diffusers-layout SDXL ControlNet, and bad input — a ControlNet for another model, an SD 1 ControlNet on
 * SDXL, a corrupt file, flags without their partner — each one clear line.
 */

import { assert, assertEquals } from "../tests/assert.ts";
import { loadTinyReference, loadTinySdxlReference } from "../models/testdata/reference.ts";
import {
  controlNetFileBytes,
  tinyControlNetBytes,
  tinySdxlControlNetTensors,
} from "../models/controlnet/testdata/tiny_controlnet.ts";
import { encodePngImage } from "../plugins/image/png.ts";

const root = new URL("../", import.meta.url).pathname;
const STACK = /^\s+at .+:\d+:\d+/m;

async function gen(dir: string, ...extra: string[]) {
  return await genWith(`${dir}/tiny.safetensors`, dir, ...extra);
}

async function genWith(model: string, dir: string, ...extra: string[]) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/gen.ts", "-m", model, "-p", "a cat", "-W", "64", "-H", "64"]
      .concat(["--steps", "1", "-t", "2", "-o", `${dir}/out.png`, ...extra]),
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

Deno.test("CLI ControlNet: --canny with a resized control image runs; bad ControlNets give one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-cn-cli-" });
  try {
    Deno.writeFileSync(`${dir}/tiny.safetensors`, loadTinyReference().ckptBytes);
    Deno.writeFileSync(`${dir}/cn.safetensors`, tinyControlNetBytes());
    Deno.writeFileSync(`${dir}/other.safetensors`, tinyControlNetBytes({ breakContext: true }));
    Deno.writeFileSync(`${dir}/corrupt.safetensors`, tinyControlNetBytes().slice(0, 4000));
    const data = new Uint8Array(96 * 80 * 3).map((_, i) => ((i / 3 / 96) | 0) > 40 ? 255 : 0);
    Deno.writeFileSync(`${dir}/control.png`, encodePngImage({ width: 96, height: 80, channels: 3, data }));

    const ok = await gen(
      dir,
      "--control-net",
      `${dir}/cn.safetensors`,
      "--control-image",
      `${dir}/control.png`,
      "--canny",
    );
    assertEquals(ok.code, 0, ok.stderr);
    const all = ok.stdout + ok.stderr;
    assert(/control image 96x80 resized to 64x64 .*as stable-diffusion\.cpp does/.test(all), all);
    assertEquals(all.split("resized to").length - 1, 1, "said once");

    const bad = [
      {
        flags: ["--control-net", `${dir}/other.safetensors`],
        code: 1,
        error: /does not fit this model: .*attn2\.to_k/,
      },
      { flags: ["--control-net", `${dir}/corrupt.safetensors`], code: 1, error: /not a readable ControlNet file/ },
      { flags: ["--control-net", `${dir}/cn.safetensors`], code: 2, error: /--control-net needs a control image/ },
      { flags: ["--canny"], code: 2, error: /--canny needs a ControlNet/ },
    ];
    for (const b of bad) {
      const withImage = b.flags[0] === "--control-net" && b.code === 1
        ? [...b.flags, "--control-image", `${dir}/control.png`]
        : b.flags;
      const r = await gen(dir, ...withImage);
      assertEquals(r.code, b.code, `${b.flags.join(" ")}: ${r.stderr}`);
      const lines = r.stderr.trim().split("\n").filter((l) => /error/i.test(l));
      assertEquals(lines.length, 1, r.stderr);
      assert(b.error.test(lines[0]), lines[0]);
      assert(!STACK.test(r.stderr), r.stderr);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CLI ControlNet on SDXL: a diffusers-layout SDXL ControlNet runs; an SD 1 ControlNet is one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-cn-xl-cli-" });
  try {
    const model = `${dir}/tiny-xl.safetensors`;
    Deno.writeFileSync(model, loadTinySdxlReference().ckptBytes);
    Deno.writeFileSync(`${dir}/cn-xl.safetensors`, controlNetFileBytes(tinySdxlControlNetTensors(), "diffusers"));
    Deno.writeFileSync(`${dir}/cn-sd1.safetensors`, tinyControlNetBytes());
    const data = new Uint8Array(64 * 64 * 3).map((_, i) => ((i / 3) % 64) > 30 ? 255 : 0);
    Deno.writeFileSync(`${dir}/control.png`, encodePngImage({ width: 64, height: 64, channels: 3, data }));
    const image = ["--control-image", `${dir}/control.png`];
    const plain = await genWith(model, dir, "-o", `${dir}/plain.png`);
    assertEquals(plain.code, 0, plain.stderr);
    const ok = await genWith(model, dir, "--control-net", `${dir}/cn-xl.safetensors`, ...image, "-o", `${dir}/cn.png`);
    assertEquals(ok.code, 0, ok.stderr);
    // The residuals reach the UNet: the picture changes.
    const a = Deno.readFileSync(`${dir}/plain.png`), b = Deno.readFileSync(`${dir}/cn.png`);
    assert(a.length !== b.length || a.some((v, i) => v !== b[i]), "the ControlNet changed nothing");
    const bad = await genWith(model, dir, "--control-net", `${dir}/cn-sd1.safetensors`, ...image);
    assertEquals(bad.code, 1, bad.stderr);
    const lines = bad.stderr.trim().split("\n").filter((l) => /error/i.test(l));
    assertEquals(lines.length, 1, bad.stderr);
    assert(/does not fit this model/.test(lines[0]), lines[0]);
    assert(!STACK.test(bad.stderr), bad.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
