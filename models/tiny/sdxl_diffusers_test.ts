/**
 * An SDXL diffusers folder: the tiny SDXL checkpoint rewritten in the diffusers layout (unet/ with
 * add_embedding, vae/, text_encoder/ CLIP-L, text_encoder_2/ bigG with separate q/k/v and its
 * text_projection) gives bit-identical conditioning (context and pooled) and UNet output to the single file.
 */

import { loadCheckpoint } from "../mod.ts";
import { assertEquals } from "../../tests/assert.ts";
import { parseSafetensors } from "../testdata/helpers.ts";
import { encodeSafetensors, ldmToDiffusersNames } from "../weights/mod.ts";
import { TINY_XL, tinyCheckpointBytes } from "./mod.ts";

const f32Bytes = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

async function writeDiffusersSdxl(dir: string, seed: number): Promise<void> {
  const ckpt = parseSafetensors(tinyCheckpointBytes({ seed, arch: "sdxl" }));
  const parts = new Map<string, { name: string; dtype: string; shape: number[]; data: Uint8Array }[]>();
  const put = (full: string, shape: number[], data: Float32Array) => {
    const [component, ...rest] = full.split(".");
    const list = parts.get(component) ?? [];
    list.push({ name: rest.join("."), dtype: "F32", shape, data: f32Bytes(data) });
    parts.set(component, list);
  };
  for (const t of ckpt.tensors) {
    if (t.dtype !== "F32") continue;
    const names = ldmToDiffusersNames(t.name, "sdxl");
    const values = ckpt.f32(t.name);
    if (names.length === 3) {
      const per = values.length / 3;
      names.forEach((n, j) => put(n, [t.shape[0] / 3, ...t.shape.slice(1)], values.slice(j * per, (j + 1) * per)));
    } else if (names.length === 1) {
      const linear = /mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(names[0]);
      put(names[0], linear ? t.shape.slice(0, 2) : [...t.shape], values);
    }
  }
  const heads = { "sdflow.clip.heads": String(TINY_XL.clipL.heads) };
  const files: Record<string, [string, Record<string, string>]> = {
    unet: ["diffusion_pytorch_model.safetensors", { "sdflow.unet.head_dim": String(TINY_XL.unet.headDim) }],
    vae: ["diffusion_pytorch_model.safetensors", {}],
    text_encoder: ["model.safetensors", heads],
    text_encoder_2: ["model.safetensors", heads],
  };
  await Deno.writeTextFile(`${dir}/model_index.json`, JSON.stringify({ _class_name: "StableDiffusionXLPipeline" }));
  for (const [component, [file, metadata]] of Object.entries(files)) {
    await Deno.mkdir(`${dir}/${component}`, { recursive: true });
    await Deno.writeFile(`${dir}/${component}/${file}`, encodeSafetensors(parts.get(component)!, metadata));
  }
}

Deno.test("SDXL diffusers folder (separate q/k/v, add_embedding, text_projection) = the single file, bit for bit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-sdxl-diffusers-" });
  try {
    await writeDiffusersSdxl(dir, 1);
    const single = `${dir}/single.safetensors`;
    await Deno.writeFile(single, tinyCheckpointBytes({ seed: 1, arch: "sdxl" }));
    const a = await loadCheckpoint(single, { threads: 1 });
    const b = await loadCheckpoint(dir, { threads: 1 });
    try {
      assertEquals(b.family, "sdxl");
      const ca = await a.textEncoder.encode("a lovely cat");
      const cb = await b.textEncoder.encode("a lovely cat");
      assertEquals(cb.context.data, ca.context.data);
      assertEquals(cb.pooled!.data, ca.pooled!.data);
      const x = { shape: [2, 4, 8, 8], data: new Float32Array(512).map((_, i) => Math.sin(i)) };
      const cond = {
        context: { shape: [2, 77, 80], data: new Float32Array(2 * 77 * 80).map((_, i) => Math.cos(i) / 4) },
        pooled: { shape: [2, 48], data: new Float32Array(96).map((_, i) => Math.sin(i / 3)) },
      };
      const ua = await a.denoiser.predict(x, Float32Array.of(500, 10), cond);
      const ub = await b.denoiser.predict(x, Float32Array.of(500, 10), cond);
      assertEquals(ub.data, ua.data);
    } finally {
      a.dispose();
      b.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
