#!/usr/bin/python3
"""Independent PyTorch reference for the tiny SDXL checkpoint (models/tiny, arch "sdxl").

Follows sgm / open_clip / transformers and stable-diffusion.cpp's documented semantics
(../shared/reference/sdcpp-facts.md, "SDXL"), in plain torch, float64, sharing no code with the
TypeScript graph builders (only the SD1 reference's generic layers: linear, conv, norms, attention,
ResBlock, the VAE):
  - token ids written out by hand from sd.cpp's rules: CLIP-L gets BOS, the prompt, EOS, padded with
    49407; bigG gets the same with every token after the first EOS set to 0;
  - CLIP-L (transformers names, quick_gelu) and OpenCLIP bigG (open_clip names, fused in_proj, tanh GELU
    as ggml's) at clip skip 2 (the penultimate layer), without the final LayerNorm; context =
    concat(CLIP-L, bigG) on features;
  - pooled = P @ (ln_final(last layer)[first EOS]) with P the stored text_projection (sd.cpp's reading);
  - y = [pooled, emb(H), emb(W), emb(0), emb(0), emb(H), emb(W)], emb = 256-wide [cos | sin];
  - the UNet with label_emb (emb = time_embed(t) + label_emb(y)), linear proj_in/proj_out, 16-wide heads
    (metadata sdflow.unet.head_dim);
  - the VAE decoder at scale 0.13025.

Usage:
  deno run -A models/tiny/make_tiny.ts --out /tmp/tiny-xl.safetensors --seed 1 --arch sdxl
  /usr/bin/python3 models/testdata/make_reference_sdxl.py /tmp/tiny-xl.safetensors \
      models/testdata/tiny_sdxl_reference.safetensors
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_reference as R  # noqa: E402  (generic layers and the safetensors reader/writer)

t, linear, conv, gn, ln, mha = R.t, R.linear, R.conv, R.gn, R.ln, R.mha

EOS = 49407
L_PREFIX = "conditioner.embedders.0.transformer.text_model."
G_PREFIX = "conditioner.embedders.1.model."


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def clip_l(tokens, heads, clip_skip):
    P = L_PREFIX
    x = t(P + "embeddings.token_embedding.weight")[tokens.long()] + t(P + "embeddings.position_embedding.weight")
    layers = R.count(lambda i: P + f"encoder.layers.{i}.self_attn.q_proj.weight")
    for i in range(layers - clip_skip + 1):
        L = P + f"encoder.layers.{i}."
        h = ln(L + "layer_norm1", x)
        a = mha(linear(L + "self_attn.q_proj", h), linear(L + "self_attn.k_proj", h), linear(L + "self_attn.v_proj", h),
                heads, causal=True)
        x = x + linear(L + "self_attn.out_proj", a)
        h = linear(L + "mlp.fc1", ln(L + "layer_norm2", x))
        x = x + linear(L + "mlp.fc2", h * torch.sigmoid(1.702 * h))
    return x


def big_g(tokens, heads, clip_skip):
    """Returns (hidden at clip skip without ln_final, pooled = P @ ln_final(last)[first EOS])."""
    P = G_PREFIX
    x = t(P + "token_embedding.weight")[tokens.long()] + t(P + "positional_embedding")
    d = x.shape[-1]
    layers = R.count(lambda i: P + f"transformer.resblocks.{i}.attn.in_proj_weight")
    hidden = None
    for i in range(layers):
        L = P + f"transformer.resblocks.{i}."
        h = ln(L + "ln_1", x)
        qkv = F.linear(h, t(L + "attn.in_proj_weight"), t(L + "attn.in_proj_bias"))
        a = mha(qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:], heads, causal=True)
        x = x + linear(L + "attn.out_proj", a)
        h = linear(L + "mlp.c_fc", ln(L + "ln_2", x))
        x = x + linear(L + "mlp.c_proj", gelu_tanh(h))
        if i == layers - clip_skip:
            hidden = x
    normed = ln(P + "ln_final", x)
    eos = [int((row == EOS).nonzero()[0]) for row in tokens]
    rows = torch.stack([normed[b, e] for b, e in enumerate(eos)])
    pooled = rows @ t(P + "text_projection").T  # P @ h for each row h
    return hidden, pooled


def size_embedding(v, dim=256):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
    a = v * freqs
    return torch.cat([torch.cos(a), torch.sin(a)])


def vector_y(pooled, height, width):
    parts = [size_embedding(float(v)) for v in (height, width, 0, 0, height, width)]
    return torch.stack([torch.cat([p, *parts]) for p in pooled])


def spatial_transformer(p, x, context, head_dim):
    b, c, hh, ww = x.shape
    heads = c // head_dim
    x_in = x
    x = gn(p + ".norm", x, 1e-6).permute(0, 2, 3, 1).reshape(b, hh * ww, c)
    x = linear(p + ".proj_in", x)
    d = 0
    while (p + f".transformer_blocks.{d}.attn1.to_q.weight") in R.W:
        B = p + f".transformer_blocks.{d}."
        n = ln(B + "norm1", x)
        x = x + linear(B + "attn1.to_out.0", mha(linear(B + "attn1.to_q", n, False), linear(B + "attn1.to_k", n, False),
                                                  linear(B + "attn1.to_v", n, False), heads))
        n = ln(B + "norm2", x)
        x = x + linear(B + "attn2.to_out.0", mha(linear(B + "attn2.to_q", n, False),
                                                  linear(B + "attn2.to_k", context, False),
                                                  linear(B + "attn2.to_v", context, False), heads))
        n = ln(B + "norm3", x)
        h, gate = linear(B + "ff.net.0.proj", n).chunk(2, dim=-1)
        x = x + linear(B + "ff.net.2", h * F.gelu(gate))
        d += 1
    x = linear(p + ".proj_out", x)
    return x.reshape(b, hh, ww, c).permute(0, 3, 1, 2) + x_in


def unet_block(p, h, emb, context, head_dim):
    i = 0
    while any(k.startswith(f"{p}.{i}.") for k in R.W):
        q = f"{p}.{i}"
        if (q + ".op.weight") in R.W:
            h = conv(q + ".op", h, stride=2, padding=1)
        elif (q + ".in_layers.0.weight") in R.W:
            h = R.resblock(q, h, emb)
        elif (q + ".norm.weight") in R.W:
            h = spatial_transformer(q, h, context, head_dim)
        elif (q + ".conv.weight") in R.W:
            h = conv(q + ".conv", F.interpolate(h, scale_factor=2, mode="nearest"))
        else:
            raise RuntimeError("unknown module " + q)
        i += 1
    return h


def unet(x, ts, context, y, head_dim):
    P = "model.diffusion_model."
    mc = t(P + "time_embed.0.weight").shape[1]
    emb = linear(P + "time_embed.2", F.silu(linear(P + "time_embed.0", R.timestep_embedding(ts, mc))))
    emb = emb + linear(P + "label_emb.0.2", F.silu(linear(P + "label_emb.0.0", y)))
    hs = []
    h = conv(P + "input_blocks.0.0", x)
    hs.append(h)
    i = 1
    while (P + f"input_blocks.{i}.0.op.weight") in R.W or (P + f"input_blocks.{i}.0.in_layers.0.weight") in R.W:
        h = unet_block(P + f"input_blocks.{i}", h, emb, context, head_dim)
        hs.append(h)
        i += 1
    h = unet_block(P + "middle_block", h, emb, context, head_dim)
    i = 0
    while (P + f"output_blocks.{i}.0.in_layers.0.weight") in R.W:
        h = torch.cat([h, hs.pop()], dim=1)
        h = unet_block(P + f"output_blocks.{i}", h, emb, context, head_dim)
        i += 1
    assert not hs
    return conv(P + "out.2", gn(P + "out.0", h, 1e-5, True))


def main():
    ckpt, out = sys.argv[1], sys.argv[2]
    weights, meta, sha = R.load(ckpt)
    R.W.update(weights)
    head_dim = int(meta["sdflow.unet.head_dim"])
    clip_heads = int(meta["sdflow.clip.heads"])
    rng = np.random.default_rng(4321)

    # "a lovely cat" and "" as sd.cpp tokenizes them for SDXL (sdcpp-facts.md).
    tokens_l = np.full((2, 77), EOS, dtype=np.int32)
    tokens_l[0, :5] = [49406, 320, 2165, 2368, EOS]
    tokens_l[1, :2] = [49406, EOS]
    tokens_g = tokens_l.copy()
    tokens_g[0, 5:] = 0
    tokens_g[1, 2:] = 0
    hl = clip_l(torch.from_numpy(tokens_l), clip_heads, 2)
    hg, pooled = big_g(torch.from_numpy(tokens_g), clip_heads, 2)
    context = torch.cat([hl, hg], dim=-1)

    # UNet: cond ("a lovely cat") and uncond (the empty negative prompt: context zeroed, pooled kept) at a
    # 8x6 latent, i.e. a 64 (high) x 48 (wide) image.
    x = rng.standard_normal((2, 4, 8, 6)).astype(np.float32)
    ts = np.array([999.0, 250.5], dtype=np.float32)
    unet_context = context.clone()
    unet_context[1] = 0
    y = vector_y(pooled, 64, 48)
    f64 = lambda a: torch.from_numpy(a.astype(np.float64))
    latent = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)

    res = {
        "xl.tokens_l": tokens_l,
        "xl.tokens_g": tokens_g,
        "xl.context": context.numpy().astype(np.float32),
        "xl.pooled": pooled.numpy().astype(np.float32),
        "xl.y": y.numpy().astype(np.float32),
        "xl.unet.x": x,
        "xl.unet.timesteps": ts,
        "xl.unet.out": unet(f64(x), f64(ts), unet_context, y, head_dim).numpy().astype(np.float32),
        "xl.vae.latent": latent,
        "xl.vae.image": R.vae_decode(f64(latent), scale=0.13025).numpy().astype(np.float32),
    }
    for k, v in res.items():
        if v.dtype == np.float32:
            print(f"{k:20s} {str(v.shape):18s} mean {v.mean():+.4f} std {v.std():.4f}", file=sys.stderr)
    R.write_safetensors(out, res, {"checkpoint_sha256": sha, "checkpoint_seed": meta.get("seed", ""),
                                   "checkpoint_dtype": meta.get("dtype", ""), "checkpoint_arch": "sdxl",
                                   "generator": "make_reference_sdxl.py"})


if __name__ == "__main__":
    main()
