import { Graph } from "../../engine/graph.ts";
import { plan } from "../../engine/plan.ts";
import { detectArch } from "../arch.ts";
import { createWeightLookup, WeightError } from "../nn.ts";
import { assert, assertEquals, assertMaxAbsError, assertThrows } from "../../tests/assert.ts";
import { fakeWeightSource, opCounts, readReferenceList } from "../testdata/helpers.ts";
import { naiveEval } from "../testdata/naive_eval.ts";
import { loadTinyReference } from "../testdata/reference.ts";
import { sdxlVector } from "./sdxl.ts";
import { buildUnet } from "./unet.ts";
import { sharedTest } from "../../tests/shared.ts";

const lists = {
  sd15: readReferenceList("sd15-tensors.txt"),
  sd21: readReferenceList("sd21-tensors.txt"),
  sdxl: readReferenceList("sdxl-tensors.txt"),
};

function buildFull(list: NonNullable<typeof lists.sd15>, h: number, w: number, tokens = 77) {
  const arch = detectArch(list);
  const g = new Graph();
  const r = buildUnet(g, createWeightLookup(g, fakeWeightSource(list)), arch.unet!, {
    batch: 2,
    height: h,
    width: w,
    contextTokens: tokens,
  });
  return { g, r, arch };
}

// Expected structure, counted from the ldm configs:
// SD1/SD2: 22 ResBlocks (2 convs each) + 14 skip 1x1 convs + 3 down + 3 up + conv_in + out = 66 convs;
// 16 SpatialTransformers of depth 1 (32 attentions, 48 LayerNorms, 16 GEGLUs); 22*2 + 16 + 1 = 61 GroupNorms.
// SDXL: 17 ResBlocks (34 convs) + 11 skip convs + 2 down + 2 up + 2 = 51 convs; 70 transformer blocks.
for (const [name, list] of Object.entries(lists)) {
  Deno.test({
    ...sharedTest(
      `buildUnet: full ${name} graph at 512x512 (batch 2) has ldm's structure`,
      `reference/${name}-tensors.txt`,
    ),
    fn() {
      const { g, r } = buildFull(list!, 64, 64, name === "sd15" ? 154 : 77);
      assertEquals(r.output.shape, [2, 4, 64, 64]);
      const c = opCounts(g.ops);
      if (name === "sdxl") {
        assertEquals([c.conv2d, c.attention, c.layer_norm, c.geglu, c.group_norm], [51, 140, 210, 70, 46]);
        assertEquals([c.concat, c.upsample_nearest], [9, 2]);
        assert(r.inputs.y !== undefined);
        assertEquals(r.inputs.y!.shape, [2, 2816]);
      } else {
        assertEquals([c.conv2d, c.attention, c.layer_norm, c.geglu, c.group_norm], [66, 32, 48, 16, 61]);
        assertEquals([c.concat, c.upsample_nearest, c.timestep_embedding], [12, 3, 1]);
      }
      // Every UNet tensor of the file is used, and nothing else.
      const unetNames = list!.filter((t) => t.name.startsWith("model.diffusion_model.")).map((t) => t.name);
      const used = [...g.constants.keys()].filter((n) => !n.includes("#")).sort();
      const viewed = [...g.constants.keys()].filter((n) => n.includes("#")).map((n) => n.split("#")[0]);
      assertEquals([...new Set([...used, ...viewed])].sort(), unetNames.sort());
      // Ops carry module labels for profiles.
      const labels = new Set(g.ops.map((o) => o.label));
      assert(labels.has("input_blocks.4.1.transformer_blocks.0.attn1"), "attention label");
      assert(labels.has("output_blocks.2.1") || labels.has("output_blocks.2.2"), "upsample label");
      // The planner takes it (shapes, dtypes, Winograd lowering of the 3x3 convs).
      assert(plan(g).stats.winogradConvs > 0);
    },
  });
}

Deno.test({
  ...sharedTest(
    "buildUnet: non-square latents, and latents the levels cannot halve evenly (cropped on the way up)",
    "reference/sd15-tensors.txt",
  ),
  fn() {
    assertEquals(buildFull(lists.sd15!, 40, 96).r.output.shape, [2, 4, 40, 96]);
    assertEquals(buildFull(lists.sd15!, 33, 65).r.output.shape, [2, 4, 33, 65]);
  },
});

Deno.test("buildUnet: tiny model matches the PyTorch reference (naive evaluator)", () => {
  const { ref, ckpt } = loadTinyReference();
  const arch = detectArch(ckpt.tensors, ckpt.metadata);
  const g = new Graph();
  buildUnet(g, createWeightLookup(g, ckpt.source), arch.unet!, { batch: 2, height: 8, width: 8, contextTokens: 77 });
  const out = naiveEval(g, {
    x: ref.f32("unet.x"),
    timesteps: ref.f32("unet.timesteps"),
    context: ref.f32("unet.context"),
  });
  // float32 storage between ops against a float64 reference: errors ~1e-6 of the output scale.
  assertMaxAbsError("unet", out.out, ref.f32("unet.out"), 1e-5, 1e-5);
});

Deno.test("buildUnet: a missing or mis-shaped weight is named", () => {
  const { ckpt } = loadTinyReference();
  const arch = detectArch(ckpt.tensors, ckpt.metadata);
  const opts = { batch: 1, height: 8, width: 8, contextTokens: 77 };
  const missing = "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight";
  const g1 = new Graph();
  const src1 = { get: (n: string) => (n === missing ? undefined : ckpt.source.get(n)) };
  assertThrows(() => buildUnet(g1, createWeightLookup(g1, src1), arch.unet!, opts), WeightError, missing);
  const g2 = new Graph();
  const bad = { ...arch.unet!, contextDim: 32 };
  assertThrows(() => buildUnet(g2, createWeightLookup(g2, ckpt.source), bad, opts), WeightError, "attn2.to_k.weight");
});

Deno.test("sdxlVector: pooled | 6 x 256 sinusoidal size embeddings", () => {
  const pooled = new Float32Array(2 * 1280).map((_, i) => i);
  const y = sdxlVector(pooled, 2, { originalWidth: 1024, originalHeight: 768, targetWidth: 1024, targetHeight: 768 });
  assertEquals(y.length, 2 * 2816);
  assertEquals([y[0], y[1279], y[2816], y[2816 + 1279]], [0, 1279, 1280, 2559]);
  // original height 768: cos(768 * 1) at the first slot, sin(768) at 1280 + 128.
  assert(Math.abs(y[1280] - Math.cos(768)) < 1e-6 && Math.abs(y[1280 + 128] - Math.sin(768)) < 1e-6);
  // crop (0, 0): cos 0 = 1, sin 0 = 0.
  assertEquals([y[1280 + 512], y[1280 + 512 + 128]], [1, 0]);
  assertThrows(
    () =>
      sdxlVector(new Float32Array(1000), 1, {
        ...{ originalWidth: 1, originalHeight: 1 },
        targetWidth: 1,
        targetHeight: 1,
      }),
    Error,
    "2816",
  );
});

Deno.test("buildUnet: ControlNet residuals are added to the skips and the middle block", () => {
  const { ref, ckpt } = loadTinyReference();
  const arch = detectArch(ckpt.tensors, ckpt.metadata);
  const base = {
    x: ref.f32("unet.x"),
    timesteps: ref.f32("unet.timesteps"),
    context: ref.f32("unet.context"),
  };
  const g = new Graph();
  // Input-block outputs of the tiny UNet at 8x8: conv_in 32@8, res 32@8, down 32@4, res 64@4; middle 64@4.
  const shapes = [[2, 32, 8, 8], [2, 32, 8, 8], [2, 32, 4, 4], [2, 64, 4, 4]];
  const skips = shapes.map((s, i) => g.input(`control_${i}`, s));
  const middle = g.input("control_middle", [2, 64, 4, 4]);
  buildUnet(g, createWeightLookup(g, ckpt.source), arch.unet!, {
    batch: 2,
    height: 8,
    width: 8,
    contextTokens: 77,
    control: { skips, middle },
  });
  const zeros: Record<string, Float32Array> = { control_middle: new Float32Array(2 * 64 * 16) };
  shapes.forEach((s, i) => zeros[`control_${i}`] = new Float32Array(s.reduce((a, b) => a * b, 1)));
  assertMaxAbsError("zero control", naiveEval(g, { ...base, ...zeros }).out, ref.f32("unet.out"), 1e-5, 1e-5);
  zeros.control_middle.fill(1);
  const moved = naiveEval(g, { ...base, ...zeros }).out;
  assert(moved.some((v, i) => Math.abs(v - ref.f32("unet.out")[i]) > 1e-3), "middle residual has an effect");
  const g2 = new Graph();
  assertThrows(
    () =>
      buildUnet(g2, createWeightLookup(g2, ckpt.source), arch.unet!, {
        batch: 2,
        height: 8,
        width: 8,
        contextTokens: 77,
        control: { skips: skips.slice(1), middle },
      }),
    Error,
    "skip residuals",
  );
});
