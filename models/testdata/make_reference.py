#!/usr/bin/python3
"""Independent PyTorch reference for the tiny SD 1.x and SD 2.x checkpoints (models/tiny).

Implements, in plain torch and following CompVis/ldm and transformers' CLIP
(no code shared with the TypeScript graph builders):
  - the CLIP text transformer (HF naming; quick_gelu; causal mask; clip skip
    1 and 2, each followed by the final layer norm as sd-webui / sd.cpp do);
  - the ldm UNetModel (ResBlock, SpatialTransformer with conv proj_in/out,
    BasicTransformerBlock with GEGLU, Downsample, Upsample, skip concat);
  - the AutoencoderKL decoder (z / 0.18215 -> post_quant_conv -> Decoder) and
    encoder (Encoder -> quant_conv: moments = mean | logvar).
For SD 2.x files (following ldm's FrozenOpenCLIPEmbedder and open_clip):
  - the OpenCLIP text transformer (open_clip naming, fused in_proj split
    q|k|v by rows, causal mask, hidden state of layer -clip_skip followed by
    ln_final), with open_clip's exact-erf GELU (clip.hidden_skip*) and with
    the tanh approximation stable-diffusion.cpp's ggml_gelu computes
    (clip.hidden_skip*_gelu_tanh);
  - SpatialTransformer with linear proj_in/proj_out (use_linear_in_transformer);
  - heads per transformer = channels / sdflow.unet.head_dim;
  - stable-diffusion.cpp's v-prediction probe input (x = 0.5, context = 0.5,
    t = 999) and k-diffusion's CompVisVDenoiser at two table sigmas:
    denoised = x * c_skip + UNet(x * c_in, t) * c_out with sigma_data = 1,
    c_skip = 1/(s^2+1), c_out = -s/sqrt(s^2+1), c_in = 1/sqrt(s^2+1).
The architecture is read from the checkpoint's shapes; heads come from the
file's metadata (sdflow.unet.num_heads or sdflow.unet.head_dim, sdflow.clip.heads).

Usage (Debian's python3 with python3-torch):
  deno run -A models/tiny/make_tiny.ts --out /tmp/tiny.safetensors --seed 1 --dtype f32
  /usr/bin/python3 models/testdata/make_reference.py /tmp/tiny.safetensors models/testdata/tiny_reference.safetensors
  deno run -A models/tiny/make_tiny.ts --out /tmp/tiny-sd2.safetensors --seed 1 --dtype f32 --arch sd2
  /usr/bin/python3 models/testdata/make_reference.py /tmp/tiny-sd2.safetensors models/testdata/tiny_sd2_reference.safetensors
The output holds the fixed inputs and the reference outputs (float32), plus
the checkpoint's sha256 in its metadata so the test can tell the generator
still writes the same weights.
"""
import hashlib
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_grad_enabled(False)
torch.set_default_dtype(torch.float64)


def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        dt = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}[e["dtype"]]
        arr = np.frombuffer(raw[base + a:base + b], dtype=dt).reshape(e["shape"])
        out[name] = torch.from_numpy(arr.astype(np.float64) if e["dtype"] != "I64" else arr.copy())
    return out, meta, hashlib.sha256(raw).hexdigest()


W = {}


def t(name):
    return W[name]


def linear(p, x, bias=True):
    return F.linear(x, t(p + ".weight"), t(p + ".bias") if bias else None)


def conv(p, x, stride=1, padding=None):
    w = t(p + ".weight")
    if padding is None:
        padding = w.shape[-1] // 2
    return F.conv2d(x, w, t(p + ".bias"), stride=stride, padding=padding)


def gn(p, x, eps, silu=False):
    y = F.group_norm(x, 32, t(p + ".weight"), t(p + ".bias"), eps)
    return F.silu(y) if silu else y


def ln(p, x):
    return F.layer_norm(x, (x.shape[-1],), t(p + ".weight"), t(p + ".bias"), 1e-5)


def mha(q, k, v, heads, causal=False):
    b, n, c = q.shape
    d = c // heads
    q = q.reshape(b, n, heads, d).transpose(1, 2)
    k = k.reshape(b, k.shape[1], heads, d).transpose(1, 2)
    v = v.reshape(b, v.shape[1], heads, d).transpose(1, 2)
    s = q @ k.transpose(-1, -2) / math.sqrt(d)
    if causal:
        mask = torch.triu(torch.ones(n, k.shape[2], dtype=torch.bool), 1)
        s = s.masked_fill(mask, float("-inf"))
    o = s.softmax(-1) @ v
    return o.transpose(1, 2).reshape(b, n, c)


# ------------------------------------------------------------------ OpenCLIP text tower (SD 2.x)
def open_clip(tokens, heads, clip_skip, gelu="none"):
    P = "cond_stage_model.model."
    x = t(P + "token_embedding.weight")[tokens.long()] + t(P + "positional_embedding")
    layers = 0
    while (P + f"transformer.resblocks.{layers}.attn.in_proj_weight") in W:
        layers += 1
    hidden_states = [x]
    for i in range(layers):
        L = P + f"transformer.resblocks.{i}."
        h = ln(L + "ln_1", x)
        qkv = F.linear(h, t(L + "attn.in_proj_weight"), t(L + "attn.in_proj_bias"))
        q, k, v = qkv.chunk(3, dim=-1)
        x = x + linear(L + "attn.out_proj", mha(q, k, v, heads, causal=True))
        h = F.gelu(linear(L + "mlp.c_fc", ln(L + "ln_2", x)), approximate=gelu)
        x = x + linear(L + "mlp.c_proj", h)
        hidden_states.append(x)
    return ln(P + "ln_final", hidden_states[-clip_skip])


# ------------------------------------------------------------------ CLIP (transformers CLIPTextModel)
def clip(tokens, heads, clip_skip):
    P = "cond_stage_model.transformer.text_model."
    x = t(P + "embeddings.token_embedding.weight")[tokens.long()] + t(P + "embeddings.position_embedding.weight")
    layers = 0
    while (P + f"encoder.layers.{layers}.self_attn.q_proj.weight") in W:
        layers += 1
    hidden_states = [x]
    for i in range(layers):
        L = P + f"encoder.layers.{i}."
        h = ln(L + "layer_norm1", x)
        a = mha(linear(L + "self_attn.q_proj", h), linear(L + "self_attn.k_proj", h), linear(L + "self_attn.v_proj", h),
                heads, causal=True)
        x = x + linear(L + "self_attn.out_proj", a)
        h = linear(L + "mlp.fc1", ln(L + "layer_norm2", x))
        h = h * torch.sigmoid(1.702 * h)
        x = x + linear(L + "mlp.fc2", h)
        hidden_states.append(x)
    # sd-webui: z = hidden_states[-clip_skip]; z = final_layer_norm(z)
    return ln(P + "final_layer_norm", hidden_states[-clip_skip])


# ------------------------------------------------------------------ UNet (ldm openaimodel)
def timestep_embedding(ts, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
    args = ts[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def resblock(p, x, emb):
    h = conv(p + ".in_layers.2", gn(p + ".in_layers.0", x, 1e-5, True))
    h = h + linear(p + ".emb_layers.1", F.silu(emb))[:, :, None, None]
    h = conv(p + ".out_layers.3", gn(p + ".out_layers.0", h, 1e-5, True))
    skip = conv(p + ".skip_connection", x) if (p + ".skip_connection.weight") in W else x
    return skip + h


def spatial_transformer(p, x, context, heads):
    b, c, hh, ww = x.shape
    heads = heads(c)
    x_in = x
    use_linear = t(p + ".proj_in.weight").dim() == 2
    x = gn(p + ".norm", x, 1e-6)
    if not use_linear:
        x = conv(p + ".proj_in", x)
    x = x.permute(0, 2, 3, 1).reshape(b, hh * ww, c)
    if use_linear:
        x = linear(p + ".proj_in", x)
    d = 0
    while (p + f".transformer_blocks.{d}.attn1.to_q.weight") in W:
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
    if use_linear:
        return linear(p + ".proj_out", x).reshape(b, hh, ww, c).permute(0, 3, 1, 2) + x_in
    x = x.reshape(b, hh, ww, c).permute(0, 3, 1, 2)
    return conv(p + ".proj_out", x) + x_in


def unet_block(p, h, emb, context, heads):
    """Runs the modules of input/output block p (ResBlock, SpatialTransformer, Downsample, Upsample) in order."""
    i = 0
    while any(k.startswith(f"{p}.{i}.") for k in W):
        q = f"{p}.{i}"
        if (q + ".op.weight") in W:
            h = conv(q + ".op", h, stride=2, padding=1)
        elif (q + ".in_layers.0.weight") in W:
            h = resblock(q, h, emb)
        elif (q + ".norm.weight") in W:
            h = spatial_transformer(q, h, context, heads)
        elif (q + ".conv.weight") in W:
            h = conv(q + ".conv", F.interpolate(h, scale_factor=2, mode="nearest"))
        else:
            raise RuntimeError("unknown module " + q)
        i += 1
    return h


def unet(x, ts, context, heads):
    P = "model.diffusion_model."
    mc = t(P + "time_embed.0.weight").shape[1]
    emb = linear(P + "time_embed.2", F.silu(linear(P + "time_embed.0", timestep_embedding(ts, mc))))
    hs = []
    h = conv(P + "input_blocks.0.0", x)
    hs.append(h)
    i = 1
    while (P + f"input_blocks.{i}.0.op.weight") in W or (P + f"input_blocks.{i}.0.in_layers.0.weight") in W:
        h = unet_block(P + f"input_blocks.{i}", h, emb, context, heads)
        hs.append(h)
        i += 1
    h = unet_block(P + "middle_block", h, emb, context, heads)
    i = 0
    while (P + f"output_blocks.{i}.0.in_layers.0.weight") in W:
        h = torch.cat([h, hs.pop()], dim=1)
        h = unet_block(P + f"output_blocks.{i}", h, emb, context, heads)
        i += 1
    assert not hs
    return conv(P + "out.2", gn(P + "out.0", h, 1e-5, True))


# ------------------------------------------------------------------ VAE (ldm model.py)
def vresnet(p, x):
    h = conv(p + ".conv1", gn(p + ".norm1", x, 1e-6, True))
    h = conv(p + ".conv2", gn(p + ".norm2", h, 1e-6, True))
    skip = conv(p + ".nin_shortcut", x) if (p + ".nin_shortcut.weight") in W else x
    return skip + h


def vattn(p, x):
    b, c, hh, ww = x.shape
    h = gn(p + ".norm", x, 1e-6)
    q, k, v = conv(p + ".q", h), conv(p + ".k", h), conv(p + ".v", h)
    q = q.reshape(b, c, hh * ww).permute(0, 2, 1)
    k = k.reshape(b, c, hh * ww)
    w_ = torch.bmm(q, k) * (c ** -0.5)
    w_ = w_.softmax(dim=2)
    v = v.reshape(b, c, hh * ww)
    h = torch.bmm(v, w_.permute(0, 2, 1)).reshape(b, c, hh, ww)
    return x + conv(p + ".proj_out", h)


def vmid(p, h):
    h = vresnet(p + ".block_1", h)
    h = vattn(p + ".attn_1", h)
    return vresnet(p + ".block_2", h)


def count(pattern):
    n = 0
    while pattern(n) in W:
        n += 1
    return n


def vae_decode(z, scale=0.18215):
    P = "first_stage_model."
    D = P + "decoder."
    h = conv(P + "post_quant_conv", z / scale)
    h = vmid(D + "mid", conv(D + "conv_in", h))
    levels = count(lambda l: D + f"up.{l}.block.0.conv1.weight")
    for lvl in reversed(range(levels)):
        for i in range(count(lambda j: D + f"up.{lvl}.block.{j}.conv1.weight")):
            h = vresnet(D + f"up.{lvl}.block.{i}", h)
        if lvl != 0:
            h = conv(D + f"up.{lvl}.upsample.conv", F.interpolate(h, scale_factor=2.0, mode="nearest"))
    return conv(D + "conv_out", gn(D + "norm_out", h, 1e-6, True))


def vae_encode(x):
    P = "first_stage_model."
    E = P + "encoder."
    h = conv(E + "conv_in", x)
    levels = count(lambda l: E + f"down.{l}.block.0.conv1.weight")
    for lvl in range(levels):
        for i in range(count(lambda j: E + f"down.{lvl}.block.{j}.conv1.weight")):
            h = vresnet(E + f"down.{lvl}.block.{i}", h)
        if lvl != levels - 1:
            h = conv(E + f"down.{lvl}.downsample.conv", F.pad(h, (0, 1, 0, 1), mode="constant", value=0), stride=2,
                     padding=0)
    h = vmid(E + "mid", h)
    h = conv(E + "conv_out", gn(E + "norm_out", h, 1e-6, True))
    return conv(P + "quant_conv", h)


# ------------------------------------------------------------------ main
def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs = []
    off = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dt = {np.dtype("float32"): "F32", np.dtype("int32"): "I32"}[a.dtype]
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def sd_alphas_cumprod():
    """stable-diffusion.cpp's scaled-linear schedule, in float32 as it computes it."""
    ls, le = np.float32(math.sqrt(np.float32(0.00085))), np.float32(math.sqrt(np.float32(0.012)))
    out = np.empty(1000, dtype=np.float32)
    prod = np.float32(1)
    for i in range(1000):
        beta = np.float32(ls + np.float32((le - ls) * np.float32(i / 999)))
        prod = np.float32(prod * np.float32(1 - np.float32(beta * beta)))
        out[i] = prod
    return out


def main():
    ckpt, out = sys.argv[1], sys.argv[2]
    weights, meta, sha = load(ckpt)
    W.update(weights)
    if "sdflow.unet.head_dim" in meta:
        head_dim = int(meta["sdflow.unet.head_dim"])
        unet_heads = lambda c: c // head_dim
    else:
        n_heads = int(meta["sdflow.unet.num_heads"])
        unet_heads = lambda c: n_heads
    clip_heads = int(meta["sdflow.clip.heads"])
    sd2 = "cond_stage_model.model.token_embedding.weight" in W
    text = open_clip if sd2 else clip
    ctx_dim = t("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight").shape[1] if sd2 else 64
    rng = np.random.default_rng(1234)

    # SD 2.x pads with 0 after the end-of-text token (stable-diffusion.cpp's SD2 tokenizer), SD 1.x with 49407.
    tokens = np.full((2, 77), 0 if sd2 else 49407, dtype=np.int32)
    tokens[0, :5] = [49406, 320, 1612, 2368, 49407]
    tokens[1, 0] = 49406
    tokens[1, 1:21] = rng.integers(0, 49406, 20)
    tok = torch.from_numpy(tokens)

    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    ts = np.array([999.0, 250.5], dtype=np.float32)
    context = rng.standard_normal((2, 77, ctx_dim)).astype(np.float32)
    latent = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    image = rng.uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    f64 = lambda a: torch.from_numpy(a.astype(np.float64))

    res = {
        "clip.tokens": tokens,
        "clip.hidden_skip1": text(tok, clip_heads, 1).numpy().astype(np.float32),
        "clip.hidden_skip2": text(tok, clip_heads, 2).numpy().astype(np.float32),
        "unet.x": x,
        "unet.timesteps": ts,
        "unet.context": context,
        "unet.out": unet(f64(x), f64(ts), f64(context), unet_heads).numpy().astype(np.float32),
        "vae.latent": latent,
        "vae.image": vae_decode(f64(latent)).numpy().astype(np.float32),
        "vae.enc_image": image,
        "vae.moments": vae_encode(f64(image)).numpy().astype(np.float32),
    }
    if sd2:
        for skip in (1, 2):
            res[f"clip.hidden_skip{skip}_gelu_tanh"] = open_clip(tok, clip_heads, skip, "tanh").numpy().astype(np.float32)
        probe_x = np.full((1, 4, 8, 8), 0.5, dtype=np.float32)
        probe_ctx = np.full((1, 2, ctx_dim), 0.5, dtype=np.float32)
        probe = unet(f64(probe_x), f64(np.array([999.0], dtype=np.float32)), f64(probe_ctx), unet_heads).numpy()
        res["probe.out"] = probe.astype(np.float32)
        res["probe.mean_minus_x"] = np.array([float((probe - 0.5).mean())], dtype=np.float32)
        ac = sd_alphas_cumprod()
        steps = [999, 500]
        sig = np.array([np.float32(math.sqrt(np.float32(np.float32(1 - ac[i]) / ac[i]))) for i in steps], dtype=np.float32)
        vx = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
        vctx = rng.standard_normal((1, 77, ctx_dim)).astype(np.float32)
        denoised = []
        for s_, ts_ in zip(sig.astype(np.float64), steps):
            c_in, c_skip, c_out = 1 / math.sqrt(s_ * s_ + 1), 1 / (s_ * s_ + 1), -s_ / math.sqrt(s_ * s_ + 1)
            model_out = unet(f64(vx) * c_in, f64(np.array([ts_], dtype=np.float32)), f64(vctx), unet_heads)
            denoised.append((f64(vx) * c_skip + model_out * c_out).numpy())
        res["vpred.sigmas"] = sig
        res["vpred.timesteps"] = np.array(steps, dtype=np.float32)
        res["vpred.x"] = vx
        res["vpred.context"] = vctx
        res["vpred.denoised"] = np.concatenate(denoised, 0).astype(np.float32)
    for k, v in res.items():
        if v.dtype == np.float32:
            print(f"{k:20s} {str(v.shape):18s} mean {v.mean():+.4f} std {v.std():.4f}", file=sys.stderr)
    write_safetensors(out, res, {"checkpoint_sha256": sha, "checkpoint_seed": meta.get("seed", ""),
                                 "checkpoint_dtype": meta.get("dtype", ""), "checkpoint_arch": "sd2" if sd2 else "sd1",
                                 "generator": "make_reference.py"})


if __name__ == "__main__":
    main()
