/**
 * ESRGAN's RRDBNet (BasicSR `rrdbnet_arch.py`; Real-ESRGAN's x4plus, x4plus_anime_6B and x2plus) as a
 * tensor graph, and its configuration read from the weights.
 *
 * Semantics (BasicSR, and stable-diffusion.cpp's esrgan.hpp):
 * - ResidualDenseBlock: x_k = lrelu_0.2(conv_k(cat(x, x_1..x_{k-1}))) for k = 1..4,
 *   x_5 = conv5(cat(x, x_1..x_4)), out = 0.2 * x_5 + x;
 * - RRDB: three of those, then out = 0.2 * out + x;
 * - net: feat = conv_first(x); feat += conv_body(body(feat)); for each x2 of the scale:
 *   feat = lrelu(conv_upN(nearest x2(feat))); out = conv_last(lrelu(conv_hr(feat))).
 *   Every conv is 3x3, padding 1. The output is not clamped.
 * - Real-ESRGAN x2plus (and x1) run the x4 network on a pixel-unshuffled input
 *   (conv_first takes 3 * r^2 channels): the scale is then 4 / r.
 *
 * Names: BasicSR's (`conv_first`, `body.N.rdbK.convM`, `conv_body`, `conv_up1`, ...). The old
 * ESRGAN layout (`model.0`, `model.1.sub.N.RDBk.convm.0`, `model.1.sub.<last>`, `model.3/6/8/10`...)
 * is renamed as stable-diffusion.cpp's `convert_esrgan_tensor_name` does.
 */

import type { Graph, Tensor } from "../../engine/graph.ts";
import { conv2d, type WeightLookup } from "../nn.ts";

/** The weights are not an RRDBNet (or not one sdflow can run). */
export class EsrganError extends Error {
  override name = "EsrganError";
}

export interface EsrganConfig {
  /** RRDB blocks in the trunk (23 for x4plus, 6 for x4plus_anime_6B). */
  readonly numBlock: number;
  readonly numFeat: number;
  readonly numGrow: number;
  readonly inChannels: number;
  readonly outChannels: number;
  /** x2 upsampling stages of the network (0, 1 or 2). */
  readonly upStages: number;
  /** Pixel-unshuffle factor applied to the input first (1: none; 2 for Real-ESRGAN x2plus). */
  readonly unshuffle: number;
  /** Output size / input size: 2^upStages / unshuffle. */
  readonly scale: number;
}

/** What the config detection needs of a tensor. */
export interface NamedShape {
  readonly name: string;
  readonly shape: readonly number[];
}

/** Old ESRGAN (`model.N`) names to BasicSR names, as stable-diffusion.cpp maps them. */
export function esrganName(name: string): string {
  const m = /^model\.(\d+)\.(.*)$/.exec(name);
  if (!m) return name;
  const [, idx, rest] = m;
  if (idx === "0") return `conv_first.${rest}`;
  if (idx === "1") {
    const rdb = /^sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(.*)$/.exec(rest);
    if (rdb) return `body.${rdb[1]}.rdb${rdb[2]}.conv${rdb[3]}.${rdb[4]}`;
    const body = /^sub\.\d+\.(weight|bias)$/.exec(rest);
    if (body) return `conv_body.${body[1]}`;
    return name;
  }
  // The learned layers of the tail Sequential, for the x1, x2 and x4 layouts.
  const tail: Record<string, string> = {
    "2": "conv_hr",
    "3": "conv_up1",
    "4": "conv_last",
    "5": "conv_hr",
    "6": "conv_up2",
    "7": "conv_last",
    "8": "conv_hr",
    "10": "conv_last",
  };
  return tail[idx] ? `${tail[idx]}.${rest}` : name;
}

/**
 * Reads an RRDBNet's configuration from its (BasicSR-named) tensors: blocks from the highest `body.N`,
 * widths from conv shapes, the upsampling stages from `conv_up1` / `conv_up2`, the unshuffle factor
 * from conv_first's input channels.
 */
export function detectEsrgan(tensors: Iterable<NamedShape>): EsrganConfig {
  const byName = new Map<string, readonly number[]>();
  let numBlock = 0;
  for (const t of tensors) {
    byName.set(t.name, t.shape);
    const m = /^body\.(\d+)\./.exec(t.name);
    if (m) numBlock = Math.max(numBlock, Number(m[1]) + 1);
  }
  const first = byName.get("conv_first.weight");
  const last = byName.get("conv_last.weight");
  if (!first || !last || numBlock === 0) {
    const missing = [!first && "conv_first", !last && "conv_last", numBlock === 0 && "body.N (RRDB blocks)"]
      .filter(Boolean).join(", ");
    throw new EsrganError(`not an ESRGAN (RRDBNet) model: no ${missing} tensors`);
  }
  const conv1 = byName.get("body.0.rdb1.conv1.weight");
  if (first.length !== 4 || last.length !== 4 || !conv1 || conv1.length !== 4) {
    throw new EsrganError("not an ESRGAN (RRDBNet) model: conv_first, conv_last or body.0.rdb1.conv1 is not a conv");
  }
  const [numFeat, inChannels] = first;
  const outChannels = last[0];
  const numGrow = conv1[0];
  const upStages = byName.has("conv_up2.weight") ? 2 : byName.has("conv_up1.weight") ? 1 : 0;
  const unshuffle = Math.round(Math.sqrt(inChannels / outChannels));
  if (unshuffle < 1 || unshuffle * unshuffle * outChannels !== inChannels || (1 << upStages) % unshuffle !== 0) {
    throw new EsrganError(
      `unsupported ESRGAN layout: conv_first takes ${inChannels} channels for ${outChannels} output channels ` +
        `and ${upStages} x2 stages`,
    );
  }
  return {
    numBlock,
    numFeat,
    numGrow,
    inChannels,
    outChannels,
    upStages,
    unshuffle,
    scale: (1 << upStages) / unshuffle,
  };
}

export interface EsrganBuildOptions {
  /** Input image size (a multiple of the unshuffle factor). */
  height: number;
  width: number;
}

/** Input "image" [1, 3, H, W] in [0, 1] -> output "image" [1, 3, H * scale, W * scale]. */
export function buildEsrgan(g: Graph, w: WeightLookup, cfg: EsrganConfig, opts: EsrganBuildOptions): Tensor {
  const r = cfg.unshuffle;
  if (opts.height % r !== 0 || opts.width % r !== 0) {
    throw new EsrganError(`this ESRGAN model needs image sizes that are multiples of ${r}`);
  }
  const image = g.input("image", [1, cfg.outChannels, opts.height, opts.width]);
  const x = r === 1 ? image : pixelUnshuffle(g, image, r);
  const lrelu = (t: Tensor) => g.unary("leaky_relu", t);
  const feat = g.scope("conv_first", () => conv2d(g, w, "conv_first", x, cfg.numFeat, 3));
  let body = feat;
  for (let i = 0; i < cfg.numBlock; i++) body = g.scope(`body.${i}`, () => rrdb(g, w, `body.${i}`, body, cfg));
  let h = g.scope("conv_body", () => g.add(feat, conv2d(g, w, "conv_body", body, cfg.numFeat, 3)));
  for (let s = 1; s <= cfg.upStages; s++) {
    h = g.scope(`conv_up${s}`, () => lrelu(conv2d(g, w, `conv_up${s}`, g.upsampleNearest(h, 2), cfg.numFeat, 3)));
  }
  const out = g.scope("conv_last", () => {
    const hr = lrelu(conv2d(g, w, "conv_hr", h, cfg.numFeat, 3));
    return conv2d(g, w, "conv_last", hr, cfg.outChannels, 3);
  });
  g.output("image", out);
  return out;
}

function rrdb(g: Graph, w: WeightLookup, p: string, x: Tensor, cfg: EsrganConfig): Tensor {
  let h = x;
  for (let k = 1; k <= 3; k++) h = residualDenseBlock(g, w, `${p}.rdb${k}`, h, cfg);
  return g.add(g.scale(h, 0.2), x);
}

function residualDenseBlock(g: Graph, w: WeightLookup, p: string, x: Tensor, cfg: EsrganConfig): Tensor {
  let cat = x;
  for (let k = 1; k <= 4; k++) {
    const xk = g.unary("leaky_relu", conv2d(g, w, `${p}.conv${k}`, cat, cfg.numGrow, 3));
    cat = g.concat([cat, xk], 1);
  }
  const x5 = conv2d(g, w, `${p}.conv5`, cat, cfg.numFeat, 3);
  return g.add(g.scale(x5, 0.2), x);
}

/** torch.nn.functional.pixel_unshuffle: [1, C, H, W] -> [1, C r^2, H/r, W/r] (channel c*r^2 + i*r + j). */
export function pixelUnshuffle(g: Graph, x: Tensor, r: number): Tensor {
  const [n, c, h, wd] = x.shape;
  const split = g.reshape(x, [n, c, h / r, r, wd / r, r]);
  const moved = g.permute(split, [0, 1, 3, 5, 2, 4]);
  return g.reshape(moved, [n, c * r * r, h / r, wd / r]);
}
