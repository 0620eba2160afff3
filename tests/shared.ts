/**
 * Tests that need `../shared` (reference data next to the repository, never part of the product)
 * run only where it is present; elsewhere they are reported as ignored, with the missing path in
 * the test's name, never as passed.
 *
 * @example
 * ```ts
 * Deno.test({
 *   ...sharedTest("tokenizer matches OpenAI's ids", "reference/clip_tokens.json"),
 *   fn: async () => JSON.parse(await Deno.readTextFile(sharedUrl("reference/clip_tokens.json"))),
 * });
 * ```
 */

/** The shared folder next to the repository. */
export const SHARED_DIR: URL = new URL("../../shared/", import.meta.url);

/** A path inside the shared folder. */
export function sharedUrl(path: string): URL {
  return new URL(path, SHARED_DIR);
}

/** The first of `paths` (relative to the shared folder) that is absent, or undefined when all are there. */
export function missingShared(...paths: string[]): string | undefined {
  for (const p of paths) {
    try {
      Deno.statSync(sharedUrl(p));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return sharedUrl(p).pathname;
      throw e;
    }
  }
  return undefined;
}

/**
 * The `name` and `ignore` of a test that needs `paths` in the shared folder: ignored when one is
 * absent, with the reason appended to the name (which is what `deno test` prints for it).
 */
export function sharedTest(name: string, ...paths: string[]): { name: string; ignore: boolean } {
  const missing = missingShared(...paths);
  return missing === undefined
    ? { name, ignore: false }
    : { name: `${name} [ignored: ${missing} is absent; it is in the shared reference folder]`, ignore: true };
}
