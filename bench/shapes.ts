/** The SD 1.5 shapes the benchmarks measure (512x512 image: latent 64x64). */

export interface ConvShape {
  name: string;
  cin: number;
  cout: number;
  h: number;
  w: number;
  batch: number;
}

const unet = (cin: number, cout: number, hw: number): ConvShape => ({
  name: `unet ${cin}->${cout}@${hw}`,
  cin,
  cout,
  h: hw,
  w: hw,
  batch: 2,
});
const vae = (cin: number, cout: number, hw: number): ConvShape => ({
  name: `vae ${cin}->${cout}@${hw}`,
  cin,
  cout,
  h: hw,
  w: hw,
  batch: 1,
});

/**
 * Every distinct 3x3 stride-1 convolution of the SD 1.5 UNet (cond + uncond
 * batched: batch 2). Stride-2 downsamplers are not 3x3 stride-1 and are left out.
 */
export const UNET_CONVS: ConvShape[] = [
  unet(4, 320, 64),
  unet(320, 320, 64),
  unet(320, 640, 32),
  unet(640, 640, 32),
  unet(640, 1280, 16),
  unet(1280, 1280, 16),
  unet(1280, 1280, 8),
  unet(2560, 1280, 8),
  unet(2560, 1280, 16),
  unet(1920, 1280, 16),
  unet(1280, 1280, 32),
  unet(1920, 640, 32),
  unet(1280, 640, 32),
  unet(960, 640, 32),
  unet(640, 640, 64),
  unet(960, 320, 64),
  unet(640, 320, 64),
  unet(320, 4, 64),
];

/** Every distinct 3x3 stride-1 convolution of the SD VAE decoder at 512x512 (batch 1). */
export const VAE_DECODER_CONVS: ConvShape[] = [
  vae(4, 512, 64),
  vae(512, 512, 64),
  vae(512, 512, 128),
  vae(512, 512, 256),
  vae(512, 256, 256),
  vae(256, 256, 256),
  vae(256, 256, 512),
  vae(256, 128, 512),
  vae(128, 128, 512),
  vae(128, 3, 512),
];

export interface AttentionShape {
  name: string;
  batch: number;
  nq: number;
  nk: number;
  heads: number;
  headDim: number;
}

/** SD 1.5 UNet attention at 512x512, batch 2: self-attention per level and cross-attention to 77 tokens. */
export const ATTENTION_SHAPES: AttentionShape[] = [
  { name: "self 4096 tok, 8x40", batch: 2, nq: 4096, nk: 4096, heads: 8, headDim: 40 },
  { name: "self 1024 tok, 8x80", batch: 2, nq: 1024, nk: 1024, heads: 8, headDim: 80 },
  { name: "self 256 tok, 8x160", batch: 2, nq: 256, nk: 256, heads: 8, headDim: 160 },
  { name: "self 64 tok, 8x160", batch: 2, nq: 64, nk: 64, heads: 8, headDim: 160 },
  { name: "cross 4096->77, 8x40", batch: 2, nq: 4096, nk: 77, heads: 8, headDim: 40 },
  { name: "cross 1024->77, 8x80", batch: 2, nq: 1024, nk: 77, heads: 8, headDim: 80 },
  { name: "cross 256->77, 8x160", batch: 2, nq: 256, nk: 77, heads: 8, headDim: 160 },
  { name: "cross 64->77, 8x160", batch: 2, nq: 64, nk: 77, heads: 8, headDim: 160 },
  { name: "vae mid 4096 tok, 1x512", batch: 1, nq: 4096, nk: 4096, heads: 1, headDim: 512 },
];

export interface LinearShape {
  name: string;
  m: number;
  k: number;
  n: number;
}

/** SD 1.5 linear layers at 512x512 (batch 2 rows = 2 x tokens) and CLIP's (77 tokens, cond + uncond). */
export const LINEAR_SHAPES: LinearShape[] = [
  { name: "attn qkvo 320 @4096 tok", m: 8192, k: 320, n: 320 },
  { name: "ff geglu in 320 @4096", m: 8192, k: 320, n: 2560 },
  { name: "ff out 1280->320 @4096", m: 8192, k: 1280, n: 320 },
  { name: "attn qkvo 640 @1024 tok", m: 2048, k: 640, n: 640 },
  { name: "ff geglu in 640 @1024", m: 2048, k: 640, n: 5120 },
  { name: "ff out 2560->640 @1024", m: 2048, k: 2560, n: 640 },
  { name: "attn qkvo 1280 @256 tok", m: 512, k: 1280, n: 1280 },
  { name: "ff geglu in 1280 @256", m: 512, k: 1280, n: 10240 },
  { name: "ff out 5120->1280 @256", m: 512, k: 5120, n: 1280 },
  { name: "attn qkvo 1280 @64 tok", m: 128, k: 1280, n: 1280 },
  { name: "cross k/v 768->320 @77", m: 154, k: 768, n: 320 },
  { name: "cross k/v 768->1280 @77", m: 154, k: 768, n: 1280 },
  { name: "clip qkvo 768 @77", m: 154, k: 768, n: 768 },
  { name: "clip mlp 768->3072 @77", m: 154, k: 768, n: 3072 },
  { name: "clip mlp 3072->768 @77", m: 154, k: 3072, n: 768 },
];
