/**
 * Issue 8, ControlNet: the sd.cpp command of ../shared/reference/addons/README.md for
 * cn_a_256_euler_4_synthedges.png, run as `deno task gen` with the same flags, writes a PNG whose PSNR
 * against sd.cpp's picture is at least 40 dB.
 *
 * - Runs only where ../shared exists; elsewhere it is reported ignored, the reason in its name.
 * - The random SD 1.5 checkpoint (`.cache/sd15-random-f16.safetensors`, made by make_random_sd.py) and
 *   the random ControlNet (`.cache/random-controlnet-f16.safetensors`, made by make_random_addons.py)
 *   are made when missing (python3 + numpy) and checked against the READMEs' sha256.
 * - Bound: PSNR >= 40 dB over the RGB samples (sd.cpp's f16 im2col convolutions are themselves one
 *   rounding of the ideal picture). The picture is also checked to differ from the plain run's
 *   (< 30 dB), so the ControlNet demonstrably acts.
 *
 * @module
 */

import { assert } from "./assert.ts";
import { decodePngImage } from "../plugins/image/png.ts";
import { compareImages } from "../tools/psnr.ts";
import { sharedTest, sharedUrl } from "./shared.ts";
import { CACHE_DIR, ensureMadeFile, genAndCompare, shellWords, withFlag } from "./reference_helpers.ts";
import { ensureSd15Checkpoint, SD15_CHECKPOINT as CHECKPOINT } from "./sd15_checkpoint.ts";

const ADDONS = sharedUrl("reference/addons/");
const ADDONS_README = new URL("README.md", ADDONS);
const PLAIN_PNG = sharedUrl("reference/sd15-random/a_256_euler_4.png");
const PICTURE = "cn_a_256_euler_4_synthedges.png";
const CONTROLNET = new URL("random-controlnet-f16.safetensors", CACHE_DIR);
const MAKE_ADDONS = sharedUrl("tools/make_random_addons.py");
const MIN_PSNR_DB = 40;

/** The picture's command (BASE expanded) and the ControlNet file's sha256, from the add-ons README. */
function addonFacts(text: string): { args: string[]; controlnetSha256: string } {
  const base = /Every command shares `([^`]+)`/.exec(text);
  const row = new RegExp(`^\\|\\s*${PICTURE.replace(/\./g, "\\.")}\\s*\\|\\s*\`sd-cli BASE ([^\`]+)\``, "m").exec(text);
  const sha = /^\|\s*random-controlnet-f16\.safetensors\s*\|\s*([0-9a-f]{64})/m.exec(text);
  if (!base || !row || !sha) {
    throw new Error(
      `${ADDONS_README.pathname}: the shared command, the ${PICTURE} row or the ControlNet's sha256 ` +
        `is not where tests/controlnet_reference_test.ts looks; update it to the README's wording`,
    );
  }
  return { args: shellWords(`${base[1]} ${row[1]}`), controlnetSha256: sha[1] };
}

Deno.test({
  ...sharedTest(
    "ControlNet reference: the add-ons README's sd-cli ControlNet command as `deno task gen` gives PSNR >= 40 dB",
    "reference/addons/README.md",
    `reference/addons/${PICTURE}`,
    "reference/addons/edges_synthetic_256.png",
    "reference/README.md",
    "reference/sd15-random/a_256_euler_4.png",
    "tools/make_random_sd.py",
    "tools/make_random_addons.py",
  ),
  async fn() {
    const facts = addonFacts(await Deno.readTextFile(ADDONS_README));
    await ensureSd15Checkpoint();
    await ensureMadeFile(CONTROLNET, MAKE_ADDONS, ["controlnet"], facts.controlnetSha256, "0.7 GB");

    const outDir = await Deno.makeTempDir({ prefix: "sdflow-cn-ref-" });
    try {
      const out = `${outDir}/${PICTURE}`;
      let args = withFlag(facts.args, "-m", CHECKPOINT.pathname);
      args = withFlag(args, "--control-net", CONTROLNET.pathname);
      args = withFlag(args, "--control-image", new URL("edges_synthetic_256.png", ADDONS).pathname);
      args = [...args, "-o", out]; // the add-ons README command names no output
      const { decoded } = await genAndCompare(args, out, new URL(PICTURE, ADDONS), MIN_PSNR_DB);
      const plain = compareImages(decoded.image, decodePngImage(await Deno.readFile(PLAIN_PNG)).image);
      console.log(`vs the plain picture: ${plain.psnr.toFixed(2)} dB`);
      assert(plain.psnr < 30, `the ControlNet changed little: ${plain.psnr.toFixed(2)} dB from the plain picture`);
    } finally {
      await Deno.remove(outDir, { recursive: true });
    }
  },
});

Deno.test({
  ...sharedTest(
    "ControlNet reference: --canny on a picture as `deno task gen` gives PSNR >= 40 dB vs sd.cpp's (tests/fixtures/sdcpp)",
    "reference/addons/README.md",
    "reference/README.md",
    "reference/sd15-random/a_256_euler_4.png",
    "tools/make_random_sd.py",
    "tools/make_random_addons.py",
  ),
  async fn() {
    const facts = addonFacts(await Deno.readTextFile(ADDONS_README));
    await ensureSd15Checkpoint();
    await ensureMadeFile(CONTROLNET, MAKE_ADDONS, ["controlnet"], facts.controlnetSha256, "0.7 GB");
    const outDir = await Deno.makeTempDir({ prefix: "sdflow-cn-canny-" });
    try {
      const out = `${outDir}/canny.png`;
      const args = ["-m", CHECKPOINT.pathname, "-p", "a lovely cat", "-s", "42", "--cfg-scale", "7", "--rng", "cuda"]
        .concat(["-t", "2", "-W", "256", "-H", "256", "--sampling-method", "euler", "--steps", "4"])
        .concat(["--control-net", CONTROLNET.pathname, "--control-image", PLAIN_PNG.pathname, "--canny"])
        .concat(["--control-strength", "0.9", "-o", out]);
      await genAndCompare(args, out, new URL("fixtures/sdcpp/cn_canny_256_euler_4.png", import.meta.url), MIN_PSNR_DB);
    } finally {
      await Deno.remove(outDir, { recursive: true });
    }
  },
});
