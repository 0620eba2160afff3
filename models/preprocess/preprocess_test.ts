/**
 * canny against the numpy reference (testdata/make_canny_reference.py, float64, written from the
 * description of sd.cpp's --canny); fitImage's crop and box filter against direct computation.
 */

import { assert, assertEquals } from "../../tests/assert.ts";
import { parseSafetensors } from "../testdata/helpers.ts";
import { canny } from "./canny.ts";
import { centerCropRect, fitImage } from "./resize.ts";

const REF = parseSafetensors(Deno.readFileSync(new URL("./testdata/canny_reference.safetensors", import.meta.url)));

Deno.test("canny matches the numpy reference (sd.cpp's parameters)", () => {
  for (const i of [0, 1]) {
    const t = REF.tensors.find((t) => t.name === `image_${i}`)!;
    const [h, w] = t.shape;
    const image = { width: w, height: h, channels: 3 as const, data: Uint8Array.from(REF.f32(`image_${i}`)) };
    const got = canny(image);
    const want = REF.f32(`edges_${i}`);
    let differ = 0, edges = 0;
    for (let p = 0; p < w * h; p++) {
      const v = got.data[p * 3];
      assert(v === got.data[p * 3 + 1] && v === got.data[p * 3 + 2], "grey output");
      if (want[p] === 255) edges++;
      // float32 here, float64 there: a magnitude at a threshold or a tie in the suppression may flip.
      if (Math.abs(v - want[p]) > 1) differ++;
    }
    console.log(`picture ${i} (${w}x${h}): ${edges} edge pixels, ${differ} differ from the reference`);
    assert(edges > 50, "the reference has edges");
    // Bound: at most 0.5% of the pixels (here: none expected).
    assert(differ <= 0.005 * w * h, `${differ} of ${w * h} pixels differ`);
  }
});

Deno.test("canny: inverse and a flat picture", () => {
  const flat = { width: 16, height: 12, channels: 4 as const, data: new Uint8Array(16 * 12 * 4).fill(128) };
  const e = canny(flat);
  assert(e.data.every((v, i) => (i % 4 === 3 ? v === 128 : v === 0)), "no edges, alpha kept");
  const inv = canny(flat, { inverse: true });
  assert(inv.data.every((v, i) => (i % 4 === 3 ? v === 128 : v === 255)), "inverse: white");
});

Deno.test("fitImage: centre crop to the aspect ratio, then a box filter in linear light", () => {
  assertEquals(centerCropRect(512, 256, 256, 256), { x: 128, y: 0, w: 256, h: 256 });
  assertEquals(centerCropRect(300, 600, 256, 256), { x: 0, y: 150, w: 300, h: 300 });
  // A 2x2 checker of 0 and 255 halves to the linear mean 0.5 -> sRGB 188.
  const data = new Uint8Array(4 * 4 * 3);
  for (let y = 0; y < 4; y++) {
    for (let x = 0; x < 4; x++) data.fill((x + y) % 2 ? 255 : 0, (y * 4 + x) * 3, (y * 4 + x) * 3 + 3);
  }
  const half = fitImage({ width: 4, height: 4, channels: 3, data }, 2, 2);
  const expect = Math.round((1.055 * 0.5 ** (1 / 2.4) - 0.055) * 255);
  assertEquals(expect, 188);
  assert(half.data.every((v) => v === expect), `${half.data}`);
  // Uniform stays uniform through crop and resize; the same size is returned as is.
  const flat = { width: 30, height: 20, channels: 3 as const, data: new Uint8Array(30 * 20 * 3).fill(77) };
  const fitted = fitImage(flat, 8, 8);
  assertEquals([fitted.width, fitted.height], [8, 8]);
  assert(fitted.data.every((v) => v === 77));
  assert(fitImage(flat, 30, 20) === flat);
});
