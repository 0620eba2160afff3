/** Inpainting pieces against direct computation: mask reading, latent mask, blending, the extra channels. */

import { assert, assertEquals, assertThrows } from "../tests/assert.ts";
import { blendDenoised, inpaintConcat, latentMask, maskedImage, MaskError, pixelMask } from "./inpaint.ts";
import { makeCfgDenoiser } from "./sampling/denoiser.ts";
import { sample } from "./generate.ts";
import type { Denoiser, HostTensor } from "./types.ts";

const f = Math.fround;

Deno.test("pixelMask: stb luminance, rounded to 0/1; another size is refused naming both", () => {
  const m = {
    width: 4,
    height: 1,
    channels: 3 as const,
    data: Uint8Array.of(255, 255, 255, 0, 0, 0, 127, 127, 127, 0, 255, 0),
  };
  // grey (77R + 150G + 29B) >> 8: 255, 0, 127 (0.498 -> 0), 149 (-> 1).
  assertEquals([...pixelMask(m, 4, 1)], [1, 0, 0, 1]);
  assertThrows(() => pixelMask(m, 8, 8), MaskError, "the mask is 4x1 but the picture is 8x8");
});

Deno.test("latentMask: max over each 8x8 block; inpainting models dilate by 3x3", () => {
  const px = new Uint8Array(32 * 16);
  px[3 * 32 + 20] = 1; // one pixel in block (row 0, col 2)
  const lm = latentMask(px, 32, 16, 8, false);
  assertEquals([lm.width, lm.height], [4, 2]);
  assertEquals([...lm.data], [0, 0, 1, 0, 0, 0, 0, 0]);
  assertEquals([...latentMask(px, 32, 16, 8, true).data], [0, 1, 1, 1, 0, 1, 1, 1]);
});

Deno.test("blendDenoised, maskedImage, inpaintConcat", () => {
  const d = Float32Array.of(1, 2, 3, 4), init = Float32Array.of(10, 20, 30, 40), m = Float32Array.of(1, 0);
  blendDenoised(d, init, m); // 2 channels of 2 pixels
  assertEquals([...d], [1, 20, 3, 40]);
  const im = maskedImage(
    { width: 2, height: 1, channels: 3, data: Uint8Array.of(9, 9, 9, 7, 7, 7) },
    Uint8Array.of(0, 1),
  );
  assertEquals([...im.data], [9, 9, 9, 128, 128, 128]);
  const c = inpaintConcat({ data: Float32Array.of(1, 0) }, {
    shape: [1, 4, 1, 2],
    data: Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8),
  });
  assertEquals(c.shape, [1, 5, 1, 2]);
  assertEquals([...c.data], [1, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
});

function stubDenoiser(seen: HostTensor[]): Denoiser {
  return {
    family: "sd1",
    prediction: "eps",
    alphasCumprod: Float64Array.from({ length: 1000 }, (_, i) => 1 - (i + 1) / 1001),
    predict: (x) => {
      seen.push({ shape: x.shape, data: x.data.slice() });
      const [b, , h, w] = x.shape;
      // eps = 0.1 on every latent channel: a prediction that moves the latent.
      return Promise.resolve({ shape: [b, 4, h, w], data: new Float32Array(b * 4 * h * w).fill(0.1) });
    },
  };
}

Deno.test("makeCfgDenoiser: the extra channels follow the scaled latent, for cond and uncond", async () => {
  const seen: HostTensor[] = [];
  const ctx = { context: { shape: [1, 2, 3], data: new Float32Array(6) } };
  const concat = { shape: [1, 5, 1, 2], data: Float32Array.of(1, 0, 5, 6, 7, 8, 9, 10, 11, 12) };
  const fn = makeCfgDenoiser({
    model: stubDenoiser(seen),
    cond: ctx,
    uncond: ctx,
    cfgScale: 7,
    latentShape: [4, 1, 2],
    concat,
  });
  await fn(new Float32Array(8).fill(2), 1, 0);
  assertEquals(seen[0].shape, [2, 9, 1, 2]);
  const cIn = f(1 / f(Math.sqrt(2)));
  const one = [...new Float32Array(8).fill(f(2 * cIn)), ...concat.data];
  assertEquals([...seen[0].data], [...one, ...one]);
});

Deno.test("sample with a noise mask keeps the encoded latent outside the mask (euler ends on the blend)", async () => {
  const init = Float32Array.from({ length: 4 * 2 * 2 }, (_, i) => i / 10);
  const noiseMask = Float32Array.of(1, 0, 0, 1);
  const ctx = { context: { shape: [1, 2, 3], data: new Float32Array(6) } };
  const out = await sample({
    denoiser: stubDenoiser([]),
    positive: ctx,
    negative: ctx,
    latent: { shape: [1, 4, 2, 2], data: init, noiseMask },
    seed: 3,
    steps: 4,
    cfgScale: 7,
    method: "euler",
    scheduler: "discrete",
    rng: "cuda",
    strength: 0.75,
    batch: 1,
  });
  for (let i = 0; i < init.length; i++) {
    if (noiseMask[i % 4] === 0) {
      assert(Math.abs(out.data[i] - init[i]) < 1e-6, `kept ${i}: ${out.data[i]} vs ${init[i]}`);
    } else assert(Math.abs(out.data[i] - init[i]) > 1e-3, `repainted ${i}`);
  }
});
