/**
 * Inpainting with an ordinary checkpoint against stable-diffusion.cpp: the command of
 * tests/fixtures/sdcpp/README.md (img2img of the reference picture with a mask), run as `deno task gen`
 * with the same flags, writes a PNG whose PSNR against sd.cpp's picture (kept in tests/fixtures/sdcpp) is
 * at least 40 dB. Needs ../shared (the random checkpoint's maker and the init picture); ignored elsewhere.
 *
 * @module
 */

import { assert } from "./assert.ts";
import { decodePngImage } from "../plugins/image/png.ts";
import { compareImages } from "../tools/psnr.ts";
import { sharedTest, sharedUrl } from "./shared.ts";
import { REPO, run } from "./reference_helpers.ts";
import { ensureSd15Checkpoint, SD15_CHECKPOINT as CHECKPOINT } from "./sd15_checkpoint.ts";

const FIXTURES = new URL("fixtures/sdcpp/", import.meta.url);
const INIT = sharedUrl("reference/sd15-random/a_256_euler_4.png");
const MIN_PSNR_DB = 40;

Deno.test({
  ...sharedTest(
    "inpaint reference: sd.cpp's -i/--mask command as `deno task gen` gives PSNR >= 40 dB vs sd.cpp's picture",
    "reference/README.md",
    "reference/sd15-random/a_256_euler_4.png",
    "tools/make_random_sd.py",
  ),
  async fn() {
    await ensureSd15Checkpoint();
    const outDir = await Deno.makeTempDir({ prefix: "sdflow-inpaint-ref-" });
    try {
      const out = `${outDir}/inpaint.png`;
      const args = ["-m", CHECKPOINT.pathname, "-p", "a lovely cat", "-s", "42", "--cfg-scale", "7", "--rng", "cuda"]
        .concat(["-t", "2", "-W", "256", "-H", "256", "--sampling-method", "euler", "--steps", "4"])
        .concat(["-i", INIT.pathname, "--mask", new URL("mask_256.png", FIXTURES).pathname, "--strength", "0.75"])
        .concat(["-o", out]);
      const r = await run(Deno.execPath(), ["run", "-A", "cli/gen.ts", ...args], REPO);
      if (r.code !== 0) {
        throw new Error(`deno task gen exited with ${r.code}:\n${r.out.split("\n").slice(-25).join("\n")}`);
      }
      const got = decodePngImage(await Deno.readFile(out)).image;
      const want = decodePngImage(await Deno.readFile(new URL("inpaint_256_euler_4.png", FIXTURES))).image;
      const c = compareImages(got, want);
      const init = compareImages(got, decodePngImage(await Deno.readFile(INIT)).image);
      console.log(
        `PSNR ${c.psnr.toFixed(2)} dB (bound ${MIN_PSNR_DB} dB), max |diff| ${c.maxAbs}; vs the init picture ${
          init.psnr.toFixed(2)
        } dB`,
      );
      assert(c.psnr >= MIN_PSNR_DB, `PSNR ${c.psnr.toFixed(2)} dB < ${MIN_PSNR_DB} dB against sd.cpp's picture`);
      assert(init.psnr < 30, "the masked area was repainted");
    } finally {
      await Deno.remove(outDir, { recursive: true });
    }
  },
});
