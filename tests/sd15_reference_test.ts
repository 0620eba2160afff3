/**
 * Issue 3, "What it must show" item 1: on the random-weight SD 1.5 checkpoint that
 * ../shared/tools/make_random_sd.py makes, the command in ../shared/reference/README.md, run as
 * `deno task gen` with the same flags, writes a PNG whose PSNR against
 * ../shared/reference/sd15-random/a_256_euler_4.png is at least 40 dB.
 *
 * - Runs only where ../shared (next to the repository) exists; elsewhere it is reported ignored, the reason in its name.
 * - The checkpoint lives in `.cache/sd15-random-f16.safetensors`; when missing it is made with
 *   `/usr/bin/python3 (or $SDFLOW_PYTHON) ../shared/tools/make_random_sd.py --out … --dtype f16` (python3 + numpy; CI installs
 *   python3-numpy; without them the test FAILS saying so). Its sha256 is checked against the README's
 *   value before use.
 * - The command line is taken from the README (the `sd-cli …` block), with `-m` and `-o` replaced, and run
 *   as `deno run -A cli/gen.ts …` (what `deno task gen` runs).
 * - `SDFLOW_REFERENCE_BACKEND=opencl` (or another backend name) runs the same command with `--backend …`
 *   (not in CI: on POCL with 2 busy cores the OpenCL backend needs tens of minutes for it).
 * - Bound: PSNR ≥ 40 dB over the RGB samples (tools/psnr.ts). Why not bit equality: sd.cpp stores conv
 *   weights as f16 and convolves by im2col + GEMM, so its picture is itself one rounding of the ideal one.
 * - The same command with `--precision bf16` (issue 15's reduced-precision mode) prints its PSNR; it asserts
 *   only a floor of 30 dB (a broken bf16 path lands far below; issue 15 asks >= 40 dB before bf16 may become a
 *   default, which this test reports but does not require). Ignored on CPUs without AVX512-BF16 / AMX-BF16.
 *
 * @module
 */

import { assertEquals } from "./assert.ts";
import { decodePngImage } from "../plugins/image/png.ts";
import {
  assertReadmeParameters,
  genAndCompare,
  pixelsSha256,
  README,
  readmeFacts,
  readmeSection,
  shellWords,
  withFlag,
} from "./reference_helpers.ts";
import { ensureSd15Checkpoint, SD15_CHECKPOINT } from "./sd15_checkpoint.ts";
import { sharedTest, sharedUrl } from "./shared.ts";
import { loadNativeBackend } from "../backends/mod.ts";

const REFERENCE_PNG = sharedUrl("reference/sd15-random/a_256_euler_4.png");
const CHECKPOINT = SD15_CHECKPOINT;
const MIN_PSNR_DB = 40;
const BF16_FLOOR_DB = 30;

Deno.test({
  ...sharedTest(
    "sd15 reference: the README's sd-cli command as `deno task gen` gives PSNR >= 40 dB vs sd.cpp's image",
    "reference/README.md",
    "reference/sd15-random/a_256_euler_4.png",
    "tools/make_random_sd.py",
  ),
  async fn() {
    const facts = readmeFacts(
      readmeSection(await Deno.readTextFile(README), "sd15-random/"),
      "tests/sd15_reference_test.ts",
    );

    // The reference PNG decodes to the pixels the README describes (checks the file and our PNG decoder).
    const reference = decodePngImage(await Deno.readFile(REFERENCE_PNG)).image;
    assertEquals([reference.width, reference.height, reference.channels], [256, 256, 3], "reference image");
    assertEquals(pixelsSha256(reference.data), facts.pixelsSha256, "sha256 of the reference image's RGB pixels");

    await ensureSd15Checkpoint();

    const outDir = await Deno.makeTempDir({ prefix: "sdflow-sd15-ref-" });
    try {
      const out = `${outDir}/a_256_euler_4.png`;
      const backend = Deno.env.get("SDFLOW_REFERENCE_BACKEND");
      const args = withFlag(withFlag(facts.args, "-m", CHECKPOINT.pathname), "-o", out);
      if (backend) args.push("--backend", backend);
      const { decoded } = await genAndCompare(args, out, reference, MIN_PSNR_DB);
      assertReadmeParameters(decoded);
    } finally {
      await Deno.remove(outDir, { recursive: true });
    }
  },
});

const bf16Units = ((await loadNativeBackend("cpu")).info.bf16_units as string[] | undefined) ?? [];
const bf16Test = sharedTest(
  "sd15 reference in bf16: the README's command with --precision bf16 prints its PSNR vs sd.cpp's image (floor 30 dB)",
  "reference/README.md",
  "reference/sd15-random/a_256_euler_4.png",
  "tools/make_random_sd.py",
);
Deno.test({
  ...bf16Test,
  ...(bf16Units.length || bf16Test.ignore
    ? {}
    : { name: `${bf16Test.name} [ignored: this CPU has neither AVX512-BF16 nor AMX-BF16]`, ignore: true }),
  async fn() {
    const facts = readmeFacts(
      readmeSection(await Deno.readTextFile(README), "sd15-random/"),
      "tests/sd15_reference_test.ts",
    );
    await ensureSd15Checkpoint();
    const outDir = await Deno.makeTempDir({ prefix: "sdflow-sd15-bf16-" });
    try {
      const out = `${outDir}/a_256_euler_4.png`;
      const args = withFlag(withFlag(facts.args, "-m", CHECKPOINT.pathname), "-o", out);
      args.push("--precision", "bf16");
      const { comparison } = await genAndCompare(args, out, REFERENCE_PNG, BF16_FLOOR_DB);
      console.log(
        `bf16 on ${bf16Units[0]}: PSNR ${comparison.psnr.toFixed(2)} dB (issue 15 wants >= ${MIN_PSNR_DB} dB: ${
          comparison.psnr >= MIN_PSNR_DB ? "met" : "NOT met"
        })`,
      );
    } finally {
      await Deno.remove(outDir, { recursive: true });
    }
  },
});

Deno.test("sd15 reference: shellWords and readmeFacts parse the README's form", () => {
  assertEquals(shellWords(`-m a.safetensors -p "a lovely cat" -s 42 \\\n  --cfg-scale 7 -o 'x y.png'`), [
    "-m",
    "a.safetensors",
    "-p",
    "a lovely cat",
    "-s",
    "42",
    "--cfg-scale",
    "7",
    "-o",
    "x y.png",
  ]);
  const facts = readmeFacts(
    "Expected sha256 of that file:\n`" + "a".repeat(64) + '`.\n\n    sd-cli -m m.st -p "a cat" \\\n' +
      "      -W 256 -o o.png\n\nsha256 of the decoded 8-bit RGB pixels (H×W×3):\n`" + "b".repeat(64) + "`;",
    "test",
  );
  assertEquals(facts, {
    checkpointSha256: "a".repeat(64),
    pixelsSha256: "b".repeat(64),
    args: ["-m", "m.st", "-p", "a cat", "-W", "256", "-o", "o.png"],
  });
  assertEquals(withFlag(facts.args, "-o", "new.png").slice(-2), ["-o", "new.png"]);
});
