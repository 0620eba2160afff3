/**
 * LoRA against a numpy reference on tiny shapes (testdata/make_lora_reference.py: float64 W + s·up@down,
 * rounded to the weight's dtype, and the layer outputs), the name conventions, and bad files.
 *
 * Bounds:
 * - merged weights: within one unit in the last place of the weight's dtype of numpy's float64 merge
 *   rounded to nearest even (sdflow accumulates ΔW in float32, so a value next to a rounding
 *   boundary may round the other way);
 * - run-time outputs (W kept, scale·up(down(x)) added in float32): |Δ| ≤ 1e-5 + 1e-5·|y|;
 * - outputs with merged f16 weights: |Δ| ≤ 2e-3 (the merged weight's f16 rounding, |x|·|W| ≈ 1).
 */

import { loadBackend } from "../../backends/mod.ts";
import { compile, Graph, type Tensor } from "../../engine/mod.ts";
import { assert, assertEquals, assertInstanceOf, assertRejects, assertThrows } from "../../tests/assert.ts";
import { addRuntimeDeltas, conv2d, createWeightLookup, linear, type WeightInfo } from "../nn.ts";
import { hostWeight, PatchError, type WeightDelta, type WeightPatch } from "../patch.ts";
import { mergeWeight, PatchedWeights, readWeightF32 } from "../patch_weights.ts";
import { encodeSafetensors, openSafetensors, sniffFormat } from "../weights/mod.ts";
import { loadLora, LoraError } from "./lora.ts";
import { buildTargetIndex, parseLoraName } from "./names.ts";

const ref = await openSafetensors(new URL("./testdata/lora_reference.safetensors", import.meta.url).pathname);
const t = (name: string): WeightInfo => ref.get(name);
const values = (name: string): Float32Array => readWeightF32(t(name));

/** The fixture's deltas, as sdflow would build them from a LoRA file. */
const DELTAS: Record<string, WeightDelta> = {
  lin: { kind: "low_rank", target: "lin.weight", up: t("lin.up"), down: t("lin.down"), scale: 0.5 * 0.8 },
  conv: { kind: "low_rank", target: "conv.weight", up: t("conv.up"), down: t("conv.down"), scale: 1 },
  rows: {
    kind: "low_rank",
    target: "rows.weight",
    up: t("rows.up"),
    down: t("rows.down"),
    scale: 0.25,
    rows: { start: 3, count: 3 },
  },
  dense: { kind: "dense", target: "dense.weight", delta: t("dense.diff"), scale: 1.5 },
  wide: { kind: "low_rank", target: "wide.weight", up: t("wide.up"), down: t("wide.down"), scale: 0.5 },
};

/** f16 spacing at |v| (one unit in the last place). */
const ulp16 = (v: number): number => 2 ** (Math.max(Math.floor(Math.log2(Math.abs(v) || 2 ** -14)), -14) - 10);

Deno.test("mergeWeight matches numpy's W + s·up@down (rounded to the weight's dtype) on every case", () => {
  for (const c of Object.keys(DELTAS)) {
    const w = t(`${c}.w`);
    const merged = mergeWeight(w, [DELTAS[c]]);
    const expect = values(`${c}.merged`);
    const got = merged instanceof Float32Array
      ? merged
      : readWeightF32({ ...w, source: { kind: "data", data: merged } });
    assertEquals(got.length, expect.length, `${c}: length`);
    for (let i = 0; i < got.length; i++) {
      const bound = w.dtype === "f16" ? ulp16(expect[i]) : 1e-6 * Math.max(1, Math.abs(expect[i]));
      assert(Math.abs(got[i] - expect[i]) <= bound, `${c}[${i}]: ${got[i]} vs numpy ${expect[i]} (bound ${bound})`);
    }
  }
});

/** A network of one layer of case `c` on the CPU backend, patched by `mode`, run on the fixture's x. */
async function runLayer(
  c: "lin" | "conv" | "dense" | "rows" | "wide",
  mode: "merge" | "runtime",
): Promise<Float32Array> {
  const backend = await loadBackend("cpu", { threads: 1 });
  const w = t(`${c}.w`);
  const base = new Map<string, WeightInfo>([[`${c}.weight`, w]]);
  if (c === "conv") base.set("conv.bias", hostWeight([4], new Float32Array(4)));
  const shapes = new Map([[`${c}.weight`, w.shape]]);
  const patch: WeightPatch = { kind: "weights", label: `test ${c}`, deltas: [DELTAS[c]], mode };
  const source = new PatchedWeights({ get: (n) => base.get(n) }, shapes, [patch], backend, "test");
  await source.prepare();
  const g = new Graph();
  const lookup = createWeightLookup(g, source);
  const xInfo = t(`${c}.x`);
  const x = g.input("x", xInfo.shape);
  let y: Tensor;
  if (c === "conv") y = conv2d(g, lookup, "conv", x, 4, 3);
  else if (c === "rows") {
    // As the OpenCLIP text encoder runs one third of its fused in_proj (here the k rows).
    const part = g.linear(x, g.slice(g.copy(lookup("rows.weight")), 0, 3, 3));
    y = addRuntimeDeltas(g, lookup, "rows.weight", x, part, { kind: "linear", rows: { start: 3, count: 3 } });
  } else y = linear(g, lookup, c, x, w.shape[0], { bias: false });
  g.output("y", y);
  const program = compile(g, backend);
  try {
    return (await program.run({ x: values(`${c}.x`) })).y.slice();
  } finally {
    program.dispose();
    source.dispose();
  }
}

Deno.test("run-time deltas (y = W·x + s·up(down(x))) match numpy's layer with the merged weight", async () => {
  for (const c of ["lin", "conv", "rows", "dense", "wide"] as const) {
    const got = await runLayer(c, "runtime");
    const expect = values(`${c}.y`);
    assertEquals(got.length, expect.length, `${c}: length`);
    for (let i = 0; i < got.length; i++) {
      const bound = 1e-5 + 1e-5 * Math.abs(expect[i]);
      assert(Math.abs(got[i] - expect[i]) <= bound, `${c}[${i}]: ${got[i]} vs numpy ${expect[i]}`);
    }
  }
});

Deno.test("merged weights in a network (backend buffer constants) match numpy's layer", async () => {
  for (const c of ["lin", "conv", "rows", "dense", "wide"] as const) {
    const got = await runLayer(c, "merge");
    const expect = values(`${c}.y`);
    for (let i = 0; i < got.length; i++) {
      assert(Math.abs(got[i] - expect[i]) <= 2e-3, `${c}[${i}]: ${got[i]} vs numpy ${expect[i]}`);
    }
  }
});

Deno.test("a patch whose delta does not fit its weight is refused, naming it", async () => {
  const backend = await loadBackend("cpu", { threads: 1 });
  const shapes = new Map([["lin.weight", [6, 5]]]);
  const bad: WeightPatch = {
    kind: "weights",
    label: "bad",
    deltas: [{ ...DELTAS.lin, down: hostWeight([2, 4], new Float32Array(8)) } as WeightDelta],
  };
  assertThrows(() => new PatchedWeights({ get: () => undefined }, shapes, [bad], backend, "UNet"), PatchError, "lin");
  const missing: WeightPatch = { kind: "weights", label: "m", deltas: [{ ...DELTAS.lin, target: "nope.weight" }] };
  assertThrows(
    () => new PatchedWeights({ get: () => undefined }, shapes, [missing], backend, "UNet"),
    PatchError,
    "no weight",
  );
});

// ---- names ----------------------------------------------------------------------------------

Deno.test("parseLoraName: kohya, LyCORIS, diffusers, attention processors and PEFT name the same layer", () => {
  const q = "unet:down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
  for (
    const [name, part] of [
      ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", "down"],
      ["lycoris_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", "up"],
      ["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight", "down"],
      ["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.up.weight", "up"],
      ["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", "down"],
      ["base_model.model.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.default.weight", "up"],
      ["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_linear_layer.down.weight", "down"],
      ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha", "alpha"],
    ]
  ) assertEquals(parseLoraName(name), { key: q, part }, name);
  assertEquals(
    parseLoraName("unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.down.weight"),
    { key: "unet:mid_block_attentions_0_transformer_blocks_0_attn2_to_out_0", part: "down" },
  );
  assertEquals(parseLoraName("lora_te_text_model_encoder_layers_3_mlp_fc1.scale"), {
    key: "te1:text_model_encoder_layers_3_mlp_fc1",
    part: "scale",
  });
  assertEquals(
    parseLoraName("text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight")?.key,
    "te2:text_model_encoder_layers_0_self_attn_q_proj",
  );
  assertEquals(parseLoraName("lora_unet_x.hada_w1_a"), undefined);
  assertEquals(parseLoraName("something_else.weight"), undefined);
});

Deno.test("buildTargetIndex: SD 1.x (LoCon resnets too), SD 2.x OpenCLIP thirds, SDXL ldm-style UNet and te2", () => {
  const sd1 = buildTargetIndex(
    "sd1",
    new Map([
      ["model.diffusion_model.output_blocks.3.1.transformer_blocks.0.ff.net.0.proj.weight", [10240, 1280]],
      ["model.diffusion_model.input_blocks.1.0.in_layers.2.weight", [320, 320, 3, 3]],
    ]),
    new Map([["cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight", [768, 768]]]),
  );
  const find = (ix: ReturnType<typeof buildTargetIndex>, name: string) => ix.get(parseLoraName(name)!.key);
  // sd.cpp's example in ../shared/reference/sdcpp-facts.md.
  assertEquals(
    find(sd1, "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_ff_net_0_proj.lora_up.weight")?.name,
    "model.diffusion_model.output_blocks.3.1.transformer_blocks.0.ff.net.0.proj.weight",
  );
  assertEquals(
    find(sd1, "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight")?.name,
    "model.diffusion_model.input_blocks.1.0.in_layers.2.weight",
  );
  assertEquals(
    find(sd1, "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha")?.name,
    "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight",
  );
  const sd2 = buildTargetIndex(
    "sd2",
    new Map(),
    new Map([["cond_stage_model.model.transformer.resblocks.5.attn.in_proj_weight", [3072, 1024]]]),
  );
  assertEquals(find(sd2, "lora_te_text_model_encoder_layers_5_self_attn_v_proj.lora_down.weight"), {
    component: "te1",
    name: "cond_stage_model.model.transformer.resblocks.5.attn.in_proj_weight",
    rows: { start: 2048, count: 1024 },
  });
  const xl = buildTargetIndex(
    "sdxl",
    new Map([["model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight", [640, 640]]]),
    new Map([
      ["conditioner.embedders.0.transformer.text_model.encoder.layers.0.mlp.fc1.weight", [3072, 768]],
      ["conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight", [3840, 1280]],
    ]),
  );
  const q = "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight";
  assertEquals(find(xl, "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight")?.name, q);
  assertEquals(find(xl, "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight")?.name, q);
  assertEquals(find(xl, "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight")?.component, "te1");
  assertEquals(find(xl, "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"), {
    component: "te2",
    name: "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight",
    rows: { start: 0, count: 1280 },
  });
});

// ---- files ----------------------------------------------------------------------------------

const UNET_W = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight";
const TE_W = "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight";
const MODEL = {
  family: "sd1" as const,
  unet: new Map([[UNET_W, [8, 8]]]),
  text: new Map([[TE_W, [4, 4]]]),
};
const f16 = (n: number) => new Uint8Array(new Uint16Array(n).fill(0x3c00).buffer); // ones
const f32 = (v: number) => new Uint8Array(new Float32Array([v]).buffer);

async function loraFile(entries: { name: string; shape: number[]; data?: Uint8Array }[]): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  const bytes = encodeSafetensors(entries.map((e) => ({
    name: e.name,
    dtype: e.data && e.data.byteLength === 4 * e.shape.reduce((a, b) => a * b, 1) ? "F32" : "F16",
    shape: e.shape,
    data: e.data ?? f16(e.shape.reduce((a, b) => a * b, 1)),
  })));
  await Deno.writeFile(path, bytes);
  return path;
}

const UNET_L = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
const TE_L = "lora_te_text_model_encoder_layers_0_self_attn_q_proj";

Deno.test("loadLora: kohya layers become UNet and CLIP patches with alpha/rank × strength; leftovers reported", async () => {
  const path = await loraFile([
    { name: `${UNET_L}.lora_down.weight`, shape: [2, 8] },
    { name: `${UNET_L}.lora_up.weight`, shape: [8, 2] },
    { name: `${UNET_L}.alpha`, shape: [], data: f32(1) },
    { name: `${TE_L}.lora_down.weight`, shape: [2, 4] },
    { name: `${TE_L}.lora_up.weight`, shape: [4, 2] },
    { name: `${TE_L}.scale`, shape: [], data: f32(0.3) },
    { name: "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn9_to_q.lora_down.weight", shape: [2, 8] },
    { name: "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", shape: [2, 4] },
    { name: "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", shape: [4, 2] },
  ]);
  try {
    const got = await loadLora(path, MODEL, { strengthModel: 0.5, strengthClip: 2 });
    assertEquals(got.applied, 2);
    assertEquals(got.model.deltas.map((d) => [d.target, d.scale]), [[UNET_W, 0.5 * 0.5]]);
    assertEquals(got.clip.deltas.map((d) => [d.target, Math.fround(d.scale)]), [[TE_W, Math.fround(0.3 * 2)]]);
    assertEquals(got.unused.length, 3, "attn9 (no such layer) and mlp.fc1 (not in this model)");
    assertEquals(got.warnings.length, 1);
    assert(/3 unused lora tensors/.test(got.warnings[0]), got.warnings[0]);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("loadLora: bad files are one clear LoraError each", async () => {
  const expectError = async (path: string, re: RegExp) => {
    let err: unknown;
    try {
      await loadLora(path, MODEL);
    } catch (e) {
      err = e;
    }
    assertInstanceOf(err, LoraError, `${path}: expected a LoraError, got ${err}`);
    assert(re.test(err.message) && !err.message.includes("\n"), `message: ${err.message}`);
  };
  // A LoRA for another family: SDXL's text encoder 2 and an SDXL-only UNet block.
  const xl = await loraFile([
    { name: "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", shape: [2, 1280] },
    { name: "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", shape: [1280, 2] },
    { name: "lora_unet_input_blocks_7_1_transformer_blocks_9_attn1_to_q.lora_down.weight", shape: [2, 8] },
  ]);
  // Same layer names, other shapes (a 1280-wide model's LoRA).
  const wide = await loraFile([
    { name: `${UNET_L}.lora_down.weight`, shape: [2, 1280] },
    { name: `${UNET_L}.lora_up.weight`, shape: [1280, 2] },
  ]);
  const corrupt = await Deno.makeTempFile({ suffix: ".safetensors" });
  await Deno.writeFile(corrupt, new TextEncoder().encode("this is not a safetensors file at all"));
  try {
    await expectError(xl, /does not fit this SD 1\.x model \(a LoRA for another model family\?\): none of its 3/);
    await expectError(wide, /does not fit this SD 1\.x model.*1 layers do not fit its weights.*\[1280, 2\]/);
    await expectError(corrupt, /cannot be read/);
    await expectError("/nonexistent/x.safetensors", /LoRA file not found: \/nonexistent\/x\.safetensors/);
  } finally {
    for (const p of [xl, wide, corrupt]) await Deno.remove(p);
  }
});

Deno.test("sniffFormat: a safetensors header of 640 bytes (0x80 0x02 …) is not taken for a legacy pickle", () => {
  const head = new Uint8Array(16);
  new DataView(head.buffer).setBigUint64(0, 640n, true);
  head[8] = 0x7b;
  assertEquals(sniffFormat(head), "safetensors");
  assertEquals(sniffFormat(new Uint8Array([0x80, 0x02, 0x7d, 0x71, 0x00, 0x28, 0x58, 0x01, 0x00])), "ckpt");
});

Deno.test("PatchedWeights.prepare({ inJs }) merges on worker threads to the same bits as mergeWeight", async () => {
  const backend = await loadBackend("cpu", { threads: 2 });
  const cases = ["lin", "conv", "rows", "dense", "wide"];
  const base = new Map(cases.map((c) => [`${c}.weight`, t(`${c}.w`)]));
  const shapes = new Map(cases.map((c) => [`${c}.weight`, t(`${c}.w`).shape]));
  const patch: WeightPatch = { kind: "weights", label: "threads", deltas: cases.map((c) => DELTAS[c]) };
  const source = new PatchedWeights({ get: (n) => base.get(n) }, shapes, [patch], backend, "test");
  try {
    await source.prepare({ inJs: true });
    for (const c of cases) {
      const merged = source.get(`${c}.weight`)!;
      const want = mergeWeight(t(`${c}.w`), [DELTAS[c]]);
      const src = merged.source;
      assert(src.kind === "buffer");
      const got = await src.buffer.readAsync(src.offset, src.bytes);
      assertEquals([...got], [...new Uint8Array(want.buffer, want.byteOffset, want.byteLength)], c);
    }
  } finally {
    source.dispose();
  }
});

Deno.test("PatchedWeights.prepare merges on the backend (MERGE_LOW_RANK) as numpy does, from files and memory", async () => {
  const backend = await loadBackend("cpu", { threads: 2 });
  assert(backend.info.ops.includes("merge_low_rank"), "the CPU backend lists merge_low_rank");
  const cases = ["lin", "conv", "rows", "dense", "wide"];
  // "wide" comes from memory (a plugin's host weight), the others from the fixture file's ranges.
  const inMemory = (c: string): WeightInfo => {
    const w = t(`${c}.w`);
    const bytes = w.source.kind === "file" ? Deno.readFileSync(w.source.path).slice(w.source.offset) : undefined;
    return bytes
      ? { ...w, source: { kind: "data", data: new Uint16Array(bytes.buffer, 0, w.shape[0] * w.shape[1]) } }
      : w;
  };
  const base = new Map(cases.map((c) => [`${c}.weight`, c === "wide" ? inMemory(c) : t(`${c}.w`)]));
  const shapes = new Map(cases.map((c) => [`${c}.weight`, t(`${c}.w`).shape]));
  const one = DELTAS.lin as Extract<WeightDelta, { kind: "low_rank" }>;
  // lin: two LoRAs of scale 0.1 and 0.3 on one weight add up to the fixture's 0.4.
  const deltas = cases.map((c) => DELTAS[c]).filter((d) => d !== one);
  deltas.push({ ...one, scale: 0.1 }, { ...one, scale: 0.3 });
  const patch: WeightPatch = { kind: "weights", label: "backend", deltas };
  const source = new PatchedWeights({ get: (n) => base.get(n) }, shapes, [patch], backend, "test");
  try {
    await source.prepare();
    for (const c of cases) {
      const merged = source.get(`${c}.weight`)!;
      assert(merged.source.kind === "buffer", c);
      const got = readWeightF32(merged);
      const expect = values(`${c}.merged`);
      assertEquals(got.length, expect.length, `${c}: length`);
      for (let i = 0; i < got.length; i++) {
        const bound = merged.dtype === "f16" ? ulp16(expect[i]) : 1e-6 * Math.max(1, Math.abs(expect[i]));
        assert(Math.abs(got[i] - expect[i]) <= bound, `${c}[${i}]: ${got[i]} vs numpy ${expect[i]} (bound ${bound})`);
      }
    }
  } finally {
    source.dispose();
  }
});

Deno.test("patch kinds designed but not applied yet (ControlNet residuals, decoder swaps) are refused by name", async () => {
  const backend = await loadBackend("cpu", { threads: 1 });
  const residuals = { kind: "block_residuals" as const, label: "controlnet x", residuals: () => Promise.resolve([]) };
  assertThrows(
    () => new PatchedWeights({ get: () => undefined }, new Map(), [residuals], backend, "UNet"),
    PatchError,
    `"controlnet x" is a block_residuals patch, which the UNet does not apply yet`,
  );
});

Deno.test("two LoRAs on one weight add up: deltas of scale 0.1 and 0.3 merge as numpy's 0.4", () => {
  const one = DELTAS.lin as Extract<WeightDelta, { kind: "low_rank" }>;
  const merged = mergeWeight(t("lin.w"), [{ ...one, scale: 0.1 }, { ...one, scale: 0.3 }]) as Uint16Array;
  const got = readWeightF32({ ...t("lin.w"), source: { kind: "data", data: merged } });
  const expect = values("lin.merged");
  for (let i = 0; i < got.length; i++) {
    assert(Math.abs(got[i] - expect[i]) <= ulp16(expect[i]), `[${i}]: ${got[i]} vs numpy ${expect[i]}`);
  }
});

Deno.test("merging into a weight of a dtype the merge does not handle (quantized) is one PatchError", async () => {
  const backend = await loadBackend("cpu", { threads: 1 });
  const w = t("lin.w");
  const quantized: WeightInfo = { ...w, dtype: "q8_0" };
  const patch: WeightPatch = { kind: "weights", label: "q", deltas: [DELTAS.lin] };
  const source = new PatchedWeights(
    { get: () => quantized },
    new Map([["lin.weight", w.shape]]),
    [patch],
    backend,
    "x",
  );
  await assertRejects(() => source.prepare(), PatchError, "a LoRA cannot be merged into quantized weights");
  source.dispose();
});
