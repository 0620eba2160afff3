/**
 * The tiny SDXL model through the whole model layer (loadCheckpoint: tokenizer, both text encoders,
 * conditioning assembly, the UNet with label_emb and y, the VAE; planner, Winograd and the CPU backend)
 * against the PyTorch reference of models/testdata/make_reference_sdxl.py, which follows sgm and
 * stable-diffusion.cpp's documented SDXL semantics independently.
 */

import { assert, assertEquals, assertMaxAbsError } from "../../tests/assert.ts";
import { loadTinySdxlReference } from "../testdata/reference.ts";
import { detectArch } from "../arch.ts";
import { loadCheckpoint } from "../checkpoint.ts";
import { estimateNetwork } from "../estimate.ts";
import { sdxlUnconditional } from "../clip/sdxl_conditioning.ts";
import { applyTokenWeights } from "../prompt/emphasis.ts";
import { parseSafetensors } from "../testdata/helpers.ts";
import { encodeSafetensors } from "../weights/mod.ts";
import { TINY_XL } from "./mod.ts";

const { ref, ckptBytes } = loadTinySdxlReference();

/** f32 kernels against a float64 reference: 1e-5 + 1e-4 * max|ref| (the SD1 engine tests' bound). */
const ATOL = 1e-5;
const RTOL = 1e-4;

Deno.test("tiny SDXL checkpoint: the generator still writes the bytes the reference was made from", async () => {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", ckptBytes as Uint8Array<ArrayBuffer>));
  assertEquals([...d].map((b) => b.toString(16).padStart(2, "0")).join(""), ref.metadata.checkpoint_sha256);
  const st = parseSafetensors(ckptBytes);
  const a = detectArch(st.tensors, st.metadata);
  assertEquals([a.family, a.unet!.contextDim, a.unet!.admInChannels], ["sdxl", 80, TINY_XL.unet.admIn]);
  assertEquals(a.textEncoders.map((c) => [c.naming, c.width, c.activation, c.finalLayerNorm, c.defaultClipSkip]), [
    ["hf", 32, "quick_gelu", false, 2],
    ["openclip", 48, "gelu_tanh", false, 2],
  ]);
  assertEquals(a.vae!.scalingFactor, 0.13025);
});

Deno.test("tiny SDXL: conditioning, UNet with y, and VAE through loadCheckpoint match PyTorch", async () => {
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  await Deno.writeFile(path, ckptBytes);
  const ckpt = await loadCheckpoint(path, { threads: 2 });
  try {
    assertEquals(ckpt.family, "sdxl");
    const refContext = ref.f32("xl.context");
    const refPooled = ref.f32("xl.pooled");
    const per = 77 * 80;
    const cond = await ckpt.textEncoder.encode("a lovely cat");
    const empty = await ckpt.textEncoder.encode("");
    assertEquals([cond.context.shape, cond.pooled!.shape], [[1, 77, 80], [1, 48]]);
    assertMaxAbsError("context (a lovely cat)", cond.context.data, refContext.subarray(0, per), ATOL, RTOL);
    assertMaxAbsError("context (empty)", empty.context.data, refContext.subarray(per), ATOL, RTOL);
    assertMaxAbsError("pooled (a lovely cat)", cond.pooled!.data, refPooled.subarray(0, 48), ATOL, RTOL);
    assertMaxAbsError("pooled (empty)", empty.pooled!.data, refPooled.subarray(48), ATOL, RTOL);
    assert(!cond.emptyPrompt && empty.emptyPrompt === true, "only the empty prompt is marked empty");

    // A prompt past 75 tokens: 77-token windows concatenated along the tokens, each encoded on its own
    // (bigG's zeros after each window's EOS), the pooled vector from the first window.
    const words = Array.from({ length: 80 }, (_, i) => ["red", "cat", "blue", "dog"][i % 4]);
    const long = await ckpt.textEncoder.encode(words.join(" "));
    const first = await ckpt.textEncoder.encode(words.slice(0, 75).join(" "));
    const rest = await ckpt.textEncoder.encode(words.slice(75).join(" "));
    assertEquals([long.context.shape, long.pooled!.shape], [[1, 154, 80], [1, 48]]);
    assertEquals(long.context.data.subarray(0, per), first.context.data);
    assertEquals(long.context.data.subarray(per), rest.context.data);
    assertEquals(long.pooled!.data, first.pooled!.data);

    // Emphasis scales the 2048-wide (here 80-wide) rows of its tokens, then the window keeps its mean.
    const weighted = await ckpt.textEncoder.encode("a (lovely:1.5) cat");
    const scaled = cond.context.data.slice();
    const w = new Float32Array(77).fill(1);
    w[2] = 1.5;
    applyTokenWeights(scaled, w, 80);
    assertMaxAbsError("emphasis", weighted.context.data, scaled, 1e-6, 1e-6);
    assertEquals(weighted.pooled!.data, cond.pooled!.data);

    // The empty negative prompt: all-zero context, pooled kept (sd.cpp's rule).
    const uncond = sdxlUnconditional(empty);
    assert(uncond.context.data.every((v) => v === 0), "empty negative context is zero");
    assertEquals(uncond.pooled, empty.pooled);
    assertEquals(sdxlUnconditional(cond), cond);

    // UNet: batch [cond, uncond] at an 8x6 latent (a 64-high, 48-wide image: y's sizes are height first).
    const context = new Float32Array(2 * per);
    context.set(cond.context.data, 0);
    context.set(uncond.context.data, per);
    const pooled = new Float32Array(2 * 48);
    pooled.set(cond.pooled!.data, 0);
    pooled.set(uncond.pooled!.data, 48);
    const out = await ckpt.denoiser.predict(
      { shape: [2, 4, 8, 6], data: ref.f32("xl.unet.x") },
      ref.f32("xl.unet.timesteps"),
      { context: { shape: [2, 77, 80], data: context }, pooled: { shape: [2, 48], data: pooled } },
    );
    assertMaxAbsError("unet (label_emb, y)", out.data, ref.f32("xl.unet.out"), ATOL, RTOL);

    // A conditioning without the pooled vector is refused with a line that says so.
    let message = "";
    try {
      await ckpt.denoiser.predict({ shape: [1, 4, 8, 6], data: new Float32Array(192) }, Float32Array.of(1), {
        context: { shape: [1, 77, 80], data: new Float32Array(per) },
      });
    } catch (e) {
      message = (e as Error).message;
    }
    assert(message.includes("pooled"), `error: ${message}`);

    const [image] = await ckpt.vae.decode({ shape: [1, 4, 8, 8], data: ref.f32("xl.vae.latent") });
    const refImage = ref.f32("xl.vae.image");
    // The decoder's [-1, 1] output as 8-bit: within one level of the rounded reference.
    let worst = 0;
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 64; x++) {
        for (let c = 0; c < 3; c++) {
          const v = refImage[(c * 64 + y) * 64 + x];
          const expected = Math.min(255, Math.max(0, (v + 1) * 127.5));
          worst = Math.max(worst, Math.abs(image.data[(y * 64 + x) * 3 + c] - expected));
        }
      }
    }
    assert(worst <= 1, `VAE (scale 0.13025): worst 8-bit difference ${worst.toFixed(2)} > 1`);
  } finally {
    ckpt.dispose();
    await Deno.remove(path);
  }
});

Deno.test("tiny SDXL: an SDXL textual-inversion file (clip_l + clip_g) feeds both encoders", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/tiny-sdxl.safetensors`;
    await Deno.writeFile(path, ckptBytes);
    const st = parseSafetensors(ckptBytes);
    // "lovelyish" = the vocabulary's own vectors of "lovely" (token 2165) for each encoder.
    const row = (name: string, width: number) => st.f32(name).slice(2165 * width, 2166 * width);
    const l = row("conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight", 32);
    const g = row("conditioner.embedders.1.model.token_embedding.weight", 48);
    const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    await Deno.writeFile(
      `${dir}/lovelyish.safetensors`,
      encodeSafetensors([
        { name: "clip_g", dtype: "F32", shape: [1, 48], data: bytes(g) },
        { name: "clip_l", dtype: "F32", shape: [1, 32], data: bytes(l) },
      ]),
    );
    // An SD 1.x-only file (no clip_g) in the folder is skipped with a warning.
    await Deno.writeFile(
      `${dir}/sd1only.safetensors`,
      encodeSafetensors([{ name: "emb_params", dtype: "F32", shape: [1, 32], data: bytes(l) }]),
    );
    const warnings: string[] = [];
    const ckpt = await loadCheckpoint(path, { threads: 2, embeddingDir: dir, onWarning: (m) => warnings.push(m) });
    try {
      const plain = await ckpt.textEncoder.encode("a lovely cat");
      const custom = await ckpt.textEncoder.encode("a lovelyish cat");
      assertMaxAbsError("context", custom.context.data, plain.context.data, 1e-6, 1e-6);
      assertMaxAbsError("pooled", custom.pooled!.data, plain.pooled!.data, 1e-6, 1e-6);
      assert(warnings.some((w) => w.includes("sd1only.safetensors")), warnings.join("\n"));
    } finally {
      ckpt.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tiny SDXL: deno task plan's estimate counts both text encoders; the UNet (label_emb) plans", async () => {
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    await Deno.writeFile(path, ckptBytes);
    const text = await estimateNetwork("text_encoder", { checkpoint: path });
    // CLIP-L: 2 of 3 layers (clip skip 2); bigG: all 3 (the pooled output needs the last layer).
    assertEquals(text.find((o) => o.op === "text_encoder.attention")?.count, 5);
    const unet = await estimateNetwork("unet", { checkpoint: path, latentShape: [2, 4, 8, 8] });
    assert(unet.some((o) => o.op === "unet.matmul"), JSON.stringify(unet));
  } finally {
    await Deno.remove(path);
  }
});
