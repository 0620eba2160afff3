#!/usr/bin/python3
"""Checks that the training modules (model.py) compute what an SD 1.x checkpoint means: the exported file,
read back, is run by the independent functional reference models/testdata/make_reference.py (written from
CompVis/ldm and transformers, shared with the tiny-model tests) and by the modules, on the same inputs.

    /usr/bin/python3 tools/train_demo/check_layout.py FILE.safetensors

Prints the largest relative difference per network; float64 both sides, so anything above ~1e-10 is a bug.
"""
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "../../models/testdata"))
import make_reference as ref  # noqa: E402
import train  # noqa: E402

torch.set_grad_enabled(False)
torch.set_default_dtype(torch.float64)
w, meta, _ = ref.load(sys.argv[1])
ref.W.update(w)
clip, unet, vae = (m.double() for m in train.make_models())
for prefix, m in (("cond_stage_model.transformer.text_model.", clip), ("model.diffusion_model.", unet),
                  ("first_stage_model.", vae)):
    m.load_state_dict({k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)})

g = torch.Generator().manual_seed(0)
tokens = torch.randint(0, 49408, (2, 77), generator=g)
x = torch.randn(2, 4, 16, 16, generator=g, dtype=torch.float64)
ts = torch.tensor([10.0, 700.0])
scale = float(meta["sdflow.vae.scaling_factor"])


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


ctx_ref = ref.clip(tokens, int(meta["sdflow.clip.heads"]), 1)
print("clip", rel(clip(tokens), ctx_ref))
heads = int(meta["sdflow.unet.num_heads"])
print("unet", rel(unet(x, ts, ctx_ref), ref.unet(x, ts, ctx_ref, lambda c: heads)))
print("vae decode", rel(vae.decode(x), ref.vae_decode(x * scale, scale)))
img = torch.rand(1, 3, 64, 64, generator=g, dtype=torch.float64) * 2 - 1
mean, logvar = vae.encode(img)
print("vae encode", rel(torch.cat([mean, logvar], 1), ref.vae_encode(img)))
