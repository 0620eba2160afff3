/**
 * What the fuzz tests feed and call (issue 13): for each area, valid seed files, the function
 * under test, and which errors count as the module's own. Anything else thrown — a TypeError from
 * reading past an array, a stack overflow, a non-Error — is a crash; a case that does not finish
 * within the time bound is a hang (tests/fuzz_runner.ts).
 */

import { GraphError } from "../dsl/errors.ts";
import { validateGraph } from "../dsl/validate.ts";
import { encodeGguf, encodeSafetensors, openWeights, readTensorF32, WeightFileError } from "../models/weights/mod.ts";
import { decodePngImage, encodePngImage } from "../plugins/image/png.ts";

/** One fuzzed area. */
export interface FuzzTarget {
  /** Valid inputs that mutations start from. */
  seeds(): Promise<Uint8Array[]>;
  /** Text-aware mutations for formats where byte flips mostly hit the first syntax check. */
  structured?: (seed: Uint8Array, rand: () => number) => Uint8Array;
  /** Runs the code under test on one input; resolves with anything, or throws. */
  run(bytes: Uint8Array, scratch: string): Promise<unknown>;
  /** Whether an error thrown by `run` is the module's own (a clean rejection of bad input). */
  isOwnError(e: unknown): boolean;
}

const root = new URL("../", import.meta.url);

// ---- PNG decoder ----------------------------------------------------------------------------------

function image(width: number, height: number, channels: 3 | 4, seed: number) {
  const data = Uint8Array.from({ length: width * height * channels }, (_, i) => (i * 31 + seed * 7) & 0xff);
  return { width, height, channels, data };
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * Mutates the body of one chunk (IHDR's dimensions, bit depth and colour type; IDAT's compressed
 * data; a text chunk) and writes a correct CRC, so the mutation reaches past the CRC checks into
 * the decoder proper.
 */
function mutatePngChunk(seed: Uint8Array, rand: () => number): Uint8Array {
  const dv = new DataView(seed.buffer, seed.byteOffset, seed.byteLength);
  const chunks: { at: number; len: number }[] = [];
  for (let at = 8; at + 12 <= seed.length; at += 12 + dv.getUint32(at)) chunks.push({ at, len: dv.getUint32(at) });
  const c = chunks[Math.floor(rand() * chunks.length)];
  const body = seed.slice(c.at + 8, c.at + 8 + c.len);
  const rounds = 1 + Math.floor(rand() * 3);
  for (let r = 0; r < rounds && body.length; r++) {
    const pos = Math.floor(rand() * body.length);
    const k = rand();
    if (k < 0.4) body[pos] ^= 1 << Math.floor(rand() * 8);
    else if (k < 0.7) body[pos] = [0, 1, 2, 3, 4, 6, 8, 16, 0x7f, 0x80, 0xff][Math.floor(rand() * 11)];
    else if (pos + 4 <= body.length) {
      new DataView(body.buffer).setUint32(
        pos,
        [0, 1, 2, 255, 256, 4096, 65535, 0x7fffffff, 0xffffffff][
          Math.floor(rand() * 9)
        ],
      );
    }
  }
  const out = new Uint8Array(seed.length);
  out.set(seed);
  out.set(body, c.at + 8);
  const odv = new DataView(out.buffer);
  odv.setUint32(c.at + 8 + c.len, crc32(out.subarray(c.at + 4, c.at + 8 + c.len)));
  return out;
}

const png: FuzzTarget = {
  seeds() {
    return Promise.resolve([
      encodePngImage(image(4, 3, 3, 1)),
      encodePngImage(image(5, 2, 4, 2), { parameters: "a cat\nSteps: 20, Seed: 42", graph: { version: 1 } }),
      encodePngImage(image(1, 1, 3, 3), { parameters: "ünïcödé prompt" }), // an iTXt chunk
      encodePngImage(image(16, 16, 4, 4)),
    ]);
  },
  structured: mutatePngChunk,
  run(bytes) {
    const d = decodePngImage(bytes);
    return Promise.resolve(d.image.data.length);
  },
  // plugins/image/png.ts has no error class of its own: it and fast-png reject bad input with
  // Error (and RangeError for malformed chunk lengths). TypeError and friends are crashes.
  isOwnError: (e) => e instanceof Error && (e.constructor === Error || e.constructor === RangeError),
};

// ---- graph parsing and validation -------------------------------------------------------------------

const INTERESTING_VALUES: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1e308,
  -1e308,
  0.5,
  2 ** 53 + 1,
  "",
  "euler_a",
  "x".repeat(100_000),
  [],
  {},
  { from: "checkpoint.model" },
  { from: "nope.nope" },
  { from: "sampler.latent" },
  ["a", 1, null],
];

function deepValue(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { k: v };
  return v;
}

/** Replaces, deletes, renames or duplicates something at a random place in a JSON document. */
function mutateJson(seed: Uint8Array, rand: () => number): Uint8Array {
  const doc = JSON.parse(new TextDecoder().decode(seed));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  // Walk down to a random container.
  let parent: Record<string, unknown> = doc;
  for (let d = 0; d < 5; d++) {
    const keys = Object.keys(parent);
    if (!keys.length) break;
    const next = parent[pick(keys)];
    if (next === null || typeof next !== "object" || rand() < 0.25) break;
    parent = next as Record<string, unknown>;
  }
  const keys = Object.keys(parent);
  const key = keys.length ? pick(keys) : "k";
  const r = rand();
  if (r < 0.45) parent[key] = pick(INTERESTING_VALUES);
  else if (r < 0.55) delete parent[key];
  else if (r < 0.65) {
    parent[`${key}_${Math.floor(rand() * 3)}`] = parent[key];
    if (rand() < 0.5) delete parent[key];
  } else if (r < 0.75) parent[key] = deepValue(Math.floor(rand() * 200));
  else if (r < 0.85) parent[pick(["type", "inputs", "from", "plugins", "version", "nodes"])] = pick(INTERESTING_VALUES);
  else parent[key] = JSON.parse(JSON.stringify(pick(Object.values(doc.nodes ?? { a: 1 }))));
  let text = JSON.stringify(doc, null, rand() < 0.5 ? 2 : undefined);
  // Sometimes a duplicate key, which JSON.stringify cannot write.
  if (rand() < 0.1) text = text.replace(/"version":\s*1/, `"version": 1, "version": 1`);
  return new TextEncoder().encode(text);
}

const graph: FuzzTarget = {
  async seeds() {
    const out: Uint8Array[] = [];
    for (const name of ["txt2img.json", "img2img.json", "demo.json", "seed_sweep.json"]) {
      out.push(await Deno.readFile(new URL(`graphs/${name}`, root)));
    }
    return out;
  },
  structured: mutateJson,
  async run(bytes, scratch) {
    // Plugins resolve against an empty folder: a mutated "plugins" entry never imports real code.
    const p = await validateGraph(new TextDecoder().decode(bytes), { source: "fuzz.json", base: `file://${scratch}/` });
    return p.order.length;
  },
  isOwnError: (e) => e instanceof GraphError,
};

// ---- weight file headers ------------------------------------------------------------------------------

function f32(n: number, seed: number): Uint8Array {
  return new Uint8Array(Float32Array.from({ length: n }, (_, i) => Math.sin(i + seed)).buffer);
}

const weights: FuzzTarget = {
  async seeds() {
    const f16 = new Uint8Array(new Uint16Array([0x3c00, 0x4000, 0xc000, 0x0000]).buffer);
    const out = [
      encodeSafetensors([
        { name: "model.diffusion_model.input_blocks.0.0.weight", dtype: "F32", shape: [2, 2, 1, 1], data: f32(4, 1) },
        {
          name: "cond_stage_model.transformer.text_model.final_layer_norm.weight",
          dtype: "F16",
          shape: [4],
          data: f16,
        },
        { name: "b", dtype: "BF16", shape: [2], data: new Uint8Array([0x80, 0x3f, 0x00, 0x40]) },
      ], { format: "pt", note: "seed" }),
      encodeGguf({ "general.architecture": "sd1", "general.alignment": 32, "x.count": 3 }, [
        { name: "a", type: 0, shape: [2, 3], data: f32(6, 2) },
        { name: "h", type: 1, shape: [4], data: f16 },
        { name: "q", type: 2, shape: [2, 32], data: new Uint8Array(36) },
      ]),
    ];
    // PyTorch checkpoints: zip (with and without compression) and the legacy pickle format.
    for (const name of ["tiny.pt", "nested.ckpt", "deflated.pt", "legacy.pt", "noncontig.pt"]) {
      out.push(await Deno.readFile(new URL(`models/weights/testdata/${name}`, root)));
    }
    return out;
  },
  async run(bytes, scratch) {
    const path = `${scratch}/model.bin`;
    await Deno.writeFile(path, bytes);
    const f = await openWeights(path);
    let floats = 0;
    try {
      for (const name of f.tensors.keys()) {
        try {
          const t = f.get(name);
          const n = t.shape.reduce((a, b) => a * b, 1);
          if (n <= 1 << 16) floats += readTensorF32(t).length;
        } catch (e) {
          if (!(e instanceof WeightFileError)) throw e;
        }
      }
    } finally {
      f.close();
    }
    return floats;
  },
  isOwnError: (e) => e instanceof WeightFileError,
};

/** Every fuzzed area by name. */
export const FUZZ_TARGETS: Readonly<Record<string, FuzzTarget>> = { png, graph, weights };
