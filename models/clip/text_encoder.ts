/**
 * The CLIP text transformer as a tensor graph: OpenAI CLIP ViT-L/14 (SD 1.x,
 * SDXL's first encoder; transformers naming) and OpenCLIP ViT-H/14 / ViT-bigG/14
 * (SD 2.x, SDXL's second encoder; open_clip naming), driven by a {@link ClipConfig}.
 *
 * Semantics (transformers CLIPTextModel, open_clip, stable-diffusion.cpp clip.hpp):
 * - x = token_embedding[ids] + position_embedding;
 * - each layer: x += out_proj(attn(LN1(x))) with a causal mask, softmax scale
 *   1/sqrt(head_dim); x += fc2(act(fc1(LN2(x)))), act = quick_gelu (CLIP-L) or
 *   gelu (OpenCLIP); LayerNorm eps 1e-5. OpenCLIP's packed in_proj_weight [3d, d]
 *   is split into q/k/v by constant views (no copy);
 * - clip-skip k (sd-webui / sd.cpp counting): run the first layers - k + 1 layers,
 *   i.e. take the hidden state of layer -k; then the final layer norm when
 *   `finalLayerNorm` (SD1 and SD2: yes — ldm's FrozenOpenCLIPEmbedder
 *   "penultimate" is clip-skip 2 followed by ln_final; SDXL: no);
 * - pooled output (SDXL): the last layer's output, final layer norm, at each
 *   prompt's end-of-text position, times text_projection applied as stable-diffusion.cpp does:
 *   P @ x with the stored matrix (open_clip itself computes x @ P; a diffusers Linear weight, W @ x).
 *
 * Graph inputs: "tokens" [N, 77] i32; with `customEmbeddings: K > 0` also
 * "custom_table" [K, width] f32 (textual-inversion vectors), "custom_ids"
 * [N, 77] i32 (row of custom_table, any valid row where unused) and
 * "custom_mask" [N, 77] f32 (1 where the token is a custom vector, else 0):
 * {@link splitCustomTokens} prepares them. With `pooled`, "eos_index" [N] i32:
 * n * 77 + position of the end-of-text token in prompt n.
 * Output: hidden states [N, 77, width] (graph output "hidden"), and "pooled"
 * [N, projectionDim] when asked.
 *
 * Prompt weights (emphasis) are applied on the host to the hidden states, as
 * sd.cpp does (multiply each token's vector by its weight, then rescale the
 * 77-token window to its original mean): `applyTokenWeights` in
 * models/prompt/emphasis.ts.
 */

import type { Graph, Tensor } from "../../engine/graph.ts";
import { ArchError, type ClipConfig } from "../arch.ts";
import { addRuntimeDeltas, asF32, layerNorm, linear, type WeightLookup } from "../nn.ts";

export interface TextEncoderBuildOptions {
  /** Prompts (77-token chunks) encoded at once. */
  batch: number;
  /** 1 = last layer, 2 = penultimate, ... Default: the config's (SD1: 1, SD2/SDXL: 2). */
  clipSkip?: number;
  /** Override the config's final layer norm choice for the hidden states. */
  finalLayerNorm?: boolean;
  /** Textual-inversion vectors available to the prompt (0 = none). */
  customEmbeddings?: number;
  /** Also output the pooled, projected embedding (SDXL's OpenCLIP bigG). */
  pooled?: boolean;
}

export interface TextEncoderGraph {
  readonly hidden: Tensor;
  readonly pooled?: Tensor;
}

interface LayerNames {
  ln1: string;
  ln2: string;
  fc1: string;
  fc2: string;
  out: string;
}

/** Builds the text encoder into `g`, registering outputs "hidden" (and "pooled"). */
export function buildTextEncoder(
  g: Graph,
  w: WeightLookup,
  cfg: ClipConfig,
  opts: TextEncoderBuildOptions,
): TextEncoderGraph {
  const N = opts.batch;
  const T = cfg.maxTokens;
  const D = cfg.width;
  const P = cfg.prefix;
  const clipSkip = opts.clipSkip ?? cfg.defaultClipSkip;
  // Layers counted as the original model has them: a diffusers SD 2.x folder drops ViT-H's last layer.
  const dropped = cfg.droppedLayers ?? 0;
  const total = cfg.layers + dropped;
  if (!Number.isInteger(clipSkip) || clipSkip < 1 || clipSkip > total) {
    throw new ArchError(`clip skip ${clipSkip} is outside 1..${total}`);
  }
  if (clipSkip <= dropped) {
    throw new ArchError(
      `clip skip ${clipSkip} needs the text encoder's last ${dropped} layer(s), which this model does not include ` +
        `(a diffusers SD 2.x folder keeps the first ${cfg.layers}); use clip skip ${dropped + 1} or more`,
    );
  }
  if (opts.pooled && dropped > 0) throw new ArchError("the pooled output needs every text encoder layer");
  const hf = cfg.naming === "hf";
  const tokens = g.input("tokens", [N, T], "i32");

  let x = g.scope("embeddings", () => {
    const table = w(hf ? `${P}embeddings.token_embedding.weight` : `${P}token_embedding.weight`, [cfg.vocabSize, D]);
    let e = g.gatherRows(table, g.reshape(tokens, [N * T]));
    const k = opts.customEmbeddings ?? 0;
    if (k > 0) {
      const custom = g.input("custom_table", [k, D]);
      const ids = g.input("custom_ids", [N, T], "i32");
      const mask = g.reshape(g.input("custom_mask", [N, T]), [N * T, 1]);
      const ce = g.gatherRows(custom, g.reshape(ids, [N * T]));
      // e * (1 - mask) + ce * mask: exactly the custom vector where mask = 1 and the vocabulary's where
      // mask = 0 (e + mask * (ce - e) would round: (ce - e) + e is not always ce).
      e = g.add(g.mul(e, g.scale(mask, -1, 1)), g.mul(ce, mask));
    }
    const pos = w(hf ? `${P}embeddings.position_embedding.weight` : `${P}positional_embedding`, [T, D]);
    return g.add(g.reshape(e, [N, T, D]), asF32(g, pos));
  });

  const run = total - clipSkip + 1;
  const last = opts.pooled ? cfg.layers : run;
  let hiddenPre: Tensor | undefined;
  for (let i = 0; i < last; i++) {
    x = g.scope(hf ? `encoder.layers.${i}` : `transformer.resblocks.${i}`, () => layer(g, w, cfg, i, x));
    if (i === run - 1) hiddenPre = x;
  }
  const finalLn = hf ? `${P}final_layer_norm` : `${P}ln_final`;
  const wantLn = opts.finalLayerNorm ?? cfg.finalLayerNorm;
  const hidden = wantLn ? g.scope("final_layer_norm", () => layerNorm(g, w, finalLn, hiddenPre!)) : hiddenPre!;
  g.output("hidden", hidden);

  let pooled: Tensor | undefined;
  if (opts.pooled) {
    pooled = g.scope("pooled", () => {
      const eos = g.input("eos_index", [N], "i32");
      const normed = layerNorm(g, w, finalLn, x);
      const rows = g.gatherRows(g.reshape(normed, [N * T, D]), eos);
      if (!cfg.projectionDim) return rows;
      if (hf) {
        // transformers CLIPTextModelWithProjection: Linear(width, proj, bias=False), weight [proj, width].
        const pw = w(`${P.replace(/text_model\.$/, "")}text_projection.weight`, [cfg.projectionDim, D]);
        return g.linear(rows, pw);
      }
      // open_clip computes x @ P with P stored [width, proj]; stable-diffusion.cpp (since its PR #397) applies
      // the stored matrix as a biasless Linear, P @ x. sdflow matches sd.cpp's pictures, so P @ x here (the
      // same for the square bigG and ViT-H projections whenever P is symmetric, as in the reference files).
      const pm = w(`${P}text_projection`, [cfg.projectionDim, D]);
      return g.linear(rows, pm);
    });
    g.output("pooled", pooled);
  }
  return { hidden, pooled };
}

function layer(g: Graph, w: WeightLookup, cfg: ClipConfig, i: number, x: Tensor): Tensor {
  const D = cfg.width;
  const P = cfg.prefix;
  const hf = cfg.naming === "hf";
  const L = hf ? `${P}encoder.layers.${i}` : `${P}transformer.resblocks.${i}`;
  const n: LayerNames = hf
    ? {
      ln1: `${L}.layer_norm1`,
      ln2: `${L}.layer_norm2`,
      fc1: `${L}.mlp.fc1`,
      fc2: `${L}.mlp.fc2`,
      out: `${L}.self_attn.out_proj`,
    }
    : { ln1: `${L}.ln_1`, ln2: `${L}.ln_2`, fc1: `${L}.mlp.c_fc`, fc2: `${L}.mlp.c_proj`, out: `${L}.attn.out_proj` };

  x = g.scope("self_attn", () => {
    const h = layerNorm(g, w, n.ln1, x);
    let q: Tensor, k: Tensor, v: Tensor;
    if (hf) {
      q = linear(g, w, `${L}.self_attn.q_proj`, h, D);
      k = linear(g, w, `${L}.self_attn.k_proj`, h, D);
      v = linear(g, w, `${L}.self_attn.v_proj`, h, D);
    } else {
      // Rows j*D..(j+1)*D of the packed in_proj (a view of it, or a diffusers folder's q/k/v_proj piece).
      const rows = (name: string, j: number, shape: number[]) => w(`${L}.attn.${name}[${j * D}:${(j + 1) * D}]`, shape);
      const part = (j: number) =>
        addRuntimeDeltas(
          g,
          w,
          `${L}.attn.in_proj_weight`,
          h,
          g.linear(h, rows("in_proj_weight", j, [D, D]), asF32(g, rows("in_proj_bias", j, [D]))),
          { kind: "linear", rows: { start: j * D, count: D } },
        );
      [q, k, v] = [part(0), part(1), part(2)];
    }
    const a = g.attention(q, k, v, { heads: cfg.heads, causal: true });
    return g.add(x, linear(g, w, n.out, a, D));
  });
  return g.scope("mlp", () => {
    const h = linear(g, w, n.fc1, layerNorm(g, w, n.ln2, x), cfg.ffDim);
    return g.add(x, linear(g, w, n.fc2, g.unary(cfg.activation, h), D, { inF: cfg.ffDim }));
  });
}

/**
 * Splits token ids into the graph inputs of a text encoder built with
 * `customEmbeddings`: ids >= vocabSize refer to row (id - vocabSize) of the
 * custom table (how sd.cpp numbers textual-inversion tokens).
 */
export function splitCustomTokens(
  ids: Int32Array,
  vocabSize: number,
  customRows: number,
): { tokens: Int32Array; custom_ids: Int32Array; custom_mask: Float32Array } {
  const tokens = new Int32Array(ids.length);
  const customIds = new Int32Array(ids.length);
  const mask = new Float32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id >= vocabSize) {
      const row = id - vocabSize;
      if (row >= customRows) throw new ArchError(`token ${id} refers to custom embedding ${row} of ${customRows}`);
      customIds[i] = row;
      mask[i] = 1;
    } else {
      if (id < 0) throw new ArchError(`token id ${id} is negative`);
      tokens[i] = id;
    }
  }
  return { tokens, custom_ids: customIds, custom_mask: mask };
}

/** eos_index input for the pooled output: n * T + index of the first `eosId` (else the last token). */
export function eosIndices(tokens: Int32Array, n: number, t: number, eosId = 49407): Int32Array {
  const out = new Int32Array(n);
  for (let b = 0; b < n; b++) {
    let at = t - 1;
    for (let j = 0; j < t; j++) {
      if (tokens[b * t + j] === eosId) {
        at = j;
        break;
      }
    }
    out[b] = b * t + at;
  }
  return out;
}
