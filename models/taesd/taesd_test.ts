import { Graph } from "../../engine/graph.ts";
import { createWeightLookup } from "../nn.ts";
import { assertEquals, assertMaxAbsError, assertThrows } from "../../tests/assert.ts";
import { parseSafetensors } from "../testdata/helpers.ts";
import { naiveEval } from "../testdata/naive_eval.ts";
import { buildTaesdDecoder, buildTaesdEncoder, detectTaesd, TaesdError, taesdNames } from "./taesd.ts";

/** The PyTorch reference of make_addons_reference.py (diffusers AutoencoderTiny, f16 weights, float64). */
const ref = parseSafetensors(
  Deno.readFileSync(new URL("../testdata/addons_reference.safetensors", import.meta.url)),
);
const weights = ref.tensors
  .filter((t) => t.name.startsWith("taesd/") && /layers/.test(t.name))
  .map((t) => ({ name: t.name.slice("taesd/".length), shape: t.shape }));
const source = { get: (n: string) => ref.source.get(`taesd/${n}`) };

// Bound: f32 activations through ~40 convs, against float64: 1e-5 of the output's range.
Deno.test("TAESD decoder and encoder match the PyTorch AutoencoderTiny (8 channels)", () => {
  const cfg = detectTaesd(weights);
  assertEquals(cfg, { zChannels: 4, channels: 8, hasDecoder: true, hasEncoder: true });
  const gd = new Graph();
  const img = buildTaesdDecoder(gd, createWeightLookup(gd, source), cfg, { batch: 1, height: 3, width: 5 });
  assertEquals(img.shape, [1, 3, 24, 40]);
  // The input spans [-4, 4], so the tanh(z / 3) * 3 clamp matters.
  const y = naiveEval(gd, { latent: ref.f32("taesd/in_latent") }).image;
  assertMaxAbsError("taesd decoder", y, ref.f32("taesd/out_image"), 1e-5, 1e-5);
  const ge = new Graph();
  const z = buildTaesdEncoder(ge, createWeightLookup(ge, source), cfg, { batch: 1, height: 24, width: 16 });
  assertEquals(z.shape, [1, 4, 3, 2]);
  const l = naiveEval(ge, { image: ref.f32("taesd/in_image") }).latent;
  assertMaxAbsError("taesd encoder", l, ref.f32("taesd/out_latent"), 1e-5, 1e-5);
});

Deno.test("taesdNames: the original taesd_decoder / taesd_encoder files map to diffusers' names", () => {
  // taesd_decoder.pth: Sequential(Clamp, conv, ReLU, Block...), so its first conv is "1".
  const dec = taesdNames([
    { name: "1.weight", shape: [64, 4, 3, 3] },
    { name: "3.conv.0.weight", shape: [64, 64, 3, 3] },
    { name: "19.bias", shape: [3] },
  ]);
  assertEquals([...dec.keys()], [
    "decoder.layers.0.weight",
    "decoder.layers.2.conv.0.weight",
    "decoder.layers.18.bias",
  ]);
  const enc = taesdNames([{ name: "0.weight", shape: [64, 3, 3, 3] }, { name: "14.weight", shape: [4, 64, 3, 3] }]);
  assertEquals([...enc.keys()], ["encoder.layers.0.weight", "encoder.layers.14.weight"]);
  const diffusers = taesdNames(weights);
  assertEquals(diffusers.get("decoder.layers.0.weight"), "decoder.layers.0.weight");
});

Deno.test("TAESD: a file with one half says which half it lacks; a file with neither is not TAESD", () => {
  const decOnly = detectTaesd(weights.filter((t) => t.name.startsWith("decoder.")));
  assertEquals([decOnly.hasDecoder, decOnly.hasEncoder], [true, false]);
  const g = new Graph();
  assertThrows(
    () => buildTaesdEncoder(g, createWeightLookup(g, source), decOnly, { batch: 1, height: 8, width: 8 }),
    TaesdError,
    "no encoder",
  );
  const encOnly = detectTaesd(weights.filter((t) => t.name.startsWith("encoder.")));
  assertEquals([encOnly.hasDecoder, encOnly.hasEncoder, encOnly.zChannels], [false, true, 4]);
  assertThrows(
    () => buildTaesdDecoder(g, createWeightLookup(g, source), encOnly, { batch: 1, height: 8, width: 8 }),
    TaesdError,
    "no decoder",
  );
  assertThrows(() => detectTaesd([{ name: "conv_first.weight", shape: [64, 3, 3, 3] }]), TaesdError, "not a TAESD");
});
