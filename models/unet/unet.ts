/**
 * The ldm UNetModel (openaimodel.py) as a tensor graph: SD 1.x, SD 2.x and the
 * SDXL variant (label_emb, transformer depth > 1, levels without attention),
 * all driven by a {@link UnetConfig} read from the checkpoint.
 *
 * Semantics (as ldm / sgm, and stable-diffusion.cpp's unet.hpp):
 * - time embedding: sinusoidal(t, model_channels) with [cos | sin] halves,
 *   Linear -> SiLU -> Linear; SDXL adds label_emb(y) (Linear -> SiLU -> Linear);
 * - ResBlock: GroupNorm32 (eps 1e-5) + SiLU, conv3x3, + Linear(SiLU(emb)) per
 *   channel, GroupNorm32 + SiLU, conv3x3, + skip (1x1 conv when channels change);
 * - SpatialTransformer: GroupNorm (eps 1e-6), proj_in (1x1 conv or Linear: the
 *   same map on tokens), BasicTransformerBlocks (LN -> self-attn, LN -> cross-attn
 *   on the context, LN -> GEGLU feed-forward, each residual; LN eps 1e-5,
 *   softmax scale 1/sqrt(head_dim)), proj_out, + input;
 * - Downsample: conv3x3 stride 2 padding 1; Upsample: nearest 2x, conv3x3;
 * - output blocks concatenate the matching input block's output along channels;
 * - out: GroupNorm32 + SiLU, conv3x3.
 *
 * Graph inputs (names fixed): "x" [B, inChannels, h, w] f32, "timesteps" [B]
 * f32, "context" [B, tokens, contextDim] f32, and "y" [B, admInChannels] f32
 * for SDXL. Conditional and unconditional passes are simply batch entries.
 * Output: the returned tensor (registered as graph output "out" unless told
 * otherwise), [B, outChannels, h, w]: eps or v as the model predicts.
 */

import type { Graph, Tensor } from "../../engine/graph.ts";
import { ArchError, type UnetConfig, unetHeads } from "../arch.ts";
import {
  conv2d,
  fromTokens,
  groupNorm,
  layerNorm,
  linear,
  linearOrConv1x1,
  toTokens,
  type WeightLookup,
} from "../nn.ts";

export interface UnetBuildOptions {
  /** Batch (2N when the conditional and unconditional passes are batched). */
  batch: number;
  /** Latent height and width (image size / 8). */
  height: number;
  width: number;
  /** Context tokens (77 per prompt chunk; sd.cpp concatenates chunks: 154, 231, ...). */
  contextTokens: number;
  /** Graph output name; null registers none. Default "out". */
  outputName?: string | null;
  /**
   * ControlNet residuals, as ldm's ControlledUnetModel: `skips[i]` is added to the
   * i-th input block's output before the output side concatenates it (one per
   * input block, conv_in included), `middle` to the middle block's output.
   */
  control?: { skips: readonly Tensor[]; middle: Tensor };
}

export interface UnetGraph {
  readonly output: Tensor;
  readonly inputs: { readonly x: Tensor; readonly timesteps: Tensor; readonly context: Tensor; readonly y?: Tensor };
}

const GN_EPS = 1e-5;
const ST_GN_EPS = 1e-6;

/** Builds the UNet into `g`. Weights come from `w` by their ldm names under `cfg.prefix`. */
export function buildUnet(g: Graph, w: WeightLookup, cfg: UnetConfig, opts: UnetBuildOptions): UnetGraph {
  const { batch: B, height: H, width: W } = opts;
  const levels = cfg.channelMult.length;
  const P = cfg.prefix;
  const x = g.input("x", [B, cfg.inChannels, H, W]);
  const timesteps = g.input("timesteps", [B]);
  const context = g.input("context", [B, opts.contextTokens, cfg.contextDim]);
  const y = cfg.admInChannels ? g.input("y", [B, cfg.admInChannels]) : undefined;

  const E = cfg.timeEmbedDim;
  const mc = cfg.modelChannels;
  let emb = g.scope("time_embed", () => {
    const t = g.timestepEmbedding(timesteps, mc, { flipSinToCos: true });
    return linear(g, w, `${P}time_embed.2`, g.silu(linear(g, w, `${P}time_embed.0`, t, E)), E);
  });
  if (y) {
    emb = g.scope("label_emb", () => {
      const l = linear(g, w, `${P}label_emb.0.2`, g.silu(linear(g, w, `${P}label_emb.0.0`, y, E)), E);
      return g.add(emb, l);
    });
  }
  // Every ResBlock's emb_layers start with SiLU of the same embedding: compute it once.
  const embSilu = g.silu(emb);

  const ctl = opts.control;
  if (ctl && ctl.skips.length !== 1 + levels * cfg.numResBlocks + (levels - 1)) {
    throw new ArchError(`UNet control: ${ctl.skips.length} skip residuals for a UNet with a different block count`);
  }

  // ---- input blocks
  const skips: Tensor[] = [];
  let h = g.scope("input_blocks.0.0", () => conv2d(g, w, `${P}input_blocks.0.0`, x, mc, 3));
  skips.push(h);
  let idx = 1;
  for (let lvl = 0; lvl < levels; lvl++) {
    const out = mc * cfg.channelMult[lvl];
    for (let r = 0; r < cfg.numResBlocks; r++) {
      const b = `input_blocks.${idx}`;
      h = g.scope(`${b}.0`, () => resBlock(g, w, `${P}${b}.0`, h, embSilu, out));
      const depth = cfg.transformerDepth[lvl];
      if (depth > 0) h = g.scope(`${b}.1`, () => spatialTransformer(g, w, cfg, `${P}${b}.1`, h, context, depth));
      skips.push(h);
      idx++;
    }
    if (lvl !== levels - 1) {
      const b = `input_blocks.${idx}.0`;
      h = g.scope(b, () => conv2d(g, w, `${P}${b}.op`, h, h.shape[1], 3, { stride: 2, padding: 1 }));
      skips.push(h);
      idx++;
    }
  }

  // ---- middle block
  const ch = h.shape[1];
  h = g.scope("middle_block.0", () => resBlock(g, w, `${P}middle_block.0`, h, embSilu, ch));
  if (cfg.transformerDepthMiddle > 0) {
    h = g.scope(
      "middle_block.1",
      () => spatialTransformer(g, w, cfg, `${P}middle_block.1`, h, context, cfg.transformerDepthMiddle),
    );
  }
  const midLast = cfg.transformerDepthMiddle > 0 ? 2 : 1;
  h = g.scope(`middle_block.${midLast}`, () => resBlock(g, w, `${P}middle_block.${midLast}`, h, embSilu, ch));
  if (ctl) h = g.add(h, ctl.middle);

  // ---- output blocks
  const ctlSkips = ctl ? ctl.skips.slice() : undefined;
  idx = 0;
  for (let lvl = levels - 1; lvl >= 0; lvl--) {
    const out = mc * cfg.channelMult[lvl];
    for (let i = 0; i <= cfg.numResBlocks; i++) {
      const b = `output_blocks.${idx}`;
      let skip = skips.pop()!;
      if (ctlSkips) skip = g.add(skip, ctlSkips.pop()!);
      h = g.concat([h, skip], 1);
      h = g.scope(`${b}.0`, () => resBlock(g, w, `${P}${b}.0`, h, embSilu, out));
      let sub = 1;
      const depth = cfg.transformerDepthOutput[idx];
      if (depth > 0) {
        h = g.scope(`${b}.1`, () => spatialTransformer(g, w, cfg, `${P}${b}.1`, h, context, depth));
        sub = 2;
      }
      if (lvl !== 0 && i === cfg.numResBlocks) {
        // Odd sizes: the stride-2 convs rounded up on the way down, so crop the 2x upsample to the next
        // skip's size (the same as diffusers' nearest interpolation to that size).
        const target = skips[skips.length - 1].shape;
        h = g.scope(`${b}.${sub}`, () => {
          let u = g.upsampleNearest(h, 2);
          if (u.shape[2] !== target[2]) u = g.slice(u, 2, 0, target[2]);
          if (u.shape[3] !== target[3]) u = g.slice(u, 3, 0, target[3]);
          return conv2d(g, w, `${P}${b}.${sub}.conv`, u, out, 3);
        });
      }
      idx++;
    }
  }

  // ---- out
  const output = g.scope("out", () => {
    const n = groupNorm(g, w, `${P}out.0`, h, { eps: GN_EPS, silu: true });
    return conv2d(g, w, `${P}out.2`, n, cfg.outChannels, 3);
  });
  const name = opts.outputName === undefined ? "out" : opts.outputName;
  if (name !== null) g.output(name, output);
  return { output, inputs: { x, timesteps, context, y } };
}

/** ldm ResBlock (no up/down sampling, no scale-shift norm). `embSilu` is SiLU(emb) [B, E]. */
export function resBlock(g: Graph, w: WeightLookup, p: string, x: Tensor, embSilu: Tensor, out: number): Tensor {
  const [b, cin] = x.shape;
  let h = groupNorm(g, w, `${p}.in_layers.0`, x, { eps: GN_EPS, silu: true });
  h = conv2d(g, w, `${p}.in_layers.2`, h, out, 3);
  const e = linear(g, w, `${p}.emb_layers.1`, embSilu, out);
  h = g.add(h, g.reshape(e, [b, out, 1, 1]));
  h = groupNorm(g, w, `${p}.out_layers.0`, h, { eps: GN_EPS, silu: true });
  h = conv2d(g, w, `${p}.out_layers.3`, h, out, 3);
  const skip = cin === out ? x : conv2d(g, w, `${p}.skip_connection`, x, out, 1);
  return g.add(skip, h);
}

/** ldm SpatialTransformer with `depth` BasicTransformerBlocks. x: [B, C, H, W]; context: [B, T, D]. */
export function spatialTransformer(
  g: Graph,
  w: WeightLookup,
  cfg: UnetConfig,
  p: string,
  x: Tensor,
  context: Tensor,
  depth: number,
): Tensor {
  const [, c, hh, ww] = x.shape;
  const heads = unetHeads(cfg, c);
  const conv = !cfg.useLinearInTransformer;
  let t = toTokens(g, groupNorm(g, w, `${p}.norm`, x, { eps: ST_GN_EPS }));
  t = g.scope("proj_in", () => linearOrConv1x1(g, w, `${p}.proj_in`, t, c, conv));
  for (let d = 0; d < depth; d++) {
    t = g.scope(
      `transformer_blocks.${d}`,
      () => transformerBlock(g, w, `${p}.transformer_blocks.${d}`, t, context, heads),
    );
  }
  t = g.scope("proj_out", () => linearOrConv1x1(g, w, `${p}.proj_out`, t, c, conv));
  return g.add(fromTokens(g, t, hh, ww), x);
}

/** ldm BasicTransformerBlock on tokens x [B, N, C]. */
export function transformerBlock(
  g: Graph,
  w: WeightLookup,
  p: string,
  x: Tensor,
  context: Tensor,
  heads: number,
): Tensor {
  const c = x.shape[2];
  x = g.scope(
    "attn1",
    () => g.add(attention(g, w, `${p}.attn1`, layerNorm(g, w, `${p}.norm1`, x), undefined, heads), x),
  );
  x = g.scope("attn2", () => g.add(attention(g, w, `${p}.attn2`, layerNorm(g, w, `${p}.norm2`, x), context, heads), x));
  return g.scope("ff", () => {
    const n = layerNorm(g, w, `${p}.norm3`, x);
    const inner = 4 * c;
    const hdn = g.geglu(linear(g, w, `${p}.ff.net.0.proj`, n, 2 * inner));
    return g.add(linear(g, w, `${p}.ff.net.2`, hdn, c, { inF: inner }), x);
  });
}

/** ldm CrossAttention: self-attention when `context` is undefined. */
function attention(
  g: Graph,
  w: WeightLookup,
  p: string,
  x: Tensor,
  context: Tensor | undefined,
  heads: number,
): Tensor {
  const c = x.shape[2];
  const kv = context ?? x;
  const q = linear(g, w, `${p}.to_q`, x, c, { bias: false });
  const k = linear(g, w, `${p}.to_k`, kv, c, { bias: false });
  const v = linear(g, w, `${p}.to_v`, kv, c, { bias: false });
  const a = g.attention(q, k, v, { heads });
  return linear(g, w, `${p}.to_out.0`, a, c);
}
