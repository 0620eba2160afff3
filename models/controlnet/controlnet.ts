/**
 * The ControlNet network (lllyasviel's cldm ControlNet, as stable-diffusion.cpp's
 * `ControlNetBlock`) as tensor graphs: a copy of the UNet's encoder and middle
 * block that also reads a hint image, and emits one residual per UNet skip
 * connection plus one for the middle block (13 for SD 1.x/2.x).
 *
 * Two graphs, because the hint part depends on the hint image only and is
 * computed once per run (sd.cpp caches it the same way):
 * - hint: `input_hint_block`: conv 3->16, SiLU, conv 16->16, SiLU, conv 16->32 s2,
 *   SiLU, conv 32->32, SiLU, conv 32->96 s2, SiLU, conv 96->96, SiLU, conv 96->256
 *   s2, SiLU, conv 256->model_channels (all 3x3, padding 1; no activation at the
 *   end). Input "hint" [1, 3, H, W] f32 in [0, 1]; output "guided_hint"
 *   [1, model_channels, H/8, W/8].
 * - control: time embedding as the UNet's (SDXL: + label_emb(y)); h = input_blocks.0.0(x) + guided_hint;
 *   output k = zero_convs.k.0(h) after input block k (ResBlock [+ SpatialTransformer]
 *   or downsample); after the middle block, middle_block_out.0(h). Inputs "x",
 *   "timesteps", "context" as the UNet's and "guided_hint" (batch 1, broadcast
 *   over the batch), for SDXL "y" [B, admInChannels] as the UNet's; outputs "control_0" .. "control_12"
 *   (SD 1.x/2.x; 10 for SDXL's three levels).
 *
 * Weight names are the UNet's without its prefix (`input_blocks.1.0.in_layers.0.weight`),
 * plus `input_hint_block.{0,2,..,14}`, `zero_convs.{k}.0`, `middle_block_out.0`; the
 * caller's {@link WeightLookup} strips a file's `control_model.` prefix.
 */

import type { Graph, Tensor } from "../../engine/graph.ts";
import type { UnetConfig } from "../arch.ts";
import { conv2d, linear, type WeightLookup } from "../nn.ts";
import { resBlock, spatialTransformer } from "../unet/unet.ts";

/** Output channels of input_hint_block's convs 0, 2, .., 12 (cldm); conv 14 outputs model_channels. */
const HINT_CHANNELS = [16, 16, 32, 32, 96, 96, 256] as const;
/** Which of those convs have stride 2. */
const HINT_STRIDE2 = new Set([2, 4, 6]);

/** Residuals a ControlNet for `cfg` produces: one per input block (conv_in included) and the middle block's. */
export function controlCount(cfg: UnetConfig): number {
  const levels = cfg.channelMult.length;
  return 1 + levels * cfg.numResBlocks + (levels - 1) + 1;
}

/** Builds the hint graph into `g`: "hint" [1, 3, height, width] -> output "guided_hint". */
export function buildControlHint(
  g: Graph,
  w: WeightLookup,
  cfg: UnetConfig,
  opts: { height: number; width: number },
): Tensor {
  let h = g.input("hint", [1, 3, opts.height, opts.width]);
  const outs = [...HINT_CHANNELS, cfg.modelChannels];
  outs.forEach((out, i) => {
    if (i > 0) h = g.silu(h);
    h = g.scope(
      `input_hint_block.${2 * i}`,
      () => conv2d(g, w, `input_hint_block.${2 * i}`, h, out, 3, { stride: HINT_STRIDE2.has(i) ? 2 : 1, padding: 1 }),
    );
  });
  g.output("guided_hint", h);
  return h;
}

export interface ControlBuildOptions {
  batch: number;
  /** Latent height and width. */
  height: number;
  width: number;
  contextTokens: number;
}

/** Builds the control graph into `g`; returns the residuals in sd.cpp's order (input blocks, then middle). */
export function buildControlNet(g: Graph, w: WeightLookup, cfg: UnetConfig, opts: ControlBuildOptions): Tensor[] {
  const { batch: B, height: H, width: W } = opts;
  const levels = cfg.channelMult.length;
  const mc = cfg.modelChannels;
  const x = g.input("x", [B, cfg.inChannels, H, W]);
  const timesteps = g.input("timesteps", [B]);
  const context = g.input("context", [B, opts.contextTokens, cfg.contextDim]);
  const hint = g.input("guided_hint", [1, mc, H, W]);
  const y = cfg.admInChannels ? g.input("y", [B, cfg.admInChannels]) : undefined;
  const E = cfg.timeEmbedDim;
  let emb = g.scope("time_embed", () => {
    const t = g.timestepEmbedding(timesteps, mc, { flipSinToCos: true });
    return linear(g, w, "time_embed.2", g.silu(linear(g, w, "time_embed.0", t, E)), E);
  });
  if (y) {
    emb = g.scope(
      "label_emb",
      () => g.add(emb, linear(g, w, "label_emb.0.2", g.silu(linear(g, w, "label_emb.0.0", y, E)), E)),
    );
  }
  const embSilu = g.silu(emb);
  const outs: Tensor[] = [];
  const zeroConv = (name: string, h: Tensor) => g.scope(name, () => conv2d(g, w, name, h, h.shape[1], 1));

  let h = g.scope("input_blocks.0.0", () => conv2d(g, w, "input_blocks.0.0", x, mc, 3));
  h = g.add(h, hint);
  outs.push(zeroConv("zero_convs.0.0", h));
  let idx = 1;
  for (let lvl = 0; lvl < levels; lvl++) {
    const out = mc * cfg.channelMult[lvl];
    for (let r = 0; r < cfg.numResBlocks; r++) {
      const b = `input_blocks.${idx}`;
      h = g.scope(`${b}.0`, () => resBlock(g, w, `${b}.0`, h, embSilu, out));
      const depth = cfg.transformerDepth[lvl];
      if (depth > 0) h = g.scope(`${b}.1`, () => spatialTransformer(g, w, cfg, `${b}.1`, h, context, depth));
      outs.push(zeroConv(`zero_convs.${idx}.0`, h));
      idx++;
    }
    if (lvl !== levels - 1) {
      const b = `input_blocks.${idx}.0`;
      h = g.scope(b, () => conv2d(g, w, `${b}.op`, h, h.shape[1], 3, { stride: 2, padding: 1 }));
      outs.push(zeroConv(`zero_convs.${idx}.0`, h));
      idx++;
    }
  }
  const ch = h.shape[1];
  h = g.scope("middle_block.0", () => resBlock(g, w, "middle_block.0", h, embSilu, ch));
  if (cfg.transformerDepthMiddle > 0) {
    h = g.scope(
      "middle_block.1",
      () => spatialTransformer(g, w, cfg, "middle_block.1", h, context, cfg.transformerDepthMiddle),
    );
  }
  const midLast = cfg.transformerDepthMiddle > 0 ? 2 : 1;
  h = g.scope(`middle_block.${midLast}`, () => resBlock(g, w, `middle_block.${midLast}`, h, embSilu, ch));
  outs.push(zeroConv("middle_block_out.0", h));
  outs.forEach((t, i) => g.output(`control_${i}`, t));
  return outs;
}
