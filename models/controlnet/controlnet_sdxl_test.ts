/**
 * SDXL ControlNets and diffusers-layout ControlNet files:
 * - the graphs against the PyTorch reference (testdata/make_controlnet_reference_sdxl.py: a tiny SDXL
 *   ControlNet with label_emb(y) and an encoder shallower than the UNet's, float64 torch), with the
 *   configuration read from the weights;
 * - the loader on the backend against the same references: SD 1.x from the original layout
 *   (`control_model.*`), SDXL from it and from the diffusers layout (the diffusers names are those of
 *   SD 1.x ControlNets too, but the tiny SD 1 model's one res block per level has none);
 * - ControlNets made for another family refused with one line.
 * Bounds as controlnet_test.ts: naive evaluator (float32 between ops vs float64) 1e-4 abs + 1e-5 rel
 * on the residuals, 1e-5 on the hint; the backend (Winograd convolutions, f32 GEMMs) 1e-3 + 1e-3 rel.
 */

import { Graph } from "../../engine/graph.ts";
import { assert, assertEquals, assertMaxAbsError, assertRejects } from "../../tests/assert.ts";
import { detectArch, type UnetConfig } from "../arch.ts";
import { createWeightLookup, type WeightInfo, type WeightSource } from "../nn.ts";
import { naiveEval } from "../testdata/naive_eval.ts";
import { encodeSafetensors } from "../weights/mod.ts";
import { parseSafetensors } from "../testdata/helpers.ts";
import { loadTinyReference, loadTinySdxlReference } from "../testdata/reference.ts";
import {
  type ControlNetEntry,
  controlNetFileBytes,
  loadControlNetReference,
  loadControlNetSdxlReference,
  tinyControlNetTensors,
  tinySdxlControlNetTensors,
  toDiffusersControlNetName,
} from "./testdata/tiny_controlnet.ts";
import { buildControlHint, buildControlNet, controlCount } from "./controlnet.ts";
import { ControlNet, controlNetConfig, ControlNetError, diffusersControlNetName } from "./mod.ts";

const XL = loadControlNetSdxlReference();
const SD1 = loadControlNetReference();

let xlUnet: UnetConfig | undefined, sd1: UnetConfig | undefined;
/** The tiny SDXL UNet's configuration (its checkpoint is made once per file: seconds). */
function sdxlUnet(): UnetConfig {
  if (!xlUnet) {
    const ckpt = parseSafetensors(loadTinySdxlReference().ckptBytes);
    xlUnet = detectArch(ckpt.tensors, ckpt.metadata).unet!;
  }
  return xlUnet;
}

function sd1Unet(): UnetConfig {
  if (!sd1) {
    const { ckpt } = loadTinyReference();
    sd1 = detectArch(ckpt.tensors, ckpt.metadata).unet!;
  }
  return sd1;
}

let xlEntries: ControlNetEntry[] | undefined;
const sdxlEntries = (): ControlNetEntry[] => xlEntries ??= tinySdxlControlNetTensors();

function source(entries: readonly ControlNetEntry[]): WeightSource {
  const map = new Map<string, WeightInfo>(entries.map((e) => {
    const data = new Float32Array(e.data.buffer, e.data.byteOffset, e.data.byteLength / 4);
    return [e.name, { name: e.name, dtype: "f32", shape: e.shape, source: { kind: "data", data } }];
  }));
  return { get: (n) => map.get(n) };
}

const f32Bytes = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

const shapesOf = (entries: readonly ControlNetEntry[]) => new Map(entries.map((e) => [e.name, e.shape]));

Deno.test("SDXL ControlNet: depths and label_emb read from the weights; hint and 7 residuals match PyTorch", () => {
  const entries = sdxlEntries();
  const model = sdxlUnet();
  const cfg = controlNetConfig(shapesOf(entries), model, "tiny-xl");
  // The UNet has depths [0, 2] and 2 in the middle; this ControlNet is shallower.
  assertEquals([model.transformerDepth, model.transformerDepthMiddle], [[0, 2], 2]);
  assertEquals([cfg.transformerDepth, cfg.transformerDepthMiddle], [[0, 1], 1]);
  assertEquals(cfg.admInChannels, model.admInChannels);
  assertEquals(cfg.useLinearInTransformer, true);

  const w = source(entries);
  const gh = new Graph();
  buildControlHint(gh, createWeightLookup(gh, w), cfg, { height: 64, width: 64 });
  const { guided_hint } = naiveEval(gh, { hint: XL.f32("hint") });
  assertMaxAbsError("guided hint", guided_hint, XL.f32("guided_hint"), 1e-5, 1e-5);

  const g = new Graph();
  const outs = buildControlNet(g, createWeightLookup(g, w), cfg, { batch: 2, height: 8, width: 8, contextTokens: 77 });
  assertEquals(outs.length, controlCount(cfg));
  assertEquals(outs.length, 7);
  const got = naiveEval(g, {
    x: XL.f32("x"),
    timesteps: XL.f32("timesteps"),
    context: XL.f32("context"),
    y: XL.f32("y"),
    guided_hint: XL.f32("guided_hint"),
  });
  for (let i = 0; i < outs.length; i++) {
    assertMaxAbsError(`control_${i}`, got[`control_${i}`], XL.f32(`control_${i}`), 1e-4, 1e-5);
  }
});

Deno.test("diffusers ControlNet names map to the original ones (and back)", () => {
  for (const e of sdxlEntries()) assertEquals(diffusersControlNetName(toDiffusersControlNetName(e.name)), e.name);
  assertEquals(diffusersControlNetName("controlnet_cond_embedding.blocks.5.bias"), "input_hint_block.12.bias");
  assertEquals(diffusersControlNetName("controlnet_down_blocks.8.weight"), "zero_convs.8.0.weight");
  assertEquals(diffusersControlNetName("add_embedding.linear_2.weight"), "label_emb.0.2.weight");
  assertEquals(diffusersControlNetName("up_blocks.0.resnets.0.conv1.weight"), "output_blocks.0.0.in_layers.2.weight");
  assertEquals(diffusersControlNetName("lora_unet_foo.alpha"), undefined);
});

/** Runs a loaded ControlNet on the reference's inputs and checks its residuals. */
async function checkOnBackend(net: ControlNet, ref: typeof XL, sdxl: boolean): Promise<void> {
  const mc = net.unet.modelChannels;
  const hint = await net.guidedHint({ shape: [1, 3, 64, 64], data: ref.f32("hint") });
  assertMaxAbsError("backend guided hint", hint.data, ref.f32("guided_hint"), 1e-4, 1e-4);
  const ctx = ref.f32("context");
  const res = await net.residuals({
    x: { shape: [2, 4, 8, 8], data: ref.f32("x") },
    timesteps: ref.f32("timesteps"),
    context: { shape: [2, 77, ctx.length / 154], data: ctx },
    ...(sdxl ? { y: ref.f32("y") } : {}),
  }, { shape: [1, mc, 8, 8], data: ref.f32("guided_hint") });
  res.forEach((r, i) => assertMaxAbsError(`backend control_${i}`, r.data, ref.f32(`control_${i}`), 1e-3, 1e-3));
}

Deno.test("ControlNet.load: SD 1.x (original layout) and SDXL (original and diffusers layouts) run as PyTorch", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cases = [
      { name: "sd1", entries: tinyControlNetTensors(), unet: sd1Unet(), ref: SD1, sdxl: false },
      { name: "sdxl", entries: sdxlEntries(), unet: sdxlUnet(), ref: XL, sdxl: true },
    ];
    for (const c of cases) {
      for (const layout of c.sdxl ? ["control_model", "diffusers"] as const : ["control_model"] as const) {
        const path = `${dir}/${c.name}-${layout}.safetensors`;
        Deno.writeFileSync(path, controlNetFileBytes(c.entries, layout));
        const net = await ControlNet.load(path, c.unet, { threads: 2 });
        try {
          await checkOnBackend(net, c.ref, c.sdxl);
        } finally {
          net.dispose();
        }
      }
    }
    // An SDXL ControlNet without y is refused by name, not run on garbage.
    const net = await ControlNet.load(`${dir}/sdxl-diffusers.safetensors`, sdxlUnet(), { threads: 1 });
    try {
      await assertRejects(
        () =>
          net.residuals({
            x: { shape: [1, 4, 8, 8], data: new Float32Array(256) },
            timesteps: new Float32Array(1),
            context: { shape: [1, 77, 80], data: new Float32Array(77 * 80) },
          }, { shape: [1, 32, 8, 8], data: new Float32Array(32 * 64) }),
        ControlNetError,
        "needs the vector conditioning y",
      );
      // An inpainting UNet's 9-channel input is not what this ControlNet takes: said, not run.
      await assertRejects(
        () =>
          net.residuals({
            x: { shape: [1, 9, 8, 8], data: new Float32Array(9 * 64) },
            timesteps: new Float32Array(1),
            context: { shape: [1, 77, 80], data: new Float32Array(77 * 80) },
            y: new Float32Array(1584),
          }, { shape: [1, 32, 8, 8], data: new Float32Array(32 * 64) }),
        ControlNetError,
        "takes 4-channel latents, this UNet's input has 9",
      );
    } finally {
      net.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ControlNet.load: a ControlNet for another family, or a diffusers file with foreign tensors, is one clear error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const sd1Path = `${dir}/sd1.safetensors`, xlPath = `${dir}/xl.safetensors`;
    Deno.writeFileSync(sd1Path, controlNetFileBytes(tinyControlNetTensors(), "control_model"));
    Deno.writeFileSync(xlPath, controlNetFileBytes(sdxlEntries(), "diffusers"));
    await assertRejects(() => ControlNet.load(sd1Path, sdxlUnet()), ControlNetError, "does not fit this model");
    await assertRejects(() => ControlNet.load(xlPath, sd1Unet()), ControlNetError, "does not fit this model");
    const err = await assertRejects(() => ControlNet.load(sd1Path, sdxlUnet()), ControlNetError);
    assert(!err.message.includes("\n"), err.message);
    // A diffusers-layout file with a tensor no ControlNet has (here a LoRA's): named, not ignored.
    const foreign = `${dir}/foreign.safetensors`;
    const withLora = parseSafetensors(controlNetFileBytes(sdxlEntries(), "diffusers"));
    Deno.writeFileSync(
      foreign,
      encodeSafetensors([
        ...withLora.tensors.map((t) => ({
          name: t.name,
          dtype: "F32",
          shape: t.shape,
          data: f32Bytes(withLora.f32(t.name)),
        })),
        { name: "lora_unet_foo.alpha", dtype: "F32", shape: [1], data: new Uint8Array(4) },
      ]),
    );
    await assertRejects(
      () => ControlNet.load(foreign, sdxlUnet()),
      ControlNetError,
      "tensors with no ControlNet meaning: lora_unet_foo.alpha",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
