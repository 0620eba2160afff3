/**
 * tools/make_random_controlnet.py (random SD 1.5 / SDXL ControlNets, original and diffusers layouts):
 * test-sized ControlNets made in both layouts into `.cache/controlnet/` when missing (python3 + numpy)
 * and checked against pinned sha256s, load with the configuration read from their weights, and both
 * layouts give the same residuals, bit for bit (the maker seeds each tensor by its original name, so the
 * two files hold the same values): an SDXL one shaped for the tiny SDXL model (models/tiny; label_emb,
 * Linear projections), and an SD 1.x-shaped one (1x1-conv projections, no label_emb, two res blocks
 * per level as diffusers' names assume) for a UNet configuration written here.
 * (The maker's full-size SD 1.5 tensors equal ../shared/tools/make_random_addons.py's, byte for byte;
 * checked by hand: 0.7 GB is too much for CI.)
 *
 * @module
 */

import { assert, assertEquals } from "./assert.ts";
import { CACHE_DIR, ensureMadeFile, REPO } from "./reference_helpers.ts";
import { ControlNet } from "../models/controlnet/mod.ts";
import { detectArch, type UnetConfig } from "../models/arch.ts";
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
/** A tiny SD 1.x-shaped UNet configuration (two res blocks per level, 1x1-conv projections). */
const TINY_SD1_2RES: UnetConfig = {
  prefix: "",
  inChannels: 4,
  outChannels: 4,
  modelChannels: 32,
  channelMult: [1, 2],
  numResBlocks: 2,
  transformerDepth: [1, 1],
  transformerDepthOutput: [],
  transformerDepthMiddle: 1,
  contextDim: 64,
  numHeads: 4,
  useLinearInTransformer: false,
  timeEmbedDim: 128,
};
const TINY_SD1_ARGS = ["--family", "sd15", "--model-channels", "32", "--mults", "1,2", "--depths", "1,1"]
  .concat(["--middle-depth", "1", "--context-dim", "64", "--dtype", "f32", "--seed", "5"]);

/** Makes the ControlNet in both layouts, runs each on the same inputs, and checks they agree bit for bit. */
async function checkBothLayouts(
  name: string,
  args: readonly string[],
  sha256: { original: string; diffusers: string },
  unet: UnetConfig,
  depths: [number[], number],
): Promise<void> {
  const outputs: Float32Array[][] = [];
  for (const layout of ["original", "diffusers"] as const) {
    const url = new URL(`controlnet/${name}-${layout}.safetensors`, CACHE_DIR);
    await ensureMadeFile(url, MAKER, [...args, "--layout", layout], sha256[layout], `${name}, ${layout}`);
    const net = await ControlNet.load(url.pathname, unet, { threads: 2 });
    try {
      assertEquals([net.unet.transformerDepth, net.unet.transformerDepthMiddle], depths);
      const hint = await net.guidedHint({
        shape: [1, 3, 64, 64],
        data: Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => (i % 64 > 31 ? 1 : 0)),
      });
      const ctx = unet.contextDim;
      const res = await net.residuals({
        x: { shape: [1, 4, 8, 8], data: Float32Array.from({ length: 256 }, (_, i) => Math.sin(i)) },
        timesteps: new Float32Array([500]),
        context: { shape: [1, 77, ctx], data: Float32Array.from({ length: 77 * ctx }, (_, i) => Math.cos(i)) },
        ...(unet.admInChannels
          ? { y: Float32Array.from({ length: unet.admInChannels }, (_, i) => Math.sin(0.1 * i)) }
          : {}),
      }, hint);
      assertEquals(res.length, 7);
      for (const r of res) assert(r.data.every(Number.isFinite) && r.data.some((v) => v !== 0), "finite, not zero");
      outputs.push(res.map((r) => r.data.slice()));
    } finally {
      net.dispose();
    }
  }
  outputs[0].forEach((r, i) => assertEquals([...r], [...outputs[1][i]], `${name} control_${i}`));
}

Deno.test("make_random_controlnet.py: an SDXL ControlNet in both layouts loads and runs, the same bits", async () => {
  const ckpt = parseSafetensors(loadTinySdxlReference().ckptBytes);
  const unet = detectArch(ckpt.tensors, ckpt.metadata).unet!;
  await checkBothLayouts(
    "tiny-xl-controlnet",
    TINY_XL_ARGS,
    {
      original: "6566de76716371d7988ad053471c8f7640701457feee868b052dd2c38e20839a",
      diffusers: "cdaaec6669911fda460e3ef89ba84c01309fe5a3def6b28afc7ac0369b2450e6",
    },
    unet,
    [[0, 1], 1],
  );
});

Deno.test("make_random_controlnet.py: an SD 1.x-shaped ControlNet in both layouts loads and runs, the same bits", async () => {
  await checkBothLayouts(
    "tiny-sd1-controlnet",
    TINY_SD1_ARGS,
    {
      original: "9fd8da197338d1dc612145e034e9effd2fd4cf684a8f74e0f6619615e603171d",
      diffusers: "03eb67367eddd605193a527c1d5a11f08d9c138b6f80c72d4a70bb12c3e04d4c",
    },
    TINY_SD1_2RES,
    [[1, 1], 1],
  );
});
