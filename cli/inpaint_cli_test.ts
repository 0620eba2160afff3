/**
 * Inpainting through the sd.cpp flags on the tiny checkpoint: `-i picture --mask mask` keeps the picture
 * outside the mask (an ordinary checkpoint: masked latent blending); a 9-channel (inpainting) variant of
 * the tiny checkpoint runs with the extra channels; a mask of another size, and --mask without -i, give
 * one clear line.
 */

import { assert, assertEquals } from "../tests/assert.ts";
import { loadTinyReference } from "../models/testdata/reference.ts";
import { encodeSafetensors } from "../models/weights/mod.ts";
import { decodePngImage, encodePngImage } from "../plugins/image/png.ts";

const root = new URL("../", import.meta.url).pathname;
const STACK = /^\s+at .+:\d+:\d+/m;

async function gen(...args: string[]) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/gen.ts", "-p", "a cat", "--steps", "2", "-t", "2", "--sampling-method", "euler", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stderr: dec.decode(r.stderr) };
}

/** The tiny checkpoint with a 9-channel conv_in (an inpainting model's layout). */
function tinyInpaintBytes(): Uint8Array {
  const { ckpt } = loadTinyReference();
  // The F32 weights (the I64 position_ids are not needed).
  const entries = ckpt.tensors.filter((t) => t.dtype === "F32").map((t) => {
    let shape = t.shape, data = ckpt.f32(t.name);
    if (t.name === "model.diffusion_model.input_blocks.0.0.weight") {
      const [o, , k] = t.shape;
      const wide = new Float32Array(o * 9 * k * k);
      for (let i = 0; i < o; i++) {
        wide.set(data.subarray(i * 4 * k * k, (i + 1) * 4 * k * k), i * 9 * k * k);
        for (let j = 4 * k * k; j < 9 * k * k; j++) wide[i * 9 * k * k + j] = 0.05 * Math.sin(i + j);
      }
      shape = [o, 9, k, k];
      data = wide;
    }
    return { name: t.name, dtype: "F32", shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  });
  return encodeSafetensors(entries);
}

Deno.test("CLI inpainting: --mask keeps the picture outside the mask; 9-channel models run; bad masks", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-inpaint-cli-" });
  try {
    Deno.writeFileSync(`${dir}/tiny.safetensors`, loadTinyReference().ckptBytes);
    Deno.writeFileSync(`${dir}/tiny-inpaint.safetensors`, tinyInpaintBytes());
    const W = 64, H = 64;
    const pic = new Uint8Array(W * H * 3).map((_, i) => (i * 7) % 256);
    Deno.writeFileSync(`${dir}/pic.png`, encodePngImage({ width: W, height: H, channels: 3, data: pic }));
    // Repaint the right half.
    const mask = new Uint8Array(W * H * 3).map((_, i) => ((i / 3) % W >= W / 2 ? 255 : 0));
    Deno.writeFileSync(`${dir}/mask.png`, encodePngImage({ width: W, height: H, channels: 3, data: mask }));
    Deno.writeFileSync(
      `${dir}/small.png`,
      encodePngImage({ width: 32, height: 32, channels: 3, data: new Uint8Array(32 * 32 * 3) }),
    );

    const plain = await gen("-m", `${dir}/tiny.safetensors`, "-i", `${dir}/pic.png`, "-o", `${dir}/plain.png`);
    assertEquals(plain.code, 0, plain.stderr);
    const r = await gen(
      "-m",
      `${dir}/tiny.safetensors`,
      "-i",
      `${dir}/pic.png`,
      "--mask",
      `${dir}/mask.png`,
      "-o",
      `${dir}/in.png`,
    );
    assertEquals(r.code, 0, r.stderr);
    const a = decodePngImage(Deno.readFileSync(`${dir}/plain.png`)).image;
    const b = decodePngImage(Deno.readFileSync(`${dir}/in.png`)).image;
    // The kept (left) columns hold the encoded picture (models/inpaint_test.ts checks the latent is kept
    // exactly), not img2img's repainting: they differ from the plain img2img run's.
    const col = (im: typeof a, x0: number, x1: number) => {
      let s = 0;
      for (let y = 0; y < H; y++) {
        for (let x = x0; x < x1; x++) {
          for (let c = 0; c < 3; c++) s += Math.abs(im.data[(y * W + x) * 3 + c] - a.data[(y * W + x) * 3 + c]);
        }
      }
      return s / (H * (x1 - x0) * 3);
    };
    assert(col(b, 0, 8) > 1, `kept area differs from plain img2img: ${col(b, 0, 8)}`);

    const nine = await gen(
      "-m",
      `${dir}/tiny-inpaint.safetensors`,
      "-i",
      `${dir}/pic.png`,
      "--mask",
      `${dir}/mask.png`,
      "-o",
      `${dir}/nine.png`,
    );
    assertEquals(nine.code, 0, nine.stderr);

    for (
      const [args, code, error] of [
        [
          ["-m", `${dir}/tiny.safetensors`, "-i", `${dir}/pic.png`, "--mask", `${dir}/small.png`],
          1,
          /the mask is 32x32 but the picture is 64x64/,
        ],
        [["-m", `${dir}/tiny.safetensors`, "--mask", `${dir}/mask.png`], 2, /--mask needs the picture to repaint/],
      ] as const
    ) {
      const bad = await gen(...args, "-o", `${dir}/bad.png`);
      assertEquals(bad.code, code, bad.stderr);
      const lines = bad.stderr.trim().split("\n").filter((l) => /error/i.test(l));
      assertEquals(lines.length, 1, bad.stderr);
      assert(error.test(lines[0]), lines[0]);
      assert(!STACK.test(bad.stderr), bad.stderr);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
