/**
 * Quantized weights end to end on the tiny random-weight SD 1.x checkpoint (models/tiny): the f16 file
 * converted by `convertModel` to each block format, loaded from the GGUF file (memory-mapped, dequantized
 * inside the kernels), generates a 64x64 picture (euler, 3 steps, cfg 7) compared with the f16 file's:
 *
 * - PSNR of the 8-bit pictures against the f16 picture >= the bound per format below (measured values
 *   are printed; the bounds leave 4-5 dB of margin), and the relative L2 error of the final latent
 *   <= the stated bound;
 * - `--type` on load (quantize in memory) gives the same picture, bit for bit, as the converted file
 *   (the same blocks reach the same kernels);
 * - the converted file holds the tensors sd.cpp's rule converts in the format, the rest as stored.
 */

import { assert, assertEquals } from "../tests/assert.ts";
import { compareImages } from "../tools/psnr.ts";
import { loadCheckpoint, makeTinyCheckpoint, sample } from "./mod.ts";
import type { Checkpoint, Image, Latent } from "./types.ts";
import { convertModel, openWeights, takesWeightType, type WeightType } from "./weights/mod.ts";

const dir = await Deno.makeTempDir({ prefix: "sdflow-quantized-test-" });
const f16Path = await makeTinyCheckpoint(`${dir}/tiny.safetensors`, { seed: 11, dtype: "f16" });
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // best effort
  }
});

/** Minimum PSNR (dB) against the f16 picture, and maximum relative L2 error of the latent. */
const BOUNDS: Record<string, { psnr: number; latent: number }> = {
  // Measured (seed 11, sd.cpp's quantization): q8_0 47.6 dB / 0.014, q5_1 33.3 / 0.082, q5_0 30.6 / 0.099,
  // q4_1 27.1 / 0.16, q4_0 23.1 / 0.23. The tiny model's rows are 32-320 weights of N(0, 1/fan_in): every
  // block's rounding error is a large share of a short dot product, unlike a real model's.
  q8_0: { psnr: 42, latent: 0.03 },
  q5_1: { psnr: 28, latent: 0.15 },
  q5_0: { psnr: 26, latent: 0.2 },
  q4_1: { psnr: 22, latent: 0.3 },
  q4_0: { psnr: 19, latent: 0.4 },
};

async function generate(ckpt: Checkpoint): Promise<{ latent: Latent; image: Image }> {
  const positive = await ckpt.textEncoder.encode("a lovely cat");
  const negative = await ckpt.textEncoder.encode("");
  const latent = await sample({
    denoiser: ckpt.denoiser,
    positive,
    negative,
    latent: { shape: [1, 4, 8, 8], data: new Float32Array(4 * 8 * 8) },
    batch: 1,
    seed: 42,
    steps: 3,
    cfgScale: 7,
    method: "euler",
    scheduler: "discrete",
    rng: "cuda",
  });
  const [image] = await ckpt.vae.decode(latent);
  return { latent, image };
}

async function generateFrom(path: string, weightType?: WeightType): Promise<{ latent: Latent; image: Image }> {
  const ckpt = await loadCheckpoint(path, { threads: 1, ...(weightType ? { weightType } : {}) });
  try {
    return await generate(ckpt);
  } finally {
    ckpt.dispose();
  }
}

function relL2(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

Deno.test("tiny model: converted to each block format, generates within the bound of the f16 picture", async (t) => {
  const ref = await generateFrom(f16Path);
  for (const type of ["q8_0", "q5_1", "q5_0", "q4_1", "q4_0"] as const) {
    await t.step(type, async () => {
      const out = `${dir}/tiny-${type}.gguf`;
      const result = await convertModel(f16Path, out, { type });
      // sd.cpp's rule decides which tensors take the format; the rest stay f16 (the tiny file has no others).
      const src = await openWeights(f16Path);
      const conv = await openWeights(out);
      try {
        let quantized = 0;
        for (const [name, info] of conv.tensors) {
          const want = takesWeightType(name, info.shape, type) ? type : src.tensors.get(name)!.dtype;
          assertEquals(info.dtype, want === "i64" ? "i32" : want, name);
          if (info.dtype === type) quantized++;
        }
        assert(quantized > 0, "no tensor was quantized");
        assertEquals(result.types[type], quantized);
      } finally {
        src.close();
        conv.close();
      }

      const got = await generateFrom(out);
      const c = compareImages(got.image, ref.image);
      const err = relL2(got.latent.data, ref.latent.data);
      console.log(`${type}: PSNR ${c.psnr.toFixed(2)} dB vs f16, latent relative L2 ${err.toExponential(2)}`);
      assert(c.psnr >= BOUNDS[type].psnr, `${type}: PSNR ${c.psnr.toFixed(2)} dB < ${BOUNDS[type].psnr} dB`);
      assert(err <= BOUNDS[type].latent, `${type}: latent error ${err} > ${BOUNDS[type].latent}`);

      if (type === "q8_0" || type === "q4_0") {
        const onLoad = await generateFrom(f16Path, type);
        assertEquals(onLoad.latent.data, got.latent.data, `${type}: --type on load vs the converted file`);
      }
    });
  }
});

Deno.test("tiny SD 2.x: the packed q/k/v bias of OpenCLIP, quantized by q8_0 as sd.cpp does, loads and generates", async () => {
  const sd2 = await makeTinyCheckpoint(`${dir}/tiny-sd2.safetensors`, { seed: 5, dtype: "f16", arch: "sd2" });
  const out = `${dir}/tiny-sd2-q8_0.gguf`;
  await convertModel(sd2, out, { type: "q8_0" });
  const conv = await openWeights(out);
  try {
    const biases = [...conv.tensors].filter(([name]) => name.endsWith("attn.in_proj_bias"));
    assert(biases.length > 0, "no packed in_proj_bias in the tiny SD 2.x file");
    for (const [name, info] of biases) assertEquals(info.dtype, "q8_0", name);
  } finally {
    conv.close();
  }
  const ref = await generateFrom(sd2);
  const got = await generateFrom(out);
  const c = compareImages(got.image, ref.image);
  // Issue 10's q8_0 bound for whole pictures (the SD 1.x tiny model's own bound above is tighter; measured 39.2 dB).
  assert(c.psnr >= 35, `q8_0 SD 2.x: PSNR ${c.psnr.toFixed(2)} dB < 35 dB`);
});
