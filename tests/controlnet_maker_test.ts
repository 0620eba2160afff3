/**
 * tools/make_random_controlnet.py (random SD 1.5 / SDXL ControlNets, original and diffusers layouts):
 * a test-sized SDXL ControlNet shaped for the tiny SDXL model (models/tiny), made in both layouts
 * into `.cache/controlnet/` when missing (python3 + numpy) and checked against pinned sha256s, loads
 * with the configuration read from its weights, and both layouts give the same residuals, bit for bit
 * (the maker seeds each tensor by its original name, so the two files hold the same values).
 *
 * @module
 */

import { assert, assertEquals } from "./assert.ts";
import { CACHE_DIR, ensureMadeFile, REPO } from "./reference_helpers.ts";
import { ControlNet } from "../models/controlnet/mod.ts";
import { detectArch } from "../models/arch.ts";
import { parseSafetensors } from "../models/testdata/helpers.ts";
import { loadTinySdxlReference } from "../models/testdata/reference.ts";

const MAKER = new URL("tools/make_random_controlnet.py", REPO);
/** The tiny SDXL UNet's shape (models/tiny/make_tiny.ts TINY_XL), with one transformer block per level. */
const TINY_XL_ARGS = [
  "--family",
  "sdxl",
  "--model-channels",
  "32",
  "--mults",
  "1,2",
  "--depths",
  "0,1",
  "--middle-depth",
  "1",
  "--context-dim",
  "80",
  "--adm-in",
  "1584",
  "--dtype",
  "f32",
  "--seed",
  "3",
];
const FILES = {
  original: {
    url: new URL("controlnet/tiny-xl-controlnet-original.safetensors", CACHE_DIR),
    sha256: "6566de76716371d7988ad053471c8f7640701457feee868b052dd2c38e20839a",
  },
  diffusers: {
    url: new URL("controlnet/tiny-xl-controlnet-diffusers.safetensors", CACHE_DIR),
    sha256: "cdaaec6669911fda460e3ef89ba84c01309fe5a3def6b28afc7ac0369b2450e6",
  },
};

Deno.test("make_random_controlnet.py: an SDXL ControlNet in both layouts loads and runs, the same bits", async () => {
  const ckpt = parseSafetensors(loadTinySdxlReference().ckptBytes);
  const unet = detectArch(ckpt.tensors, ckpt.metadata).unet!;
  const outputs: Float32Array[][] = [];
  for (const [layout, f] of Object.entries(FILES)) {
    await ensureMadeFile(
      f.url,
      MAKER,
      [...TINY_XL_ARGS, "--layout", layout],
      f.sha256,
      `tiny SDXL ControlNet, ${layout}`,
    );
    const net = await ControlNet.load(f.url.pathname, unet, { threads: 2 });
    try {
      assertEquals([net.unet.transformerDepth, net.unet.transformerDepthMiddle], [[0, 1], 1]);
      const hint = await net.guidedHint({
        shape: [1, 3, 64, 64],
        data: Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => (i % 64 > 31 ? 1 : 0)),
      });
      const res = await net.residuals({
        x: { shape: [1, 4, 8, 8], data: Float32Array.from({ length: 256 }, (_, i) => Math.sin(i)) },
        timesteps: new Float32Array([500]),
        context: { shape: [1, 77, 80], data: Float32Array.from({ length: 77 * 80 }, (_, i) => Math.cos(i)) },
        y: Float32Array.from({ length: 1584 }, (_, i) => Math.sin(0.1 * i)),
      }, hint);
      assertEquals(res.length, 7);
      for (const r of res) assert(r.data.every(Number.isFinite) && r.data.some((v) => v !== 0), "finite, not zero");
      outputs.push(res.map((r) => r.data.slice()));
    } finally {
      net.dispose();
    }
  }
  outputs[0].forEach((r, i) => assertEquals([...r], [...outputs[1][i]], `control_${i}`));
});
