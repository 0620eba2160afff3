import { assertEquals, assertThrows } from "../tests/assert.ts";
import { ArchError, detectArch, judgeVPredictionProbe, needsPredictionProbe } from "./arch.ts";
import { parseSafetensors, readReferenceList } from "./testdata/helpers.ts";
import { TINY, tinyCheckpointBytes } from "./tiny/mod.ts";
import { sharedTest } from "../tests/shared.ts";

const sd15 = readReferenceList("sd15-tensors.txt");
const sd21 = readReferenceList("sd21-tensors.txt");
const sdxl = readReferenceList("sdxl-tensors.txt");

Deno.test({
  ...sharedTest("detectArch: SD 1.5 (CLIP ViT-L, conv proj, 8 heads)", "reference/sd15-tensors.txt"),
  fn() {
    const a = detectArch(sd15!);
    assertEquals(a.family, "sd1");
    assertEquals(a.prediction, "eps");
    const u = a.unet!;
    assertEquals([u.modelChannels, u.numResBlocks, u.contextDim, u.numHeads, u.headDim], [320, 2, 768, 8, undefined]);
    assertEquals(u.channelMult, [1, 2, 4, 4]);
    assertEquals(u.transformerDepth, [1, 1, 1, 0]);
    assertEquals(u.transformerDepthOutput, [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    assertEquals([u.transformerDepthMiddle, u.useLinearInTransformer, u.admInChannels], [1, false, undefined]);
    const c = a.textEncoders[0];
    assertEquals(a.textEncoders.length, 1);
    assertEquals([c.naming, c.width, c.layers, c.heads, c.activation, c.defaultClipSkip, c.finalLayerNorm], [
      "hf",
      768,
      12,
      12,
      "quick_gelu",
      1,
      true,
    ]);
    const v = a.vae!;
    assertEquals([v.ch, v.numResBlocks, v.zChannels, v.downFactor, v.scalingFactor], [128, 2, 4, 8, 0.18215]);
    assertEquals(v.chMult, [1, 2, 4, 4]);
  },
});

Deno.test({
  ...sharedTest(
    "detectArch: SD 2.1 (OpenCLIP ViT-H, linear proj, 64-wide heads, penultimate layer)",
    "reference/sd21-tensors.txt",
  ),
  fn() {
    const a = detectArch(sd21!);
    assertEquals(a.family, "sd2");
    const u = a.unet!;
    assertEquals([u.contextDim, u.numHeads, u.headDim, u.useLinearInTransformer], [1024, undefined, 64, true]);
    const c = a.textEncoders[0];
    assertEquals([c.naming, c.width, c.layers, c.heads, c.activation, c.defaultClipSkip, c.padTokenId], [
      "openclip",
      1024,
      24,
      16,
      "gelu_tanh",
      2,
      0,
    ]);
    assertEquals(a.prediction, "eps");
    assertEquals(a.predictionSource, "default");
    assertEquals(detectArch(sd21!, {}, { prediction: "v" }).prediction, "v");
    assertEquals(detectArch(sd21!, { "modelspec.prediction_type": "v" }).predictionSource, "file");
    assertEquals(detectArch([...sd21!, { name: "v_pred", shape: [] }]).prediction, "v");
  },
});

Deno.test({
  ...sharedTest(
    "detectArch: SDXL (two encoders, label_emb, transformer depth per level)",
    "reference/sdxl-tensors.txt",
  ),
  fn() {
    const a = detectArch(sdxl!);
    assertEquals(a.family, "sdxl");
    const u = a.unet!;
    assertEquals(u.channelMult, [1, 2, 4]);
    assertEquals(u.transformerDepth, [0, 2, 10]);
    assertEquals(u.transformerDepthOutput, [10, 10, 10, 2, 2, 2, 0, 0, 0]);
    assertEquals([u.transformerDepthMiddle, u.contextDim, u.admInChannels, u.headDim], [10, 2048, 2816, 64]);
    assertEquals(a.textEncoders.map((c) => [c.naming, c.width, c.layers, c.heads, c.finalLayerNorm]), [
      ["hf", 768, 12, 12, false],
      ["openclip", 1280, 32, 20, false],
    ]);
    assertEquals(a.textEncoders[1].projectionDim, 1280);
    assertEquals(a.vae!.scalingFactor, 0.13025);
  },
});

Deno.test("detectArch: the tiny checkpoint is an SD1 file with its own sizes", () => {
  const st = parseSafetensors(tinyCheckpointBytes({ seed: 3, dtype: "f16" }));
  const a = detectArch(st.tensors, st.metadata);
  assertEquals(a.family, "sd1");
  const u = a.unet!;
  assertEquals(u.modelChannels, TINY.unet.modelChannels);
  assertEquals(u.channelMult, [...TINY.unet.channelMult]);
  assertEquals(u.transformerDepth, [0, 1]);
  assertEquals([u.numHeads, u.contextDim, u.numResBlocks], [TINY.unet.heads, TINY.unet.contextDim, 1]);
  const c = a.textEncoders[0];
  assertEquals([c.width, c.layers, c.heads, c.ffDim], [64, 2, 2, 256]);
  assertEquals(a.vae!.chMult, [...TINY.vae.chMult]);
  assertEquals(a.vae!.downFactor, 8);
});

Deno.test("detectArch: clear errors", () => {
  assertThrows(() => detectArch([{ name: "foo", shape: [1] }]), ArchError, "no UNet");
  const st = parseSafetensors(tinyCheckpointBytes({ seed: 0, dtype: "f16" }));
  const broken = st.tensors.filter((t) => t.name !== "model.diffusion_model.out.2.weight");
  assertThrows(() => detectArch(broken, st.metadata), ArchError, "model.diffusion_model.out.2.weight");
  assertThrows(() => detectArch(st.tensors, { "sdflow.unet.num_heads": "x" }), ArchError, "sdflow.unet.num_heads");
});

Deno.test("judgeVPredictionProbe: sd.cpp's threshold", () => {
  assertEquals(judgeVPredictionProbe(new Float32Array(256).fill(-0.6)), "v");
  assertEquals(judgeVPredictionProbe(new Float32Array(256).fill(0.1)), "eps");
});

Deno.test("detectArch: a prediction override against the file: a v_pred tensor refuses it, metadata warns", () => {
  const tiny = parseSafetensors(tinyCheckpointBytes({ seed: 1, arch: "sd2" }));
  const marked = [...tiny.tensors, { name: "v_pred", shape: [] }];
  const e = assertThrows(() => detectArch(marked, tiny.metadata, { prediction: "eps" }), ArchError);
  assertEquals(
    e.message,
    'prediction "eps" contradicts the file: the file marks itself v-prediction (a v_pred tensor)',
  );
  const agree = detectArch(marked, tiny.metadata, { prediction: "v" });
  assertEquals([agree.prediction, agree.predictionSource, agree.predictionWarning], ["v", "override", undefined]);
  const md = { ...tiny.metadata, "modelspec.prediction_type": "epsilon" };
  const warned = detectArch(tiny.tensors, md, { prediction: "v" });
  assertEquals([warned.prediction, warned.predictionSource], ["v", "override"]);
  assertEquals(
    warned.predictionWarning,
    'prediction "v" overrides the file\'s metadata: the file marks itself eps-prediction ' +
      "(metadata modelspec.prediction_type=epsilon)",
  );
  // Nothing stated: SD 2.x waits for the loader's probe, SD 1.x is eps.
  assertEquals(needsPredictionProbe(detectArch(tiny.tensors, tiny.metadata)), true);
  const sd1 = parseSafetensors(tinyCheckpointBytes({ seed: 1 }));
  assertEquals(needsPredictionProbe(detectArch(sd1.tensors, sd1.metadata)), false);
  assertEquals(needsPredictionProbe(detectArch(marked, tiny.metadata)), false);
  assertThrows(() => detectArch(tiny.tensors, tiny.metadata, { prediction: "x0" as "v" }), ArchError, "unknown");
});

Deno.test({
  ...sharedTest(
    "detectArch: a diffusers SD 2.x text encoder (23 of ViT-H's 24 layers) counts the dropped one",
    "reference/sd21-tensors.txt",
  ),
  fn() {
    const without23 = sd21!.filter((t) => !t.name.includes("transformer.resblocks.23."));
    const d = detectArch(without23, { "sdflow.layout": "diffusers" }).textEncoders[0];
    assertEquals([d.layers, d.droppedLayers], [23, 1]);
    // A single file with 23 layers is taken as it is; a full 24-layer tower drops nothing.
    assertEquals(detectArch(without23).textEncoders[0].droppedLayers, 0);
    assertEquals(detectArch(sd21!, { "sdflow.layout": "diffusers" }).textEncoders[0].droppedLayers, 0);
    assertThrows(() => detectArch(sd21!, { "sdflow.clip.dropped_layers": "-1" }), ArchError, "dropped_layers");
  },
});
