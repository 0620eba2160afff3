/**
 * Tiny random-weight SD 1.x checkpoints for tests and demos (see make_tiny.ts).
 *
 * @example
 * ```ts
 * const path = await makeTinyCheckpoint(await Deno.makeTempFile({ suffix: ".safetensors" }), { seed: 1 });
 * ```
 */

import { tinyCheckpointBytes, type TinyOptions } from "./make_tiny.ts";

export {
  TINY,
  TINY_SD2,
  TINY_XL,
  type TinyArch,
  tinyCheckpointBytes,
  type TinyOptions,
  tinySpec,
} from "./make_tiny.ts";

/** Writes the tiny checkpoint to `path` and returns `path`. Same seed and dtype, same bytes. */
export async function makeTinyCheckpoint(path: string, opts: TinyOptions = {}): Promise<string> {
  await Deno.writeFile(path, tinyCheckpointBytes(opts));
  return path;
}
