import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "../../tests/assert.ts";
import {
  encodeSafetensors,
  openLdmWeights,
  openWeights,
  readTensorF32,
  splitRows,
  UnsupportedFormatError,
  UnsupportedLayoutError,
} from "./mod.ts";
import { f32Bytes, fixture, tempDir } from "./test_util.ts";

const W = 1024; // OpenCLIP width: makes the folder an SD 2.x one

function f16(n: number, v = 0x3c00): Uint8Array {
  return new Uint8Array(new Uint16Array(n).fill(v).buffer);
}

async function makeFolder(): Promise<string> {
  const dir = tempDir();
  for (const c of ["unet", "vae", "text_encoder"]) await Deno.mkdir(`${dir}/${c}`);
  await Deno.writeTextFile(`${dir}/model_index.json`, JSON.stringify({ _class_name: "StableDiffusionPipeline" }));
  await Deno.writeFile(
    `${dir}/unet/diffusion_pytorch_model.safetensors`,
    encodeSafetensors([
      { name: "conv_in.weight", dtype: "F32", shape: [2, 1, 1, 1], data: f32Bytes([1, 2]) },
      { name: "up_blocks.1.attentions.0.norm.weight", dtype: "F32", shape: [1], data: f32Bytes([1]) },
      { name: "up_blocks.1.upsamplers.0.conv.weight", dtype: "F32", shape: [1], data: f32Bytes([1]) },
      { name: "up_blocks.0.upsamplers.0.conv.weight", dtype: "F32", shape: [1], data: f32Bytes([1]) },
    ]),
  );
  // Only the fp16 variant: it must be found.
  await Deno.writeFile(
    `${dir}/vae/diffusion_pytorch_model.fp16.safetensors`,
    encodeSafetensors([
      { name: "decoder.mid_block.attentions.0.to_q.weight", dtype: "F16", shape: [2, 2], data: f16(4) },
      { name: "decoder.mid_block.attentions.0.to_q.bias", dtype: "F16", shape: [2], data: f16(2) },
      { name: "post_quant_conv.weight", dtype: "F16", shape: [1, 1, 1, 1], data: f16(1) },
    ]),
  );
  const L = "text_model.encoder.layers.0.self_attn.";
  await Deno.writeFile(
    `${dir}/text_encoder/model.safetensors`,
    encodeSafetensors([
      { name: "text_model.embeddings.token_embedding.weight", dtype: "F16", shape: [2, W], data: f16(2 * W) },
      { name: `${L}q_proj.bias`, dtype: "F32", shape: [2], data: f32Bytes([1, 2]) },
      { name: `${L}k_proj.bias`, dtype: "F32", shape: [2], data: f32Bytes([3, 4]) },
      { name: `${L}v_proj.bias`, dtype: "F32", shape: [2], data: f32Bytes([5, 6]) },
      { name: "text_model.final_layer_norm.weight", dtype: "F32", shape: [1], data: f32Bytes([7]) },
    ]),
  );
  return dir;
}

Deno.test("diffusers: folder as one WeightFile with component prefixes", async () => {
  const dir = await makeFolder();
  const f = await openWeights(dir);
  assertEquals(f.format, "diffusers");
  assert(f.has("unet.conv_in.weight") && f.has("vae.post_quant_conv.weight"));
  assertEquals(f.get("vae.decoder.mid_block.attentions.0.to_q.weight").shape, [2, 2]);
  assertMatch(String(f.metadata["model_index.json"]), /StableDiffusionPipeline/);
  const src = f.get("unet.conv_in.weight").source;
  assert(src.kind === "file" && src.path.endsWith("unet/diffusion_pytorch_model.safetensors"));
});

Deno.test("diffusers: ldm view renames, reshapes VAE attention, splits fused q/k/v", async () => {
  const dir = await makeFolder();
  const f = await openLdmWeights(dir);
  assertEquals([...readTensorF32(f.get("model.diffusion_model.input_blocks.0.0.weight"))], [1, 2]);
  assert(f.has("model.diffusion_model.output_blocks.5.2.conv.weight")); // up block 1 has attention
  assert(f.has("model.diffusion_model.output_blocks.2.1.conv.weight")); // up block 0 has none
  const q = f.get("first_stage_model.decoder.mid.attn_1.q.weight");
  assertEquals([q.shape, q.dtype], [[2, 2, 1, 1], "f16"]);
  assertEquals(f.get("first_stage_model.decoder.mid.attn_1.q.bias").shape, [2]);
  assertEquals(f.get("cond_stage_model.model.token_embedding.weight").shape, [2, W]);
  assertEquals([...readTensorF32(f.get("cond_stage_model.model.ln_final.weight"))], [7]);
  const fused = "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_bias";
  assert(f.has(fused));
  assertMatch(assertThrows(() => f.get(fused), UnsupportedLayoutError).message, /splitRows/);
  const parts = splitRows(f, fused, [2, 2, 2]);
  assertEquals(parts.map((p) => [...readTensorF32(p)]), [[1, 2], [3, 4], [5, 6]]);
});

Deno.test("splitRows: a real fused tensor becomes byte sub-ranges", async () => {
  const dir = tempDir();
  const p = `${dir}/m.safetensors`;
  await Deno.writeFile(
    p,
    encodeSafetensors([{ name: "w", dtype: "F32", shape: [3, 2], data: f32Bytes([1, 2, 3, 4, 5, 6]) }]),
  );
  const f = await openWeights(p);
  const [a, b] = splitRows(f, "w", [1, 2]);
  assertEquals([a.shape, [...readTensorF32(a)], b.shape, [...readTensorF32(b)]], [[1, 2], [1, 2], [2, 2], [
    3,
    4,
    5,
    6,
  ]]);
});

Deno.test("diffusers: .bin pickles are read; empty folders refused", async () => {
  const dir = tempDir();
  await Deno.mkdir(`${dir}/vae`);
  await Deno.copyFile(fixture("noncontig.pt"), `${dir}/vae/diffusion_pytorch_model.bin`);
  const f = await openWeights(dir);
  assertEquals([...readTensorF32(f.get("vae.ok"))], [0, 1, 2, 3, 4, 5]);
  assertThrows(() => f.get("vae.t"), UnsupportedLayoutError); // the sub-file's refusal is kept
  const empty = tempDir();
  await assertRejects(() => openWeights(empty), UnsupportedFormatError);
});
