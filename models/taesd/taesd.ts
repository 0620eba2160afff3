/**
 * TAESD, the tiny autoencoder (madebyollin/taesd; diffusers AutoencoderTiny), as tensor graphs.
 *
 * Semantics (diffusers' EncoderTiny / DecoderTiny, and stable-diffusion.cpp's tae.hpp):
 * - Block(n_in, n_out): conv3x3, ReLU, conv3x3, ReLU, conv3x3, plus the skip (identity, or a
 *   1x1 conv without bias when the widths differ), then ReLU;
 * - decoder: z -> tanh(z / 3) * 3, conv (z -> 64), ReLU, three times [3 Blocks, nearest x2,
 *   conv without bias], one Block, conv (64 -> 3). Output: an image in [0, 1] (not clamped);
 * - encoder: conv (3 -> 64), Block, three times [conv stride 2 without bias, 3 Blocks],
 *   conv (64 -> z). Input: an image in [0, 1].
 * - Latents are the diffusion latents as they are: no scaling factor, no shift.
 *
 * Names: diffusers' `decoder.layers.N` / `encoder.layers.N` (what stable-diffusion.cpp reads). The
 * original taesd_decoder / taesd_encoder files (bare `N.conv.0.weight`, the decoder's Sequential
 * starting with its Clamp module, so its first conv is `1`) are renamed by {@link taesdNames}.
 */

import type { Graph, Tensor } from "../../engine/graph.ts";
import { conv2d, type WeightLookup } from "../nn.ts";

/** A TAESD file that cannot be used for what was asked. */
export class TaesdError extends Error {
  override name = "TaesdError";
}

export interface TaesdConfig {
  /** Latent channels (4 for SD 1.x / 2.x / SDXL). */
  readonly zChannels: number;
  /** Width of every block (64). */
  readonly channels: number;
  readonly hasDecoder: boolean;
  readonly hasEncoder: boolean;
}

/** What the detection needs of a tensor. */
export interface NamedShape {
  readonly name: string;
  readonly shape: readonly number[];
}

/** Decoder layer indices of diffusers' DecoderTiny: conv at 0, ReLU 1, blocks and upsample convs. */
const DECODER_LAST = 18;
/** Encoder layer indices of diffusers' EncoderTiny: 0 conv ... 14 conv. */
const ENCODER_LAST = 14;

/**
 * Maps a file's names to diffusers' (`decoder.layers.N.*`, `encoder.layers.N.*`): a bare decoder
 * file (first conv `1.weight` taking z channels) shifts indices down by one; a bare encoder file
 * (`0.weight` taking 3 channels) gets the `encoder.layers.` prefix. Returns diffusers name -> file name.
 */
export function taesdNames(tensors: Iterable<NamedShape>): Map<string, string> {
  const list = [...tensors];
  const out = new Map<string, string>();
  const bare = list.filter((t) => /^\d+\./.test(t.name));
  if (bare.length === 0) {
    for (const t of list) out.set(t.name, t.name);
    return out;
  }
  const shapeOf = (n: string) => list.find((t) => t.name === n)?.shape;
  const first0 = shapeOf("0.weight");
  const first1 = shapeOf("1.weight");
  const bareDecoder = !first0 && first1?.length === 4 && first1[1] !== 3;
  for (const t of list) {
    const m = /^(\d+)\.(.*)$/.exec(t.name);
    if (!m) {
      out.set(t.name, t.name);
      continue;
    }
    const idx = Number(m[1]);
    out.set(bareDecoder ? `decoder.layers.${idx - 1}.${m[2]}` : `encoder.layers.${idx}.${m[2]}`, t.name);
  }
  return out;
}

/** Reads z channels and which halves are present from diffusers-named tensors. */
export function detectTaesd(tensors: Iterable<NamedShape>): TaesdConfig {
  const byName = new Map<string, readonly number[]>();
  for (const t of tensors) byName.set(t.name, t.shape);
  const dec0 = byName.get("decoder.layers.0.weight");
  const decLast = byName.get(`decoder.layers.${DECODER_LAST}.weight`);
  const enc0 = byName.get("encoder.layers.0.weight");
  const encLast = byName.get(`encoder.layers.${ENCODER_LAST}.weight`);
  const hasDecoder = !!dec0 && !!decLast;
  const hasEncoder = !!enc0 && !!encLast;
  if (!hasDecoder && !hasEncoder) {
    throw new TaesdError(
      "not a TAESD model: no decoder.layers.0/18 or encoder.layers.0/14 tensors (diffusers AutoencoderTiny names)",
    );
  }
  const zChannels = hasDecoder ? dec0![1] : encLast![0];
  const channels = hasDecoder ? dec0![0] : enc0![0];
  if (hasDecoder && hasEncoder && encLast![0] !== zChannels) {
    throw new TaesdError(`TAESD encoder makes ${encLast![0]} latent channels but the decoder takes ${zChannels}`);
  }
  return { zChannels, channels, hasDecoder, hasEncoder };
}

export interface TaesdBuildOptions {
  batch: number;
  /** Latent size for the decoder, image size for the encoder. */
  height: number;
  width: number;
}

/** Decoder: input "latent" [B, z, h, w] (diffusion latents) -> output "image" [B, 3, 8h, 8w] in [0, 1]. */
export function buildTaesdDecoder(g: Graph, w: WeightLookup, cfg: TaesdConfig, opts: TaesdBuildOptions): Tensor {
  if (!cfg.hasDecoder) throw new TaesdError("this TAESD file has no decoder (decoder.layers.*): it can only encode");
  const c = cfg.channels;
  const P = "decoder.layers";
  const latent = g.input("latent", [opts.batch, cfg.zChannels, opts.height, opts.width]);
  let h = g.scope("decoder.clamp", () => g.scale(g.unary("tanh", g.scale(latent, 1 / 3)), 3));
  h = g.scope("decoder.conv_in", () => g.unary("relu", conv2d(g, w, `${P}.0`, h, c, 3)));
  let idx = 2;
  for (let up = 0; up < 3; up++) {
    for (let b = 0; b < 3; b++, idx++) h = g.scope(`decoder.${idx}`, () => block(g, w, `${P}.${idx}`, h, c));
    idx++; // nn.Upsample
    h = g.scope(`decoder.${idx}`, () => convNoBias(g, w, `${P}.${idx}`, g.upsampleNearest(h, 2), c, 1));
    idx++;
  }
  h = g.scope(`decoder.${idx}`, () => block(g, w, `${P}.${idx}`, h, c));
  idx++;
  const out = g.scope(`decoder.${idx}`, () => conv2d(g, w, `${P}.${idx}`, h, 3, 3));
  g.output("image", out);
  return out;
}

/** Encoder: input "image" [B, 3, H, W] in [0, 1] -> output "latent" [B, z, H/8, W/8]. */
export function buildTaesdEncoder(g: Graph, w: WeightLookup, cfg: TaesdConfig, opts: TaesdBuildOptions): Tensor {
  if (!cfg.hasEncoder) throw new TaesdError("this TAESD file has no encoder (encoder.layers.*): it can only decode");
  if (opts.height % 8 || opts.width % 8) {
    throw new TaesdError(`TAESD encoder: image ${opts.width}x${opts.height} must be a multiple of 8`);
  }
  const c = cfg.channels;
  const P = "encoder.layers";
  const image = g.input("image", [opts.batch, 3, opts.height, opts.width]);
  let h = g.scope("encoder.0", () => conv2d(g, w, `${P}.0`, image, c, 3));
  h = g.scope("encoder.1", () => block(g, w, `${P}.1`, h, c));
  let idx = 2;
  for (let down = 0; down < 3; down++) {
    h = g.scope(`encoder.${idx}`, () => convNoBias(g, w, `${P}.${idx}`, h, c, 2));
    idx++;
    for (let b = 0; b < 3; b++, idx++) h = g.scope(`encoder.${idx}`, () => block(g, w, `${P}.${idx}`, h, c));
  }
  const out = g.scope(`encoder.${idx}`, () => conv2d(g, w, `${P}.${idx}`, h, cfg.zChannels, 3));
  g.output("latent", out);
  return out;
}

/** A 3x3 conv without bias (the upsample and downsample convs), padding 1. */
function convNoBias(g: Graph, w: WeightLookup, p: string, x: Tensor, out: number, stride: number): Tensor {
  const wt = w(`${p}.weight`, [out, x.shape[1], 3, 3]);
  return g.conv2d(x, wt, undefined, { stride, padding: 1 });
}

function block(g: Graph, w: WeightLookup, p: string, x: Tensor, out: number): Tensor {
  let h = g.unary("relu", conv2d(g, w, `${p}.conv.0`, x, out, 3));
  h = g.unary("relu", conv2d(g, w, `${p}.conv.2`, h, out, 3));
  h = conv2d(g, w, `${p}.conv.4`, h, out, 3);
  const skip = x.shape[1] === out ? x : g.conv2d(x, w(`${p}.skip.weight`, [out, x.shape[1], 1, 1]));
  return g.unary("relu", g.add(h, skip));
}
