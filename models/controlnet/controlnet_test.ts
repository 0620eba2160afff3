/**
 * The ControlNet graphs against the PyTorch reference (testdata/make_controlnet_reference.py: a tiny
 * ControlNet whose encoder is the tiny UNet's, float64 torch), and the loader's answers to bad files.
 */

import { Graph } from "../../engine/graph.ts";
import { assert, assertEquals, assertMaxAbsError, assertRejects, assertThrows } from "../../tests/assert.ts";
import { detectArch } from "../arch.ts";
import { createWeightLookup, type WeightSource } from "../nn.ts";
import { naiveEval } from "../testdata/naive_eval.ts";
import { loadTinyReference } from "../testdata/reference.ts";
import { loadControlNetReference, tinyControlNetBytes } from "./testdata/tiny_controlnet.ts";
import { buildControlHint, buildControlNet, controlCount } from "./controlnet.ts";
import { ControlNet, ControlNetError, hintTensor, withControlNet } from "./mod.ts";
import type { Conditioning, Denoiser, HostTensor } from "../types.ts";

const REF = loadControlNetReference();

function tiny() {
  const { ckpt } = loadTinyReference();
  assertEquals(REF.metadata.checkpoint_sha256, loadTinyReference().ref.metadata.checkpoint_sha256);
  const unet = { ...detectArch(ckpt.tensors, ckpt.metadata).unet!, prefix: "" };
  /** The ControlNet's weights: its own from the fixture, the encoder copied from the tiny UNet. */
  const source: WeightSource = {
    get: (n) => REF.source.get(`w.${n}`) ?? ckpt.source.get(`model.diffusion_model.${n}`),
  };
  return { ckpt, unet, source };
}

Deno.test("ControlNet: hint block and control residuals match the PyTorch reference (naive evaluator)", () => {
  const { unet, source } = tiny();
  const gh = new Graph();
  buildControlHint(gh, createWeightLookup(gh, source), unet, { height: 64, width: 64 });
  const { guided_hint } = naiveEval(gh, { hint: REF.f32("hint") });
  // float32 between ops against float64: 8 convs deep, relative errors ~1e-6.
  assertMaxAbsError("guided hint", guided_hint, REF.f32("guided_hint"), 1e-5, 1e-5);

  const g = new Graph();
  const outs = buildControlNet(g, createWeightLookup(g, source), unet, {
    batch: 2,
    height: 8,
    width: 8,
    contextTokens: 77,
  });
  assertEquals(outs.length, controlCount(unet));
  assertEquals(outs.length, 5);
  const got = naiveEval(g, {
    x: REF.f32("x"),
    timesteps: REF.f32("timesteps"),
    context: REF.f32("context"),
    guided_hint: REF.f32("guided_hint"),
  });
  for (let i = 0; i < outs.length; i++) {
    assertMaxAbsError(`control_${i}`, got[`control_${i}`], REF.f32(`control_${i}`), 1e-4, 1e-5);
  }
});

Deno.test("ControlNet: weights made for another model are named", () => {
  const { unet, source } = tiny();
  const g = new Graph();
  const other = { ...unet, contextDim: 96 };
  assertThrows(
    () =>
      buildControlNet(g, createWeightLookup(g, source), other, { batch: 1, height: 8, width: 8, contextTokens: 77 }),
    Error,
    "attn2.to_k.weight",
  );
});

/** The tiny ControlNet written as a file, in the original layout (`control_model.*`). */
function writeTinyControlNet(dir: string): string {
  const path = `${dir}/tiny-controlnet.safetensors`;
  Deno.writeFileSync(path, tinyControlNetBytes());
  return path;
}

Deno.test("ControlNet.load: runs on the backend as the reference; bad files give one clear error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { ckpt, unet } = tiny();
    const path = writeTinyControlNet(dir);
    const net = await ControlNet.load(path, unet, { threads: 2 });
    try {
      const hint = await net.guidedHint({ shape: [1, 3, 64, 64], data: REF.f32("hint") });
      assertMaxAbsError("backend guided hint", hint.data, REF.f32("guided_hint"), 1e-4, 1e-4);
      const res = await net.residuals({
        x: { shape: [2, 4, 8, 8], data: REF.f32("x") },
        timesteps: REF.f32("timesteps"),
        context: { shape: [2, 77, 64], data: REF.f32("context") },
      }, { shape: [1, 32, 8, 8], data: REF.f32("guided_hint") });
      // The backend's Winograd convolutions and f32 GEMMs: relative errors ~1e-5.
      res.forEach((r, i) => assertMaxAbsError(`backend control_${i}`, r.data, REF.f32(`control_${i}`), 1e-3, 1e-3));

      // withControlNet: strength times the residuals, added to what the caller passes (stacking).
      let seen: readonly HostTensor[] | undefined;
      const base: Denoiser = {
        family: "sd1",
        prediction: "eps",
        alphasCumprod: new Float64Array(1000),
        unet,
        predict: (x, _t, _c, control) => {
          seen = control;
          return Promise.resolve(x);
        },
      };
      const image = {
        width: 64,
        height: 64,
        channels: 3 as const,
        data: Uint8Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 37) % 256),
      };
      const cond: Conditioning = { context: { shape: [2, 77, 64], data: REF.f32("context") } };
      const x = { shape: [2, 4, 8, 8], data: REF.f32("x") };
      const one = withControlNet(base, { net, image, strength: 0.5 });
      await one.predict(x, REF.f32("timesteps"), cond);
      const single = seen!.map((t) => t.data.slice());
      const two = withControlNet(withControlNet(base, { net, image, strength: 0.5 }), { net, image, strength: 0.25 });
      await two.predict(x, REF.f32("timesteps"), cond);
      single.forEach((s, i) => assertMaxAbsError(`stacked ${i}`, seen![i].data, s.map((v) => v * 1.5), 1e-5, 1e-6));
      // A control image of another size is resized, and said so once.
      const notes: string[] = [];
      const big = { ...image, width: 128, height: 96, data: new Uint8Array(128 * 96 * 3).fill(200) };
      await withControlNet(base, { net, image: big, strength: 1, onNote: (m) => notes.push(m) })
        .predict(x, REF.f32("timesteps"), cond);
      assertEquals(notes.length, 1);
      assert(notes[0].includes("128x96 resized to 64x64"), notes[0]);
      assertEquals(hintTensor(image).shape, [1, 3, 64, 64]);
    } finally {
      net.dispose();
    }

    // Another model's ControlNet (context width 96 here): the weight that does not fit is named.
    await assertRejects(
      () => ControlNet.load(path, { ...unet, contextDim: 96 }),
      ControlNetError,
      "does not fit this model",
    );
    // Not a ControlNet at all (a checkpoint), a corrupt file, a missing file.
    const ckptPath = `${dir}/ckpt.safetensors`;
    Deno.writeFileSync(ckptPath, loadTinyReference().ckptBytes);
    await assertRejects(() => ControlNet.load(ckptPath, unet), ControlNetError, "is not a ControlNet");
    const corrupt = `${dir}/corrupt.safetensors`;
    Deno.writeFileSync(corrupt, Deno.readFileSync(path).slice(0, 5000));
    await assertRejects(() => ControlNet.load(corrupt, unet), ControlNetError, "not a readable ControlNet file");
    await assertRejects(() => ControlNet.load(`${dir}/none.safetensors`, unet), ControlNetError, "not found");
    assert(ckpt.tensors.length > 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
