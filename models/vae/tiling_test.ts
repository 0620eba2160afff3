/**
 * VAE tiling through the real engine: the tiny checkpoint's KL VAE and a small TAESD, tiled against whole.
 * A tiled decode is not the whole decode: each tile sees only its own neighbourhood (and, in the KL VAE, its own
 * GroupNorm statistics), so the bounds below are measured agreements, stated with their causes; the exactness of
 * the blending itself is models/tiling_test.ts's, and its agreement with stable-diffusion.cpp's tiles is the ESRGAN
 * reference test's (same code path).
 */

import { loadCheckpoint } from "../checkpoint.ts";
import { loadTaesd } from "../taesd/load.ts";
import { assert, assertEquals } from "../../tests/assert.ts";
import { parseSafetensors } from "../testdata/helpers.ts";
import { makeTinyCheckpoint } from "../tiny/mod.ts";
import type { Image } from "../types.ts";
import { encodeSafetensors } from "../weights/mod.ts";

function psnr(a: Image, b: Image): number {
  assertEquals([a.width, a.height], [b.width, b.height]);
  let se = 0;
  for (let i = 0; i < a.data.length; i++) se += (a.data[i] - b.data[i]) ** 2;
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255) / (se / a.data.length));
}

function latent(c: number, h: number, w: number, seed: number) {
  let s = seed;
  const data = Float32Array.from({ length: c * h * w }, (_, i) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    // smooth structure plus noise, in the range of SD latents
    return 2 * Math.sin(i / 37) + (s / 2147483648 - 0.5);
  });
  return { shape: [1, c, h, w], data };
}

Deno.test("VAE tiling (tiny KL VAE, real engine): one tile is the whole decode; overlapping tiles within 32 dB", async () => {
  const dir = await Deno.makeTempDir();
  const ckpt = await loadCheckpoint(await makeTinyCheckpoint(`${dir}/tiny.safetensors`, { seed: 3 }), { threads: 2 });
  try {
    const z = latent(4, 24, 32, 7);
    const [whole] = await ckpt.vae.decode(z);
    assertEquals([whole.width, whole.height], [256, 192]);
    // A tile as large as the latent: one tile, no blending: bit for bit the whole decode.
    const [one] = await ckpt.vae.decode(z, undefined, { tiling: { tileX: 32, tileY: 32 } });
    assertEquals(psnr(one, whole), Infinity);
    let ticks = 0;
    const [tiled] = await ckpt.vae.decode(z, () => ticks++, { tiling: { tileX: 16, tileY: 16, overlap: 0.5 } });
    // 32 x 24 latent, tile 16, overlap 0.5: 3 x 2 tiles (sd.cpp's count), one progress call each.
    assertEquals(ticks, 6);
    const p = psnr(tiled, whole);
    // Measured 36.1 dB (random weights; each tile has its own GroupNorm statistics); bound 32 dB.
    assert(p >= 32, `tiled decode is ${p.toFixed(1)} dB from the whole decode`);
    // Encoding in tiles: a 256x192 image is one 64-latent-pixel tile at the default size (sd.cpp: twice the decode
    // tile), so it equals the untiled mean exactly.
    const m0 = await ckpt.vae.encode([whole]);
    const m1 = await ckpt.vae.encode([whole], { tiling: {} });
    assertEquals(m1.shape, m0.shape);
    assertEquals(Math.max(...m1.data.map((v, i) => Math.abs(v - m0.data[i]))), 0);
  } finally {
    ckpt.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("VAE tiling (TAESD, real engine): tiled decode within 33 dB of the whole decode", async () => {
  const ref = parseSafetensors(Deno.readFileSync(new URL("../testdata/addons_reference.safetensors", import.meta.url)));
  const entries = ref.tensors.filter((t) => t.name.startsWith("taesd/") && /layers/.test(t.name)).map((t) => {
    const f = ref.f32(t.name);
    return { name: t.name.slice(6), dtype: "F32", shape: t.shape, data: new Uint8Array(f.buffer) };
  });
  const dir = await Deno.makeTempDir();
  const path = `${dir}/taesd.safetensors`;
  await Deno.writeFile(path, encodeSafetensors(entries));
  const taesd = await loadTaesd(path, { threads: 2 });
  try {
    const z = latent(4, 24, 32, 11);
    const [whole] = await taesd.decode(z);
    const [tiled] = await taesd.decode(z, undefined, { tiling: { tileX: 16, tileY: 16, overlap: 0.5 } });
    const p = psnr(tiled, whole);
    // TAESD has no normalisation: tiles differ where the tile cuts the receptive field (~30 latent px here, wider than
    // the 16 px tiles), damped by the blend weights. Measured 35.8 dB.
    assert(p >= 33, `tiled TAESD decode is ${p.toFixed(1)} dB from the whole decode`);
    const back = await taesd.encode([whole], { tiling: { tileX: 8 } });
    assertEquals(back.shape, [1, 4, 24, 32]);
  } finally {
    taesd.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
