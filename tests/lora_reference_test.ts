/**
 * Issue 8, LoRA: the sd.cpp command of ../shared/reference/addons/README.md
 * (`sd-cli BASE -p "a lovely cat<lora:random-lora-f16:1>" --lora-model-dir DIR`), run as `deno task gen`
 * with the same flags, gives PSNR >= 40 dB against sd.cpp's lora_256_euler_4.png, with the LoRA merged
 * (the default, as sd.cpp's `immediately`) and applied at run time (`--lora-apply-mode at_runtime`).
 *
 * - Runs only where ../shared (next to the repository) exists; elsewhere it is reported ignored, the reason in its name.
 * - The random LoRA is made into `.cache/lora/random-lora-f16.safetensors` when missing, with
 *   `/usr/bin/python3 (or $SDFLOW_PYTHON) ../shared/tools/make_random_addons.py lora` (python3 + numpy), and its
 *   sha256 checked against the add-ons README's table; the checkpoint is the one of tests/sd15_reference_test.ts
 *   (`.cache/sd15-random-f16.safetensors`, made if missing and checked by tests/sd15_checkpoint.ts).
 * - Bound: PSNR >= 40 dB over the RGB samples (tools/psnr.ts), as the plain SD 1.5 reference test. Why not
 *   equality: sd.cpp rounds convolution weights to f16 and accumulates in another order; the two apply
 *   modes of sd.cpp itself differ by up to 2/255 on this LoRA.
 *
 * @module
 */

import { assert } from "./assert.ts";
import { sharedTest, sharedUrl } from "./shared.ts";
import { CACHE_DIR, ensureMadeFile, genAndCompare } from "./reference_helpers.ts";
import { ensureSd15Checkpoint, SD15_CHECKPOINT, SD15_CHECKPOINT_SHARED } from "./sd15_checkpoint.ts";

const SHARED_PATHS = [
  ...SD15_CHECKPOINT_SHARED,
  "reference/addons/README.md",
  "reference/addons/lora_256_euler_4.png",
  "tools/make_random_addons.py",
];
const [ADDONS_README, REFERENCE_PNG, MAKE_RANDOM_ADDONS] = SHARED_PATHS.slice(SD15_CHECKPOINT_SHARED.length).map(
  sharedUrl,
);
const CHECKPOINT = SD15_CHECKPOINT;
const LORA_DIR = new URL("lora/", CACHE_DIR);
const LORA = new URL("random-lora-f16.safetensors", LORA_DIR);
const MIN_PSNR_DB = 40;

/** The add-ons README's facts: the LoRA's sha256, BASE and the LoRA command's own flags. */
function addonsFacts(text: string): { loraSha256: string; base: string; prompt: string } {
  const sha = /random-lora-f16\.safetensors \|\s*([0-9a-f]{64})/.exec(text);
  const baseText = /Every command shares `([^`]+)`/s.exec(text);
  const cmd = /lora_256_euler_4\.png \| `sd-cli BASE -p "([^"]+)" --lora-model-dir DIR`/.exec(text);
  if (!sha || !baseText || !cmd) {
    throw new Error(`${ADDONS_README.pathname}: the LoRA row, its sha256 or BASE moved; update this test`);
  }
  return { loraSha256: sha[1], base: baseText[1].replace(/\s+/g, " "), prompt: cmd[1] };
}

for (const mode of ["immediately", "at_runtime"] as const) {
  Deno.test({
    ...sharedTest(
      `lora reference: sd.cpp's LoRA command (--lora-apply-mode ${mode}) gives PSNR >= 40 dB vs sd.cpp`,
      ...SHARED_PATHS,
    ),
    async fn() {
      const facts = addonsFacts(await Deno.readTextFile(ADDONS_README));
      await ensureSd15Checkpoint();
      await ensureMadeFile(LORA, MAKE_RANDOM_ADDONS, ["lora"], facts.loraSha256, "random SD 1.5 LoRA");
      const outDir = await Deno.makeTempDir({ prefix: "sdflow-lora-ref-" });
      try {
        const out = `${outDir}/lora_256_euler_4.png`;
        const base = facts.base.split(" ").map((a) => (a === "sd15-random-f16.safetensors" ? CHECKPOINT.pathname : a));
        const args = [...base, "-p", facts.prompt, "--lora-model-dir", LORA_DIR.pathname, "-o", out];
        if (mode === "at_runtime") args.push("--lora-apply-mode", mode);
        const { decoded, output } = await genAndCompare(args, out, REFERENCE_PNG, MIN_PSNR_DB);
        assert(!/unused lora|incompatible/.test(output), `every LoRA tensor should be used:\n${output}`);
        // The tag is gone from the prompt that was encoded and recorded.
        const params = decoded.parameters ?? "";
        assert(params.startsWith("a lovely cat\n") || params.startsWith("a lovely cat"), params);
        assert(!params.split("\n")[0].includes("<lora:"), `parameters: ${params}`);
      } finally {
        await Deno.remove(outDir, { recursive: true });
      }
    },
  });
}
