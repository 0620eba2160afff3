#!/usr/bin/python3
"""Writes the textual-inversion fixture the embedding tests read (committed; tests need no Python).

Run with Debian's python3 + python3-torch:  /usr/bin/python3 models/clip/testdata/make_embedding_fixture.py

tiny-ti.pt is in sd-webui's (A1111) layout, as `textual_inversion.py` saves it: a dict with
`string_to_token` {"*": 265}, `string_to_param` {"*": tensor [vectors, width]} (requires_grad, as
after training), `name`, `step`, `sd_checkpoint`, `sd_checkpoint_name`. Width 64 is the tiny model's
(models/tiny) text encoder width; values are deterministic so tests check them exactly:
vector v, element j = (v * 64 + j) / 128 - 0.5.
"""
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS, WIDTH = 2, 64

vec = torch.arange(VECTORS * WIDTH, dtype=torch.float32).reshape(VECTORS, WIDTH) / 128 - 0.5
vec.requires_grad_(True)
data = {
    "string_to_token": {"*": 265},
    "string_to_param": {"*": vec},
    "name": "tiny-ti",
    "step": 100,
    "sd_checkpoint": "0123456789",
    "sd_checkpoint_name": "tiny",
}
torch.save(data, os.path.join(HERE, "tiny-ti.pt"))
