/**
 * SDXL's text conditioning from its two encoders, as stable-diffusion.cpp builds it
 * (`FrozenCLIPEmbedderWithCustomWords::get_learned_condition_common`, master-827):
 *
 * - one tokenization (CLIP BPE, padded to 77 with 49407, sd-webui emphasis, 75-token windows);
 * - CLIP ViT-L gets those ids; OpenCLIP bigG gets a copy in which every token after each
 *   window's first EOS is 0;
 * - the context of a window is [CLIP-L hidden (768) | bigG hidden (1280)] = 2048 features per
 *   token, both taken at clip-skip (default 2: the penultimate layer) without the final LayerNorm;
 *   windows are concatenated along the tokens;
 * - token weights then scale the 2048-wide rows and the window is rescaled to its old mean;
 * - the pooled vector is bigG's last layer + final LayerNorm at the first window's first EOS,
 *   times text_projection (see text_encoder.ts for which way round);
 * - an empty prompt is marked (`Conditioning.emptyPrompt`): as the NEGATIVE prompt of an SDXL
 *   model, sd.cpp zeroes its whole context but keeps its pooled vector (models/generate.ts).
 *
 * The networks themselves run elsewhere (the checkpoint's compiled programs): this module
 * prepares their token inputs and assembles their outputs.
 */

import type { Conditioning } from "../types.ts";
import { applyTokenWeights, type TokenChunk } from "../prompt/emphasis.ts";
import { eosIndices } from "./text_encoder.ts";

/** CLIP's end-of-text id (also SDXL's padding id). */
export const EOS_ID = 49407;

/** The inputs of the two encoders for `chunks` (77-token windows, CLIP-L's ids). */
export interface SdxlTokenInputs {
  /** CLIP-L's ids, [N, 77]. */
  readonly clipL: Int32Array;
  /** bigG's ids, [N, 77]: CLIP-L's with everything after each window's first EOS set to 0. */
  readonly bigG: Int32Array;
  /** Row of the first EOS of each window in the flattened [N * 77] tokens (the pooled output's rows). */
  readonly eosIndex: Int32Array;
}

export function sdxlTokenInputs(chunks: readonly TokenChunk[], tokens = 77): SdxlTokenInputs {
  const n = chunks.length;
  const clipL = new Int32Array(n * tokens);
  chunks.forEach((c, i) => clipL.set(c.ids, i * tokens));
  const bigG = clipL.slice();
  for (let b = 0; b < n; b++) {
    const row = bigG.subarray(b * tokens, (b + 1) * tokens);
    const eos = row.indexOf(EOS_ID);
    if (eos >= 0) row.fill(0, eos + 1);
  }
  return { clipL, bigG, eosIndex: eosIndices(bigG, n, tokens, EOS_ID) };
}

/** What the two encoders gave for N windows. */
export interface SdxlEncoderOutputs {
  /** CLIP-L hidden states [N, 77, widthL]. */
  readonly clipL: Float32Array;
  /** bigG hidden states [N, 77, widthG]. */
  readonly bigG: Float32Array;
  /** bigG pooled and projected rows [N, pooledWidth]; only row 0 is used. */
  readonly pooled: Float32Array;
}

/**
 * Assembles the conditioning: context [1, N * 77, widthL + widthG] with the token weights
 * applied per window, and pooled [1, pooledWidth] from the first window.
 */
export function assembleSdxlConditioning(
  prompt: string,
  chunks: readonly TokenChunk[],
  out: SdxlEncoderOutputs,
  widths: { clipL: number; bigG: number; pooled: number },
  tokens = 77,
): Conditioning {
  const n = chunks.length;
  const { clipL: dl, bigG: dg } = widths;
  const d = dl + dg;
  if (out.clipL.length !== n * tokens * dl || out.bigG.length !== n * tokens * dg) {
    throw new Error(`SDXL conditioning: encoder outputs do not match ${n} windows of ${tokens} tokens`);
  }
  if (out.pooled.length < widths.pooled) throw new Error("SDXL conditioning: no pooled output");
  const context = new Float32Array(n * tokens * d);
  for (let r = 0; r < n * tokens; r++) {
    context.set(out.clipL.subarray(r * dl, (r + 1) * dl), r * d);
    context.set(out.bigG.subarray(r * dg, (r + 1) * dg), r * d + dl);
  }
  chunks.forEach((c, i) => applyTokenWeights(context.subarray(i * tokens * d, (i + 1) * tokens * d), c.weights, d));
  return {
    context: { shape: [1, n * tokens, d], data: context },
    pooled: { shape: [1, widths.pooled], data: out.pooled.slice(0, widths.pooled) },
    ...(prompt === "" ? { emptyPrompt: true } : {}),
  };
}

/**
 * The conditioning sd.cpp samples with when `c` is SDXL's NEGATIVE prompt: an empty prompt's
 * context is all zeros (`zero_out_masked`), its pooled vector kept; any other prompt unchanged.
 */
export function sdxlUnconditional(c: Conditioning): Conditioning {
  if (!c.emptyPrompt) return c;
  return { ...c, context: { shape: c.context.shape, data: new Float32Array(c.context.data.length) } };
}
