import { Graph } from "../../engine/graph.ts";
import { detectArch } from "../arch.ts";
import { createWeightLookup } from "../nn.ts";
import { assertEquals, assertMaxAbsError } from "../../tests/assert.ts";
import { fakeWeightSource, opCounts, readReferenceList } from "../testdata/helpers.ts";
import { naiveEval } from "../testdata/naive_eval.ts";
import { loadTinyReference } from "../testdata/reference.ts";
import { buildVaeDecoder, buildVaeEncoder, fromImages, sampleLatent, toImages } from "./vae.ts";
import { sharedTest } from "../../tests/shared.ts";

const sd15 = readReferenceList("sd15-tensors.txt");

// SD VAE, counted from ldm: decoder = post_quant + conv_in + mid 4 + 12 up blocks x 2 + 2 nin_shortcut
// + 3 upsample + conv_out = 36 convs, 30 GroupNorms; encoder = conv_in + 8 down blocks x 2 + 2 nin_shortcut
// + 3 downsample + mid 4 + conv_out + quant_conv = 28 convs.
Deno.test({
  ...sharedTest(
    "VAE: full SD decoder (64x64 latent -> 512x512) and encoder have ldm's structure",
    "reference/sd15-tensors.txt",
  ),
  fn() {
    const cfg = detectArch(sd15!).vae!;
    const g = new Graph();
    const d = buildVaeDecoder(g, createWeightLookup(g, fakeWeightSource(sd15!)), cfg, {
      batch: 1,
      height: 64,
      width: 64,
    });
    assertEquals(d.output.shape, [1, 3, 512, 512]);
    const c = opCounts(g.ops);
    assertEquals([c.conv2d, c.group_norm, c.attention, c.upsample_nearest], [36, 30, 1, 3]);
    const ge = new Graph();
    const e = buildVaeEncoder(ge, createWeightLookup(ge, fakeWeightSource(sd15!)), cfg, {
      batch: 1,
      height: 512,
      width: 768,
    });
    assertEquals(e.output.shape, [1, 8, 64, 96]);
    const ce = opCounts(ge.ops);
    assertEquals([ce.conv2d, ce.attention, ce.concat], [28, 1, 6]);
    // Downsample convs are stride 2 without padding (the zero row/column is concatenated first).
    const down = ge.ops.filter((o) => o.kind === "conv2d" && o.attrs.stride_h === 2);
    assertEquals(down.map((o) => o.attrs.pad_h), [0, 0, 0]);
  },
});

Deno.test("VAE: tiny decoder and encoder match the PyTorch reference", () => {
  const { ref, ckpt } = loadTinyReference();
  const cfg = detectArch(ckpt.tensors, ckpt.metadata).vae!;
  const gd = new Graph();
  buildVaeDecoder(gd, createWeightLookup(gd, ckpt.source), cfg, { batch: 1, height: 8, width: 8 });
  const img = naiveEval(gd, { latent: ref.f32("vae.latent") }).image;
  assertMaxAbsError("decoder", img, ref.f32("vae.image"), 1e-5, 1e-5);
  const ge = new Graph();
  buildVaeEncoder(ge, createWeightLookup(ge, ckpt.source), cfg, { batch: 1, height: 64, width: 64 });
  const mom = naiveEval(ge, { image: ref.f32("vae.enc_image") }).moments;
  assertMaxAbsError("encoder", mom, ref.f32("vae.moments"), 1e-5, 1e-5);
});

Deno.test("sampleLatent: mean + exp(logvar / 2) * noise, logvar clamped, times the scale", () => {
  // [1, 2, 1, 2]: z = 1 channel; mean [1, 2], logvar [0, 100 -> 20].
  const m = Float32Array.of(1, 2, 0, 100);
  const noise = Float32Array.of(0.5, -1);
  const s = sampleLatent(m, [1, 2, 1, 2], noise, 0.5);
  assertEquals(s.shape, [1, 1, 1, 2]);
  assertEquals(Math.abs(s.data[0] - (1 + 0.5) * 0.5) < 1e-6, true);
  assertEquals(Math.abs(s.data[1] - (2 - Math.exp(10)) * 0.5) / Math.exp(10) < 1e-6, true);
  assertEquals([...sampleLatent(m, [1, 2, 1, 2], null, 2).data], [2, 4]);
});

Deno.test("toImages / fromImages: sd.cpp's 8-bit conversion (rounding) and its inverse", () => {
  const x = Float32Array.of(-1, -0.5, 0, 1, 2, -3, 0.999, 0.5, 0.25, 0, 0, 0);
  const [im] = toImages(x, [1, 3, 2, 2]);
  assertEquals([im.width, im.height, im.channels], [2, 2, 3]);
  // channel 0 of pixels 0..3: -1 -> 0, -0.5 -> 64 (63.75 rounded), 0 -> 128 (127.5 rounds up), 1 -> 255
  assertEquals([im.data[0], im.data[3], im.data[6], im.data[9]], [0, 64, 128, 255]);
  // channel 1: 2 -> clamp 255, -3 -> 0, 0.999 -> 255 (254.87 rounded), 0.5 -> 191 (191.25)
  assertEquals([im.data[1], im.data[4], im.data[7], im.data[10]], [255, 0, 255, 191]);
  const back = fromImages([im]);
  assertEquals(back.shape, [1, 3, 2, 2]);
  assertEquals(back.data[3], 1);
  assertEquals(back.data[0], -1);
});
