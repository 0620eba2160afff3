import { loadCheckpoint } from "./checkpoint.ts";
import { sample } from "./generate.ts";
import { projectLatent } from "./preview.ts";
import { assert, assertEquals } from "../tests/assert.ts";
import { makeTinyCheckpoint } from "./tiny/mod.ts";
import type { Latent } from "./types.ts";

Deno.test("projectLatent: sd.cpp's SD 1.x latent-to-RGB map at latent size", () => {
  // Pixel 0: latent channel 0 = 1 -> rgb = row 0 + bias = (0.319888, 0.16051, 0.151561) -> (v + 1) / 2 * 255, truncated.
  // Pixel 1: all zero -> the bias alone. Pixel 2: channel 3 = 10 -> clamped to 0 or 255.
  const data = new Float32Array(4 * 3);
  data[0] = 1;
  data[3 * 3 + 2] = 10;
  const im = projectLatent({ shape: [1, 4, 1, 3], data }, "sd1");
  assertEquals([im.width, im.height], [3, 1]);
  const u8 = (v: number) => Math.trunc(Math.min(1, Math.max(0, v * 0.5 + 0.5)) * 255);
  assertEquals([...im.data.subarray(0, 3)], [
    u8(0.337366 - 0.017478),
    u8(0.216344 - 0.055834),
    u8(0.257386 - 0.105825),
  ]);
  assertEquals([...im.data.subarray(3, 6)], [u8(-0.017478), u8(-0.055834), u8(-0.105825)]);
  assertEquals([...im.data.subarray(6, 9)], [0, 0, 0]);
});

Deno.test("sample: previews every `interval` steps and at the last; euler's last denoised estimate is the result", async () => {
  const dir = await Deno.makeTempDir();
  const ckpt = await loadCheckpoint(await makeTinyCheckpoint(`${dir}/tiny.safetensors`, { seed: 5 }), { threads: 2 });
  try {
    const positive = await ckpt.textEncoder.encode("a cat");
    const negative = await ckpt.textEncoder.encode("");
    const seen: { step: number; latent: Latent }[] = [];
    const base = {
      denoiser: ckpt.denoiser,
      positive,
      negative,
      latent: { shape: [1, 4, 8, 8], data: new Float32Array(256) },
      seed: 1,
      steps: 5,
      cfgScale: 7,
      method: "euler",
      scheduler: "discrete",
      rng: "cuda" as const,
      batch: 1,
    };
    const out = await sample({
      ...base,
      preview: { interval: 2, onLatent: (latent, step) => void seen.push({ step, latent }) },
    });
    assertEquals(seen.map((s) => s.step), [2, 4, 5]);
    assertEquals(seen[2].latent.shape, [1, 4, 8, 8]);
    // Euler's last step goes to sigma 0: x + (x - den) / s * (0 - s) = den, up to float rounding (|x| <~ 10: 1e-5).
    let maxErr = 0;
    for (let i = 0; i < out.data.length; i++) maxErr = Math.max(maxErr, Math.abs(out.data[i] - seen[2].latent.data[i]));
    assert(maxErr < 1e-4, `last denoised preview differs from the result by ${maxErr}`);
    // Noisy previews show the sampler's own latent: at the last step, the result itself. Previews change nothing.
    const noisy: Latent[] = [];
    const out2 = await sample({ ...base, preview: { noisy: true, onLatent: (l) => void noisy.push(l) } });
    assertEquals(noisy.length, 5);
    assertEquals([...noisy[4].data], [...out2.data]);
    assertEquals([...out2.data], [...out.data]);
    assert(noisy[0].data.some((v, i) => v !== noisy[4].data[i]), "previews follow the sampling");
  } finally {
    ckpt.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
