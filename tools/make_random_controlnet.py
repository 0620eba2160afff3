#!/usr/bin/python3
"""Deterministic random-weight ControlNets (SD 1.5 and SDXL shapes), python3 + numpy only.

The SD 1.5 shape is the one of ../shared/tools/make_random_addons.py `controlnet` (cldm ControlNet,
as stable-diffusion.cpp's ControlNetBlock for SD1); `--family sdxl` makes what that tool does not:
the SDXL ControlNet of sd.cpp's ControlNetBlock for SDXL (model_channels 320, channel_mult 1,2,4,
two res blocks per level, transformer depths 0,2,10 and 10 in the middle, 64-wide heads over a
2048-wide context, label_emb from a 2816-wide y, Linear proj_in/proj_out as SDXL files store them;
10 zero convs and middle_block_out). `--depths`, `--middle-depth`, `--model-channels`, `--mults`,
`--context-dim`, `--adm-in` shrink it (the "small" SDXL ControlNets, or test-sized ones).

Layouts: `original` (`control_model.*`, lllyasviel/ldm names) or `diffusers` (ControlNetModel names:
controlnet_cond_embedding.*, controlnet_down_blocks.N, controlnet_mid_block, conv_in, time_embedding,
add_embedding, down_blocks.*, mid_block.*).

Values as make_random_addons.py makes them: every tensor gets numpy.random.Generator(PCG64(s)) with
s = int.from_bytes(sha256(f"{seed}/{name}")[:8], "little"), `name` the tensor's original-layout file name
(`control_model.…`, so both layouts hold the same values, and `--family sd15 --layout original` the same
tensors as make_random_addons.py); float32 standard_normal, then: conv/linear
weights N(0, 1/sqrt(fan_in)), input_hint_block weights N(0, 2/sqrt(fan_in)) (so the hint reaches the
output), biases N(0, 0.02), norm weights 1 + N(0, 0.02), norm biases N(0, 0.02); zero convs random,
not zero, so that the control changes the picture.

Usage:
  /usr/bin/python3 tools/make_random_controlnet.py --family sdxl --out cn-xl.safetensors \
      [--layout original|diffusers] [--dtype f16|f32] [--seed 0] [--depths 0,2,10] [--middle-depth 10] \
      [--model-channels 320] [--mults 1,2,4] [--context-dim 2048] [--adm-in 2816]
"""
import argparse
import hashlib
import json
import math
import os
import re
import struct

import numpy as np

FAMILIES = {
    "sd15": dict(mc=320, mults=[1, 2, 4, 4], depths=[1, 1, 1, 0], middle=1, ctx=768, adm=None, linear=False),
    "sdxl": dict(mc=320, mults=[1, 2, 4], depths=[0, 2, 10], middle=10, ctx=2048, adm=2816, linear=True),
}
HINT = [(0, 3, 16), (2, 16, 16), (4, 16, 32), (6, 32, 32), (8, 32, 96), (10, 96, 96), (12, 96, 256), (14, 256, None)]


class Spec:
    def __init__(self):
        self.items = []

    def add(self, name, shape, kind, fan_in=None):
        self.items.append((name, tuple(int(s) for s in shape), kind, fan_in))

    def conv(self, name, cout, cin, k, kind="w"):
        self.add(name + ".weight", (cout, cin, k, k), kind, cin * k * k)
        self.add(name + ".bias", (cout,), "b")

    def linear(self, name, cout, cin, bias=True):
        self.add(name + ".weight", (cout, cin), "w", cin)
        if bias:
            self.add(name + ".bias", (cout,), "b")

    def norm(self, name, c):
        self.add(name + ".weight", (c,), "nw")
        self.add(name + ".bias", (c,), "nb")


def resblock(s, p, cin, cout, emb):
    s.norm(p + ".in_layers.0", cin)
    s.conv(p + ".in_layers.2", cout, cin, 3)
    s.linear(p + ".emb_layers.1", cout, emb)
    s.norm(p + ".out_layers.0", cout)
    s.conv(p + ".out_layers.3", cout, cout, 3)
    if cin != cout:
        s.conv(p + ".skip_connection", cout, cin, 1)


def spatial_transformer(s, p, c, ctx, depth, linear):
    s.norm(p + ".norm", c)
    for proj in ("proj_in", "proj_out"):
        if linear:
            s.linear(f"{p}.{proj}", c, c)
        else:
            s.conv(f"{p}.{proj}", c, c, 1)
    for d in range(depth):
        tb = f"{p}.transformer_blocks.{d}"
        for attn, kv in (("attn1", c), ("attn2", ctx)):
            s.linear(f"{tb}.{attn}.to_q", c, c, bias=False)
            s.linear(f"{tb}.{attn}.to_k", c, kv, bias=False)
            s.linear(f"{tb}.{attn}.to_v", c, kv, bias=False)
            s.linear(f"{tb}.{attn}.to_out.0", c, c)
        s.linear(tb + ".ff.net.0.proj", c * 8, c)  # GEGLU
        s.linear(tb + ".ff.net.2", c, c * 4)
        for n in ("norm1", "norm2", "norm3"):
            s.norm(f"{tb}.{n}", c)


def build(cfg):
    """The ControlNet's tensors, original names without a prefix."""
    s = Spec()
    mc, emb = cfg["mc"], cfg["mc"] * 4
    s.linear("time_embed.0", emb, mc)
    s.linear("time_embed.2", emb, emb)
    if cfg["adm"]:
        s.linear("label_emb.0.0", emb, cfg["adm"])
        s.linear("label_emb.0.2", emb, emb)
    s.conv("input_blocks.0.0", mc, 4, 3)
    s.conv("zero_convs.0.0", mc, mc, 1)
    for i, cin, cout in HINT:
        s.conv(f"input_hint_block.{i}", cout or mc, cin, 3, kind="wg")
    ch, idx = mc, 0
    for lvl, m in enumerate(cfg["mults"]):
        for _ in range(2):
            idx += 1
            resblock(s, f"input_blocks.{idx}.0", ch, mc * m, emb)
            ch = mc * m
            if cfg["depths"][lvl] > 0:
                spatial_transformer(s, f"input_blocks.{idx}.1", ch, cfg["ctx"], cfg["depths"][lvl], cfg["linear"])
            s.conv(f"zero_convs.{idx}.0", ch, ch, 1)
        if lvl != len(cfg["mults"]) - 1:
            idx += 1
            s.conv(f"input_blocks.{idx}.0.op", ch, ch, 3)
            s.conv(f"zero_convs.{idx}.0", ch, ch, 1)
    resblock(s, "middle_block.0", ch, ch, emb)
    if cfg["middle"] > 0:
        spatial_transformer(s, "middle_block.1", ch, cfg["ctx"], cfg["middle"], cfg["linear"])
        resblock(s, "middle_block.2", ch, ch, emb)
    else:
        resblock(s, "middle_block.1", ch, ch, emb)
    s.conv("middle_block_out.0", ch, ch, 1)
    return s


RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
          "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
TOP = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
       "label_emb.0.0": "add_embedding.linear_1", "label_emb.0.2": "add_embedding.linear_2",
       "input_blocks.0.0": "conv_in", "middle_block_out.0": "controlnet_mid_block"}


def diffusers_name(name):
    """The diffusers ControlNetModel name of an original-layout name (two res blocks per level)."""
    stem, leaf = name.rsplit(".", 1)
    if stem in TOP:
        return f"{TOP[stem]}.{leaf}"
    m = re.match(r"^input_hint_block\.(\d+)$", stem)
    if m:
        i = int(m[1]) // 2
        return f"controlnet_cond_embedding.{'conv_in' if i == 0 else 'conv_out' if i == 7 else f'blocks.{i - 1}'}.{leaf}"
    m = re.match(r"^zero_convs\.(\d+)\.0$", stem)
    if m:
        return f"controlnet_down_blocks.{m[1]}.{leaf}"
    m = re.match(r"^input_blocks\.(\d+)\.0\.op$", stem)
    if m:
        return f"down_blocks.{int(m[1]) // 3 - 1}.downsamplers.0.conv.{leaf}"
    m = re.match(r"^input_blocks\.(\d+)\.([01])\.(.+)$", stem)
    if m:
        k = int(m[1]) - 1
        if m[2] == "1":
            return f"down_blocks.{k // 3}.attentions.{k % 3}.{m[3]}.{leaf}"
        return f"down_blocks.{k // 3}.resnets.{k % 3}.{RESNET[m[3]]}.{leaf}"
    m = re.match(r"^middle_block\.([012])\.(.+)$", stem)
    if m:
        if m[1] == "1" and m[2] not in RESNET:
            return f"mid_block.attentions.0.{m[2]}.{leaf}"
        return f"mid_block.resnets.{0 if m[1] == '0' else 1}.{RESNET[m[2]]}.{leaf}"
    raise ValueError("no diffusers name for " + name)


def values(seed, name, shape, kind, fan_in):
    h = hashlib.sha256(f"{seed}/control_model.{name}".encode("utf-8")).digest()
    z = np.random.Generator(np.random.PCG64(int.from_bytes(h[:8], "little"))).standard_normal(
        int(np.prod(shape)), dtype=np.float32)
    if kind == "w":
        v = z * np.float32(1.0 / math.sqrt(fan_in))
    elif kind == "wg":
        v = z * np.float32(2.0 / math.sqrt(fan_in))
    elif kind in ("b", "nb"):
        v = z * np.float32(0.02)
    else:
        v = np.float32(1.0) + z * np.float32(0.02)
    return v.reshape(shape)


def write(path, spec, seed, dtype, layout, metadata):
    npdt = np.float16 if dtype == "f16" else np.float32
    rename = (lambda n: "control_model." + n) if layout == "original" else diffusers_name
    items = sorted(((rename(n), n, shape, kind, fan) for n, shape, kind, fan in spec.items), key=lambda x: x[0])
    header, offset = {}, 0
    for file_name, _, shape, _, _ in items:
        nbytes = int(np.prod(shape)) * np.dtype(npdt).itemsize
        header[file_name] = {"dtype": dtype.upper(), "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for _, name, shape, kind, fan in items:
            f.write(np.ascontiguousarray(values(seed, name, shape, kind, fan).astype(npdt)).astype("<" + np.dtype(npdt).str[1:]).tobytes())
    os.replace(tmp, path)
    return 8 + len(hjson) + offset


def ints(text):
    return [int(v) for v in text.split(",")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", choices=sorted(FAMILIES), default="sdxl")
    ap.add_argument("--out", required=True)
    ap.add_argument("--layout", choices=["original", "diffusers"], default="original")
    ap.add_argument("--dtype", choices=["f16", "f32"], default="f16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--depths", type=ints, help="transformer depth per level, e.g. 0,2,10")
    ap.add_argument("--middle-depth", type=int)
    ap.add_argument("--model-channels", type=int)
    ap.add_argument("--mults", type=ints)
    ap.add_argument("--context-dim", type=int)
    ap.add_argument("--adm-in", type=int)
    a = ap.parse_args()
    cfg = dict(FAMILIES[a.family])
    for key, value in (("depths", a.depths), ("middle", a.middle_depth), ("mc", a.model_channels),
                       ("mults", a.mults), ("ctx", a.context_dim), ("adm", a.adm_in)):
        if value is not None:
            cfg[key] = value
    if len(cfg["depths"]) != len(cfg["mults"]):
        ap.error(f"--depths has {len(cfg['depths'])} levels, --mults {len(cfg['mults'])}")
    spec = build(cfg)
    meta = {"generator": "sdflow tools/make_random_controlnet.py", "family": a.family, "seed": a.seed,
            "layout": a.layout, "config": json.dumps(cfg, separators=(",", ":"))}
    size = write(a.out, spec, a.seed, a.dtype, a.layout, meta)
    print(f"wrote {a.out}: {len(spec.items)} tensors, {size} bytes ({a.family}, {a.layout}, {a.dtype})")


if __name__ == "__main__":
    main()
