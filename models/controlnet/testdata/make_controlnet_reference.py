#!/usr/bin/python3
"""Independent PyTorch reference for the ControlNet graph, on the tiny SD 1.x checkpoint (models/tiny).

A tiny ControlNet as lllyasviel's cldm ControlNet builds it: its encoder (time_embed, input_blocks,
middle_block) is a copy of the tiny UNet's (as real ControlNets start out), plus random
input_hint_block convs (3->16->16->32 s2->32->96 s2->96->256 s2->model_channels, SiLU between),
zero_convs and middle_block_out (random here, so that they are not zero). Computed in float64 torch
with the UNet modules of ../../testdata/make_reference.py (written from ldm, not from the TypeScript):
  guided = input_hint_block(hint); h = input_blocks.0.0(x) + guided; out 0 = zero_convs.0(h);
  out k = zero_convs.k(h) after input block k; last = middle_block_out(middle_block(h)).

Usage:
  deno run -A models/tiny/make_tiny.ts --out /tmp/tiny.safetensors --seed 1 --dtype f32
  /usr/bin/python3 models/controlnet/testdata/make_controlnet_reference.py /tmp/tiny.safetensors \
      models/controlnet/testdata/controlnet_reference.safetensors
The output holds the ControlNet's own weights (`w.*`), the inputs and the reference outputs (float32).
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "testdata"))
import make_reference as R  # noqa: E402

P = "model.diffusion_model."


def main():
    ckpt, out = sys.argv[1], sys.argv[2]
    weights, meta, sha = R.load(ckpt)
    R.W.update(weights)
    heads = int(meta["sdflow.unet.num_heads"])
    rng = np.random.default_rng(4321)
    mc = R.t(P + "time_embed.0.weight").shape[1]
    own = {}
    chans = [3, 16, 16, 32, 32, 96, 96, 256, mc]
    for i in range(8):
        cin, cout = chans[i], chans[i + 1]
        own[f"input_hint_block.{2 * i}.weight"] = rng.normal(0, 2.0 / np.sqrt(cin * 9), (cout, cin, 3, 3))
        own[f"input_hint_block.{2 * i}.bias"] = rng.normal(0, 0.1, (cout,))
    # Input blocks: conv_in, then every input_blocks.k of the UNet.
    block_ch = [mc]
    k = 1
    while (P + f"input_blocks.{k}.0.op.weight") in R.W or (P + f"input_blocks.{k}.0.in_layers.0.weight") in R.W:
        if (P + f"input_blocks.{k}.0.op.weight") in R.W:
            block_ch.append(block_ch[-1])
        else:
            block_ch.append(R.t(P + f"input_blocks.{k}.0.out_layers.3.weight").shape[0])
        k += 1
    for i, c in enumerate(block_ch):
        own[f"zero_convs.{i}.0.weight"] = rng.normal(0, 1 / np.sqrt(c), (c, c, 1, 1))
        own[f"zero_convs.{i}.0.bias"] = rng.normal(0, 0.1, (c,))
    c = block_ch[-1]
    own["middle_block_out.0.weight"] = rng.normal(0, 1 / np.sqrt(c), (c, c, 1, 1))
    own["middle_block_out.0.bias"] = rng.normal(0, 0.1, (c,))
    own = {n: a.astype(np.float32) for n, a in own.items()}
    for n, a in own.items():
        R.W["cn." + n] = torch.from_numpy(a.astype(np.float64))

    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    ts = np.array([999.0, 250.5], dtype=np.float32)
    context = rng.standard_normal((2, 77, 64)).astype(np.float32)
    hint = rng.uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
    f64 = lambda a: torch.from_numpy(a.astype(np.float64))

    h = f64(hint)
    for i in range(8):
        if i > 0:
            h = F.silu(h)
        h = R.conv(f"cn.input_hint_block.{2 * i}", h, stride=2 if i in (2, 4, 6) else 1, padding=1)
    guided = h
    emb = R.linear(P + "time_embed.2", F.silu(R.linear(P + "time_embed.0", R.timestep_embedding(f64(ts), mc))))
    ctx = f64(context)
    h = R.conv(P + "input_blocks.0.0", f64(x)) + guided
    outs = [R.conv("cn.zero_convs.0.0", h)]
    for i in range(1, len(block_ch)):
        h = R.unet_block(P + f"input_blocks.{i}", h, emb, ctx, heads)
        outs.append(R.conv(f"cn.zero_convs.{i}.0", h))
    h = R.unet_block(P + "middle_block", h, emb, ctx, heads)
    outs.append(R.conv("cn.middle_block_out.0", h))

    res = {"w." + n: a for n, a in own.items()}
    res.update({"x": x, "timesteps": ts, "context": context, "hint": hint,
                "guided_hint": guided.numpy().astype(np.float32)})
    for i, o in enumerate(outs):
        res[f"control_{i}"] = o.numpy().astype(np.float32)
        print(f"control_{i:<3d} {str(tuple(o.shape)):18s} std {o.std().item():.4f}", file=sys.stderr)
    R.write_safetensors(out, res, {"checkpoint_sha256": sha, "checkpoint_seed": meta.get("seed", ""),
                                   "checkpoint_dtype": meta.get("dtype", ""),
                                   "generator": "make_controlnet_reference.py"})


if __name__ == "__main__":
    main()
