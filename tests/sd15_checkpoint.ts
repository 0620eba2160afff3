/**
 * The random SD 1.5 checkpoint the reference tests run (`.cache/sd15-random-f16.safetensors`): made
 * when missing with `../shared/tools/make_random_sd.py --dtype f16` (python3 + numpy; into a temporary
 * name, renamed when complete, so tests running at once do not see a partial file), then checked
 * against the sha256 of `../shared/reference/README.md` (its `sd15-random/` section). For every test
 * that needs it (the sd15, LoRA, ControlNet and inpainting reference tests), so that no test depends on another's order.
 *
 * @module
 */

import {
  CACHE_DIR,
  ensureCheckpoint,
  PYTHON,
  README,
  readmeFacts,
  readmeSection,
  sha256File,
} from "./reference_helpers.ts";

export { PYTHON, sha256File };

export const SD15_CHECKPOINT: URL = new URL("sd15-random-f16.safetensors", CACHE_DIR);

/** The shared paths {@link ensureSd15Checkpoint} reads. */
export const SD15_CHECKPOINT_SHARED = ["reference/README.md", "tools/make_random_sd.py"];

/** Makes the checkpoint if missing, then checks its sha256 against the shared README's. */
export async function ensureSd15Checkpoint(): Promise<void> {
  const facts = readmeFacts(readmeSection(await Deno.readTextFile(README), "sd15-random/"), "tests/sd15_checkpoint.ts");
  await ensureCheckpoint(SD15_CHECKPOINT, ["--dtype", "f16"], facts.checkpointSha256, "2.1 GB, about half a minute");
}
