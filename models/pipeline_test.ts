/**
 * End-to-end generation on the tiny random-weight SD 1.x checkpoint (models/tiny): text encoder → sampler →
 * VAE decoder through the engine and the CPU backend, for every sampler × scheduler, both RNGs, batches,
 * img2img, CFG, long prompts, emphasis, clip-skip and image sizes.
 *
 * What is asserted, and how exactly:
 * - shapes and finiteness: exact (latent [N, 4, H/8, W/8], every value finite; images W×H×3);
 * - determinism: the same inputs give the same bytes (bit equality of latents and images);
 * - "differs": at least one value differs (a different seed/RNG/prompt must change the result);
 * - step and model-call counts: exact (sd.cpp's counts: img2img runs t_enc + 1 steps; cfg 1 skips the
 *   unconditional pass; cond and uncond share one batch-2 call when their contexts have the same shape);
 * - emphasis: row ratios against the unweighted context to 1e-5 relative (float32 rounding of one multiply).
 * The model's numerics against PyTorch are tested elsewhere (models/tiny/engine_test.ts).
 */

import { assert, assertEquals } from "../tests/assert.ts";
import { loadCheckpoint, makeTinyCheckpoint, resolveScheduler, sample } from "./mod.ts";
import { SAMPLE_METHODS, type SampleMethod } from "./sampling/samplers.ts";
import { SCHEDULER_NAMES } from "./sampling/schedules.ts";
import type { Conditioning, Denoiser, HostTensor, Image, Latent } from "./types.ts";

const SCHEDULERS = SCHEDULER_NAMES;

const dir = await Deno.makeTempDir({ prefix: "sdflow-pipeline-test-" });
const ckptPath = await makeTinyCheckpoint(`${dir}/tiny.safetensors`, { seed: 11 });
// One thread: tests run in parallel processes on small machines; the tiny model needs no more.
const ckpt = await loadCheckpoint(ckptPath, { threads: 1 });
globalThis.addEventListener("unload", () => {
  ckpt.dispose();
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // best effort
  }
});

interface GenOptions {
  prompt?: string;
  negative?: string;
  seed?: number;
  steps?: number;
  cfg?: number;
  method?: string;
  scheduler?: string;
  rng?: "cuda" | "std_default" | "cpu";
  width?: number;
  height?: number;
  batch?: number;
  clipSkip?: number;
  /** img2img: the input image and strength (< 1). */
  init?: Image;
  strength?: number;
  denoiser?: Denoiser;
  decode?: boolean;
}

interface GenResult {
  latent: Latent;
  images: Image[];
  /** onStep calls: [i, n] each. */
  steps: Array<[number, number]>;
}

/** encode → sample → decode, as the default txt2img / img2img graph does. */
async function generate(o: GenOptions = {}): Promise<GenResult> {
  const width = o.width ?? 64, height = o.height ?? 64, batch = o.batch ?? 1, seed = o.seed ?? 42;
  const rng = o.rng ?? "cuda";
  const enc = { clipSkip: o.clipSkip };
  const positive = await ckpt.textEncoder.encode(o.prompt ?? "a lovely cat", enc);
  const negative = await ckpt.textEncoder.encode(o.negative ?? "", enc);
  // sd.cpp's img2img samples the VAE posterior with noise from the generator seeded with the seed.
  const latent: Latent = o.init
    ? await ckpt.vae.encode([o.init], { seed, rng })
    : { shape: [batch, 4, height / 8, width / 8], data: new Float32Array(batch * 4 * (height / 8) * (width / 8)) };
  const steps: Array<[number, number]> = [];
  const out = await sample({
    denoiser: o.denoiser ?? ckpt.denoiser,
    positive,
    negative,
    latent,
    batch,
    seed,
    steps: o.steps ?? 3,
    cfgScale: o.cfg ?? 7,
    method: o.method ?? "euler",
    scheduler: o.scheduler ?? "discrete",
    rng,
    strength: o.strength,
    onStep: (i, n) => steps.push([i, n]),
  });
  const images = o.decode === false ? [] : await ckpt.vae.decode(out);
  return { latent: out, images, steps };
}

function checkLatent(l: Latent, shape: number[], what: string): void {
  assertEquals([...l.shape], shape, `${what}: latent shape`);
  assertEquals(l.data.length, shape.reduce((a, b) => a * b), `${what}: latent size`);
  const bad = l.data.findIndex((v) => !Number.isFinite(v));
  assert(bad < 0, `${what}: latent[${bad}] = ${l.data[bad]} is not finite`);
  assert(l.data.some((v) => v !== 0), `${what}: latent is all zeros`);
}

function checkImage(im: Image, width: number, height: number, what: string): void {
  assertEquals([im.width, im.height, im.channels, im.data.length], [width, height, 3, width * height * 3], what);
}

function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/** A deterministic test picture: gradients plus a pattern selected by `kind`. */
function testImage(width: number, height: number, kind: "gradient" | "checker"): Image {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 3;
      if (kind === "gradient") {
        data[p] = Math.round((255 * x) / (width - 1));
        data[p + 1] = Math.round((255 * y) / (height - 1));
        data[p + 2] = 128;
      } else {
        const on = ((x >> 3) + (y >> 3)) % 2 === 1;
        data[p] = data[p + 1] = data[p + 2] = on ? 230 : 20;
      }
    }
  }
  return { width, height, channels: 3, data };
}

/** Wraps a denoiser and records each predict call's batch and context token count. */
function countingDenoiser(d: Denoiser): { denoiser: Denoiser; calls: Array<{ batch: number; tokens: number }> } {
  const calls: Array<{ batch: number; tokens: number }> = [];
  return {
    calls,
    denoiser: {
      family: d.family,
      prediction: d.prediction,
      alphasCumprod: d.alphasCumprod,
      predict(x: HostTensor, t: Float32Array, cond: Conditioning) {
        calls.push({ batch: x.shape[0], tokens: cond.context.shape[1] });
        return d.predict(x, t, cond);
      },
    },
  };
}

// --- every sampler × every scheduler ------------------------------------------------------------------------

for (const method of [...SAMPLE_METHODS, "ddim"]) {
  Deno.test(`pipeline: ${method} × every scheduler runs, finite, right shape, deterministic per seed`, async (t) => {
    for (const scheduler of SCHEDULERS) {
      await t.step(scheduler, async () => {
        const what = `${method}/${scheduler}`;
        const a = await generate({ method, scheduler, seed: 5, steps: 3 });
        checkLatent(a.latent, [1, 4, 8, 8], what);
        checkImage(a.images[0], 64, 64, what);
        assertEquals(a.steps, [[1, 3], [2, 3], [3, 3]], `${what}: onStep calls`);
        const b = await generate({ method, scheduler, seed: 5, steps: 3 });
        assert(same(a.latent.data, b.latent.data), `${what}: same seed gave different latents`);
        assert(same(a.images[0].data, b.images[0].data), `${what}: same seed gave different pixels`);
        const c = await generate({ method, scheduler, seed: 6, steps: 3, decode: false });
        checkLatent(c.latent, [1, 4, 8, 8], `${what} seed 6`);
        assert(!same(a.latent.data, c.latent.data), `${what}: seeds 5 and 6 gave the same latent`);
      });
    }
  });
}

Deno.test("pipeline: the default scheduler is sd.cpp's per method (lcm: lcm, tcd: lcm, ddim_trailing: simple)", async () => {
  for (
    const [method, scheduler] of [["lcm", "lcm"], ["tcd", "lcm"], ["ddim_trailing", "simple"], ["euler", "discrete"]]
  ) {
    assertEquals(resolveScheduler("default", method as SampleMethod), scheduler);
    const byDefault = await generate({ method, scheduler: "default", steps: 3, decode: false });
    const named = await generate({ method, scheduler, steps: 3, decode: false });
    const other = await generate({ method, scheduler: "karras", steps: 3, decode: false });
    assert(same(byDefault.latent.data, named.latent.data), `${method}: default is not ${scheduler}`);
    assert(!same(byDefault.latent.data, other.latent.data), `${method}: the scheduler changes nothing`);
  }
});

Deno.test("pipeline: the ddim alias is ddim_trailing; samplers differ from each other", async () => {
  const ddim = await generate({ method: "ddim", decode: false });
  const trailing = await generate({ method: "ddim_trailing", decode: false });
  assert(same(ddim.latent.data, trailing.latent.data), "ddim and ddim_trailing differ");
  const euler = await generate({ method: "euler", decode: false });
  const eulerA = await generate({ method: "euler_a", decode: false });
  const heun = await generate({ method: "heun", decode: false });
  assert(!same(euler.latent.data, eulerA.latent.data), "euler == euler_a");
  assert(!same(euler.latent.data, heun.latent.data), "euler == heun");
  const karras = await generate({ method: "euler", scheduler: "karras", decode: false });
  assert(!same(euler.latent.data, karras.latent.data), "discrete == karras");
});

// --- RNGs ---------------------------------------------------------------------------------------------------

Deno.test("pipeline: rng cuda, std_default and cpu are each deterministic and differ from each other", async () => {
  for (const method of ["euler", "euler_a"]) {
    const latents: Float32Array[] = [];
    for (const rng of ["cuda", "std_default", "cpu"] as const) {
      const a = await generate({ method, rng, seed: 9 });
      const b = await generate({ method, rng, seed: 9 });
      checkLatent(a.latent, [1, 4, 8, 8], `${method} ${rng}`);
      assert(same(a.images[0].data, b.images[0].data), `${method}: ${rng} not deterministic`);
      latents.push(a.latent.data);
    }
    assert(!same(latents[0], latents[1]), `${method}: cuda and std_default gave the same latent`);
    assert(!same(latents[0], latents[2]) && !same(latents[1], latents[2]), `${method}: cpu repeats another rng`);
  }
});

// --- batch count --------------------------------------------------------------------------------------------

Deno.test("pipeline: batch 2 = [seed, seed + 1] run one at a time (sd.cpp reseeds per image)", async () => {
  for (const method of ["euler", "euler_a"]) {
    for (const rng of ["cuda", "std_default"] as const) {
      const what = `${method}/${rng}`;
      const both = await generate({ method, rng, seed: 100, batch: 2, steps: 3 });
      checkLatent(both.latent, [2, 4, 8, 8], what);
      assertEquals(both.images.length, 2, what);
      assertEquals(both.steps.map(([i]) => i), [1, 2, 3, 4, 5, 6], `${what}: onStep over the batch`);
      assert(both.steps.every(([, n]) => n === 6), `${what}: onStep total`);
      const first = await generate({ method, rng, seed: 100, steps: 3 });
      const second = await generate({ method, rng, seed: 101, steps: 3 });
      const per = 4 * 8 * 8;
      assert(same(both.latent.data.subarray(0, per), first.latent.data), `${what}: image 1 != seed 100 alone`);
      assert(same(both.latent.data.subarray(per), second.latent.data), `${what}: image 2 != seed 101 alone`);
      assert(same(both.images[0].data, first.images[0].data), `${what}: image 1 pixels`);
      assert(same(both.images[1].data, second.images[0].data), `${what}: image 2 pixels`);
      assert(!same(both.images[0].data, both.images[1].data), `${what}: the two images are equal`);
    }
  }
});

// --- img2img ------------------------------------------------------------------------------------------------

Deno.test("pipeline: img2img runs t_enc + 1 steps (sd.cpp) and its result depends on the input image", async () => {
  const gradient = testImage(64, 64, "gradient");
  const checker = testImage(64, 64, "checker");
  const txt = await generate({ steps: 4 });
  assertEquals(txt.steps.length, 4, "txt2img steps");

  // steps 4, strength 0.5: t_enc = 2 → 3 steps; steps 20, strength 0.75: t_enc = 15 → 16 steps;
  // strength 0.1 with 4 steps: t_enc = 0 → 1 step.
  for (const [steps, strength, expected] of [[4, 0.5, 3], [20, 0.75, 16], [4, 0.1, 1]]) {
    const r = await generate({ init: gradient, strength, steps, decode: false });
    assertEquals(r.steps.length, expected, `img2img steps=${steps} strength=${strength}: onStep calls`);
    assertEquals(r.steps.at(-1), [expected, expected], "last onStep");
    checkLatent(r.latent, [1, 4, 8, 8], `img2img ${steps}/${strength}`);
  }

  const a = await generate({ init: gradient, strength: 0.5, steps: 4 });
  const a2 = await generate({ init: gradient, strength: 0.5, steps: 4 });
  const b = await generate({ init: checker, strength: 0.5, steps: 4 });
  checkImage(a.images[0], 64, 64, "img2img");
  assert(same(a.images[0].data, a2.images[0].data), "img2img is not deterministic");
  assert(!same(a.latent.data, b.latent.data), "img2img ignores its input image");
  assert(!same(a.latent.data, txt.latent.data), "img2img gave the txt2img result");
  // More strength moves further from the input: at low strength the result stays closer to the encoded image.
  const enc = await ckpt.vae.encode([gradient], { seed: 42, rng: "cuda" });
  const dist = (x: Float32Array) => x.reduce((s, v, i) => s + (v - enc.data[i]) ** 2, 0);
  const low = await generate({ init: gradient, strength: 0.25, steps: 8, decode: false });
  const high = await generate({ init: gradient, strength: 0.9, steps: 8, decode: false });
  assert(
    dist(low.latent.data) < dist(high.latent.data),
    `strength 0.25 is further from the input than 0.9 (${dist(low.latent.data)} vs ${dist(high.latent.data)})`,
  );
});

// --- CFG and the negative prompt ----------------------------------------------------------------------------

Deno.test("pipeline: cfg 7 batches cond + uncond into one call; cfg 1 never runs the unconditional pass", async () => {
  const c7 = countingDenoiser(ckpt.denoiser);
  await generate({ denoiser: c7.denoiser, cfg: 7, steps: 4, decode: false });
  assertEquals(c7.calls, Array(4).fill({ batch: 2, tokens: 77 }), "cfg 7: one batch-2 call per step");

  const c1 = countingDenoiser(ckpt.denoiser);
  const one = await generate({ denoiser: c1.denoiser, cfg: 1, negative: "ugly, blurry", steps: 4 });
  assertEquals(c1.calls, Array(4).fill({ batch: 1, tokens: 77 }), "cfg 1: one batch-1 call per step");
  // …so at cfg 1 the negative prompt cannot matter.
  const oneNoNeg = await generate({ cfg: 1, negative: "", steps: 4 });
  assert(same(one.images[0].data, oneNoNeg.images[0].data), "cfg 1: the negative prompt changed the image");

  // Two-stage samplers call the model twice per step (heun: except the last step, whose sigma is 0).
  const heun = countingDenoiser(ckpt.denoiser);
  await generate({ denoiser: heun.denoiser, method: "heun", cfg: 1, steps: 3, decode: false });
  assertEquals(heun.calls.length, 5, "heun, 3 steps: model calls");
});

Deno.test("pipeline: the negative prompt changes the result at cfg > 1", async () => {
  const plain = await generate({ negative: "" });
  const neg = await generate({ negative: "ugly, blurry" });
  const neg2 = await generate({ negative: "ugly, blurry" });
  assert(!same(plain.latent.data, neg.latent.data), "negative prompt ignored");
  assert(same(neg.images[0].data, neg2.images[0].data), "not deterministic");
  const cfg3 = await generate({ negative: "ugly, blurry", cfg: 3 });
  assert(!same(neg.latent.data, cfg3.latent.data), "cfg scale ignored");
});

// --- prompts: length, emphasis, clip-skip -------------------------------------------------------------------

Deno.test("pipeline: prompts past 75 tokens become 77-token windows; 154-token prompt with a 77-token negative", async () => {
  const shape = async (p: string) => [...(await ckpt.textEncoder.encode(p)).context.shape];
  // "cat" is one token: 75 fit one window, 76 need two.
  assertEquals(await shape(""), [1, 77, 64]);
  assertEquals(await shape("cat ".repeat(75)), [1, 77, 64]);
  assertEquals(await shape("cat ".repeat(76)), [1, 154, 64]);
  assertEquals(await shape("cat ".repeat(150)), [1, 154, 64]);
  assertEquals(await shape("cat ".repeat(151)), [1, 231, 64]);

  // Each window is encoded on its own: the first window of a 100-cat prompt is the 75-cat prompt.
  const long = (await ckpt.textEncoder.encode("cat ".repeat(100))).context.data;
  const head = (await ckpt.textEncoder.encode("cat ".repeat(75))).context.data;
  let worst = 0, scale = 0;
  for (let i = 0; i < head.length; i++) {
    worst = Math.max(worst, Math.abs(long[i] - head[i]));
    scale = Math.max(scale, Math.abs(head[i]));
  }
  assert(worst <= 1e-5 * scale, `first window differs from the 75-token encoding by ${worst} (max |h| ${scale})`);

  const prompt = "a lovely cat, ".repeat(30); // 120 tokens → 154
  const counting = countingDenoiser(ckpt.denoiser);
  const r = await generate({ denoiser: counting.denoiser, prompt, negative: "ugly", steps: 3, cfg: 7 });
  checkLatent(r.latent, [1, 4, 8, 8], "154/77 tokens");
  // Different context lengths cannot share a batch: cond and uncond run one after the other.
  assertEquals(counting.calls, [
    { batch: 1, tokens: 154 },
    { batch: 1, tokens: 77 },
    { batch: 1, tokens: 154 },
    { batch: 1, tokens: 77 },
    { batch: 1, tokens: 154 },
    { batch: 1, tokens: 77 },
  ]);
  const short = await generate({ prompt: "a lovely cat", negative: "ugly", steps: 3, cfg: 7, decode: false });
  assert(!same(r.latent.data, short.latent.data), "the long prompt gave the short prompt's result");
  // A 154-token negative with a 154-token prompt batches again.
  const both = countingDenoiser(ckpt.denoiser);
  await generate({ denoiser: both.denoiser, prompt, negative: "ugly, ".repeat(40), steps: 2, decode: false });
  assertEquals(both.calls, [{ batch: 2, tokens: 154 }, { batch: 2, tokens: 154 }]);
});

Deno.test("pipeline: emphasis (cat:1.5) scales the token's row, then restores the window's mean (sd.cpp)", async () => {
  const D = 64;
  const plain = (await ckpt.textEncoder.encode("a cat")).context.data;
  const unit = (await ckpt.textEncoder.encode("a (cat:1)")).context.data;
  assert(same(plain, unit), "(cat:1) differs from cat");
  for (const [prompt, w] of [["a (cat:1.5)", 1.5], ["a (cat)", 1.1], ["a [cat]", 1 / 1.1], ["a ((cat))", 1.21]]) {
    const h = (await ckpt.textEncoder.encode(prompt as string)).context.data;
    assert(!same(h, plain), `${prompt}: same conditioning as "a cat"`);
    // Rows: 0 BOS, 1 "a", 2 "cat", 3 EOS, pads. Every row is scaled by s, row 2 by w·s.
    const ratio = (row: number) => {
      let num = 0, den = 0;
      for (let j = 0; j < D; j++) {
        num += h[row * D + j] * plain[row * D + j];
        den += plain[row * D + j] ** 2;
      }
      return num / den;
    };
    const s = ratio(0);
    for (const row of [1, 3, 40, 76]) {
      assert(Math.abs(ratio(row) / s - 1) < 1e-5, `${prompt}: row ${row} scaled by ${ratio(row)}, BOS by ${s}`);
    }
    const got = ratio(2) / s;
    assert(Math.abs(got / (w as number) - 1) < 1e-5, `${prompt}: token weight ${got}, expected ${w}`);
    // The rescale keeps the window's mean.
    const mean = (x: Float32Array) => x.reduce((a, b) => a + b, 0) / x.length;
    const m0 = mean(plain), m1 = mean(h);
    assert(Math.abs(m1 - m0) <= 1e-5 * Math.abs(m0) + 1e-7, `${prompt}: mean ${m1} vs ${m0}`);
  }
  // …and the image follows the conditioning.
  const a = await generate({ prompt: "a cat", decode: false });
  const b = await generate({ prompt: "a (cat:1.5)", decode: false });
  assert(!same(a.latent.data, b.latent.data), "emphasis did not change the latent");
  // Escaped parentheses are literal text, not emphasis.
  const escaped = (await ckpt.textEncoder.encode("a \\(cat\\)")).context;
  assertEquals([...escaped.shape], [1, 77, 64]);
  assert(!same(escaped.data, plain), "\\(cat\\) tokenized like cat");
});

Deno.test("pipeline: clip-skip 2 uses the penultimate layer; 1 (the SD 1.x default) the last", async () => {
  const def = (await ckpt.textEncoder.encode("a lovely cat")).context.data;
  const one = (await ckpt.textEncoder.encode("a lovely cat", { clipSkip: 1 })).context.data;
  const two = (await ckpt.textEncoder.encode("a lovely cat", { clipSkip: 2 })).context.data;
  const two2 = (await ckpt.textEncoder.encode("a lovely cat", { clipSkip: 2 })).context.data;
  assert(same(def, one), "clip-skip 1 differs from the default");
  assert(same(two, two2), "clip-skip 2 is not deterministic");
  assert(!same(one, two), "clip-skip 2 equals clip-skip 1");
  const a = await generate({ clipSkip: 1, decode: false });
  const b = await generate({ clipSkip: 2, decode: false });
  assert(!same(a.latent.data, b.latent.data), "clip-skip did not change the latent");
});

// --- sizes --------------------------------------------------------------------------------------------------

Deno.test("pipeline: any width and height that are multiples of 8, odd latent sizes included", async () => {
  for (const [w, h] of [[80, 48], [48, 80], [16, 16], [72, 48], [40, 56]]) {
    const r = await generate({ width: w, height: h, steps: 2 });
    checkLatent(r.latent, [1, 4, h / 8, w / 8], `${w}x${h}`);
    checkImage(r.images[0], w, h, `${w}x${h}`);
  }
  // img2img at a non-square size: encoder and decoder agree on the orientation.
  const init = testImage(80, 48, "gradient");
  const enc = await ckpt.vae.encode([init], { seed: 1, rng: "cuda" });
  assertEquals([...enc.shape], [1, 4, 6, 10]);
  const i2i = await generate({ init, strength: 0.5, steps: 2 });
  checkImage(i2i.images[0], 80, 48, "img2img 80x48");
  // 72x48 is a 9x6 latent: the UNet's stride-2 convs round 9 up to 5, and the way back crops the 2x
  // upsample to the skip's size, so the result keeps the latent's exact size.
  assertEquals([...(await ckpt.vae.encode([testImage(72, 48, "checker")])).shape], [1, 4, 6, 9]);
});
