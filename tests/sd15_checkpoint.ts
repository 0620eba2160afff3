/**
 * The random SD 1.5 checkpoint the reference tests run (`.cache/sd15-random-f16.safetensors`): made
 * when missing with `../shared/tools/make_random_sd.py --dtype f16` (python3 + numpy; into a temporary
 * name, renamed when complete, so tests running at once do not see a partial file), then checked
 * against the sha256 of `../shared/reference/README.md`. For tests that need it besides
 * sd15_reference_test.ts (which makes it the same way), so that no test depends on another's order.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { sharedUrl } from "./shared.ts";

export const SD15_CHECKPOINT: URL = new URL("../.cache/sd15-random-f16.safetensors", import.meta.url);
/** Debian's python3 (with python3-numpy); `SDFLOW_PYTHON` names another interpreter. */
export const PYTHON: string = Deno.env.get("SDFLOW_PYTHON") || "/usr/bin/python3";

/** The shared paths {@link ensureSd15Checkpoint} reads. */
export const SD15_CHECKPOINT_SHARED = ["reference/README.md", "tools/make_random_sd.py"];

export async function sha256File(path: URL): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  const buf = new Uint8Array(8 << 20);
  for (;;) {
    const n = await file.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
  }
  return hash.digest("hex");
}

async function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: (dec.decode(r.stdout) + dec.decode(r.stderr)).trim() };
}

/** Makes the checkpoint if missing, then checks its sha256 against the shared README's. */
export async function ensureSd15Checkpoint(): Promise<void> {
  const readme = await Deno.readTextFile(sharedUrl("reference/README.md"));
  const sha = /Expected sha256 of that file:\s*`([0-9a-f]{64})`/.exec(readme)?.[1];
  if (!sha) {
    throw new Error("../shared/reference/README.md: the checkpoint's sha256 moved; update tests/sd15_checkpoint.ts");
  }
  try {
    await Deno.stat(SD15_CHECKPOINT);
  } catch {
    const dir = new URL("./", SD15_CHECKPOINT);
    await Deno.mkdir(dir, { recursive: true });
    const partial = new URL(`sd15-random-f16.safetensors.partial-${Deno.pid}-${crypto.randomUUID()}`, dir);
    try {
      let r;
      try {
        r = await run(PYTHON, [
          sharedUrl("tools/make_random_sd.py").pathname,
          "--out",
          partial.pathname,
          "--dtype",
          "f16",
        ]);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) throw new Error(`${PYTHON} not found: install python3 and numpy`);
        throw e;
      }
      if (r.code !== 0) throw new Error(`make_random_sd.py exited with ${r.code} (needs python3 + numpy):\n${r.out}`);
      await Deno.rename(partial, SD15_CHECKPOINT);
    } finally {
      await Deno.remove(partial).catch(() => {});
    }
  }
  const got = await sha256File(SD15_CHECKPOINT);
  if (got !== sha) {
    throw new Error(`${SD15_CHECKPOINT.pathname}: sha256 ${got}, the README expects ${sha}; delete it to remake it`);
  }
}
