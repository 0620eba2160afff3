/**
 * diffusers <-> original (CompVis/ldm, sgm) tensor names for the SD 1.x/2.x/XL
 * UNet, the VAE and the text encoders, so that model code only ever reads ldm names.
 *
 * diffusers names here carry their folder as a prefix (`unet.`, `vae.`, `text_encoder.`,
 * `text_encoder_2.`), as {@link openWeights} presents a diffusers folder.
 *
 * Two mappings are not a plain rename:
 * - VAE attention: diffusers stores q/k/v/out as Linear [C, C], ldm as 1x1 Conv [C, C, 1, 1]:
 *   same bytes, so the mapped tensor only gets the conv shape (`reshape: "conv1x1"`).
 * - OpenCLIP (SD 2.x text encoder, SDXL's second): ldm fuses q/k/v into `attn.in_proj_weight`
 *   [3C, C]; diffusers keeps `q_proj/k_proj/v_proj`. The mapped name has `part` 0/1/2 and
 *   readers get the three pieces with `splitRows`, which also slices a real fused tensor.
 * SDXL's `text_encoder_2.text_projection.weight` becomes the OpenCLIP `text_projection` although ldm stores
 * its transpose: stable-diffusion.cpp maps them so and applies either as a Linear weight, and sdflow matches
 * its pictures. The ldm-only OpenCLIP `logit_scale` has no diffusers counterpart (SD 2.x diffusers folders
 * also drop the unused last text layer and the projection).
 */
import { UnsupportedLayoutError, type WeightFileError } from "./errors.ts";
import { TensorTable } from "./table.ts";
import type { TensorInfo, WeightFile } from "./types.ts";

export type ModelFamily = "sd1" | "sd2" | "sdxl";

/** Where one diffusers tensor goes in ldm naming. */
export interface LdmTarget {
  readonly name: string;
  /** The ldm tensor is a 1x1 conv of the same bytes: shape [..., 1, 1]. */
  readonly reshape?: "conv1x1";
  /** This tensor is rows `index` of `of` equal parts of the fused ldm tensor. */
  readonly part?: { readonly index: number; readonly of: number };
}

/** What {@link diffusersToLdmName} needs to know about the whole folder. */
export interface DiffusersContext {
  readonly family: ModelFamily;
  /** UNet `up_blocks` indices that have attentions (decides where an upsampler sits in ldm). */
  readonly upBlocksWithAttention: ReadonlySet<number>;
}

const UNET = "model.diffusion_model.";
const VAE = "first_stage_model.";

const RESNET: [string, string][] = [
  ["norm1", "in_layers.0"],
  ["conv1", "in_layers.2"],
  ["time_emb_proj", "emb_layers.1"],
  ["norm2", "out_layers.0"],
  ["conv2", "out_layers.3"],
  ["conv_shortcut", "skip_connection"],
];
const UNET_TOP: [string, string][] = [
  ["time_embedding.linear_1.", "time_embed.0."],
  ["time_embedding.linear_2.", "time_embed.2."],
  ["add_embedding.linear_1.", "label_emb.0.0."],
  ["add_embedding.linear_2.", "label_emb.0.2."],
  ["conv_in.", "input_blocks.0.0."],
  ["conv_norm_out.", "out.0."],
  ["conv_out.", "out.2."],
];
const VAE_ATTN: [string, string][] = [
  ["group_norm.", "norm."],
  ["to_q.", "q."],
  ["query.", "q."],
  ["to_k.", "k."],
  ["key.", "k."],
  ["to_v.", "v."],
  ["value.", "v."],
  ["to_out.0.", "proj_out."],
  ["proj_attn.", "proj_out."],
];
const OPENCLIP_TOP: [string, string][] = [
  ["text_model.embeddings.token_embedding.weight", "token_embedding.weight"],
  ["text_model.embeddings.position_embedding.weight", "positional_embedding"],
  ["text_model.final_layer_norm.", "ln_final."],
  // Not a true rename (ldm stores the transpose of diffusers' Linear weight), but the one stable-diffusion.cpp makes:
  // it gives both the same name and applies the stored matrix as a Linear weight (see models/clip/text_encoder.ts).
  ["text_projection.weight", "text_projection"],
];
const OPENCLIP_LAYER: [string, string][] = [
  ["layer_norm1.", "ln_1."],
  ["layer_norm2.", "ln_2."],
  ["self_attn.out_proj.", "attn.out_proj."],
  ["mlp.fc1.", "mlp.c_fc."],
  ["mlp.fc2.", "mlp.c_proj."],
];
const QKV = ["q_proj", "k_proj", "v_proj"];

function renamePrefix(s: string, table: readonly [string, string][], from: 0 | 1): string | undefined {
  for (const pair of table) {
    if (s.startsWith(pair[from])) return pair[1 - from] + s.slice(pair[from].length);
  }
  return undefined;
}

function textPrefixes(family: ModelFamily): { clipL: string; openclip?: string; te: string; te2?: string } {
  if (family === "sdxl") {
    return {
      clipL: "conditioner.embedders.0.transformer.",
      openclip: "conditioner.embedders.1.model.",
      te: "text_encoder.",
      te2: "text_encoder_2.",
    };
  }
  return family === "sd2"
    ? { clipL: "", openclip: "cond_stage_model.model.", te: "", te2: "text_encoder." }
    : { clipL: "cond_stage_model.transformer.", te: "text_encoder." };
}

/** The ldm name of a (folder-prefixed) diffusers tensor, or undefined if it has none. */
export function diffusersToLdmName(name: string, ctx: DiffusersContext): LdmTarget | undefined {
  let m: RegExpMatchArray | null;
  if (name.startsWith("unet.")) {
    const n = name.slice(5);
    const top = renamePrefix(n, UNET_TOP, 0);
    if (top) return { name: UNET + top };
    const res = (rest: string) => renamePrefix(rest, RESNET.map(([a, b]) => [a + ".", b + "."]), 0);
    if ((m = n.match(/^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/))) {
      const k = 3 * +m[1] + +m[3] + 1;
      const rest = m[2] === "resnets" ? res(m[4]) : m[4];
      return rest ? { name: `${UNET}input_blocks.${k}.${m[2] === "resnets" ? 0 : 1}.${rest}` } : undefined;
    }
    if ((m = n.match(/^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/))) {
      return { name: `${UNET}input_blocks.${3 * (+m[1] + 1)}.0.op.${m[2]}` };
    }
    if ((m = n.match(/^mid_block\.resnets\.(\d+)\.(.+)$/))) {
      const rest = res(m[2]);
      return rest ? { name: `${UNET}middle_block.${2 * +m[1]}.${rest}` } : undefined;
    }
    if ((m = n.match(/^mid_block\.attentions\.0\.(.+)$/))) return { name: `${UNET}middle_block.1.${m[1]}` };
    if ((m = n.match(/^up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/))) {
      const k = 3 * +m[1] + +m[3];
      const rest = m[2] === "resnets" ? res(m[4]) : m[4];
      return rest ? { name: `${UNET}output_blocks.${k}.${m[2] === "resnets" ? 0 : 1}.${rest}` } : undefined;
    }
    if ((m = n.match(/^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$/))) {
      const sub = ctx.upBlocksWithAttention.has(+m[1]) ? 2 : 1;
      return { name: `${UNET}output_blocks.${3 * +m[1] + 2}.${sub}.conv.${m[2]}` };
    }
    return undefined;
  }
  if (name.startsWith("vae.")) {
    const n = name.slice(4);
    const res = (rest: string) => rest.replace(/^conv_shortcut\./, "nin_shortcut.");
    if ((m = n.match(/^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/))) {
      return { name: `${VAE}encoder.down.${m[1]}.block.${m[2]}.${res(m[3])}` };
    }
    if ((m = n.match(/^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/))) {
      return { name: `${VAE}encoder.down.${m[1]}.downsample.conv.${m[2]}` };
    }
    if ((m = n.match(/^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/))) {
      return { name: `${VAE}decoder.up.${3 - +m[1]}.block.${m[2]}.${res(m[3])}` };
    }
    if ((m = n.match(/^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$/))) {
      return { name: `${VAE}decoder.up.${3 - +m[1]}.upsample.conv.${m[2]}` };
    }
    if ((m = n.match(/^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)$/))) {
      return { name: `${VAE}${m[1]}.mid.block_${+m[2] + 1}.${res(m[3])}` };
    }
    if ((m = n.match(/^(encoder|decoder)\.mid_block\.attentions\.0\.(.+)$/))) {
      const rest = renamePrefix(m[2], VAE_ATTN, 0);
      if (!rest) return undefined;
      const conv = !rest.startsWith("norm.") && rest.endsWith(".weight");
      return { name: `${VAE}${m[1]}.mid.attn_1.${rest}`, reshape: conv ? "conv1x1" : undefined };
    }
    if ((m = n.match(/^(encoder|decoder)\.conv_norm_out\.(.+)$/))) return { name: `${VAE}${m[1]}.norm_out.${m[2]}` };
    if (/^((encoder|decoder)\.conv_(in|out)|quant_conv|post_quant_conv)\./.test(n)) return { name: VAE + n };
    return undefined;
  }
  const p = textPrefixes(ctx.family);
  if (p.te && p.clipL && name.startsWith(p.te + "text_model.")) {
    return { name: p.clipL + name.slice(p.te.length) };
  }
  if (p.te2 && p.openclip && name.startsWith(p.te2)) {
    const n = name.slice(p.te2.length);
    const top = renamePrefix(n, OPENCLIP_TOP, 0);
    if (top) return { name: p.openclip + top };
    if ((m = n.match(/^text_model\.encoder\.layers\.(\d+)\.(.+)$/))) {
      const L = `${p.openclip}transformer.resblocks.${m[1]}.`;
      const qkv = m[2].match(/^self_attn\.(q_proj|k_proj|v_proj)\.(weight|bias)$/);
      if (qkv) return { name: `${L}attn.in_proj_${qkv[2]}`, part: { index: QKV.indexOf(qkv[1]), of: 3 } };
      const rest = renamePrefix(m[2], OPENCLIP_LAYER, 0);
      return rest ? { name: L + rest } : undefined;
    }
  }
  return undefined;
}

/**
 * The diffusers name(s) of an ldm tensor: one name, three for a fused OpenCLIP in_proj (q, k, v),
 * none for ldm-only tensors (OpenCLIP logit_scale, DDPM schedule buffers).
 */
export function ldmToDiffusersNames(name: string, family: ModelFamily): string[] {
  let m: RegExpMatchArray | null;
  if (name.startsWith(UNET)) {
    const n = name.slice(UNET.length);
    const top = renamePrefix(n, UNET_TOP, 1);
    if (top) return [`unet.${top}`];
    const res = (rest: string) => renamePrefix(rest, RESNET.map(([a, b]) => [a + ".", b + "."]), 1);
    const one = (s: string | undefined) => (s ? [`unet.${s}`] : []);
    if ((m = n.match(/^input_blocks\.(\d+)\.0\.op\.(.+)$/))) {
      return one(`down_blocks.${+m[1] / 3 - 1}.downsamplers.0.conv.${m[2]}`);
    }
    if ((m = n.match(/^input_blocks\.(\d+)\.([01])\.(.+)$/))) {
      const k = +m[1] - 1;
      const base = `down_blocks.${Math.floor(k / 3)}`;
      if (m[2] === "1") return one(`${base}.attentions.${k % 3}.${m[3]}`);
      const r = res(m[3]);
      return r ? one(`${base}.resnets.${k % 3}.${r}`) : [];
    }
    if ((m = n.match(/^middle_block\.([012])\.(.+)$/))) {
      if (m[1] === "1") return one(`mid_block.attentions.0.${m[2]}`);
      const r = res(m[2]);
      return r ? one(`mid_block.resnets.${+m[1] / 2}.${r}`) : [];
    }
    if ((m = n.match(/^output_blocks\.(\d+)\.[12]\.conv\.(.+)$/))) {
      return one(`up_blocks.${Math.floor(+m[1] / 3)}.upsamplers.0.conv.${m[2]}`);
    }
    if ((m = n.match(/^output_blocks\.(\d+)\.([01])\.(.+)$/))) {
      const base = `up_blocks.${Math.floor(+m[1] / 3)}`;
      if (m[2] === "1") return one(`${base}.attentions.${+m[1] % 3}.${m[3]}`);
      const r = res(m[3]);
      return r ? one(`${base}.resnets.${+m[1] % 3}.${r}`) : [];
    }
    return [];
  }
  if (name.startsWith(VAE)) {
    const n = name.slice(VAE.length);
    const res = (rest: string) => rest.replace(/^nin_shortcut\./, "conv_shortcut.");
    if ((m = n.match(/^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/))) {
      return [`vae.encoder.down_blocks.${m[1]}.resnets.${m[2]}.${res(m[3])}`];
    }
    if ((m = n.match(/^encoder\.down\.(\d+)\.downsample\.conv\.(.+)$/))) {
      return [`vae.encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`];
    }
    if ((m = n.match(/^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$/))) {
      return [`vae.decoder.up_blocks.${3 - +m[1]}.resnets.${m[2]}.${res(m[3])}`];
    }
    if ((m = n.match(/^decoder\.up\.(\d+)\.upsample\.conv\.(.+)$/))) {
      return [`vae.decoder.up_blocks.${3 - +m[1]}.upsamplers.0.conv.${m[2]}`];
    }
    if ((m = n.match(/^(encoder|decoder)\.mid\.block_([12])\.(.+)$/))) {
      return [`vae.${m[1]}.mid_block.resnets.${+m[2] - 1}.${res(m[3])}`];
    }
    if ((m = n.match(/^(encoder|decoder)\.mid\.attn_1\.(.+)$/))) {
      const r = renamePrefix(
        m[2],
        VAE_ATTN.filter(([d]) => !["query.", "key.", "value.", "proj_attn."].includes(d)),
        1,
      );
      return r ? [`vae.${m[1]}.mid_block.attentions.0.${r}`] : [];
    }
    if ((m = n.match(/^(encoder|decoder)\.norm_out\.(.+)$/))) return [`vae.${m[1]}.conv_norm_out.${m[2]}`];
    return /^((encoder|decoder)\.conv_(in|out)|quant_conv|post_quant_conv)\./.test(n) ? [`vae.${n}`] : [];
  }
  const p = textPrefixes(family);
  if (p.clipL && name.startsWith(p.clipL + "text_model.")) return [p.te + name.slice(p.clipL.length)];
  if (p.openclip && p.te2 && name.startsWith(p.openclip)) {
    const n = name.slice(p.openclip.length);
    const top = renamePrefix(n, OPENCLIP_TOP, 1);
    if (top) return [p.te2 + top];
    if ((m = n.match(/^transformer\.resblocks\.(\d+)\.(.+)$/))) {
      const L = `${p.te2}text_model.encoder.layers.${m[1]}.`;
      const fused = m[2].match(/^attn\.in_proj_(weight|bias)$/);
      if (fused) return QKV.map((q) => `${L}self_attn.${q}.${fused[1]}`);
      const r = renamePrefix(m[2], OPENCLIP_LAYER, 1);
      return r ? [L + r] : [];
    }
  }
  return [];
}

/** UNet up_blocks that have attentions, from a list of folder-prefixed diffusers names. */
export function upBlocksWithAttention(names: Iterable<string>): Set<number> {
  const out = new Set<number>();
  for (const n of names) {
    const m = n.match(/^unet\.up_blocks\.(\d+)\.attentions\./);
    if (m) out.add(+m[1]);
  }
  return out;
}

/** SD 1.x, 2.x or XL, from the tensors of a diffusers folder. */
export function diffusersFamily(tensors: ReadonlyMap<string, TensorInfo>): ModelFamily {
  for (const n of tensors.keys()) if (n.startsWith("text_encoder_2.")) return "sdxl";
  const emb = tensors.get("text_encoder.text_model.embeddings.token_embedding.weight");
  if (emb && emb.shape[1] === 1024) return "sd2";
  const ctx = [...tensors.values()].find((t) => /^unet\..*attn2\.to_k\.weight$/.test(t.name));
  if (ctx && ctx.shape[1] === 1024) return "sd2";
  // SD 2.x UNets use linear proj_in/proj_out (use_linear_projection); SD 1.x ones 1x1 convs.
  const proj = [...tensors.values()].find((t) => /^unet\..*attentions\.\d+\.proj_in\.weight$/.test(t.name));
  return proj && proj.shape.length === 2 ? "sd2" : "sd1";
}

/**
 * A view of a diffusers WeightFile under ldm names (same sources, no copies). Tensors without an
 * ldm name stay under their diffusers names. Fused OpenCLIP q/k/v are reached with `splitRows`.
 * Files that are not diffusers folders are returned unchanged.
 */
export function toLdmNames(file: WeightFile, family?: ModelFamily): WeightFile {
  if (file.format !== "diffusers") return file;
  const ctx: DiffusersContext = {
    family: family ?? diffusersFamily(file.tensors),
    upBlocksWithAttention: upBlocksWithAttention(file.tensors.keys()),
  };
  const tensors = new Map<string, TensorInfo>();
  const fused = new Map<string, TensorInfo[]>();
  const problems = new Map<string, () => WeightFileError>();
  for (const [name, t] of file.tensors) {
    const target = diffusersToLdmName(name, ctx);
    try {
      file.get(name);
    } catch (e) {
      // Keep refusals (non-contiguous, unsupported dtype) under the new name.
      const err = e as WeightFileError;
      problems.set(target && !target.part ? target.name : name, () => err);
    }
    if (!target) {
      tensors.set(name, t);
      continue;
    }
    if (target.part) {
      const parts = fused.get(target.name) ?? new Array<TensorInfo>(target.part.of);
      parts[target.part.index] = t;
      fused.set(target.name, parts);
      continue;
    }
    const shape = target.reshape === "conv1x1" && t.shape.length === 2 ? [...t.shape, 1, 1] : t.shape;
    tensors.set(target.name, { ...t, name: target.name, shape });
  }
  const complete = new Map<string, TensorInfo[]>();
  for (const [name, parts] of fused) {
    if (parts.filter(Boolean).length === parts.length) {
      complete.set(name, parts);
      // Listed with the fused shape so that architecture detection sees it; `get` refuses it (below),
      // readers take the pieces (`splitRows`, `storedRows`).
      const rows = parts.reduce((n, p) => n + p.shape[0], 0);
      tensors.set(name, { ...parts[0], name, shape: [rows, ...parts[0].shape.slice(1)] });
    }
    problems.set(name, () =>
      new UnsupportedLayoutError(
        file.path,
        `tensor ${name} is stored as ${parts.length} separate q/k/v tensors in ${file.path}; ` +
          `read it with splitRows(file, "${name}", rows)`,
      ));
  }
  return new TensorTable({
    path: file.path,
    format: "diffusers",
    tensors,
    // Tells architecture detection the names came from a diffusers layout (e.g. SD 2.x's dropped text layer).
    metadata: { ...file.metadata, "sdflow.layout": "diffusers" },
    problems,
    fused: complete,
  });
}
