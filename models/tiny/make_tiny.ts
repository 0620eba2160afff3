/**
 * A tiny random-weight Stable Diffusion 1.x (or, with `arch: "sd2"`, 2.x)
 * checkpoint in the CompVis/ldm single-file layout (real tensor names,
 * scaled-down shapes), written as .safetensors. For tests and demos: every
 * network builds and runs in well under a second, and architecture detection
 * sees an ordinary SD1 (SD2) file.
 *
 *   UNet: model_channels 32, channel_mult [1, 2], 1 res block per level,
 *         attention (depth 1) at the lower-resolution level and in the middle,
 *         2 heads (metadata sdflow.unet.num_heads), context 64, conv proj_in/out;
 *   CLIP: transformers naming, 2 layers, width 64, 2 heads (metadata
 *         sdflow.clip.heads), MLP 256, vocabulary 49408, 77 positions, quick_gelu;
 *   VAE:  ch 32, ch_mult [1, 1, 2, 2] (downsampling factor 8, like SD's),
 *         1 res block per level, z 4, mid attention, quant convs.
 *
 * The SD 2.x variant ({@link TINY_SD2}) differs where SD 2.x differs from 1.x:
 *   UNet: 2 res blocks per level (as SD's, so diffusers names map), linear
 *         proj_in/proj_out, attention at every level, heads by width
 *         (metadata sdflow.unet.head_dim 16, as SD 2.x's num_head_channels 64);
 *   CLIP: OpenCLIP naming under cond_stage_model.model. (fused attn.in_proj,
 *         ln_final, text_projection), 3 layers, width 64, 2 heads, MLP 256, GELU.
 *
 * Values are deterministic and independent of write order: each tensor draws
 * from its own sfc32 stream seeded by FNV-1a of `${seed}/${name}`; normals
 * are Irwin-Hall sums of four uniforms (only exact arithmetic, so every
 * machine writes the same bytes). Initialisation follows make_random_sd.py:
 * weights N(0, 1/fan_in), biases and norm biases N(0, 0.02^2), norm weights
 * 1 + N(0, 0.02^2), embeddings N(0, 0.02^2).
 *
 * CLI: deno run -A models/tiny/make_tiny.ts --out tiny.safetensors [--seed 0] [--dtype f32|f16] [--arch sd1|sdxl]
 */

import { f32ToF16Bits } from "../../backends/float16.ts";

type Kind = "w" | "b" | "nw" | "nb" | "emb" | "i64";

interface Item {
  name: string;
  shape: number[];
  kind: Kind;
  fanIn?: number;
}

/** The tiny model's architecture (what detectArch should find). */
export const TINY = {
  unet: {
    modelChannels: 32,
    channelMult: [1, 2],
    numResBlocks: 1,
    attentionLevels: [1],
    heads: 2,
    contextDim: 64,
  },
  clip: { width: 64, layers: 2, heads: 2, ffDim: 256, vocab: 49408, tokens: 77 },
  vae: { ch: 32, chMult: [1, 1, 2, 2], numResBlocks: 1, zChannels: 4 },
} as const;

/** The tiny SD 2.x model (what detectArch should find in `arch: "sd2"` files). */
export const TINY_SD2 = {
  unet: { ...TINY.unet, numResBlocks: 2, attentionLevels: [0, 1], headDim: 16, linearProj: true },
  clip: { width: 64, layers: 3, heads: 2, ffDim: 256, vocab: 49408, tokens: 77, projection: 32 },
  vae: TINY.vae,
} as const;

/**
 * The tiny SDXL model (`arch: "sdxl"`, sgm single-file names): what SDXL has and SD1 lacks, scaled down.
 *
 *   UNet: model_channels 32, channel_mult [1, 2], 2 res blocks per level (as SDXL, so diffusers names map),
 *         no attention at level 0 and
 *         2 transformer blocks at level 1 and in the middle, 16-wide heads (metadata
 *         sdflow.unet.head_dim), linear proj_in/out, context 32 + 48 = 80, label_emb from
 *         48 + 6 x 256 = 1584 (pooled width + the six 256-wide size embeddings);
 *   CLIP-L (conditioner.embedders.0.transformer.text_model.*): width 32, 3 layers, 2 heads, MLP 128;
 *   bigG (conditioner.embedders.1.model.*, open_clip names, fused in_proj): width 48, 3 layers, 2 heads,
 *         MLP 192, text_projection [48, 48] (not symmetric: the way round it is applied matters);
 *   VAE:  as the SD1 tiny model's (scale 0.13025 by the SDXL family).
 */
export const TINY_XL = {
  unet: {
    modelChannels: 32,
    channelMult: [1, 2],
    numResBlocks: 2,
    transformerDepth: [0, 2],
    middleDepth: 2,
    headDim: 16,
    contextDim: 80,
    admIn: 48 + 6 * 256,
  },
  clipL: { width: 32, layers: 3, heads: 2, ffDim: 128, vocab: 49408, tokens: 77 },
  bigG: { width: 48, layers: 3, heads: 2, ffDim: 192, vocab: 49408, tokens: 77 },
} as const;

class Spec {
  readonly items: Item[] = [];
  private readonly names = new Set<string>();
  add(name: string, shape: number[], kind: Kind, fanIn?: number): void {
    if (this.names.has(name)) throw new Error(`duplicate tensor ${name}`);
    this.names.add(name);
    this.items.push({ name, shape, kind, fanIn });
  }
  conv(p: string, cout: number, cin: number, k: number): void {
    this.add(`${p}.weight`, [cout, cin, k, k], "w", cin * k * k);
    this.add(`${p}.bias`, [cout], "b");
  }
  linear(p: string, cout: number, cin: number, bias = true): void {
    this.add(`${p}.weight`, [cout, cin], "w", cin);
    if (bias) this.add(`${p}.bias`, [cout], "b");
  }
  norm(p: string, c: number): void {
    this.add(`${p}.weight`, [c], "nw");
    this.add(`${p}.bias`, [c], "nb");
  }
}

interface TinyUnet {
  modelChannels: number;
  channelMult: readonly number[];
  numResBlocks: number;
  /** Transformer blocks per level (0: none) and in the middle block. */
  depths: readonly number[];
  middleDepth: number;
  contextDim: number;
  /** Linear proj_in/proj_out (SD2/SDXL) rather than 1x1 convs. */
  linearProj: boolean;
  /** label_emb input width (SDXL). */
  admIn?: number;
}

const TINY_SD2_UNET: TinyUnet = {
  ...TINY.unet,
  numResBlocks: TINY_SD2.unet.numResBlocks,
  depths: [1, 1],
  middleDepth: 1,
  linearProj: true,
};

const TINY_SD1_UNET: TinyUnet = {
  ...TINY.unet,
  depths: TINY.unet.channelMult.map((_, l) => ((TINY.unet.attentionLevels as readonly number[]).includes(l) ? 1 : 0)),
  middleDepth: 1,
  linearProj: false,
};

function unet(s: Spec, cfg: TinyUnet): void {
  const P = "model.diffusion_model.";
  const { modelChannels: mc, channelMult, numResBlocks: nres, contextDim: ctx } = cfg;
  const emb = mc * 4;
  const res = (p: string, cin: number, cout: number) => {
    s.norm(`${p}.in_layers.0`, cin);
    s.conv(`${p}.in_layers.2`, cout, cin, 3);
    s.linear(`${p}.emb_layers.1`, cout, emb);
    s.norm(`${p}.out_layers.0`, cout);
    s.conv(`${p}.out_layers.3`, cout, cout, 3);
    if (cin !== cout) s.conv(`${p}.skip_connection`, cout, cin, 1);
  };
  const proj = (p: string, c: number) => cfg.linearProj ? s.linear(p, c, c) : s.conv(p, c, c, 1);
  const st = (p: string, c: number, depth: number) => {
    s.norm(`${p}.norm`, c);
    proj(`${p}.proj_in`, c);
    for (let d = 0; d < depth; d++) {
      const tb = `${p}.transformer_blocks.${d}`;
      for (const a of ["attn1", "attn2"]) {
        s.linear(`${tb}.${a}.to_q`, c, c, false);
        s.linear(`${tb}.${a}.to_k`, c, a === "attn1" ? c : ctx, false);
        s.linear(`${tb}.${a}.to_v`, c, a === "attn1" ? c : ctx, false);
        s.linear(`${tb}.${a}.to_out.0`, c, c);
      }
      s.linear(`${tb}.ff.net.0.proj`, c * 8, c);
      s.linear(`${tb}.ff.net.2`, c, c * 4);
      for (const n of ["norm1", "norm2", "norm3"]) s.norm(`${tb}.${n}`, c);
    }
    proj(`${p}.proj_out`, c);
  };
  s.linear(`${P}time_embed.0`, emb, mc);
  s.linear(`${P}time_embed.2`, emb, emb);
  if (cfg.admIn !== undefined) {
    s.linear(`${P}label_emb.0.0`, emb, cfg.admIn);
    s.linear(`${P}label_emb.0.2`, emb, emb);
  }
  s.conv(`${P}input_blocks.0.0`, mc, 4, 3);
  const chans: number[] = [mc];
  let ch: number = mc;
  let idx = 1;
  channelMult.forEach((m, lvl) => {
    for (let r = 0; r < nres; r++) {
      res(`${P}input_blocks.${idx}.0`, ch, mc * m);
      ch = mc * m;
      if (cfg.depths[lvl] > 0) st(`${P}input_blocks.${idx}.1`, ch, cfg.depths[lvl]);
      chans.push(ch);
      idx++;
    }
    if (lvl !== channelMult.length - 1) {
      s.conv(`${P}input_blocks.${idx}.0.op`, ch, ch, 3);
      chans.push(ch);
      idx++;
    }
  });
  res(`${P}middle_block.0`, ch, ch);
  st(`${P}middle_block.1`, ch, cfg.middleDepth);
  res(`${P}middle_block.2`, ch, ch);
  idx = 0;
  for (let lvl = channelMult.length - 1; lvl >= 0; lvl--) {
    for (let i = 0; i <= nres; i++) {
      const skip = chans.pop()!;
      res(`${P}output_blocks.${idx}.0`, ch + skip, mc * channelMult[lvl]);
      ch = mc * channelMult[lvl];
      let sub = 1;
      if (cfg.depths[lvl] > 0) {
        st(`${P}output_blocks.${idx}.1`, ch, cfg.depths[lvl]);
        sub = 2;
      }
      if (lvl !== 0 && i === nres) s.conv(`${P}output_blocks.${idx}.${sub}.conv`, ch, ch, 3);
      idx++;
    }
  }
  s.norm(`${P}out.0`, ch);
  s.conv(`${P}out.2`, 4, ch, 3);
}

function vae(s: Spec): void {
  const P = "first_stage_model.";
  const { ch, chMult, numResBlocks: nres, zChannels: z } = TINY.vae;
  const resnet = (p: string, cin: number, cout: number) => {
    s.norm(`${p}.norm1`, cin);
    s.conv(`${p}.conv1`, cout, cin, 3);
    s.norm(`${p}.norm2`, cout);
    s.conv(`${p}.conv2`, cout, cout, 3);
    if (cin !== cout) s.conv(`${p}.nin_shortcut`, cout, cin, 1);
  };
  const attn = (p: string, c: number) => {
    s.norm(`${p}.norm`, c);
    for (const n of ["q", "k", "v", "proj_out"]) s.conv(`${p}.${n}`, c, c, 1);
  };
  const mid = (p: string, c: number) => {
    resnet(`${p}.block_1`, c, c);
    attn(`${p}.attn_1`, c);
    resnet(`${p}.block_2`, c, c);
  };
  const e = `${P}encoder`;
  s.conv(`${e}.conv_in`, ch, 3, 3);
  let cin: number = ch;
  chMult.forEach((m, lvl) => {
    for (let i = 0; i < nres; i++) {
      resnet(`${e}.down.${lvl}.block.${i}`, cin, ch * m);
      cin = ch * m;
    }
    if (lvl !== chMult.length - 1) s.conv(`${e}.down.${lvl}.downsample.conv`, cin, cin, 3);
  });
  mid(`${e}.mid`, cin);
  s.norm(`${e}.norm_out`, cin);
  s.conv(`${e}.conv_out`, 2 * z, cin, 3);
  s.conv(`${P}quant_conv`, 2 * z, 2 * z, 1);
  s.conv(`${P}post_quant_conv`, z, z, 1);
  const d = `${P}decoder`;
  cin = ch * chMult[chMult.length - 1];
  s.conv(`${d}.conv_in`, cin, z, 3);
  mid(`${d}.mid`, cin);
  for (let lvl = chMult.length - 1; lvl >= 0; lvl--) {
    for (let i = 0; i <= nres; i++) {
      resnet(`${d}.up.${lvl}.block.${i}`, cin, ch * chMult[lvl]);
      cin = ch * chMult[lvl];
    }
    if (lvl !== 0) s.conv(`${d}.up.${lvl}.upsample.conv`, cin, cin, 3);
  }
  s.norm(`${d}.norm_out`, cin);
  s.conv(`${d}.conv_out`, 3, cin, 3);
}

interface TinyClip {
  width: number;
  layers: number;
  ffDim: number;
  vocab: number;
  tokens: number;
}

/** OpenCLIP text tower (open_clip names) under `P`, with a [width, width] text_projection. */
function openClip(s: Spec, P: string, cfg: TinyClip): void {
  const { width: d, layers, ffDim, vocab, tokens } = cfg;
  s.add(`${P}token_embedding.weight`, [vocab, d], "emb");
  s.add(`${P}positional_embedding`, [tokens, d], "emb");
  for (let i = 0; i < layers; i++) {
    const L = `${P}transformer.resblocks.${i}`;
    s.add(`${L}.attn.in_proj_weight`, [3 * d, d], "w", d);
    s.add(`${L}.attn.in_proj_bias`, [3 * d], "b");
    s.linear(`${L}.attn.out_proj`, d, d);
    s.norm(`${L}.ln_1`, d);
    s.linear(`${L}.mlp.c_fc`, ffDim, d);
    s.linear(`${L}.mlp.c_proj`, d, ffDim);
    s.norm(`${L}.ln_2`, d);
  }
  s.norm(`${P}ln_final`, d);
  s.add(`${P}text_projection`, [d, d], "w", d);
}

function clip(s: Spec, P = "cond_stage_model.transformer.text_model.", cfg: TinyClip = TINY.clip): void {
  const { width: d, layers, ffDim, vocab, tokens } = cfg;
  s.add(`${P}embeddings.token_embedding.weight`, [vocab, d], "emb");
  s.add(`${P}embeddings.position_embedding.weight`, [tokens, d], "emb");
  s.add(`${P}embeddings.position_ids`, [1, tokens], "i64");
  for (let i = 0; i < layers; i++) {
    const L = `${P}encoder.layers.${i}`;
    for (const n of ["k_proj", "v_proj", "q_proj", "out_proj"]) s.linear(`${L}.self_attn.${n}`, d, d);
    s.norm(`${L}.layer_norm1`, d);
    s.linear(`${L}.mlp.fc1`, ffDim, d);
    s.linear(`${L}.mlp.fc2`, d, ffDim);
    s.norm(`${L}.layer_norm2`, d);
  }
  s.norm(`${P}final_layer_norm`, d);
}

/** OpenCLIP ViT-H-style text tower (SD 2.x), open_clip names as in SD 2.x checkpoints. */
function openClipSd2(s: Spec): void {
  const P = "cond_stage_model.model.";
  const { width: d, layers, ffDim, vocab, tokens, projection } = TINY_SD2.clip;
  s.add(`${P}token_embedding.weight`, [vocab, d], "emb");
  s.add(`${P}positional_embedding`, [tokens, d], "emb");
  for (let i = 0; i < layers; i++) {
    const L = `${P}transformer.resblocks.${i}`;
    s.norm(`${L}.ln_1`, d);
    s.add(`${L}.attn.in_proj_weight`, [3 * d, d], "w", d);
    s.add(`${L}.attn.in_proj_bias`, [3 * d], "b");
    s.linear(`${L}.attn.out_proj`, d, d);
    s.norm(`${L}.ln_2`, d);
    s.linear(`${L}.mlp.c_fc`, ffDim, d);
    s.linear(`${L}.mlp.c_proj`, d, ffDim);
  }
  s.norm(`${P}ln_final`, d);
  s.add(`${P}text_projection`, [d, projection], "w", d);
  s.add(`${P}logit_scale`, [], "nw");
}

/** Every tensor of the tiny checkpoint, sorted by name (as make_random_sd.py writes them). */
export function tinySpec(arch: TinyArch = "sd1"): Item[] {
  const s = new Spec();
  if (arch === "sdxl") {
    const u = TINY_XL.unet;
    unet(s, { ...u, depths: u.transformerDepth, linearProj: true });
    vae(s);
    clip(s, "conditioner.embedders.0.transformer.text_model.", TINY_XL.clipL);
    openClip(s, "conditioner.embedders.1.model.", TINY_XL.bigG);
  } else if (arch === "sd2") {
    unet(s, TINY_SD2_UNET);
    vae(s);
    openClipSd2(s);
  } else {
    unet(s, TINY_SD1_UNET);
    vae(s);
    clip(s);
  }
  return s.items.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Which tiny model: SD 1.x-shaped (the default), SD 2.x-shaped ({@link TINY_SD2}) or SDXL-shaped ({@link TINY_XL}). */
export type TinyArch = "sd1" | "sd2" | "sdxl";

// ---- deterministic values ------------------------------------------------------

function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(text)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** sfc32, seeded from a string; returns uniform integers in [0, 2^32). */
function sfc32(key: string): () => number {
  let a = fnv1a32(key);
  let b = fnv1a32(`${key}#1`);
  let c = fnv1a32(`${key}#2`);
  let d = 1;
  const next = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}

const SQRT3 = Math.sqrt(3);
const INV32 = 1 / 4294967296;

/** The float32 values of one tensor. */
export function tensorValues(seed: number, item: Item): Float32Array {
  const n = item.shape.reduce((x, y) => x * y, 1);
  const out = new Float32Array(n);
  const rnd = sfc32(`${seed}/${item.name}`);
  const std = item.kind === "w" ? 1 / Math.sqrt(item.fanIn!) : 0.02;
  const mean = item.kind === "nw" ? 1 : 0;
  for (let i = 0; i < n; i++) {
    // Irwin-Hall(4): mean 2, variance 1/3 -> standardised, bounded by +-2*sqrt(3).
    const u = (rnd() + rnd() + rnd() + rnd()) * INV32;
    out[i] = mean + (u - 2) * SQRT3 * std;
  }
  return out;
}

export interface TinyOptions {
  seed?: number;
  dtype?: "f32" | "f16";
  /** Model family (default sd1). */
  arch?: TinyArch;
}

/** The tiny checkpoint's bytes (safetensors). */
export function tinyCheckpointBytes(opts: TinyOptions = {}): Uint8Array {
  const seed = opts.seed ?? 0;
  const dtype = opts.dtype ?? "f32";
  const arch = opts.arch ?? "sd1";
  const items = tinySpec(arch);
  const header: Record<string, unknown> = {};
  let offset = 0;
  const sizes: number[] = [];
  for (const it of items) {
    const n = it.shape.reduce((x, y) => x * y, 1);
    const esize = it.kind === "i64" ? 8 : dtype === "f16" ? 2 : 4;
    const st = it.kind === "i64" ? "I64" : dtype === "f16" ? "F16" : "F32";
    header[it.name] = { dtype: st, shape: it.shape, data_offsets: [offset, offset + n * esize] };
    sizes.push(n * esize);
    offset += n * esize;
  }
  // Key order is part of the bytes (the references' sha256): format, generator, arch, seed, dtype, then heads.
  const meta = (name: string, heads: Record<string, string>) => ({
    format: "pt",
    generator: "sdflow models/tiny/make_tiny.ts",
    arch: name,
    seed: String(seed),
    dtype,
    ...heads,
  });
  header["__metadata__"] = arch === "sdxl"
    ? meta("sdxl-tiny", {
      "sdflow.unet.head_dim": String(TINY_XL.unet.headDim),
      "sdflow.clip.heads": String(TINY_XL.clipL.heads),
    })
    : arch === "sd2"
    ? meta("sd21-tiny", {
      "sdflow.unet.head_dim": String(TINY_SD2.unet.headDim),
      "sdflow.clip.heads": String(TINY_SD2.clip.heads),
    })
    : meta("sd15-tiny", {
      "sdflow.unet.num_heads": String(TINY.unet.heads),
      "sdflow.clip.heads": String(TINY.clip.heads),
    });
  let hjson = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (hjson.length % 8)) % 8;
  if (pad) {
    const padded = new Uint8Array(hjson.length + pad).fill(0x20);
    padded.set(hjson);
    hjson = padded;
  }
  const out = new Uint8Array(8 + hjson.length + offset);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(hjson.length), true);
  out.set(hjson, 8);
  let pos = 8 + hjson.length;
  items.forEach((it, k) => {
    if (it.kind === "i64") {
      const n = sizes[k] / 8;
      for (let i = 0; i < n; i++) dv.setBigInt64(pos + 8 * i, BigInt(i), true);
    } else {
      const v = tensorValues(seed, it);
      if (dtype === "f16") { for (let i = 0; i < v.length; i++) dv.setUint16(pos + 2 * i, f32ToF16Bits(v[i]), true); }
      else for (let i = 0; i < v.length; i++) dv.setFloat32(pos + 4 * i, v[i], true);
    }
    pos += sizes[k];
  });
  return out;
}

if (import.meta.main) {
  const args = Deno.args;
  const arg = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const out = arg("--out");
  if (!out) {
    console.error("usage: make_tiny.ts --out FILE.safetensors [--seed N] [--dtype f32|f16] [--arch sd1|sd2|sdxl]");
    Deno.exit(2);
  }
  const dtype = (arg("--dtype") ?? "f32") as "f32" | "f16";
  if (dtype !== "f32" && dtype !== "f16") {
    console.error(`--dtype must be f32 or f16, got ${dtype}`);
    Deno.exit(2);
  }
  const arch = (arg("--arch") ?? "sd1") as TinyArch;
  if (arch !== "sd1" && arch !== "sd2" && arch !== "sdxl") {
    console.error(`--arch must be sd1, sd2 or sdxl, got ${arch}`);
    Deno.exit(2);
  }
  const bytes = tinyCheckpointBytes({ seed: Number(arg("--seed") ?? 0), dtype, arch });
  Deno.writeFileSync(out, bytes);
  console.error(`wrote ${out} (${bytes.length} bytes)`);
}
