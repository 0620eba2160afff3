/**
 * Architecture detection: which Stable Diffusion family a checkpoint is, and
 * the exact configuration of its UNet, text encoder(s) and VAE, read from the
 * tensor names and shapes of the CompVis/ldm (and sgm) single-file layout.
 *
 * Everything that shapes carry is read from shapes (channels, channel
 * multipliers, residual blocks per level, transformer depth per block, context
 * width, linear or conv proj_in/proj_out, label_emb), so real checkpoints and
 * the tiny random test models go through the same code. What shapes do not
 * carry (attention heads, the prediction type, the VAE scaling factor) comes
 * from the family's published configuration, overridable by file metadata:
 *
 * - `sdflow.unet.num_heads` / `sdflow.unet.head_dim`: UNet attention heads
 *   (default: 8 heads for SD1, 64-wide heads for SD2 and SDXL, as in ldm/sgm);
 * - `sdflow.clip.heads`: text encoder heads (default: width / 64, which is right
 *   for CLIP ViT-L, OpenCLIP ViT-H and ViT-bigG);
 * - `sdflow.vae.scaling_factor`: default 0.18215 (SD1/SD2), 0.13025 (SDXL);
 * - prediction: a `v_pred` tensor in the file (the marker stable-diffusion.cpp
 *   honours for SDXL), or metadata `modelspec.prediction_type` / `prediction_type` /
 *   `sdflow.prediction` ("v", "v_prediction", "eps", "epsilon").
 *   Otherwise eps, except SD 2.x: its 768-v checkpoints carry no marker, so the
 *   loader runs {@link V_PREDICTION_PROBE} (stable-diffusion.cpp's test, which
 *   sd.cpp runs for every SD 2.x file without `--prediction`).
 *   A caller override (`--prediction`) wins over metadata and the probe, but an
 *   override that contradicts a `v_pred` tensor is an {@link ArchError}: the
 *   file says what it is, and sampling it the other way gives garbage.
 */

import type { ModelFamily, Prediction } from "./types.ts";

/** One tensor as a weight file lists it. */
export interface TensorShape {
  readonly name: string;
  readonly shape: readonly number[];
}

export interface UnetConfig {
  /** Name prefix of every UNet tensor, e.g. "model.diffusion_model.". */
  readonly prefix: string;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly modelChannels: number;
  readonly channelMult: readonly number[];
  readonly numResBlocks: number;
  /** Transformer blocks per SpatialTransformer on the way down, per level (0 = no attention). */
  readonly transformerDepth: readonly number[];
  /** Transformer blocks per output block (levels from deepest, numResBlocks + 1 blocks each). */
  readonly transformerDepthOutput: readonly number[];
  /** Transformer blocks in the middle block's SpatialTransformer (0 = none). */
  readonly transformerDepthMiddle: number;
  readonly contextDim: number;
  /** Attention heads per transformer: a fixed count (SD1) ... */
  readonly numHeads?: number;
  /** ... or a fixed width per head (SD2, SDXL). */
  readonly headDim?: number;
  /** proj_in/proj_out are Linear (SD2, SDXL) rather than 1x1 Conv2d (SD1). */
  readonly useLinearInTransformer: boolean;
  readonly timeEmbedDim: number;
  /** SDXL's label_emb input width (2816), absent for SD1/SD2. */
  readonly admInChannels?: number;
}

export type ClipNaming = "hf" | "openclip";

export interface ClipConfig {
  /** "hf": transformers CLIPTextModel names (CLIP ViT-L); "openclip": open_clip names (ViT-H, bigG). */
  readonly naming: ClipNaming;
  /** e.g. "cond_stage_model.transformer.text_model." or "cond_stage_model.model.". */
  readonly prefix: string;
  readonly width: number;
  readonly layers: number;
  readonly heads: number;
  readonly ffDim: number;
  readonly vocabSize: number;
  readonly maxTokens: number;
  /** quick_gelu (OpenAI CLIP); gelu_tanh for OpenCLIP: stable-diffusion.cpp's ggml_gelu is the tanh form. */
  readonly activation: "quick_gelu" | "gelu" | "gelu_tanh";
  /** Projection width of text_projection (pooled output), if the file has one. */
  readonly projectionDim?: number;
  /** clip-skip used when the caller gives none (1 = last layer; SD2/SDXL: 2, as sd.cpp and ldm). */
  readonly defaultClipSkip: number;
  /** Whether the hidden states get the final layer norm (SD1/SD2: yes; SDXL: no). */
  readonly finalLayerNorm: boolean;
  /** Token that pads prompts to 77 (sd.cpp: 49407 for CLIP-L, 0 for SD2's OpenCLIP-H). */
  readonly padTokenId: number;
  /**
   * Final layers of the original encoder that the file leaves out: 1 for a diffusers SD 2.x folder
   * (ViT-H's 24th layer is dropped there, as SD 2.x uses the penultimate one); clip-skip counts them.
   * Metadata `sdflow.clip.dropped_layers` overrides.
   */
  readonly droppedLayers?: number;
}

export interface VaeConfig {
  /** e.g. "first_stage_model." ("" for a standalone VAE file). */
  readonly prefix: string;
  readonly ch: number;
  readonly chMult: readonly number[];
  readonly numResBlocks: number;
  readonly zChannels: number;
  readonly imageChannels: number;
  readonly hasEncoder: boolean;
  readonly hasQuantConv: boolean;
  readonly hasPostQuantConv: boolean;
  /** Mid-block attention q/k/v/proj_out stored as 1x1 convs [C, C, 1, 1] (ldm) rather than linears [C, C]. */
  readonly attnAsConv: boolean;
  readonly scalingFactor: number;
  /** Image pixels per latent pixel: 2^(levels - 1). */
  readonly downFactor: number;
}

export interface ArchInfo {
  readonly family: ModelFamily;
  readonly prediction: Prediction;
  /**
   * Where `prediction` came from: a marker/metadata, a caller override, the family default, or
   * (set by the loader) stable-diffusion.cpp's UNet probe. "default" on an SD 2.x file means the
   * loader still has to run the probe ({@link needsPredictionProbe}).
   */
  readonly predictionSource: "file" | "override" | "default" | "probe";
  /** What in the file states the prediction ("a v_pred tensor", "metadata modelspec.prediction_type=v"). */
  readonly predictionMarker?: string;
  /** One line for the user when an override disagrees with the file's metadata (the override wins). */
  readonly predictionWarning?: string;
  readonly unet?: UnetConfig;
  /** SD1/SD2: one encoder; SDXL: [CLIP-L, OpenCLIP bigG] whose hidden states are concatenated. */
  readonly textEncoders: readonly ClipConfig[];
  readonly vae?: VaeConfig;
}

export class ArchError extends Error {
  override name = "ArchError";
}

export interface DetectOptions {
  /** Force the prediction type (e.g. a 768-v SD2 checkpoint without a marker). */
  prediction?: Prediction;
  /** Force the family when a file holds only part of a model. */
  family?: ModelFamily;
}

/**
 * Detects family and configurations from a file's tensor list and metadata
 * (with models/weights: `detectArch(file.tensors.values(), file.metadata)`).
 */
export function detectArch(
  tensors: Iterable<TensorShape>,
  fileMetadata: Readonly<Record<string, unknown>> = {},
  opts: DetectOptions = {},
): ArchInfo {
  const shapes = new Map<string, readonly number[]>();
  for (const t of tensors) shapes.set(t.name, t.shape);
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(fileMetadata)) if (typeof v !== "object" || v === null) metadata[k] = String(v);
  // A diffusers folder prefixes each component's metadata with "component/"; sdflow.* keys apply model-wide.
  for (const [k, v] of Object.entries(metadata)) {
    const m = /^[\w.-]+\/(sdflow\..+)$/.exec(k);
    if (m && !(m[1] in metadata)) metadata[m[1]] = v;
  }
  const has = (n: string) => shapes.has(n);
  const names = [...shapes.keys()];

  const sgm = names.some((n) => n.startsWith("conditioner.embedders."));
  const openclipSd2 = names.some((n) => n.startsWith("cond_stage_model.model."));
  const unetPrefix = findPrefix(names, "time_embed.0.weight", "model.diffusion_model.");
  const unetPartial = unetPrefix !== undefined ? detectUnet(shapes, unetPrefix, metadata, "sd1") : undefined;

  let family: ModelFamily;
  if (opts.family) family = opts.family;
  else if (sgm || unetPartial?.admInChannels !== undefined) family = "sdxl";
  else if (openclipSd2) family = "sd2";
  else if (names.some((n) => n.startsWith("cond_stage_model.transformer."))) family = "sd1";
  else if (unetPartial) {
    family = unetPartial.contextDim === 2048 ? "sdxl" : unetPartial.useLinearInTransformer ? "sd2" : "sd1";
  } else family = "sd1";

  const unet = unetPrefix !== undefined ? detectUnet(shapes, unetPrefix, metadata, family) : undefined;

  const textEncoders: ClipConfig[] = [];
  if (family === "sdxl") {
    const l = "conditioner.embedders.0.transformer.text_model.";
    const g = "conditioner.embedders.1.model.";
    if (has(`${l}embeddings.token_embedding.weight`)) textEncoders.push(detectClip(shapes, "hf", l, family, metadata));
    if (has(`${g}token_embedding.weight`)) textEncoders.push(detectClip(shapes, "openclip", g, family, metadata));
  } else {
    const hf = findPrefix(names, "embeddings.token_embedding.weight", "cond_stage_model.transformer.text_model.");
    const oc = findPrefix(names, "positional_embedding", "cond_stage_model.model.");
    if (family === "sd2" && oc !== undefined) textEncoders.push(detectClip(shapes, "openclip", oc, family, metadata));
    else if (hf !== undefined) textEncoders.push(detectClip(shapes, "hf", hf, family, metadata));
    else if (oc !== undefined) textEncoders.push(detectClip(shapes, "openclip", oc, family, metadata));
  }

  const vaePrefix = findPrefix(names, "decoder.conv_in.weight", "first_stage_model.");
  const vae = vaePrefix !== undefined ? detectVae(shapes, vaePrefix, family, metadata) : undefined;

  if (!unet && textEncoders.length === 0 && !vae) {
    throw new ArchError(
      "cannot tell the model family (SD 1.x, SD 2.x or SDXL): no UNet, text encoder or VAE tensors under their " +
        "ldm/sgm single-file or diffusers names",
    );
  }
  let prediction: Prediction = "eps";
  let predictionSource: ArchInfo["predictionSource"] = "default";
  let predictionWarning: string | undefined;
  const fromFile = predictionFromFile(has("v_pred"), metadata);
  if (opts.prediction) {
    if (opts.prediction !== "eps" && opts.prediction !== "v") {
      throw new ArchError(`unknown prediction "${opts.prediction}" (one of ${PREDICTIONS.join(", ")})`);
    }
    if (fromFile && fromFile.prediction !== opts.prediction) {
      const says = `the file marks itself ${fromFile.prediction}-prediction (${fromFile.marker})`;
      if (fromFile.tensor) throw new ArchError(`prediction "${opts.prediction}" contradicts the file: ${says}`);
      predictionWarning = `prediction "${opts.prediction}" overrides the file's metadata: ${says}`;
    }
    prediction = opts.prediction;
    predictionSource = "override";
  } else if (fromFile) {
    prediction = fromFile.prediction;
    predictionSource = "file";
  }
  return {
    family,
    prediction,
    predictionSource,
    predictionMarker: fromFile?.marker,
    predictionWarning,
    unet,
    textEncoders,
    vae,
  };
}

/** The prediction types sdflow samples (stable-diffusion.cpp's `--prediction` names). */
export const PREDICTIONS: readonly Prediction[] = ["eps", "v"];

/** Whether the loader must run {@link V_PREDICTION_PROBE}: SD 2.x with nothing stating the prediction. */
export function needsPredictionProbe(arch: ArchInfo): boolean {
  return arch.family === "sd2" && arch.predictionSource === "default" && arch.unet !== undefined;
}

function predictionFromFile(
  vPredTensor: boolean,
  md: Readonly<Record<string, string>>,
): { prediction: Prediction; marker: string; tensor: boolean } | undefined {
  if (vPredTensor) return { prediction: "v", marker: "a v_pred tensor", tensor: true };
  for (const key of ["sdflow.prediction", "modelspec.prediction_type", "prediction_type"]) {
    const v = md[key]?.toLowerCase().trim();
    if (!v) continue;
    const marker = `metadata ${key}=${md[key]}`;
    if (v === "v" || v === "v_prediction" || v === "v-prediction") return { prediction: "v", marker, tensor: false };
    if (v === "eps" || v === "epsilon") return { prediction: "eps", marker, tensor: false };
  }
  return undefined;
}

/**
 * stable-diffusion.cpp's test for SD2 v-prediction (`is_using_v_parameterization_for_sd2`): run the
 * UNet once on x = 0.5 everywhere ([1, 4, 8, 8]; an inpainting UNet's 5 extra input channels are 0),
 * context = 0.5 ([1, 2, contextDim]), timestep 999; the model is v-prediction when mean(out - x) < -1.
 * At t = 999 an eps model predicts noise of mean ~0, a v model v = alpha*eps - sigma*x0, dominated by
 * -x0 for the (mostly signal) input.
 */
export const V_PREDICTION_PROBE = { shape: [1, 4, 8, 8], value: 0.5, contextTokens: 2, timestep: 999 } as const;

/** Judges the probe's output (see {@link V_PREDICTION_PROBE}). */
export function judgeVPredictionProbe(out: Float32Array): Prediction {
  let s = 0;
  for (let i = 0; i < out.length; i++) s += out[i] - V_PREDICTION_PROBE.value;
  return s / out.length < -1 ? "v" : "eps";
}

/** The prefix P such that P + suffix is a tensor name, preferring `preferred`. */
function findPrefix(names: readonly string[], suffix: string, preferred: string): string | undefined {
  let found: string | undefined;
  for (const n of names) {
    if (!n.endsWith(suffix)) continue;
    const p = n.slice(0, n.length - suffix.length);
    if (p === preferred) return p;
    if (p !== "" && !p.endsWith(".")) continue;
    if (found === undefined || p.length < found.length) found = p;
  }
  return found;
}

function need(shapes: ReadonlyMap<string, readonly number[]>, name: string, rank?: number): readonly number[] {
  const s = shapes.get(name);
  if (!s) throw new ArchError(`expected tensor "${name}" is missing`);
  if (rank !== undefined && s.length !== rank) {
    throw new ArchError(`tensor "${name}" has shape [${s.join(", ")}], expected rank ${rank}`);
  }
  return s;
}

/** Largest i+1 such that pattern(i) names a tensor, scanning i = 0, 1, ... */
function countIndexed(shapes: ReadonlyMap<string, readonly number[]>, pattern: (i: number) => string): number {
  let n = 0;
  while (shapes.has(pattern(n))) n++;
  return n;
}

function intMeta(md: Readonly<Record<string, string>>, key: string): number | undefined {
  const v = md[key];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new ArchError(`metadata ${key}="${v}" is not a positive integer`);
  return n;
}

function detectUnet(
  shapes: ReadonlyMap<string, readonly number[]>,
  P: string,
  md: Readonly<Record<string, string>>,
  family: ModelFamily,
): UnetConfig {
  const [timeEmbedDim, modelChannels] = need(shapes, `${P}time_embed.0.weight`, 2);
  const conv0 = need(shapes, `${P}input_blocks.0.0.weight`, 4);
  if (conv0[0] !== modelChannels) {
    throw new ArchError(`${P}input_blocks.0.0.weight has ${conv0[0]} outputs, time_embed expects ${modelChannels}`);
  }
  const inChannels = conv0[1];
  const stDepth = (b: string) => countIndexed(shapes, (d) => `${b}.transformer_blocks.${d}.attn1.to_q.weight`);

  // Walk the input blocks: resblocks grouped into levels, a downsample closing each level but the last.
  const levels: { out: number; depths: number[] }[] = [{ out: 0, depths: [] }];
  let idx = 1;
  for (;; idx++) {
    const b = `${P}input_blocks.${idx}`;
    if (shapes.has(`${b}.0.op.weight`)) {
      levels.push({ out: 0, depths: [] });
      continue;
    }
    const conv = shapes.get(`${b}.0.in_layers.2.weight`);
    if (!conv) break;
    const lv = levels[levels.length - 1];
    if (lv.depths.length > 0 && lv.out !== conv[0]) {
      throw new ArchError(`${b}: ${conv[0]} channels, but its level started with ${lv.out}`);
    }
    lv.out = conv[0];
    lv.depths.push(stDepth(`${b}.1`));
  }
  if (idx === 1) throw new ArchError(`no UNet input blocks under "${P}input_blocks."`);
  const numResBlocks = levels[0].depths.length;
  const transformerDepth: number[] = [];
  for (const [l, lv] of levels.entries()) {
    if (lv.depths.length !== numResBlocks) {
      throw new ArchError(`UNet level ${l} has ${lv.depths.length} res blocks, level 0 has ${numResBlocks}`);
    }
    if (lv.depths.some((d) => d !== lv.depths[0])) {
      throw new ArchError(`UNet level ${l} mixes transformer depths ${lv.depths.join(", ")}`);
    }
    if (lv.out % modelChannels !== 0) {
      throw new ArchError(`UNet level ${l} has ${lv.out} channels, not a multiple of ${modelChannels}`);
    }
    transformerDepth.push(lv.depths[0]);
  }
  const channelMult = levels.map((lv) => lv.out / modelChannels);

  const nOut = levels.length * (numResBlocks + 1);
  const transformerDepthOutput: number[] = [];
  for (let i = 0; i < nOut; i++) {
    need(shapes, `${P}output_blocks.${i}.0.in_layers.2.weight`, 4);
    transformerDepthOutput.push(stDepth(`${P}output_blocks.${i}.1`));
  }
  if (shapes.has(`${P}output_blocks.${nOut}.0.in_layers.2.weight`)) {
    throw new ArchError(`UNet has more than the ${nOut} output blocks its input side implies`);
  }
  const transformerDepthMiddle = stDepth(`${P}middle_block.1`);

  let contextDim = 0;
  let useLinear = false;
  for (const [name, s] of shapes) {
    if (!name.startsWith(P)) continue;
    if (contextDim === 0 && name.endsWith(".attn2.to_k.weight")) contextDim = s[1];
    if (name.endsWith(".proj_in.weight")) useLinear = s.length === 2;
  }
  const out = need(shapes, `${P}out.2.weight`, 4);
  const label = shapes.get(`${P}label_emb.0.0.weight`);

  const mdHeads = intMeta(md, "sdflow.unet.num_heads");
  const mdHeadDim = intMeta(md, "sdflow.unet.head_dim");
  let numHeads: number | undefined;
  let headDim: number | undefined;
  if (mdHeads) numHeads = mdHeads;
  else if (mdHeadDim) headDim = mdHeadDim;
  else if (family === "sd1") numHeads = 8;
  else headDim = 64;

  return {
    prefix: P,
    inChannels,
    outChannels: out[0],
    modelChannels,
    channelMult,
    numResBlocks,
    transformerDepth,
    transformerDepthOutput,
    transformerDepthMiddle,
    contextDim,
    numHeads,
    headDim,
    useLinearInTransformer: useLinear,
    timeEmbedDim,
    admInChannels: label ? label[1] : undefined,
  };
}

function detectClip(
  shapes: ReadonlyMap<string, readonly number[]>,
  naming: ClipNaming,
  P: string,
  family: ModelFamily,
  md: Readonly<Record<string, string>>,
): ClipConfig {
  let vocabSize: number, width: number, maxTokens: number, layers: number, ffDim: number;
  let projectionDim: number | undefined;
  if (naming === "hf") {
    [vocabSize, width] = need(shapes, `${P}embeddings.token_embedding.weight`, 2);
    maxTokens = need(shapes, `${P}embeddings.position_embedding.weight`, 2)[0];
    layers = countIndexed(shapes, (i) => `${P}encoder.layers.${i}.self_attn.q_proj.weight`);
    if (layers === 0) throw new ArchError(`no text encoder layers under "${P}encoder.layers."`);
    ffDim = need(shapes, `${P}encoder.layers.0.mlp.fc1.weight`, 2)[0];
    const proj = shapes.get(P.replace(/text_model\.$/, "") + "text_projection.weight");
    projectionDim = proj ? proj[0] : undefined;
  } else {
    [vocabSize, width] = need(shapes, `${P}token_embedding.weight`, 2);
    maxTokens = need(shapes, `${P}positional_embedding`, 2)[0];
    layers = countIndexed(shapes, (i) => `${P}transformer.resblocks.${i}.attn.in_proj_weight`);
    if (layers === 0) throw new ArchError(`no text encoder layers under "${P}transformer.resblocks."`);
    ffDim = need(shapes, `${P}transformer.resblocks.0.mlp.c_fc.weight`, 2)[0];
    // Applied as a Linear weight [out, in] (stable-diffusion.cpp's reading; see clip/text_encoder.ts).
    const proj = shapes.get(`${P}text_projection`);
    projectionDim = proj ? proj[0] : undefined;
  }
  const heads = intMeta(md, "sdflow.clip.heads") ?? (width % 64 === 0 ? width / 64 : 0);
  if (!heads || width % heads !== 0) {
    throw new ArchError(`text encoder "${P}": cannot infer heads for width ${width}; set metadata sdflow.clip.heads`);
  }
  // stable-diffusion.cpp: GELU for the 1024/1280-wide OpenCLIP towers (ggml's, i.e. the tanh approximation;
  // open_clip's own is erf, within ~5e-4 of it), quick_gelu for OpenAI CLIP.
  const activation = naming === "openclip" || width === 1024 || width === 1280 ? "gelu_tanh" : "quick_gelu";
  return {
    naming,
    prefix: P,
    width,
    layers,
    heads,
    ffDim,
    vocabSize,
    maxTokens,
    activation,
    projectionDim,
    droppedLayers: droppedLayers(md, naming, width, layers),
    defaultClipSkip: family === "sd1" ? 1 : 2,
    finalLayerNorm: family !== "sdxl",
    padTokenId: family === "sd2" ? 0 : 49407,
  };
}

/**
 * Final text layers the file leaves out: metadata `sdflow.clip.dropped_layers`, else 1 for an OpenCLIP
 * ViT-H tower from a diffusers folder with 23 layers (diffusers' SD 2.x conversion drops the 24th, as
 * SD 2.x uses the penultimate layer), else 0.
 */
function droppedLayers(
  md: Readonly<Record<string, string>>,
  naming: ClipNaming,
  width: number,
  layers: number,
): number {
  const v = md["sdflow.clip.dropped_layers"];
  if (v !== undefined) {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) {
      throw new ArchError(`metadata sdflow.clip.dropped_layers="${v}" is not an integer >= 0`);
    }
    return n;
  }
  return naming === "openclip" && md["sdflow.layout"] === "diffusers" && width === 1024 && layers === 23 ? 1 : 0;
}

function detectVae(
  shapes: ReadonlyMap<string, readonly number[]>,
  P: string,
  family: ModelFamily,
  md: Readonly<Record<string, string>>,
): VaeConfig {
  const zChannels = need(shapes, `${P}decoder.conv_in.weight`, 4)[1];
  const nLevels = countIndexed(shapes, (l) => `${P}decoder.up.${l}.block.0.conv1.weight`);
  if (nLevels === 0) throw new ArchError(`no VAE decoder levels under "${P}decoder.up."`);
  const nBlocks = countIndexed(shapes, (i) => `${P}decoder.up.0.block.${i}.conv1.weight`);
  const numResBlocks = nBlocks - 1;
  const outs: number[] = [];
  for (let l = 0; l < nLevels; l++) outs.push(need(shapes, `${P}decoder.up.${l}.block.0.conv1.weight`, 4)[0]);
  const hasEncoder = shapes.has(`${P}encoder.conv_in.weight`);
  const ch = hasEncoder ? need(shapes, `${P}encoder.conv_in.weight`, 4)[0] : outs[0];
  if (outs.some((o) => o % ch !== 0)) {
    throw new ArchError(`VAE level widths ${outs.join(", ")} are not multiples of ${ch}`);
  }
  const imageChannels = need(shapes, `${P}decoder.conv_out.weight`, 4)[0];
  const attnQ = need(shapes, `${P}decoder.mid.attn_1.q.weight`);
  const mdScale = md["sdflow.vae.scaling_factor"];
  const scalingFactor = mdScale !== undefined ? Number(mdScale) : family === "sdxl" ? 0.13025 : 0.18215;
  if (!(scalingFactor > 0)) {
    throw new ArchError(`metadata sdflow.vae.scaling_factor="${mdScale}" is not a positive number`);
  }
  return {
    prefix: P,
    ch,
    chMult: outs.map((o) => o / ch),
    numResBlocks,
    zChannels,
    imageChannels,
    hasEncoder,
    hasQuantConv: shapes.has(`${P}quant_conv.weight`),
    hasPostQuantConv: shapes.has(`${P}post_quant_conv.weight`),
    attnAsConv: attnQ.length === 4,
    scalingFactor,
    downFactor: 2 ** (nLevels - 1),
  };
}

/**
 * The KL VAE in a tensor list on its own (a separate VAE file: bare `encoder.*`/`decoder.*` names, or
 * `first_stage_model.*`), with the scaling factor of `family` (it belongs to the diffusion model, not
 * to the VAE's weights: SDXL's VAE on an SD 1.x model would still scale by 0.18215). Undefined when
 * the tensors hold no `decoder.conv_in.weight`.
 */
export function detectVaeConfig(
  tensors: Iterable<TensorShape>,
  family: ModelFamily,
  fileMetadata: Readonly<Record<string, unknown>> = {},
): VaeConfig | undefined {
  const shapes = new Map<string, readonly number[]>();
  for (const t of tensors) shapes.set(t.name, t.shape);
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(fileMetadata)) if (typeof v !== "object" || v === null) metadata[k] = String(v);
  const prefix = findPrefix([...shapes.keys()], "decoder.conv_in.weight", "first_stage_model.");
  return prefix === undefined ? undefined : detectVae(shapes, prefix, family, metadata);
}

/** Attention heads of a SpatialTransformer with `channels` channels. */
export function unetHeads(cfg: UnetConfig, channels: number): number {
  if (cfg.numHeads) return cfg.numHeads;
  const hd = cfg.headDim ?? 64;
  if (channels % hd !== 0) throw new ArchError(`UNet: ${channels} channels do not split into ${hd}-wide heads`);
  return channels / hd;
}
