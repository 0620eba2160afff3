/**
 * A ControlNet's configuration, read from its weights and checked against the UNet it controls.
 *
 * The residuals are added to the UNet's skip connections, so the encoder's shape must be the
 * UNet's: model channels, channel multipliers, res blocks per level, and label_emb (SDXL's y)
 * present or not with the same width. What a ControlNet may choose for itself is read from its
 * weights: the transformer depth of each level and of the middle block (SDXL ControlNets come
 * with the UNet's {0, 2, 10} or with shallower encoders), linear or 1x1-conv projections, the
 * input channels of conv_in. Attention head counts are the model's (weights do not show them).
 */

import type { UnetConfig } from "../arch.ts";

/** A ControlNet file that cannot be used (not a ControlNet, unreadable, made for another model). */
export class ControlNetError extends Error {
  override name = "ControlNetError";
}

const fmt = (s: readonly number[] | undefined): string => (s ? `[${s.join(", ")}]` : "missing");

/**
 * The ControlNet's {@link UnetConfig} (weight names without a prefix: `input_blocks.1.0...`) from
 * `shapes`, for a UNet of configuration `model`. Throws {@link ControlNetError} naming what
 * does not fit.
 */
export function controlNetConfig(
  shapes: ReadonlyMap<string, readonly number[]>,
  model: UnetConfig,
  path: string,
): UnetConfig {
  const fail = (why: string): never => {
    throw new ControlNetError(`ControlNet ${path} does not fit this model: ${why}`);
  };
  const time = shapes.get("time_embed.0.weight");
  const conv0 = shapes.get("input_blocks.0.0.weight");
  if (!time || time.length !== 2 || !conv0 || conv0.length !== 4) {
    return fail(`time_embed.0.weight ${fmt(time)}, input_blocks.0.0.weight ${fmt(conv0)}`);
  }
  const [timeEmbedDim, modelChannels] = time;
  if (modelChannels !== model.modelChannels || timeEmbedDim !== model.timeEmbedDim) {
    fail(
      `${modelChannels} model channels and a ${timeEmbedDim}-wide time embedding, the UNet has ` +
        `${model.modelChannels} and ${model.timeEmbedDim}`,
    );
  }
  const depthOf = (block: string): number => {
    let d = 0;
    while (shapes.has(`${block}.transformer_blocks.${d}.attn1.to_q.weight`)) d++;
    return d;
  };
  // Walk the input blocks as the UNet's: res blocks by level, a downsample closing each level but the last.
  const levels: { out: number; depths: number[] }[] = [{ out: 0, depths: [] }];
  let idx = 1;
  for (;; idx++) {
    const b = `input_blocks.${idx}`;
    if (shapes.has(`${b}.0.op.weight`)) {
      levels.push({ out: 0, depths: [] });
      continue;
    }
    const conv = shapes.get(`${b}.0.in_layers.2.weight`);
    if (!conv) break;
    const lv = levels[levels.length - 1];
    lv.out = conv[0];
    lv.depths.push(depthOf(`${b}.1`));
  }
  const channelMult = levels.map((lv) => lv.out / modelChannels);
  const numResBlocks = levels[0].depths.length;
  if (
    channelMult.join() !== model.channelMult.join() || numResBlocks !== model.numResBlocks ||
    levels.some((lv) => lv.depths.length !== numResBlocks)
  ) {
    fail(
      `its encoder has levels of ${levels.map((lv) => `${lv.depths.length}x${lv.out}`).join(", ")} channels, ` +
        `the UNet's ${model.channelMult.map((m) => `${model.numResBlocks}x${m * model.modelChannels}`).join(", ")}`,
    );
  }
  const transformerDepth = levels.map((lv, l) => {
    if (lv.depths.some((d) => d !== lv.depths[0])) fail(`level ${l} mixes transformer depths ${lv.depths.join(", ")}`);
    return lv.depths[0];
  });
  let useLinear = model.useLinearInTransformer;
  for (const [name, s] of shapes) {
    if (name.endsWith(".attn2.to_k.weight") && s[1] !== model.contextDim) {
      fail(`${name} ${fmt(s)} attends to a ${s[1]}-wide context, the UNet's text context is ${model.contextDim}`);
    }
    if (name.endsWith(".proj_in.weight")) useLinear = s.length === 2;
  }
  const label = shapes.get("label_emb.0.0.weight");
  if ((label?.[1] ?? undefined) !== model.admInChannels) {
    fail(
      label
        ? `label_emb takes a ${label[1]}-wide vector, the UNet ${model.admInChannels ?? "none (not SDXL)"}`
        : `no label_emb, the UNet takes a ${model.admInChannels}-wide vector (SDXL)`,
    );
  }
  return {
    ...model,
    prefix: "",
    inChannels: conv0[1],
    transformerDepth,
    transformerDepthMiddle: depthOf("middle_block.1"),
    transformerDepthOutput: [],
    useLinearInTransformer: useLinear,
  };
}
