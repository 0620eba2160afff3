/**
 * The judge (judge.ts) against pictures whose content is known: every caption form of the demo grammar drawn by
 * the training recipe's own renderer (tools/train_demo/draw_examples.py; Debian's python3 with numpy, else
 * "ignored"). All must pass; the same pictures judged against a prompt with the colours swapped, and flat noise,
 * must fail.
 */

import { assert, assertEquals } from "../../tests/assert.ts";
import { judge, parsePrompt } from "./judge.ts";

const SIDE = 128;
const PYTHON = "/usr/bin/python3";

async function drawExamples(): Promise<{ captions: string[]; rgb: Uint8Array } | string> {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-judge-test-" });
  try {
    const script = new URL("../../tools/train_demo/draw_examples.py", import.meta.url).pathname;
    const r = await new Deno.Command(PYTHON, { args: [script, `${dir}/x.rgb`, `${dir}/x.json`], stderr: "piped" })
      .output().catch((e) => ({ code: -1, stderr: new TextEncoder().encode(String(e)) }));
    if (r.code !== 0) return new TextDecoder().decode(r.stderr).trim().split("\n").pop() ?? "python3 failed";
    return {
      captions: JSON.parse(await Deno.readTextFile(`${dir}/x.json`)),
      rgb: await Deno.readFile(`${dir}/x.rgb`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("demo judge: passes every caption form drawn by the recipe, fails swapped colours and noise", async () => {
  const drawn = await drawExamples();
  if (typeof drawn === "string") return console.log(`ignored: cannot draw the recipe's pictures (${drawn})`);
  const { captions, rgb } = drawn;
  assertEquals(rgb.length, captions.length * SIDE * SIDE * 3);
  const picture = (i: number) => rgb.subarray(i * SIDE * SIDE * 3, (i + 1) * SIDE * SIDE * 3);
  const rejected = captions.filter((c, i) => !judge(picture(i), SIDE, SIDE, c).ok);
  assertEquals(rejected, [], "pictures drawn from their captions are rejected");
  let swappedPassed = 0, swapped = 0;
  captions.forEach((c, i) => {
    const f = parsePrompt(c);
    if (f.background === undefined) return;
    // Object and background colours exchanged (the grammar's articles are not checked by the judge).
    const other = c.replace(` ${f.colour} `, " @ ").replace(` ${f.background} background`, ` ${f.colour} background`)
      .replace(" @ ", ` ${f.background} `);
    swapped++;
    if (judge(picture(i), SIDE, SIDE, other).ok) swappedPassed++;
  });
  assertEquals(swappedPassed, 0, `${swappedPassed} of ${swapped} pictures pass with object and background swapped`);
  const noise = new Uint8Array(SIDE * SIDE * 3);
  let s = 1;
  for (let i = 0; i < noise.length; i++) noise[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  assert(!judge(noise, SIDE, SIDE, "a red circle on a blue background").ok, "noise passes");
  assert(!judge(new Uint8Array(SIDE * SIDE * 3).fill(128), SIDE, SIDE, "a gray circle on a gray background").ok);
});
