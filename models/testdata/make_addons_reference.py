#!/usr/bin/python3
"""Independent PyTorch reference for the add-on networks on tiny shapes: ESRGAN's RRDBNet and TAESD.

Written from BasicSR's rrdbnet_arch.py (RRDBNet, RRDB, ResidualDenseBlock, pixel_unshuffle for the
x2plus layout) and diffusers' autoencoders/vae.py EncoderTiny / DecoderTiny (AutoencoderTiny), in
plain torch.nn.functional, sharing no code with the TypeScript graph builders. Weights are random
(seeded), stored as float16 in the output; the networks run in float64 on those f16 values.

Cases (tensor names prefixed by the case):
  esrgan_x4/   RRDBNet num_feat 8, grow 4, 2 blocks, x4, in the OLD ESRGAN names (model.0, model.1.sub.N.RDBk.convm.0,
               model.3/6/8/10): input [1, 3, 10, 12] -> [1, 3, 40, 48]
  esrgan_x2/   Real-ESRGAN x2plus layout: pixel_unshuffle(2), conv_first takes 12 channels, x4 trunk, BasicSR names:
               input [1, 3, 8, 10] -> [1, 3, 16, 20]
  taesd/       AutoencoderTiny, 8 channels, 4 latent channels (decoder.layers.*, encoder.layers.*):
               decoder [1, 4, 3, 5] -> [1, 3, 24, 40]; encoder [1, 3, 24, 16] -> [1, 4, 3, 2]
Inputs are `<case>/in*`, outputs `<case>/out*` (float32).

Usage: /usr/bin/python3 models/testdata/make_addons_reference.py models/testdata/addons_reference.safetensors
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_grad_enabled(False)
rng = np.random.Generator(np.random.PCG64(20261202))
OUT = {}  # name -> np array (f16 weights, f32 data)


def weight(name, shape, fan_in, scale=1.0):
    w = (rng.standard_normal(shape) * scale / np.sqrt(fan_in)).astype(np.float16)
    OUT[name] = w
    return torch.from_numpy(w.astype(np.float64))


def conv(p, cin, cout, k=3, bias=True):
    w = weight(p + ".weight", (cout, cin, k, k), cin * k * k)
    b = weight(p + ".bias", (cout,), 1, 0.1) if bias else None
    return (w, b)


def apply(c, x, stride=1):
    w, b = c
    return F.conv2d(x, w, b, stride=stride, padding=w.shape[-1] // 2)


def data(name, shape, lo=-1.0, hi=1.0):
    a = rng.uniform(lo, hi, shape).astype(np.float32)
    OUT[name] = a
    return torch.from_numpy(a.astype(np.float64))


# ---- ESRGAN (BasicSR RRDBNet) ------------------------------------------------------------------
def make_rrdbnet(case, names, nf, gc, nb, in_ch, scale_stages):
    P = {}
    P["conv_first"] = conv(f"{case}/{names('conv_first')}", in_ch, nf)
    for i in range(nb):
        for r in (1, 2, 3):
            for c in range(1, 6):
                cin = nf + (c - 1) * gc
                cout = gc if c < 5 else nf
                key = f"body.{i}.rdb{r}.conv{c}"
                P[key] = conv(f"{case}/{names(key, nb)}", cin, cout)
    P["conv_body"] = conv(f"{case}/{names('conv_body', nb)}", nf, nf)
    for s in range(1, scale_stages + 1):
        P[f"conv_up{s}"] = conv(f"{case}/{names(f'conv_up{s}')}", nf, nf)
    P["conv_hr"] = conv(f"{case}/{names('conv_hr', nb, scale_stages)}", nf, nf)
    P["conv_last"] = conv(f"{case}/{names('conv_last', nb, scale_stages)}", nf, 3)
    return P


def rdb(P, p, x):
    lrelu = lambda t: F.leaky_relu(t, 0.2)
    x1 = lrelu(apply(P[p + ".conv1"], x))
    x2 = lrelu(apply(P[p + ".conv2"], torch.cat((x, x1), 1)))
    x3 = lrelu(apply(P[p + ".conv3"], torch.cat((x, x1, x2), 1)))
    x4 = lrelu(apply(P[p + ".conv4"], torch.cat((x, x1, x2, x3), 1)))
    x5 = apply(P[p + ".conv5"], torch.cat((x, x1, x2, x3, x4), 1))
    return x5 * 0.2 + x


def rrdbnet(P, x, nb, stages, unshuffle):
    lrelu = lambda t: F.leaky_relu(t, 0.2)
    if unshuffle > 1:
        x = F.pixel_unshuffle(x, unshuffle)
    feat = apply(P["conv_first"], x)
    body = feat
    for i in range(nb):
        out = body
        for r in (1, 2, 3):
            out = rdb(P, f"body.{i}.rdb{r}", out)
        body = out * 0.2 + body
    feat = feat + apply(P["conv_body"], body)
    for s in range(1, stages + 1):
        feat = lrelu(apply(P[f"conv_up{s}"], F.interpolate(feat, scale_factor=2, mode="nearest")))
    return apply(P["conv_last"], lrelu(apply(P["conv_hr"], feat)))


def old_esrgan_name(key, nb=0, stages=2):
    """BasicSR name -> the old ESRGAN Sequential names (x4 layout)."""
    if key == "conv_first":
        return "model.0"
    if key.startswith("body."):
        _, i, r, c = key.split(".")
        return f"model.1.sub.{i}.RDB{r[3]}.conv{c[4]}.0"
    if key == "conv_body":
        return f"model.1.sub.{nb}"
    return {"conv_up1": "model.3", "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}[key]


def basicsr_name(key, *_):
    return key


# ---- TAESD (diffusers AutoencoderTiny) -----------------------------------------------------------
def taesd_block(p, c):
    return [conv(f"{p}.conv.0", c, c), conv(f"{p}.conv.2", c, c), conv(f"{p}.conv.4", c, c)]


def run_block(b, x):
    h = F.relu(apply(b[0], x))
    h = F.relu(apply(b[1], h))
    h = apply(b[2], h)
    return F.relu(h + x)


def make_taesd(case, c, z):
    D, E = {}, {}
    d = f"{case}/decoder.layers"
    D[0] = conv(f"{d}.0", z, c)
    idx = 2
    for _ in range(3):
        for _ in range(3):
            D[idx] = taesd_block(f"{d}.{idx}", c)
            idx += 1
        idx += 1
        D[idx] = conv(f"{d}.{idx}", c, c, bias=False)
        idx += 1
    D[idx] = taesd_block(f"{d}.{idx}", c)
    D[idx + 1] = conv(f"{d}.{idx + 1}", c, 3)
    e = f"{case}/encoder.layers"
    E[0] = conv(f"{e}.0", 3, c)
    E[1] = taesd_block(f"{e}.1", c)
    idx = 2
    for _ in range(3):
        E[idx] = conv(f"{e}.{idx}", c, c, bias=False)
        idx += 1
        for _ in range(3):
            E[idx] = taesd_block(f"{e}.{idx}", c)
            idx += 1
    E[idx] = conv(f"{e}.{idx}", c, z)
    return D, E


def taesd_decode(D, x):
    h = torch.tanh(x / 3) * 3
    h = F.relu(apply(D[0], h))
    for i in range(2, 19):
        if i in (5, 10, 15):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        elif isinstance(D[i], list):
            h = run_block(D[i], h)
        else:
            h = apply(D[i], h)
    return h


def taesd_encode(E, x):
    h = apply(E[0], x)
    h = run_block(E[1], h)
    for i in range(2, 15):
        if isinstance(E[i], list):
            h = run_block(E[i], h)
        else:
            h = apply(E[i], h, stride=2 if i in (2, 6, 10) else 1)
    return h


def out(name, t):
    OUT[name] = t.numpy().astype(np.float32)


def main():
    path = sys.argv[1]
    P = make_rrdbnet("esrgan_x4", old_esrgan_name, 8, 4, 2, 3, 2)
    x = data("esrgan_x4/in", (1, 3, 10, 12), 0, 1)
    out("esrgan_x4/out", rrdbnet(P, x, 2, 2, 1))
    P = make_rrdbnet("esrgan_x2", basicsr_name, 8, 4, 1, 12, 2)
    x = data("esrgan_x2/in", (1, 3, 8, 10), 0, 1)
    out("esrgan_x2/out", rrdbnet(P, x, 1, 2, 2))
    D, E = make_taesd("taesd", 8, 4)
    zin = data("taesd/in_latent", (1, 4, 3, 5), -4, 4)
    out("taesd/out_image", taesd_decode(D, zin))
    xin = data("taesd/in_image", (1, 3, 24, 16), 0, 1)
    out("taesd/out_latent", taesd_encode(E, xin))

    header, blobs, off = {}, [], 0
    for name in sorted(OUT):
        a = np.ascontiguousarray(OUT[name])
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": "F16" if a.dtype == np.float16 else "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"generator": "models/testdata/make_addons_reference.py", "torch": torch.__version__}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    print(f"wrote {path} ({8 + len(h) + off} bytes)")


if __name__ == "__main__":
    main()
