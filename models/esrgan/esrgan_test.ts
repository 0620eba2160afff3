import { Graph } from "../../engine/graph.ts";
import { createWeightLookup } from "../nn.ts";
import { assertEquals, assertMaxAbsError, assertThrows } from "../../tests/assert.ts";
import { parseSafetensors } from "../testdata/helpers.ts";
import { naiveEval } from "../testdata/naive_eval.ts";
import { buildEsrgan, detectEsrgan, EsrganError, esrganName } from "./esrgan.ts";

/** The PyTorch reference of make_addons_reference.py (BasicSR RRDBNet, f16 weights, float64 arithmetic). */
const ref = parseSafetensors(
  Deno.readFileSync(new URL("../testdata/addons_reference.safetensors", import.meta.url)),
);

/** One case of the fixture as a renamed weight source and its config. */
function fixtureCase(prefix: string) {
  const tensors = ref.tensors.filter((t) => t.name.startsWith(`${prefix}/`) && !/\/(in|out)/.test(t.name));
  const byCanonical = new Map(tensors.map((t) => [esrganName(t.name.slice(prefix.length + 1)), t.name]));
  const cfg = detectEsrgan(tensors.map((t) => ({ name: esrganName(t.name.slice(prefix.length + 1)), shape: t.shape })));
  const source = { get: (n: string) => ref.source.get(byCanonical.get(n) ?? n) };
  return { cfg, source };
}

// Bound: the graph is evaluated by the float64-accumulating naive interpreter on f32 activations; the reference
// is float64 throughout, so the gap is f32 rounding of ~40 chained convs: 1e-5 relative to the output's range.
Deno.test("ESRGAN x4 (old ESRGAN names) matches the PyTorch RRDBNet", () => {
  const { cfg, source } = fixtureCase("esrgan_x4");
  assertEquals([cfg.numBlock, cfg.numFeat, cfg.numGrow, cfg.upStages, cfg.unshuffle, cfg.scale], [2, 8, 4, 2, 1, 4]);
  const g = new Graph();
  const out = buildEsrgan(g, createWeightLookup(g, source), cfg, { height: 10, width: 12 });
  assertEquals(out.shape, [1, 3, 40, 48]);
  const y = naiveEval(g, { image: ref.f32("esrgan_x4/in") }).image;
  assertMaxAbsError("esrgan x4", y, ref.f32("esrgan_x4/out"), 1e-5, 1e-5);
});

Deno.test("ESRGAN x2plus (pixel-unshuffled input, BasicSR names) matches the PyTorch RRDBNet", () => {
  const { cfg, source } = fixtureCase("esrgan_x2");
  assertEquals([cfg.numBlock, cfg.inChannels, cfg.upStages, cfg.unshuffle, cfg.scale], [1, 12, 2, 2, 2]);
  const g = new Graph();
  const out = buildEsrgan(g, createWeightLookup(g, source), cfg, { height: 8, width: 10 });
  assertEquals(out.shape, [1, 3, 16, 20]);
  const y = naiveEval(g, { image: ref.f32("esrgan_x2/in") }).image;
  assertMaxAbsError("esrgan x2plus", y, ref.f32("esrgan_x2/out"), 1e-5, 1e-5);
  const g2 = new Graph();
  assertThrows(() => buildEsrgan(g2, createWeightLookup(g2, source), cfg, { height: 7, width: 8 }), EsrganError);
});

Deno.test("esrganName: the old ESRGAN layout as stable-diffusion.cpp renames it", () => {
  assertEquals(esrganName("model.0.weight"), "conv_first.weight");
  assertEquals(esrganName("model.1.sub.5.RDB3.conv2.0.bias"), "body.5.rdb3.conv2.bias");
  assertEquals(esrganName("model.1.sub.23.weight"), "conv_body.weight");
  assertEquals(esrganName("model.3.weight"), "conv_up1.weight");
  assertEquals(esrganName("model.6.weight"), "conv_up2.weight");
  assertEquals(esrganName("model.8.bias"), "conv_hr.bias");
  assertEquals(esrganName("model.10.weight"), "conv_last.weight");
  assertEquals(esrganName("conv_first.weight"), "conv_first.weight");
});

Deno.test("detectEsrgan: RealESRGAN x4plus / anime_6B / x1 layouts, and what is not an RRDBNet", () => {
  const conv = (name: string, o: number, i: number) => ({ name: `${name}.weight`, shape: [o, i, 3, 3] });
  const net = (blocks: number, inCh: number, ups: number) => [
    conv("conv_first", 64, inCh),
    ...Array.from({ length: blocks }, (_, b) => conv(`body.${b}.rdb1.conv1`, 32, 64)),
    ...(ups >= 1 ? [conv("conv_up1", 64, 64)] : []),
    ...(ups >= 2 ? [conv("conv_up2", 64, 64)] : []),
    conv("conv_last", 3, 64),
  ];
  assertEquals(detectEsrgan(net(23, 3, 2)).scale, 4);
  assertEquals(detectEsrgan(net(6, 3, 2)).numBlock, 6);
  assertEquals(detectEsrgan(net(6, 48, 2)).scale, 1);
  assertEquals(detectEsrgan(net(6, 3, 1)).scale, 2);
  assertThrows(() => detectEsrgan([conv("model.diffusion_model.x", 4, 4)]), EsrganError, "not an ESRGAN");
  assertThrows(() => detectEsrgan(net(2, 5, 2)), EsrganError, "unsupported ESRGAN layout");
});
