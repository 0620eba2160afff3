import { Graph } from "../../engine/graph.ts";
import { ArchError, detectArch } from "../arch.ts";
import { createWeightLookup } from "../nn.ts";
import { assertEquals, assertMaxAbsError, assertThrows } from "../../tests/assert.ts";
import { fakeWeightSource, opCounts, readReferenceList } from "../testdata/helpers.ts";
import { naiveEval } from "../testdata/naive_eval.ts";
import { loadTinyReference } from "../testdata/reference.ts";
import { buildTextEncoder, eosIndices, splitCustomTokens } from "./text_encoder.ts";
import { sharedTest } from "../../tests/shared.ts";

const sd15 = readReferenceList("sd15-tensors.txt");
const sd21 = readReferenceList("sd21-tensors.txt");
const sdxl = readReferenceList("sdxl-tensors.txt");

Deno.test({
  ...sharedTest(
    "buildTextEncoder: SD 1.5 CLIP ViT-L (12 layers, final LN; clip skip 2 drops one layer)",
    "reference/sd15-tensors.txt",
  ),
  fn() {
    const cfg = detectArch(sd15!).textEncoders[0];
    for (const [skip, layers] of [[1, 12], [2, 11]]) {
      const g = new Graph();
      const r = buildTextEncoder(g, createWeightLookup(g, fakeWeightSource(sd15!)), cfg, { batch: 2, clipSkip: skip });
      assertEquals(r.hidden.shape, [2, 77, 768]);
      const c = opCounts(g.ops);
      assertEquals([c.attention, c.layer_norm, c.gather_rows], [layers, 2 * layers + 1, 1]);
      assertEquals(g.ops.filter((o) => o.kind === "unary" && o.attrs.kind === "quick_gelu").length, layers);
      assertEquals(g.ops.filter((o) => o.kind === "attention" && o.attrs.causal === 1).length, layers);
    }
  },
});

Deno.test({
  ...sharedTest(
    "buildTextEncoder: SD 2.1 OpenCLIP ViT-H (penultimate layer + ln_final, packed qkv as views)",
    "reference/sd21-tensors.txt",
  ),
  fn() {
    const cfg = detectArch(sd21!).textEncoders[0];
    const g = new Graph();
    const r = buildTextEncoder(g, createWeightLookup(g, fakeWeightSource(sd21!)), cfg, { batch: 1 });
    assertEquals(r.hidden.shape, [1, 77, 1024]);
    const c = opCounts(g.ops);
    assertEquals([c.attention, c.layer_norm, c.slice ?? 0], [23, 47, 0]);
    assertEquals(g.ops.filter((o) => o.kind === "unary" && o.attrs.kind === "gelu_tanh").length, 23);
    // q/k/v weights are byte ranges of in_proj_weight: three views, each a third of the packed tensor.
    const p = "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight";
    const packed = g.tensor(g.constants.get(p)!).source as { offset: number; bytes: number };
    const k = g.tensor(g.constants.get(`${p}[1024:2048]`)!).source as { offset: number; bytes: number };
    assertEquals([k.offset - packed.offset, k.bytes * 3], [packed.bytes / 3, packed.bytes]);
  },
});

Deno.test({
  ...sharedTest(
    "buildTextEncoder: SDXL encoders (no final LN on hidden states; bigG pooled + projection)",
    "reference/sdxl-tensors.txt",
  ),
  fn() {
    const [l, big] = detectArch(sdxl!).textEncoders;
    const g1 = new Graph();
    const r1 = buildTextEncoder(g1, createWeightLookup(g1, fakeWeightSource(sdxl!)), l, { batch: 1 });
    assertEquals(r1.hidden.shape, [1, 77, 768]);
    assertEquals(opCounts(g1.ops).layer_norm, 22);
    const g2 = new Graph();
    const r2 = buildTextEncoder(g2, createWeightLookup(g2, fakeWeightSource(sdxl!)), big, { batch: 1, pooled: true });
    assertEquals([r2.hidden.shape, r2.pooled!.shape], [[1, 77, 1280], [1, 1280]]);
    assertEquals(opCounts(g2.ops).attention, 32);
  },
});

Deno.test("buildTextEncoder: tiny CLIP matches the PyTorch reference for clip skip 1 and 2", () => {
  const { ref, ckpt } = loadTinyReference();
  const cfg = detectArch(ckpt.tensors, ckpt.metadata).textEncoders[0];
  const tokens = ref.i32("clip.tokens");
  for (const skip of [1, 2]) {
    const g = new Graph();
    buildTextEncoder(g, createWeightLookup(g, ckpt.source), cfg, { batch: 2, clipSkip: skip });
    const out = naiveEval(g, { tokens });
    assertMaxAbsError(`clip skip ${skip}`, out.hidden, ref.f32(`clip.hidden_skip${skip}`), 1e-5, 1e-5);
  }
});

Deno.test("buildTextEncoder: custom (textual-inversion) embeddings replace exactly their tokens", () => {
  const { ref, ckpt } = loadTinyReference();
  const cfg = detectArch(ckpt.tensors, ckpt.metadata).textEncoders[0];
  const tokens = ref.i32("clip.tokens");
  // Put row 1 of the vocabulary into a custom table and refer to it as token vocab+0 at position 2 of prompt 0.
  const table = ckpt.f32("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight");
  const custom = new Float32Array(2 * 64);
  custom.set(table.subarray(1612 * 64, 1613 * 64), 0);
  custom.set(table.subarray(5 * 64, 6 * 64), 64);
  const ids = tokens.slice();
  ids[2] = cfg.vocabSize; // == token 1612 through the custom table
  const g = new Graph();
  buildTextEncoder(g, createWeightLookup(g, ckpt.source), cfg, { batch: 2, customEmbeddings: 2 });
  const out = naiveEval(g, { ...splitCustomTokens(ids, cfg.vocabSize, 2), custom_table: custom });
  assertMaxAbsError("custom embeddings", out.hidden, ref.f32("clip.hidden_skip1"), 1e-5, 1e-5);
  assertThrows(() => splitCustomTokens(Int32Array.of(cfg.vocabSize + 2), cfg.vocabSize, 2), ArchError, "custom");
});

Deno.test("eosIndices: first end-of-text token per prompt", () => {
  const t = new Int32Array(2 * 5);
  t.set([49406, 1, 49407, 49407, 49407, 49406, 1, 2, 3, 4]);
  assertEquals([...eosIndices(t, 2, 5)], [2, 9]);
});

Deno.test("buildTextEncoder: clip skip out of range is refused", () => {
  const { ckpt } = loadTinyReference();
  const cfg = detectArch(ckpt.tensors, ckpt.metadata).textEncoders[0];
  const g = new Graph();
  assertThrows(
    () => buildTextEncoder(g, createWeightLookup(g, ckpt.source), cfg, { batch: 1, clipSkip: 3 }),
    ArchError,
    "clip skip 3",
  );
});
