/**
 * ControlNet through the sd.cpp flags, on the tiny checkpoint and the tiny ControlNet: a run with
 * --canny and a control image of another size (resized, and said so in one line), and bad input —
 * a ControlNet for another model, a corrupt file, flags without their partner — each one clear line.
 */

import { assert, assertEquals } from "../tests/assert.ts";
import { loadTinyReference } from "../models/testdata/reference.ts";
import { tinyControlNetBytes } from "../models/controlnet/testdata/tiny_controlnet.ts";
import { encodePngImage } from "../plugins/image/png.ts";

const root = new URL("../", import.meta.url).pathname;
const STACK = /^\s+at .+:\d+:\d+/m;

async function gen(dir: string, ...extra: string[]) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/gen.ts", "-m", `${dir}/tiny.safetensors`, "-p", "a cat", "-W", "64", "-H", "64"]
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
