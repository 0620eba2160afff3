/**
 * Separate VAE files (`--vae`, the checkpoint's `vae` input, `vae_loader`): the tiny checkpoint's VAE
 * written in every accepted layout decodes (and encodes) bit-identically to the checkpoint's own VAE;
 * files that are not a KL VAE, or another family's, are refused with one line naming the file.
 */

import { loadCheckpoint, loadVae, VaeFileError } from "../mod.ts";
import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { parseSafetensors } from "../testdata/helpers.ts";
import { tinyCheckpointBytes } from "../tiny/mod.ts";
import { encodeSafetensors, ldmToDiffusersNames } from "../weights/mod.ts";
import type { Image, Latent } from "../types.ts";

type Entry = { name: string; dtype: string; shape: readonly number[]; data: Uint8Array };

const dir = await Deno.makeTempDir({ prefix: "sdflow-vae-test-" });
const bytes = tinyCheckpointBytes({ seed: 4 });
const ckptPath = `${dir}/tiny.safetensors`;
await Deno.writeFile(ckptPath, bytes);
const parsed = parseSafetensors(bytes);
const VAE = "first_stage_model.";
const vaeTensors = parsed.tensors.filter((t) => t.name.startsWith(VAE));
const f32Bytes = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** The tiny VAE's tensors, renamed by `rename` (undefined drops one) and reshaped by `shape`. */
function vaeEntries(rename: (ldm: string) => string | undefined, shape = (_n: string, s: number[]) => s): Entry[] {
  const out: Entry[] = [];
  for (const t of vaeTensors) {
    const name = rename(t.name);
    if (name !== undefined) {
      out.push({ name, dtype: "F32", shape: shape(name, [...t.shape]), data: f32Bytes(parsed.f32(t.name)) });
    }
  }
  return out;
}

/** diffusers' name of an ldm VAE tensor, without the `vae.` folder prefix. */
const diffusersName = (ldm: string) => ldmToDiffusersNames(ldm, "sd1")[0]?.slice("vae.".length);
/** diffusers keeps the mid attention's q/k/v/out as linears [C, C]. */
const diffusersShape = (n: string, s: number[]) =>
  /attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(n) ? s.slice(0, 2) : s;

const layouts: Record<string, () => Promise<string>> = {
  "bare ldm names (encoder.*, decoder.*)": async () => {
    const p = `${dir}/bare.safetensors`;
    await Deno.writeFile(p, encodeSafetensors(vaeEntries((n) => n.slice(VAE.length))));
    return p;
  },
  "first_stage_model.* names": async () => {
    const p = `${dir}/fsm.safetensors`;
    await Deno.writeFile(p, encodeSafetensors(vaeEntries((n) => n)));
    return p;
  },
  "a whole checkpoint": () => Promise.resolve(ckptPath),
  "diffusers names in one file": async () => {
    const p = `${dir}/diffusers_names.safetensors`;
    await Deno.writeFile(p, encodeSafetensors(vaeEntries(diffusersName, diffusersShape)));
    return p;
  },
  "a diffusers VAE folder": async () => {
    const p = `${dir}/vae_folder`;
    await Deno.mkdir(p, { recursive: true });
    await Deno.writeTextFile(`${p}/config.json`, JSON.stringify({ _class_name: "AutoencoderKL", latent_channels: 4 }));
    await Deno.writeFile(
      `${p}/diffusion_pytorch_model.fp16.safetensors`,
      encodeSafetensors(vaeEntries(diffusersName, diffusersShape)),
    );
    return p;
  },
};

const latent: Latent = { shape: [1, 4, 8, 8], data: Float32Array.from({ length: 256 }, (_, i) => Math.cos(i * 0.7)) };
const picture: Image = {
  width: 64,
  height: 64,
  channels: 3,
  data: Uint8Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 37) % 251),
};

const own = await loadCheckpoint(ckptPath, { threads: 1 });
const [ownImage] = await own.vae.decode(latent);
const ownLatent = await own.vae.encode([picture], { seed: 3 });
assertEquals(own.vae.separate, false);
own.dispose();

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

for (const [layout, make] of Object.entries(layouts)) {
  Deno.test(`separate VAE, ${layout}: decodes and encodes as the checkpoint's own VAE`, async () => {
    const path = await make();
    const ckpt = await loadCheckpoint(ckptPath, { threads: 1, vae: path });
    try {
      assertEquals([ckpt.vae.separate, ckpt.vae.scalingFactor], [true, 0.18215]);
      const [image] = await ckpt.vae.decode(latent);
      assertEquals(image.data, ownImage.data);
      const enc = await ckpt.vae.encode([picture], { seed: 3 });
      assert(enc.data.every((v, i) => Object.is(v, ownLatent.data[i])), "encoded latent");
    } finally {
      ckpt.dispose();
    }
    const alone = await loadVae(path, { threads: 1, model: { family: "sd2" } });
    try {
      assertEquals(alone.scalingFactor, 0.18215);
      assertEquals((await alone.decode(latent))[0].data, ownImage.data);
    } finally {
      alone.dispose();
    }
  });
}

Deno.test("vae_loader: the model's family sets the latent scale (SDXL 0.13025)", async () => {
  const path = await layouts["bare ldm names (encoder.*, decoder.*)"]();
  const xl = await loadVae(path, { threads: 1, model: { family: "sdxl" } });
  try {
    assertEquals(xl.scalingFactor, 0.13025);
    const [a] = await xl.decode({ shape: latent.shape, data: latent.data.map((v) => (v * 0.13025) / 0.18215) });
    // Same decoder input (latent / scale) up to one f32 rounding of the rescaled latent.
    let maxDiff = 0;
    for (let i = 0; i < a.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a.data[i] - ownImage.data[i]));
    assert(maxDiff <= 1, `max pixel difference ${maxDiff}`);
  } finally {
    xl.dispose();
  }
});

Deno.test("separate VAE: another family's VAE, a TAESD, a file without a VAE and a missing file are refused", async () => {
  // A 16-channel latent VAE (SD3/Flux-style): only the shapes matter, detection refuses it before loading.
  const wide = `${dir}/wide.safetensors`;
  await Deno.writeFile(
    wide,
    encodeSafetensors(
      vaeEntries((n) => n.slice(VAE.length), (n, s) => {
        if (n === "decoder.conv_in.weight") return [s[0], 16, s[2], s[3]];
        return s;
      }).map((e) =>
        e.name === "decoder.conv_in.weight" ? { ...e, data: new Uint8Array(e.shape.reduce((a, b) => a * b) * 4) } : e
      ),
    ),
  );
  const taesd = `${dir}/taesd.safetensors`;
  await Deno.writeFile(
    taesd,
    encodeSafetensors([
      { name: "decoder.layers.0.weight", dtype: "F32", shape: [64, 4, 3, 3], data: new Uint8Array(64 * 36 * 4) },
      { name: "encoder.layers.0.weight", dtype: "F32", shape: [64, 3, 3, 3], data: new Uint8Array(64 * 27 * 4) },
    ]),
  );
  const unetOnly = `${dir}/unet_only.safetensors`;
  await Deno.writeFile(
    unetOnly,
    encodeSafetensors([{
      name: "model.diffusion_model.out.2.bias",
      dtype: "F32",
      shape: [1],
      data: new Uint8Array(4),
    }]),
  );
  const cases: [string, string][] = [
    [wide, "a VAE of another model family: its latents have 16 channels, the SD 1.x model uses 4"],
    [taesd, "is a TAESD (tiny autoencoder) file, not a KL VAE"],
    [unetOnly, "holds no VAE decoder"],
    [`${dir}/absent.safetensors`, "VAE file not found"],
  ];
  for (const [path, message] of cases) {
    const e = await assertRejects(() => loadCheckpoint(ckptPath, { threads: 1, vae: path }), VaeFileError, message);
    assert(!e.message.includes("\n"), "one line");
    assert(e.message.includes(path), "names the file");
  }
  await assertRejects(() => loadVae(wide, { threads: 1 }), VaeFileError, "16 channels");
});
