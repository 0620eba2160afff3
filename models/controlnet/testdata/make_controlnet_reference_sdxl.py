#!/usr/bin/python3
"""Independent PyTorch reference for an SDXL ControlNet, on the tiny SDXL checkpoint (models/tiny, arch "sdxl").

A tiny SDXL ControlNet as cldm builds one (sd.cpp's ControlNetBlock for SDXL): its encoder (time_embed,
label_emb, input_blocks, middle_block) starts as a copy of the tiny SDXL UNet's, but shallower, as the
"small" SDXL ControlNets are: one transformer block per SpatialTransformer where the UNet has two
(so the TypeScript side must read the depths from the weights, not from the UNet). Random
input_hint_block convs (3->16->16->32 s2->32->96 s2->96->256 s2->model_channels, SiLU between),
zero_convs and middle_block_out. Computed in float64 torch with the SDXL reference's modules
(../../testdata/make_reference_sdxl.py, written from sgm, not from the TypeScript):
  emb = time_embed(t) + label_emb(y); guided = input_hint_block(hint); h = input_blocks.0.0(x) + guided;
  out 0 = zero_convs.0(h); out k = zero_convs.k(h) after input block k; last = middle_block_out(middle_block(h)).

Usage:
  deno run -A models/tiny/make_tiny.ts --out /tmp/tiny-xl.safetensors --seed 1 --arch sdxl
  /usr/bin/python3 models/controlnet/testdata/make_controlnet_reference_sdxl.py /tmp/tiny-xl.safetensors \
      models/controlnet/testdata/controlnet_sdxl_reference.safetensors
The output holds the ControlNet's own weights (`w.*`: hint block, zero convs, middle_block_out; float32), the
inputs and the reference outputs (float32); the encoder is the checkpoint's UNet minus transformer_blocks.1.
"""
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "testdata"))
import make_reference as R  # noqa: E402
import make_reference_sdxl as XL  # noqa: E402

P = "model.diffusion_model."


def main():
    ckpt, out = sys.argv[1], sys.argv[2]
    weights, meta, sha = R.load(ckpt)
    R.W.update(weights)
    head_dim = int(meta["sdflow.unet.head_dim"])
    rng = np.random.default_rng(8765)
    mc = R.t(P + "time_embed.0.weight").shape[1]

    # The encoder: the UNet's, without transformer block 1 of any SpatialTransformer.
    own = {}
    for name, v in weights.items():
        m = re.match(r"^model\.diffusion_model\.((time_embed|label_emb|input_blocks|middle_block)\..*)$", name)
        if m and ".transformer_blocks.1." not in name:
            own[m[1]] = v.numpy().astype(np.float32)
    encoder = set(own)
    chans = [3, 16, 16, 32, 32, 96, 96, 256, mc]
    for i in range(8):
        cin, cout = chans[i], chans[i + 1]
        own[f"input_hint_block.{2 * i}.weight"] = rng.normal(0, 2.0 / np.sqrt(cin * 9), (cout, cin, 3, 3))
        own[f"input_hint_block.{2 * i}.bias"] = rng.normal(0, 0.1, (cout,))
    block_ch = [mc]
    k = 1
    while f"input_blocks.{k}.0.op.weight" in own or f"input_blocks.{k}.0.in_layers.0.weight" in own:
        if f"input_blocks.{k}.0.op.weight" in own:
            block_ch.append(block_ch[-1])
        else:
            block_ch.append(own[f"input_blocks.{k}.0.out_layers.3.weight"].shape[0])
        k += 1
    for i, c in enumerate(block_ch):
        own[f"zero_convs.{i}.0.weight"] = rng.normal(0, 1 / np.sqrt(c), (c, c, 1, 1))
        own[f"zero_convs.{i}.0.bias"] = rng.normal(0, 0.1, (c,))
    c = block_ch[-1]
    own["middle_block_out.0.weight"] = rng.normal(0, 1 / np.sqrt(c), (c, c, 1, 1))
    own["middle_block_out.0.bias"] = rng.normal(0, 0.1, (c,))
    own = {n: np.asarray(a).astype(np.float32) for n, a in own.items()}
    for n, a in own.items():
        R.W["cn." + n] = torch.from_numpy(a.astype(np.float64))

    adm = own["label_emb.0.0.weight"].shape[1]
    ctx_dim = own["input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"].shape[1]
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    ts = np.array([999.0, 250.5], dtype=np.float32)
    context = rng.standard_normal((2, 77, ctx_dim)).astype(np.float32)
    y = rng.standard_normal((2, adm)).astype(np.float32)
    hint = rng.uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
    f64 = lambda a: torch.from_numpy(a.astype(np.float64))

    h = f64(hint)
    for i in range(8):
        if i > 0:
            h = F.silu(h)
        h = R.conv(f"cn.input_hint_block.{2 * i}", h, stride=2 if i in (2, 4, 6) else 1, padding=1)
    guided = h
    emb = R.linear("cn.time_embed.2", F.silu(R.linear("cn.time_embed.0", R.timestep_embedding(f64(ts), mc))))
    emb = emb + R.linear("cn.label_emb.0.2", F.silu(R.linear("cn.label_emb.0.0", f64(y))))
    ctx = f64(context)
    h = R.conv("cn.input_blocks.0.0", f64(x)) + guided
    outs = [R.conv("cn.zero_convs.0.0", h)]
    for i in range(1, len(block_ch)):
        h = XL.unet_block(f"cn.input_blocks.{i}", h, emb, ctx, head_dim)
        outs.append(R.conv(f"cn.zero_convs.{i}.0", h))
    h = XL.unet_block("cn.middle_block", h, emb, ctx, head_dim)
    outs.append(R.conv("cn.middle_block_out.0", h))

    # The encoder is not stored: the test copies it from the tiny SDXL checkpoint as above.
    res = {"w." + n: a for n, a in own.items() if n not in encoder}
    res.update({"x": x, "timesteps": ts, "context": context, "y": y, "hint": hint,
                "guided_hint": guided.numpy().astype(np.float32)})
    for i, o in enumerate(outs):
        res[f"control_{i}"] = o.numpy().astype(np.float32)
        print(f"control_{i:<3d} {str(tuple(o.shape)):18s} std {o.std().item():.4f}", file=sys.stderr)
    R.write_safetensors(out, res, {"checkpoint_sha256": sha, "checkpoint_seed": meta.get("seed", ""),
                                   "checkpoint_dtype": meta.get("dtype", ""),
                                   "generator": "make_controlnet_reference_sdxl.py"})


if __name__ == "__main__":
    main()
