/**
 * An SD 2.x diffusers folder: the tiny SD 2.x checkpoint rewritten in the diffusers layout as
 * diffusers' conversion script writes it (OpenCLIP's fused in_proj as separate q_proj/k_proj/v_proj,
 * HF CLIPTextModel names, the last text layer dropped, VAE attention as linears, no text_projection)
 * loads and gives bit-identical text conditioning, UNet output and decoded pixels to the single file.
 */

import { loadCheckpoint } from "../mod.ts";
import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { parseSafetensors } from "../testdata/helpers.ts";
import { encodeSafetensors, ldmToDiffusersNames } from "../weights/mod.ts";
import { TINY_SD2, tinyCheckpointBytes } from "./mod.ts";

const f32Bytes = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Writes the tiny SD 2.x checkpoint (seed) as a diffusers folder under `dir`. */
async function writeDiffusersSd2(dir: string, seed: number): Promise<void> {
  const ckpt = parseSafetensors(tinyCheckpointBytes({ seed, arch: "sd2" }));
  const lastLayer = `cond_stage_model.model.transformer.resblocks.${TINY_SD2.clip.layers - 1}.`;
  const parts = new Map<string, { name: string; dtype: string; shape: number[]; data: Uint8Array }[]>();
  const put = (full: string, shape: number[], data: Float32Array) => {
    const [component, ...rest] = full.split(".");
    const list = parts.get(component) ?? [];
    list.push({ name: rest.join("."), dtype: "F32", shape, data: f32Bytes(data) });
    parts.set(component, list);
  };
  for (const t of ckpt.tensors) {
    if (t.dtype !== "F32" || t.name.startsWith(lastLayer)) continue;
    const names = ldmToDiffusersNames(t.name, "sd2");
    const values = ckpt.f32(t.name);
    if (names.length === 3) {
      const rows = t.shape[0] / 3;
      const per = values.length / 3;
      names.forEach((n, j) => put(n, [rows, ...t.shape.slice(1)], values.slice(j * per, (j + 1) * per)));
    } else if (names.length === 1) {
      // diffusers keeps the VAE's mid attention q/k/v/proj_out as linears [C, C].
      const linear = /mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(names[0]);
      put(names[0], linear ? t.shape.slice(0, 2) : [...t.shape], values);
    }
  }
  const files: Record<string, [string, Record<string, string>]> = {
    unet: ["diffusion_pytorch_model.safetensors", { "sdflow.unet.head_dim": String(TINY_SD2.unet.headDim) }],
    vae: ["diffusion_pytorch_model.safetensors", {}],
    // Real SD 2.x folders are told by ViT-H's shape (width 1024, 23 of 24 layers); the tiny one says so.
    text_encoder: [
      "model.safetensors",
      { "sdflow.clip.heads": String(TINY_SD2.clip.heads), "sdflow.clip.dropped_layers": "1" },
    ],
  };
  await Deno.writeTextFile(`${dir}/model_index.json`, JSON.stringify({ _class_name: "StableDiffusionPipeline" }));
  for (const [component, [file, metadata]] of Object.entries(files)) {
    await Deno.mkdir(`${dir}/${component}`, { recursive: true });
    await Deno.writeFile(
      `${dir}/${component}/${file}`,
      encodeSafetensors(parts.get(component)!, metadata),
    );
  }
}

Deno.test("SD 2.x diffusers folder (separate q/k/v, last text layer dropped) = the single file, bit for bit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-sd2-diffusers-" });
  try {
    await writeDiffusersSd2(dir, 5);
    const single = `${dir}/single.safetensors`;
    await Deno.writeFile(single, tinyCheckpointBytes({ seed: 5, arch: "sd2" }));
    const te = parseSafetensors(await Deno.readFile(`${dir}/text_encoder/model.safetensors`));
    assertEquals(te.tensors.some((t) => t.name.includes(`layers.${TINY_SD2.clip.layers - 1}.`)), false);
    assert(te.tensors.some((t) => t.name.endsWith("self_attn.q_proj.weight")));
    assert(!te.tensors.some((t) => t.name.includes("in_proj")));
    const a = await loadCheckpoint(single, { threads: 1, prediction: "v" });
    const b = await loadCheckpoint(dir, { threads: 1, prediction: "v" });
    try {
      assertEquals([a.family, b.family], ["sd2", "sd2"]);
      for (const [prompt, clipSkip] of [["a lovely cat", undefined], ["(red:1.3) fox, 2 ships", 2], ["", 3]] as const) {
        const ca = await a.textEncoder.encode(prompt, { clipSkip });
        const cb = await b.textEncoder.encode(prompt, { clipSkip });
        assertEquals(cb.context.shape, ca.context.shape);
        assert(ca.context.data.every((v, i) => Object.is(v, cb.context.data[i])), `context of "${prompt}"`);
      }
      await assertRejects(() => b.textEncoder.encode("x", { clipSkip: 1 }), Error, "last 1 layer(s)");
      const x = { shape: [1, 4, 8, 8], data: Float32Array.from({ length: 256 }, (_, i) => Math.sin(i)) };
      const cond = await a.textEncoder.encode("a lovely cat");
      const ua = await a.denoiser.predict(x, Float32Array.of(500), cond);
      const ub = await b.denoiser.predict(x, Float32Array.of(500), cond);
      assert(ua.data.every((v, i) => Object.is(v, ub.data[i])), "UNet output");
      const [ia] = await a.vae.decode(x);
      const [ib] = await b.vae.decode(x);
      assertEquals(ib.data, ia.data);
    } finally {
      a.dispose();
      b.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
