/**
 * The ldm AutoencoderKL (ldm/modules/diffusionmodules/model.py Encoder and
 * Decoder) as tensor graphs, driven by a {@link VaeConfig}.
 *
 * Semantics (ldm, and stable-diffusion.cpp vae.hpp):
 * - every norm is GroupNorm(32, eps 1e-6), followed by SiLU where ldm applies
 *   `nonlinearity`;
 * - ResnetBlock: norm1+SiLU, conv1 3x3, norm2+SiLU, conv2 3x3, + x (nin_shortcut
 *   1x1 conv when channels change);
 * - AttnBlock (mid only): norm, q/k/v 1x1 convs, single-head attention over the
 *   H*W positions with scale 1/sqrt(C), proj_out, + x. The 1x1 convs run as
 *   linears on [B, HW, C] tokens (same arithmetic, two permutes instead of eight);
 * - Decoder: z / scaling_factor, post_quant_conv, conv_in, mid (block_1, attn_1,
 *   block_2), levels from the deepest: numResBlocks + 1 blocks, then
 *   Upsample (nearest 2x, conv3x3) except at level 0; norm_out+SiLU, conv_out.
 *   Output "image" in [-1, 1] (unclamped); {@link toImages} maps it to 8-bit as sd.cpp.
 * - Encoder: image in [-1, 1], conv_in, levels: numResBlocks blocks, then
 *   Downsample = pad (right 1, bottom 1) + conv3x3 stride 2 except at the last;
 *   mid; norm_out+SiLU; conv_out (2 z channels); quant_conv. Output "moments"
 *   [B, 2z, h, w] = mean | logvar. stable-diffusion.cpp samples the posterior
 *   for img2img (ldm's DiagonalGaussianDistribution.sample: mean + exp(logvar/2)
 *   * noise, logvar clamped to [-30, 20]) and then scales by scaling_factor:
 *   {@link sampleLatent} does both on the host, taking the noise from the caller's RNG.
 */

import type { Graph, Tensor } from "../../engine/graph.ts";
import { ArchError, type VaeConfig } from "../arch.ts";
import type { Image } from "../types.ts";
import { conv2d, fromTokens, groupNorm, linearOrConv1x1, toTokens, type WeightLookup } from "../nn.ts";

const EPS = 1e-6;

export interface VaeBuildOptions {
  batch: number;
  /** Latent size for the decoder, image size for the encoder. */
  height: number;
  width: number;
  /** Graph output name; null registers none. Default "image" (decoder) / "moments" (encoder). */
  outputName?: string | null;
}

/** Decoder: input "latent" [B, z, h, w] (scaled latents, as samplers produce) -> "image" [B, 3, 8h, 8w]. */
export function buildVaeDecoder(g: Graph, w: WeightLookup, cfg: VaeConfig, opts: VaeBuildOptions): { output: Tensor } {
  const P = cfg.prefix;
  const D = `${P}decoder`;
  const latent = g.input("latent", [opts.batch, cfg.zChannels, opts.height, opts.width]);
  let h = g.scale(latent, 1 / cfg.scalingFactor);
  if (cfg.hasPostQuantConv) {
    h = g.scope("post_quant_conv", () => conv2d(g, w, `${P}post_quant_conv`, h, cfg.zChannels, 1));
  }
  const levels = cfg.chMult.length;
  let ch = cfg.ch * cfg.chMult[levels - 1];
  h = g.scope("decoder.conv_in", () => conv2d(g, w, `${D}.conv_in`, h, ch, 3));
  h = mid(g, w, cfg, `${D}.mid`, "decoder.mid", h);
  for (let lvl = levels - 1; lvl >= 0; lvl--) {
    const out = cfg.ch * cfg.chMult[lvl];
    for (let i = 0; i <= cfg.numResBlocks; i++) {
      h = g.scope(`decoder.up.${lvl}.block.${i}`, () => resnet(g, w, `${D}.up.${lvl}.block.${i}`, h, out));
    }
    ch = out;
    if (lvl !== 0) {
      h = g.scope(
        `decoder.up.${lvl}.upsample`,
        () => conv2d(g, w, `${D}.up.${lvl}.upsample.conv`, g.upsampleNearest(h, 2), ch, 3),
      );
    }
  }
  const output = g.scope("decoder.out", () => {
    const n = groupNorm(g, w, `${D}.norm_out`, h, { eps: EPS, silu: true });
    return conv2d(g, w, `${D}.conv_out`, n, cfg.imageChannels, 3);
  });
  const name = opts.outputName === undefined ? "image" : opts.outputName;
  if (name !== null) g.output(name, output);
  return { output };
}

/** Encoder: input "image" [B, 3, H, W] in [-1, 1] -> "moments" [B, 2z, H/8, W/8] (mean | logvar). */
export function buildVaeEncoder(g: Graph, w: WeightLookup, cfg: VaeConfig, opts: VaeBuildOptions): { output: Tensor } {
  if (!cfg.hasEncoder) throw new ArchError("this VAE has no encoder tensors");
  const f = cfg.downFactor;
  if (opts.height % f !== 0 || opts.width % f !== 0) {
    throw new ArchError(`VAE encoder: image ${opts.height}x${opts.width} must be a multiple of ${f}`);
  }
  const P = cfg.prefix;
  const E = `${P}encoder`;
  const image = g.input("image", [opts.batch, cfg.imageChannels, opts.height, opts.width]);
  const levels = cfg.chMult.length;
  let h = g.scope("encoder.conv_in", () => conv2d(g, w, `${E}.conv_in`, image, cfg.ch, 3));
  for (let lvl = 0; lvl < levels; lvl++) {
    const out = cfg.ch * cfg.chMult[lvl];
    for (let i = 0; i < cfg.numResBlocks; i++) {
      h = g.scope(`encoder.down.${lvl}.block.${i}`, () => resnet(g, w, `${E}.down.${lvl}.block.${i}`, h, out));
    }
    if (lvl !== levels - 1) {
      h = g.scope(`encoder.down.${lvl}.downsample`, () => {
        const c = h.shape[1];
        return conv2d(g, w, `${E}.down.${lvl}.downsample.conv`, padRightBottom(g, h), c, 3, { stride: 2, padding: 0 });
      });
    }
  }
  h = mid(g, w, cfg, `${E}.mid`, "encoder.mid", h);
  let output = g.scope("encoder.out", () => {
    const n = groupNorm(g, w, `${E}.norm_out`, h, { eps: EPS, silu: true });
    return conv2d(g, w, `${E}.conv_out`, n, 2 * cfg.zChannels, 3);
  });
  if (cfg.hasQuantConv) {
    output = g.scope("quant_conv", () => conv2d(g, w, `${P}quant_conv`, output, 2 * cfg.zChannels, 1));
  }
  const name = opts.outputName === undefined ? "moments" : opts.outputName;
  if (name !== null) g.output(name, output);
  return { output };
}

/** Zero-pads one row at the bottom and one column at the right (ldm Downsample's F.pad(x, (0, 1, 0, 1))). */
function padRightBottom(g: Graph, x: Tensor): Tensor {
  const [n, c, h, wd] = x.shape;
  const zeros = (shape: number[]) => {
    const name = `zeros[${shape.join("x")}]`;
    const id = g.constants.get(name);
    return id !== undefined ? g.tensor(id) : g.constant(name, shape, "f32", {
      kind: "data",
      data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
    });
  };
  const rows = g.concat([x, zeros([n, c, 1, wd])], 2);
  return g.concat([rows, zeros([n, c, h + 1, 1])], 3);
}

function mid(g: Graph, w: WeightLookup, cfg: VaeConfig, p: string, label: string, h: Tensor): Tensor {
  const c = h.shape[1];
  h = g.scope(`${label}.block_1`, () => resnet(g, w, `${p}.block_1`, h, c));
  h = g.scope(`${label}.attn_1`, () => attnBlock(g, w, cfg, `${p}.attn_1`, h));
  return g.scope(`${label}.block_2`, () => resnet(g, w, `${p}.block_2`, h, c));
}

/** ldm ResnetBlock (no timestep embedding). */
export function resnet(g: Graph, w: WeightLookup, p: string, x: Tensor, out: number): Tensor {
  const cin = x.shape[1];
  let h = groupNorm(g, w, `${p}.norm1`, x, { eps: EPS, silu: true });
  h = conv2d(g, w, `${p}.conv1`, h, out, 3);
  h = groupNorm(g, w, `${p}.norm2`, h, { eps: EPS, silu: true });
  h = conv2d(g, w, `${p}.conv2`, h, out, 3);
  const skip = cin === out ? x : conv2d(g, w, `${p}.nin_shortcut`, x, out, 1);
  return g.add(skip, h);
}

/** ldm AttnBlock: single-head self-attention over all positions. */
function attnBlock(g: Graph, w: WeightLookup, cfg: VaeConfig, p: string, x: Tensor): Tensor {
  const [, c, hh, ww] = x.shape;
  const t = toTokens(g, groupNorm(g, w, `${p}.norm`, x, { eps: EPS }));
  const conv = cfg.attnAsConv;
  const q = linearOrConv1x1(g, w, `${p}.q`, t, c, conv);
  const k = linearOrConv1x1(g, w, `${p}.k`, t, c, conv);
  const v = linearOrConv1x1(g, w, `${p}.v`, t, c, conv);
  const a = g.attention(q, k, v, { heads: 1 });
  const o = linearOrConv1x1(g, w, `${p}.proj_out`, a, c, conv);
  return g.add(x, fromTokens(g, o, hh, ww));
}

/**
 * Posterior sample as stable-diffusion.cpp's img2img does it, times the
 * scaling factor: latent = (mean + exp(0.5 * clamp(logvar, -30, 20)) * noise) * scale.
 * moments: [B, 2z, h, w]; noise: B*z*h*w standard normal values (the caller's RNG).
 * Pass noise = null for the posterior mean (deterministic encoding).
 */
export function sampleLatent(
  moments: Float32Array,
  shape: readonly number[],
  noise: Float32Array | null,
  scalingFactor: number,
): { data: Float32Array; shape: number[] } {
  const [b, c2, h, wd] = shape;
  const z = c2 / 2;
  const plane = h * wd;
  if (moments.length !== b * c2 * plane || (noise && noise.length !== b * z * plane)) {
    throw new ArchError(`sampleLatent: moments/noise sizes do not match [${shape.join(", ")}]`);
  }
  const out = new Float32Array(b * z * plane);
  for (let n = 0; n < b; n++) {
    for (let c = 0; c < z; c++) {
      const mo = (n * c2 + c) * plane;
      const lo = (n * c2 + z + c) * plane;
      const oo = (n * z + c) * plane;
      for (let i = 0; i < plane; i++) {
        let v = moments[mo + i];
        if (noise) {
          const lv = Math.max(-30, Math.min(20, moments[lo + i]));
          v += Math.exp(0.5 * lv) * noise[oo + i];
        }
        out[oo + i] = v * scalingFactor;
      }
    }
  }
  return { data: out, shape: [b, z, h, wd] };
}

/**
 * Decoder output [B, 3, H, W] in [-1, 1] to 8-bit RGB images the way
 * stable-diffusion.cpp does: (x + 1) / 2 clamped to [0, 1], times 255, rounded
 * (`value * 255.0f + 0.5f`, truncated: its `preprocessing_float_to_u8`).
 */
export function toImages(data: Float32Array, shape: readonly number[]): Image[] {
  const [b, c, h, wd] = shape;
  if (c !== 3 || data.length !== b * c * h * wd) throw new ArchError(`toImages: expected [B, 3, H, W], got [${shape}]`);
  const plane = h * wd;
  const images: Image[] = [];
  for (let n = 0; n < b; n++) {
    const px = new Uint8Array(plane * 3);
    for (let k = 0; k < 3; k++) {
      const base = (n * 3 + k) * plane;
      for (let i = 0; i < plane; i++) {
        // float32 arithmetic, as sd.cpp: clamp((x + 1) * 0.5, 0, 1) * 255 + 0.5, truncated.
        const v = Math.min(1, Math.max(0, Math.fround(Math.fround(data[base + i] + 1) * 0.5)));
        px[i * 3 + k] = v <= 0 ? 0 : v >= 1 ? 255 : Math.trunc(Math.fround(Math.fround(v * 255) + 0.5));
      }
    }
    images.push({ width: wd, height: h, channels: 3, data: px });
  }
  return images;
}

/** 8-bit RGB(A) images to the encoder's input [B, 3, H, W] in [-1, 1] (x / 255 * 2 - 1). */
export function fromImages(images: readonly Image[]): { data: Float32Array; shape: number[] } {
  if (images.length === 0) throw new ArchError("fromImages: no images");
  const { width: wd, height: h } = images[0];
  const plane = h * wd;
  const out = new Float32Array(images.length * 3 * plane);
  images.forEach((im, n) => {
    if (im.width !== wd || im.height !== h) throw new ArchError("fromImages: images differ in size");
    for (let i = 0; i < plane; i++) {
      for (let k = 0; k < 3; k++) out[(n * 3 + k) * plane + i] = (im.data[i * im.channels + k] / 255) * 2 - 1;
    }
  });
  return { data: out, shape: [images.length, 3, h, wd] };
}
