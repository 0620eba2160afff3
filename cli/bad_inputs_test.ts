/**
 * Bad and hostile model files through the CLI (issue 3, "what it must show" 5; issue 7): a pickle that
 * calls os.system, a truncated .safetensors, headers that lie about sizes, a file of no SD family, SDXL
 * files missing a text encoder, a missing file.
 * Each must end the process with exit code 1 and ONE line on stderr naming the problem — no
 * stack trace, no crash — and the pickle must never run.
 */

import assert from "node:assert/strict";
import { TINY_XL, tinySpec } from "../models/tiny/mod.ts";

const root = new URL("../", import.meta.url).pathname;
const dec = new TextDecoder();
const STACK = /^\s+at .+:\d+:\d+/m;
/** What models/weights/testdata/evil_system.pt would create if it ran (see make_ckpt_fixtures.py). */
const MARKER = "/tmp/sdflow-weights-test-pwned";

async function gen(model: string, out: string, ...extra: string[]) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "cli/gen.ts",
      "-m",
      model,
      "-p",
      "a cat",
      "-W",
      "64",
      "-H",
      "64",
      "--steps",
      "1",
      "-o",
      out,
      ...extra,
    ],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

/** A safetensors file: 8-byte little-endian header length, JSON header, `data` bytes of zeros. */
function safetensors(header: unknown, data: number): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  return out;
}

const CONV = "model.diffusion_model.input_blocks.0.0.weight";

/**
 * The tiny SDXL layout (names and shapes, zero f16 data) without the tensors whose names start with `drop`,
 * and with `reshape`'s shapes replacing the listed tensors'.
 */
function tinySdxlWithout(drop: string, reshape: Record<string, number[]> = {}): Uint8Array {
  const header: Record<string, unknown> = {
    __metadata__: { "sdflow.unet.head_dim": String(TINY_XL.unet.headDim), "sdflow.clip.heads": "2" },
  };
  let offset = 0;
  for (const t of tinySpec("sdxl")) {
    if (t.name.startsWith(drop)) continue;
    const shape = reshape[t.name] ?? t.shape;
    const bytes = shape.reduce((a, b) => a * b, 1) * (t.kind === "i64" ? 8 : 2);
    header[t.name] = {
      dtype: t.kind === "i64" ? "I64" : "F16",
      shape,
      data_offsets: [offset, offset + bytes],
    };
    offset += bytes;
  }
  return safetensors(header, offset);
}

const cases: {
  name: string;
  file: string;
  make: (path: string) => Promise<void>;
  error: RegExp;
  /** The node whose error it is (default: checkpoint). */
  node?: string;
}[] = [
  {
    name: "a hostile .ckpt (a pickle calling os.system) is refused without running it",
    file: "hostile.ckpt",
    make: (p) => Deno.copyFile(new URL("../models/weights/testdata/evil_system.pt", import.meta.url), p),
    error: /refusing to load .*hostile\.ckpt: pickle imports posix\.system/,
  },
  {
    name: "a truncated .safetensors",
    file: "truncated.safetensors",
    make: async (p) => {
      const whole = await Deno.readFile(new URL("../models/testdata/tiny_reference.safetensors", import.meta.url));
      await Deno.writeFile(p, whole.subarray(0, whole.length >> 1));
    },
    error: /truncated\.safetensors is truncated: tensor .* ends at byte \d+ but the file has \d+ bytes/,
  },
  {
    name: "a header whose offsets run past the end of the file",
    file: "beyond.safetensors",
    make: (p) =>
      Deno.writeFile(p, safetensors({ [CONV]: { dtype: "F32", shape: [320, 4, 3, 3], data_offsets: [0, 46080] } }, 64)),
    error: /beyond\.safetensors is truncated: tensor model\.diffusion_model\.input_blocks\.0\.0\.weight ends at byte/,
  },
  {
    name: "a header whose shape and data_offsets disagree",
    file: "shape.safetensors",
    make: (p) =>
      Deno.writeFile(p, safetensors({ [CONV]: { dtype: "F32", shape: [320, 4, 3, 3], data_offsets: [0, 64] } }, 64)),
    error: /shape\.safetensors: header lies about sizes: tensor .* is F32 \[320, 4, 3, 3\] = 46080 bytes/,
  },
  {
    name: "a header length larger than the file",
    file: "header.safetensors",
    make: async (p) => {
      const bytes = safetensors({ [CONV]: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, 4);
      new DataView(bytes.buffer).setBigUint64(0, 1n << 40n, true);
      await Deno.writeFile(p, bytes);
    },
    error: /header\.safetensors: header length 1099511627776 exceeds the 100 MB limit/,
  },
  {
    name: "a file of no Stable Diffusion family (a Flux-like transformer)",
    file: "flux.safetensors",
    make: (p) =>
      Deno.writeFile(
        p,
        safetensors(
          { "double_blocks.0.img_attn.qkv.weight": { dtype: "F16", shape: [6, 2], data_offsets: [0, 24] } },
          24,
        ),
      ),
    error: /flux\.safetensors: cannot tell the model family \(SD 1\.x, SD 2\.x or SDXL\)/,
  },
  {
    name: "an SDXL file without its OpenCLIP bigG text encoder",
    file: "sdxl-no-bigg.safetensors",
    make: (p) => Deno.writeFile(p, tinySdxlWithout("conditioner.embedders.1.")),
    error: /sdxl-no-bigg\.safetensors: SDXL checkpoint without its OpenCLIP ViT-bigG \(conditioner\.embedders\.1/,
  },
  {
    name: "an SDXL file without its CLIP ViT-L text encoder",
    file: "sdxl-no-clip-l.safetensors",
    make: (p) => Deno.writeFile(p, tinySdxlWithout("conditioner.embedders.0.")),
    error: /sdxl-no-clip-l\.safetensors: SDXL checkpoint without its CLIP ViT-L \(conditioner\.embedders\.0/,
  },
  {
    name: "an SDXL inpainting UNet (9 input channels) without a picture and a mask",
    file: "sdxl-inpaint.safetensors",
    make: (p) => Deno.writeFile(p, tinySdxlWithout("-", { [CONV]: [TINY_XL.unet.modelChannels, 9, 3, 3] })),
    // Inpainting models load; without a picture and a mask the sampler says what they need.
    node: "sampler",
    error: /this is an inpainting model \(9 input channels\): give it a picture and a mask/,
  },
  {
    name: "a missing file",
    file: "missing.safetensors",
    make: () => Promise.resolve(),
    error: /model file not found: .*missing\.safetensors\. The official Stable Diffusion 1\.5 weights are published at/,
  },
];

for (const c of cases) {
  Deno.test(`gen: ${c.name}: one line on stderr, exit code 1, no stack trace`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const model = `${dir}/${c.file}`;
      await c.make(model);
      await Deno.remove(MARKER).catch(() => {});
      const r = await gen(model, `${dir}/out.png`);
      assert.equal(r.code, 1, r.stderr);
      // Progress lines of nodes that finished before the failing one ("✓ checkpoint (checkpoint) 1.3 s", printed
      // when a node takes over a second, as on a busy machine) are not part of the error.
      const lines = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("✓ "));
      assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
      assert.match(lines[0], new RegExp(`^error: node "${c.node ?? "checkpoint"}" `));
      assert.match(lines[0], c.error);
      assert.doesNotMatch(r.stderr, STACK);
      assert.doesNotMatch(r.stderr, /Uncaught|panicked/);
      assert.equal(await Deno.stat(`${dir}/out.png`).then(() => true, () => false), false, "no image is written");
      assert.equal(await Deno.stat(MARKER).then(() => true, () => false), false, "the pickle must not run");

      // -v adds the stack trace, for bug reports.
      const v = await gen(model, `${dir}/out.png`, "-v");
      assert.equal(v.code, 1);
      assert.match(v.stderr, c.error);
      assert.match(v.stderr, STACK);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
