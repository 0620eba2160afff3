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
 * - Bound: PSNR ≥ 40 dB over the RGB samples (tools/psnr.ts). Why not bit equality: sd.cpp stores conv
 *   weights as f16 and convolves by im2col + GEMM, so its picture is itself one rounding of the ideal one.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { assert, assertEquals } from "./assert.ts";
import { decodePngImage } from "../plugins/image/png.ts";
import { compareImages } from "../tools/psnr.ts";
import { sharedTest, sharedUrl } from "./shared.ts";

const README = sharedUrl("reference/README.md");
const REFERENCE_PNG = sharedUrl("reference/sd15-random/a_256_euler_4.png");
const MAKE_RANDOM_SD = sharedUrl("tools/make_random_sd.py");
const REPO = new URL("../", import.meta.url);
const CACHE_DIR = new URL(".cache/", REPO);
const CHECKPOINT = new URL("sd15-random-f16.safetensors", CACHE_DIR);
/** Debian's python3 (with python3-numpy); `SDFLOW_PYTHON` names another interpreter. */
const PYTHON = Deno.env.get("SDFLOW_PYTHON") || "/usr/bin/python3";
const MIN_PSNR_DB = 40;

/** The README's facts this test depends on: the file's sha256, the pixels' sha256, and the command line. */
interface ReadmeFacts {
  checkpointSha256: string;
  pixelsSha256: string;
  args: string[];
}

/** Splits a shell command line into words (double/single quotes and backslash-newline continuations). */
function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (const m of line.replace(/\\\n/g, " ").matchAll(re)) {
    words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2] ?? m[3]);
  }
  return words;
}

function readmeFacts(text: string): ReadmeFacts {
  const ckpt = /Expected sha256 of that file:\s*`([0-9a-f]{64})`/.exec(text);
  const pixels = /sha256 of the decoded 8-bit RGB pixels[^`]*`([0-9a-f]{64})`/.exec(text);
  // The indented block that starts with `sd-cli` and continues over lines ending in a backslash.
  const cmd = /^[ \t]*sd-cli[ \t]((?:[^\n]*\\\n)*[^\n]*)$/m.exec(text);
  if (!ckpt || !pixels || !cmd) {
    throw new Error(
      `${README.pathname}: could not find ${
        [!ckpt && "the checkpoint's sha256", !pixels && "the pixels' sha256", !cmd && "the sd-cli command"]
          .filter(Boolean).join(", ")
      }; update tests/sd15_reference_test.ts to the README's new wording`,
    );
  }
  return { checkpointSha256: ckpt[1], pixelsSha256: pixels[1], args: shellWords(cmd[1]) };
}

/** Replaces the value of `flag` (which must be present) in an argument list. */
function withFlag(args: string[], flag: string, value: string): string[] {
  const i = args.indexOf(flag);
  if (i < 0 || i + 1 >= args.length) throw new Error(`the README's command has no ${flag} <value>`);
  return [...args.slice(0, i + 1), value, ...args.slice(i + 2)];
}

async function sha256File(path: URL): Promise<string> {
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

async function run(cmd: string, args: string[], cwd?: URL): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: (dec.decode(r.stdout) + dec.decode(r.stderr)).trim() };
}

function tail(text: string, lines = 25): string {
  return text.split("\n").slice(-lines).join("\n");
}

/** Fails, naming what to install, when python3 or numpy is missing. */
async function requirePythonNumpy(): Promise<void> {
  const install = "install Python 3 and numpy (Debian/Ubuntu: apt-get install python3-numpy; CI does this)";
  let r;
  try {
    r = await run(PYTHON, ["-c", "import numpy"]);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`${PYTHON} not found: it is needed to make ${CHECKPOINT.pathname}; ${install}`);
    }
    throw e;
  }
  if (r.code !== 0) throw new Error(`${PYTHON} cannot import numpy (${tail(r.out, 1)}); ${install}`);
}

function exists(url: URL): boolean {
  try {
    Deno.statSync(url);
    return true;
  } catch {
    return false;
  }
}

/** Makes the checkpoint if missing (into a temporary name, renamed when complete), then checks its sha256. */
async function ensureCheckpoint(expectedSha256: string): Promise<void> {
  if (!exists(CHECKPOINT)) {
    await requirePythonNumpy();
    await Deno.mkdir(CACHE_DIR, { recursive: true });
    const partial = new URL(`sd15-random-f16.safetensors.partial-${Deno.pid}`, CACHE_DIR);
    console.log(`making ${CHECKPOINT.pathname} with ${MAKE_RANDOM_SD.pathname} (2.1 GB, about half a minute)`);
    try {
      const r = await run(PYTHON, [MAKE_RANDOM_SD.pathname, "--out", partial.pathname, "--dtype", "f16"]);
      if (r.code !== 0) throw new Error(`make_random_sd.py exited with ${r.code}:\n${tail(r.out)}`);
      await Deno.rename(partial, CHECKPOINT);
    } finally {
      await Deno.remove(partial).catch(() => {});
    }
  }
  const sha = await sha256File(CHECKPOINT);
  if (sha !== expectedSha256) {
    throw new Error(
      `${CHECKPOINT.pathname}: sha256 ${sha}, the README expects ${expectedSha256}. ` +
        `Delete the file so the test makes it again; if it still differs, make_random_sd.py or numpy ` +
        `changed and the reference data must be regenerated.`,
    );
  }
}

function pixelsSha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

Deno.test({
  ...sharedTest(
    "sd15 reference: the README's sd-cli command as `deno task gen` gives PSNR >= 40 dB vs sd.cpp's image",
    "reference/README.md",
    "reference/sd15-random/a_256_euler_4.png",
    "tools/make_random_sd.py",
  ),
  async fn() {
    const facts = readmeFacts(await Deno.readTextFile(README));

    // The reference PNG decodes to the pixels the README describes (checks the file and our PNG decoder).
    const reference = decodePngImage(await Deno.readFile(REFERENCE_PNG)).image;
    assertEquals([reference.width, reference.height, reference.channels], [256, 256, 3], "reference image");
    assertEquals(pixelsSha256(reference.data), facts.pixelsSha256, "sha256 of the reference image's RGB pixels");

    await ensureCheckpoint(facts.checkpointSha256);

    const outDir = await Deno.makeTempDir({ prefix: "sdflow-sd15-ref-" });
    try {
      const out = `${outDir}/a_256_euler_4.png`;
      const args = withFlag(withFlag(facts.args, "-m", CHECKPOINT.pathname), "-o", out);
      console.log(`deno task gen ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(" ")}`);
      const t0 = performance.now();
      const r = await run(Deno.execPath(), ["run", "-A", "cli/gen.ts", ...args], REPO);
      if (r.code !== 0) throw new Error(`deno task gen exited with ${r.code}:\n${tail(r.out)}`);

      const decoded = decodePngImage(await Deno.readFile(out));
      const c = compareImages(decoded.image, reference);
      const m = (v: number[]) => v.map((x) => x.toFixed(3)).join(", ");
      console.log(
        `PSNR ${c.psnr.toFixed(2)} dB (bound ${MIN_PSNR_DB} dB), max |diff| ${c.maxAbs}, ` +
          `mean RGB ${m(c.meanA)} vs sd.cpp ${m(c.meanB)}, run ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
      assert(c.psnr >= MIN_PSNR_DB, `PSNR ${c.psnr.toFixed(2)} dB < ${MIN_PSNR_DB} dB against sd.cpp's picture`);
      // The PNG carries the generation parameters (sd-webui format).
      const params = decoded.parameters ?? "";
      assert(params.startsWith("a lovely cat"), `parameters chunk: ${JSON.stringify(params)}`);
      assert(/Steps: 4\b/.test(params) && /Seed: 42\b/.test(params), `parameters chunk: ${JSON.stringify(params)}`);
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
  );
  assertEquals(facts, {
    checkpointSha256: "a".repeat(64),
    pixelsSha256: "b".repeat(64),
    args: ["-m", "m.st", "-p", "a cat", "-W", "256", "-o", "o.png"],
  });
  assertEquals(withFlag(facts.args, "-o", "new.png").slice(-2), ["-o", "new.png"]);
});
