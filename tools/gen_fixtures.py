#!/usr/bin/python3
"""Generates the op-level reference fixtures under tests/fixtures/ops/.

Run with Debian's python (python3-torch, numpy):

    deno task fixtures          # = /usr/bin/python3 tools/gen_fixtures.py

Deterministic: every case seeds torch with the CRC-32 of its own name, so adding
or removing a case never changes the data of another. The output directory is
wiped and rewritten.

File format (one pair of files per case, documented in tests/README.md):

  <case>.json  {"format": "sdflow-op-fixture/1", "name", "op", "attrs",
                "inputs":  [{"name", "kind": "input"|"constant", "dtype",
                             "shape", "offset", "bytes"}...],   (operand order)
                "outputs": [{"name", "dtype": "f32", "shape", "offset", "bytes"}],
                "reference": how the expected output was computed,
                "notes": what the case is for}
  <case>.bin   every array, little-endian, at the byte offsets the header gives:
               f32 as IEEE binary32, f16 and bf16 as raw uint16 bit patterns,
               i32 as two's complement int32.

References are computed in float64 from exactly the values stored (f16/bf16
weights are rounded first and the reference uses the rounded values upcast),
then stored as float32. Error bounds live in the tests (tests/ops_test.ts),
next to the reasoning for each.
"""

import json
import math
import os
import shutil
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "ops")

torch.set_num_threads(1)


# ---- helpers ----------------------------------------------------------------


def seed(name):
    torch.manual_seed(zlib.crc32(name.encode()))


def act(shape, k=1.0, big=True):
    """SD-like activations: N(0,1)*k, with a few channels (dim 1) much larger."""
    x = torch.randn(*shape, dtype=torch.float64) * k
    if big and len(shape) >= 2 and shape[1] >= 4:
        n_big = max(1, shape[1] // 16)
        idx = torch.randperm(shape[1])[:n_big]
        sl = [slice(None)] * len(shape)
        for i in idx.tolist():
            sl[1] = i
            x[tuple(sl)] *= 8.0
    return x.float().double()  # values exactly representable in f32


def weight(shape, fan_in):
    return (torch.randn(*shape, dtype=torch.float64) / math.sqrt(fan_in)).float().double()


def bias(n, k=0.1):
    return (torch.randn(n, dtype=torch.float64) * k).float().double()


def round_to(t, dtype):
    """Rounds a float64 tensor to dtype's values (returned as float64)."""
    if dtype == "f32":
        return t.float().double()
    if dtype == "f16":
        return t.half().double()
    if dtype == "bf16":
        return t.bfloat16().double()
    raise ValueError(dtype)


def raw_bytes(t, dtype):
    if dtype == "f32":
        return t.float().numpy().astype("<f4").tobytes()
    if dtype == "f16":
        return t.half().numpy().astype("<f2").tobytes()
    if dtype == "bf16":
        bits = t.bfloat16().view(torch.int16).numpy().view(np.uint16)
        # Cross-check torch's rounding against round-to-nearest-even on the f32 bits.
        f32bits = t.float().numpy().view(np.uint32).astype(np.uint64)
        finite = np.isfinite(t.float().numpy())
        rne = ((f32bits + 0x7FFF + ((f32bits >> 16) & 1)) >> 16).astype(np.uint16)
        assert np.array_equal(bits[finite], rne[finite]), "bf16 rounding mismatch"
        return bits.astype("<u2").tobytes()
    if dtype == "i32":
        return t.numpy().astype("<i4").tobytes()
    raise ValueError(dtype)


class Case:
    def __init__(self, name, op, attrs, notes, reference="float64 PyTorch/NumPy on the stored values"):
        self.name = name
        self.op = op
        self.attrs = attrs
        self.notes = notes
        self.reference = reference
        self.inputs = []
        self.outputs = []
        self.blobs = []
        self.offset = 0

    def _add(self, lst, name, kind, t, dtype, storage=None):
        entry = {"name": name}
        if kind is not None:
            entry["kind"] = kind
        entry.update({"dtype": dtype, "shape": list(t.shape)})
        if storage is not None:
            # An f32 array whose values are all exactly f16 values, stored as f16 to save space.
            assert dtype == "f32" and storage == "f16"
            assert torch.equal(t.half().double(), t), f"{self.name}/{name}: not f16-exact"
            entry["storage"] = storage
            data = raw_bytes(t, storage)
        else:
            data = raw_bytes(t, dtype)
        entry.update({"offset": self.offset, "bytes": len(data)})
        lst.append(entry)
        self.blobs.append(data)
        self.offset += len(data)
        pad = (-self.offset) % 8  # keep every array 8-byte aligned
        if pad:
            self.blobs.append(b"\0" * pad)
            self.offset += pad

    def input(self, name, t, dtype="f32", storage=None):
        self._add(self.inputs, name, "input", t, dtype, storage)

    def const(self, name, t, dtype="f32"):
        self._add(self.inputs, name, "constant", t, dtype)

    def output(self, name, t):
        assert torch.isfinite(t).all() or self.op == "copy", f"{self.name}: non-finite reference"
        self._add(self.outputs, name, None, t, "f32")

    def write(self):
        hdr = {
            "format": "sdflow-op-fixture/1",
            "name": self.name,
            "op": self.op,
            "attrs": self.attrs,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "reference": self.reference,
            "notes": self.notes,
        }
        with open(os.path.join(OUT, self.name + ".json"), "w") as f:
            f.write(dump_json(hdr))
        with open(os.path.join(OUT, self.name + ".bin"), "wb") as f:
            for b in self.blobs:
                f.write(b)
        return self.offset


def dump_json(obj):
    """JSON with one line per top-level key and per array entry (readable, diff-friendly)."""
    lines = []
    for i, (k, v) in enumerate(obj.items()):
        end = "," if i < len(obj) - 1 else ""
        if isinstance(v, list) and v and isinstance(v[0], dict):
            items = ",\n".join("  " + json.dumps(e) for e in v)
            lines.append(f" {json.dumps(k)}: [\n{items}\n ]{end}")
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v)}{end}")
    return "{\n" + "\n".join(lines) + "\n}\n"


CASES = []


def case(fn):
    CASES.append(fn)
    return fn


# ---- conv2d -------------------------------------------------------------------


def conv_case(name, x_shape, co, k, stride, pad, has_bias, wdtype, notes, xk=1.0):
    seed(name)
    ci = x_shape[1]
    x = act(x_shape, xk)
    w = round_to(weight([co, ci, k, k], ci * k * k), wdtype)
    b = bias(co) if has_bias else None
    y = F.conv2d(x, w, b, stride=stride, padding=pad)
    c = Case(name, "conv2d", {"stride": stride, "padding": pad}, notes,
             "float64 torch conv2d on the stored values (f16/bf16 weights upcast exactly)")
    c.input("x", x)
    c.const("w", w, wdtype)
    if b is not None:
        c.const("b", b)
    c.output("y", y)
    return c


@case
def conv_cases():
    return [
        conv_case("conv2d_3x3_p1_bias_f32", [1, 4, 8, 8], 8, 3, 1, 1, True, "f32", "tiny 3x3 same conv"),
        conv_case("conv2d_3x3_p1_conv_in", [1, 4, 8, 8], 64, 3, 1, 1, True, "f32", "UNet conv_in: 4 -> many channels"),
        conv_case("conv2d_3x3_p1_conv_out", [1, 64, 8, 8], 4, 3, 1, 1, True, "f32", "UNet conv_out: many -> 4 channels"),
        conv_case("conv2d_3x3_p1_nobias_odd", [2, 32, 9, 7], 24, 3, 1, 1, False, "f32", "odd H/W, batch 2, no bias"),
        conv_case("conv2d_3x3_p1_bias_f16", [1, 64, 8, 8], 64, 3, 1, 1, True, "f16", "f16 weights (sd.cpp layout)"),
        conv_case("conv2d_3x3_p1_nobias_f16", [2, 20, 5, 6], 12, 3, 1, 1, False, "f16", "f16 weights, small odd map"),
        conv_case("conv2d_3x3_p1_bias_bf16", [1, 40, 7, 10], 36, 3, 1, 1, True, "bf16", "bf16 weights"),
        conv_case("conv2d_3x3_p1_wide_f16", [1, 128, 4, 4], 64, 3, 1, 1, True, "f16", "Ci=128, tiny 4x4 map (UNet deep level)"),
        conv_case("conv2d_3x3_p0", [1, 8, 6, 6], 8, 3, 1, 0, True, "f32", "3x3 without padding"),
        conv_case("conv2d_3x3_p1_1px", [1, 16, 1, 1], 8, 3, 1, 1, True, "f32", "1x1 map: only the centre tap sees data"),
        conv_case("conv2d_1x1_bias_f32", [2, 64, 8, 8], 32, 1, 1, 0, True, "f32", "1x1 (skip / proj) conv"),
        conv_case("conv2d_1x1_nobias_f16", [1, 48, 5, 7], 40, 1, 1, 0, False, "f16", "1x1 conv, f16 weights, odd map"),
        conv_case("conv2d_1x1_bias_bf16", [1, 32, 6, 6], 17, 1, 1, 0, True, "bf16", "1x1 conv, bf16 weights, Co=17"),
        conv_case("conv2d_3x3_s2_p1_odd", [1, 32, 9, 9], 32, 3, 2, 1, True, "f32", "UNet downsampler on an odd map"),
        conv_case("conv2d_3x3_s2_p1_mixed", [2, 16, 15, 12], 24, 3, 2, 1, True, "f16", "downsampler, odd H even W, f16"),
        conv_case("conv2d_3x3_s2_p1_bf16", [1, 24, 7, 8], 24, 3, 2, 1, False, "bf16", "downsampler, bf16, no bias"),
        conv_case("conv2d_3x3_s2_p0_vae", [1, 16, 10, 10], 16, 3, 2, 0, True, "f32",
                  "VAE downsampler after its (0,1,0,1) pad: stride 2, pad 0"),
        conv_case("conv2d_4x4_p0", [1, 4, 8, 8], 8, 4, 1, 0, True, "f32", "kernel 4, pad 0, stride 1"),
        conv_case("conv2d_4x4_s4_p0", [1, 3, 16, 12], 16, 4, 4, 0, True, "f32", "kernel 4 stride 4 (patchify)"),
        conv_case("conv2d_4x4_s2_p0_f16", [1, 8, 9, 9], 8, 4, 2, 0, False, "f16", "kernel 4 stride 2 pad 0, odd map"),
    ]


# ---- linear -------------------------------------------------------------------


def linear_case(name, x_shape, n_out, has_bias, wdtype, notes):
    seed(name)
    k = x_shape[-1]
    x = act(x_shape, 1.0, big=False)
    w = round_to(weight([n_out, k], k), wdtype)
    b = bias(n_out) if has_bias else None
    y = F.linear(x, w, b)
    c = Case(name, "linear", {}, notes, "float64 torch linear on the stored values")
    c.input("x", x)
    c.const("w", w, wdtype)
    if b is not None:
        c.const("b", b)
    c.output("y", y)
    return c


@case
def linear_cases():
    return [
        linear_case("linear_3d_bias_f32", [2, 7, 160], 96, True, "f32", "3-D input [B,N,K] with bias"),
        linear_case("linear_2d_nobias_f32", [5, 64], 33, False, "f32", "2-D input, odd N"),
        linear_case("linear_3d_bias_f16", [1, 5, 768], 40, True, "f16", "CLIP-width K=768, f16 weights"),
        linear_case("linear_3d_nobias_bf16", [2, 9, 320], 40, False, "bf16", "bf16 weights, no bias (to_q)"),
        linear_case("linear_1row_bias_f32", [1, 1, 1280], 12, True, "f32", "time-embedding MLP: a single row"),
        linear_case("linear_oddk_bias_f16", [3, 77], 31, True, "f16", "K and N not multiples of 8"),
    ]


# ---- bmm ----------------------------------------------------------------------


@case
def bmm_cases():
    out = []
    for name, b, m, k, n, trans_b, alpha, notes in [
        ("bmm_plain", 4, 16, 40, 24, False, 1.0, "a @ b"),
        ("bmm_transb_alpha", 4, 16, 40, 24, True, 1 / math.sqrt(40), "q @ k^T * 1/sqrt(d)"),
        ("bmm_odd_transb", 3, 17, 33, 29, True, 1.0, "odd sizes, trans_b"),
        ("bmm_odd_alpha", 2, 9, 77, 13, False, 0.5, "odd sizes, alpha 0.5"),
    ]:
        seed(name)
        a = act([b, m, k], 1.0, big=False)
        bt = act([b, n, k] if trans_b else [b, k, n], 1.0, big=False)
        y = torch.bmm(a, bt.transpose(1, 2) if trans_b else bt) * alpha
        c = Case(name, "bmm", {"transB": trans_b, "alpha": alpha}, notes)
        c.input("a", a)
        c.input("b", bt)
        c.output("y", y)
        out.append(c)
    return out


# ---- attention ----------------------------------------------------------------


def attention_ref(q, k, v, heads, scale, causal):
    b, nq, c = q.shape
    nk = k.shape[1]
    d = c // heads
    qh = q.reshape(b, nq, heads, d).permute(0, 2, 1, 3)
    kh = k.reshape(b, nk, heads, d).permute(0, 2, 1, 3)
    vh = v.reshape(b, nk, heads, d).permute(0, 2, 1, 3)
    s = torch.matmul(qh, kh.transpose(-1, -2)) * scale
    if causal:
        mask = torch.ones(nq, nk, dtype=torch.bool).triu(1)
        s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    o = torch.matmul(p, vh)
    return o.permute(0, 2, 1, 3).reshape(b, nq, c)


@case
def attention_cases():
    out = []
    for name, b, nq, nk, heads, d, causal, scale, notes in [
        ("attention_self_h8_d40_b2", 2, 12, 12, 8, 40, False, None, "UNet level-1 self-attention (8 x 40), batch 2"),
        ("attention_cross_h8_d40_nk77", 1, 16, 77, 8, 40, False, None, "cross-attention to 77 text tokens"),
        ("attention_self_h8_d80", 1, 12, 12, 8, 80, False, None, "UNet level-2 self-attention (8 x 80)"),
        ("attention_cross_h8_d80", 1, 9, 13, 8, 80, False, None, "cross-attention, Nq=9 != Nk=13"),
        ("attention_self_h8_d160", 1, 6, 6, 8, 160, False, None, "UNet level-3 self-attention (8 x 160)"),
        ("attention_vae_h1_d512", 1, 9, 9, 1, 512, False, None, "VAE mid-block attention: 1 head of 512 (3x3 map)"),
        ("attention_clip_causal_h12_d64", 1, 77, 77, 12, 64, True, None, "CLIP text encoder: causal, 12 x 64 over 77"),
        ("attention_scale_custom", 2, 5, 11, 2, 24, False, 0.3, "explicit scale, odd Nq/Nk"),
    ]:
        seed(name)
        c_ = heads * d
        # Typical post-projection magnitudes; scores reach several units so softmax is peaked.
        q = act([b, nq, c_], 1.0, big=False)
        k = act([b, nk, c_], 1.0, big=False)
        v = act([b, nk, c_], 1.0, big=False)
        # The 77x768 CLIP case is large: its inputs are rounded to f16 values and stored as f16
        # (the graph still receives f32; only the file is smaller).
        storage = "f16" if b * (nq + 2 * nk) * c_ > 100_000 else None
        if storage:
            q, k, v = q.half().double(), k.half().double(), v.half().double()
        sc = scale if scale is not None else 1 / math.sqrt(d)
        y = attention_ref(q, k, v, heads, sc, causal)
        attrs = {"heads": heads, "causal": causal}
        if scale is not None:
            attrs["scale"] = scale
        c = Case(name, "attention", attrs, notes,
                 "float64 softmax(q k^T * scale [+ causal mask]) v per head, written out explicitly")
        c.input("q", q, storage=storage)
        c.input("k", k, storage=storage)
        c.input("v", v, storage=storage)
        c.output("y", y)
        out.append(c)
    return out


# ---- normalisation --------------------------------------------------------------


@case
def group_norm_cases():
    out = []
    for name, shape, groups, eps, silu, offset, notes in [
        ("group_norm_g32_eps1e5", [2, 64, 6, 6], 32, 1e-5, False, 0.0, "UNet GroupNorm(32), no SiLU"),
        ("group_norm_g32_eps1e5_silu", [2, 64, 6, 6], 32, 1e-5, True, 0.0, "UNet GroupNorm(32) + SiLU (fused)"),
        ("group_norm_g32_eps1e6_silu", [1, 128, 5, 7], 32, 1e-6, True, 0.0, "VAE GroupNorm(32, eps 1e-6) + SiLU, odd map"),
        ("group_norm_g32_eps1e6", [1, 96, 3, 3], 32, 1e-6, False, 0.0, "VAE eps, 3 channels per group, 3x3 map"),
        ("group_norm_g32_c320", [1, 320, 4, 4], 32, 1e-5, True, 0.0, "320 channels (10 per group)"),
        ("group_norm_3d", [2, 64, 12], 32, 1e-5, False, 0.0, "[N, C, L] input"),
        ("group_norm_offset", [1, 64, 6, 6], 32, 1e-5, True, 1.0,
         "channel means N(0, 8^2) and some at +-40: catches E[x^2]-E[x]^2 cancellation"),
        ("group_norm_g8", [1, 16, 4, 4], 8, 1e-5, False, 0.0, "groups != 32"),
    ]:
        seed(name)
        x = act(shape, 1.0)
        if offset:
            c_ = shape[1]
            means = torch.randn(c_, dtype=torch.float64) * 8
            means[:: 7] = 40.0
            means[3:: 11] = -40.0
            x = (x + means.reshape(1, c_, *([1] * (len(shape) - 2)))).float().double()
        gamma = (1 + 0.2 * torch.randn(shape[1], dtype=torch.float64)).float().double()
        beta = bias(shape[1], 0.2)
        y = F.group_norm(x, groups, gamma, beta, eps)
        if silu:
            y = y * torch.sigmoid(y)
        c = Case(name, "group_norm", {"groups": groups, "eps": eps, "silu": silu}, notes)
        c.input("x", x)
        c.const("gamma", gamma)
        c.const("beta", beta)
        c.output("y", y)
        out.append(c)
    return out


@case
def layer_norm_cases():
    out = []
    for name, shape, eps, offset, notes in [
        ("layer_norm_c320", [2, 7, 320], 1e-5, 0.0, "transformer block norm, 320"),
        ("layer_norm_c768", [1, 7, 768], 1e-5, 0.0, "CLIP width 768"),
        ("layer_norm_offset", [3, 5, 64], 1e-6, 30.0, "mean ~30: catches one-pass variance cancellation"),
        ("layer_norm_c1", [4, 3, 7], 1e-5, 0.0, "short rows (7)"),
    ]:
        seed(name)
        x = act(shape, 2.0, big=False)
        if offset:
            x = (x + offset).float().double()
        c_ = shape[-1]
        gamma = (1 + 0.2 * torch.randn(c_, dtype=torch.float64)).float().double()
        beta = bias(c_, 0.2)
        y = F.layer_norm(x, [c_], gamma, beta, eps)
        c = Case(name, "layer_norm", {"eps": eps}, notes)
        c.input("x", x)
        c.const("gamma", gamma)
        c.const("beta", beta)
        c.output("y", y)
        out.append(c)
    return out


# ---- element-wise ---------------------------------------------------------------


def unary_ref(kind, x):
    if kind == "silu":
        return x * torch.sigmoid(x)
    if kind == "gelu":
        return F.gelu(x)
    if kind == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if kind == "quick_gelu":
        return x * torch.sigmoid(1.702 * x)
    if kind == "relu":
        return torch.relu(x)
    if kind == "leaky_relu":
        return F.leaky_relu(x, 0.2)
    if kind == "sigmoid":
        return torch.sigmoid(x)
    if kind == "tanh":
        return torch.tanh(x)
    raise ValueError(kind)


UNARY_EDGE = [0.0, -0.0, 1e-30, -1e-30, 1e-6, -1e-6, 0.5, -0.5, 3.0, -3.0, 10.0, -10.0,
              20.0, -20.0, 45.0, -45.0, 90.0, -90.0, 100.0, -100.0]


@case
def unary_cases():
    out = []
    for kind in ["silu", "gelu", "gelu_tanh", "quick_gelu", "relu", "leaky_relu", "sigmoid", "tanh"]:
        name = f"unary_{kind}"
        seed(name)
        x = act([2, 8, 11, 13], 3.0)  # 2288 values, odd sizes (SIMD tails)
        flat = x.reshape(-1)
        flat[: len(UNARY_EDGE)] = torch.tensor(UNARY_EDGE, dtype=torch.float64)
        x = x.float().double()
        y = unary_ref(kind, x)
        c = Case(name, "unary", {"kind": kind}, f"{kind} on N(0,9) values, big channels, and edge values up to +-100")
        c.input("x", x)
        c.output("y", y)
        out.append(c)
    return out


@case
def geglu_cases():
    out = []
    for name, shape, notes in [
        ("geglu_320", [2, 6, 2 * 160], "SD feed-forward GEGLU (scaled down)"),
        ("geglu_odd", [3, 37 * 2], "odd half width 37"),
    ]:
        seed(name)
        x = act(shape, 2.0, big=False)
        h = shape[-1] // 2
        y = x[..., :h] * F.gelu(x[..., h:])
        c = Case(name, "geglu", {}, notes + "; y = x[..., :C] * gelu_exact(x[..., C:])")
        c.input("x", x)
        c.output("y", y)
        out.append(c)
    return out


@case
def softmax_cases():
    out = []
    for name, shape, k, scale, notes in [
        ("softmax_scores", [1, 8, 16, 77], 3.0, 1 / 8, "attention-score rows of 77 with scale 1/sqrt(64)"),
        ("softmax_large", [4, 50], 40.0, 1.0, "logits up to ~+-150: needs the max subtracted"),
        ("softmax_len1", [6, 1], 1.0, 1.0, "rows of length 1 give 1"),
        ("softmax_long", [2, 1031], 2.0, 0.7, "long odd rows"),
    ]:
        seed(name)
        x = act(shape, k, big=False)
        y = torch.softmax(x * scale, dim=-1)
        c = Case(name, "softmax", {"scale": scale}, notes)
        c.input("x", x)
        c.output("y", y)
        out.append(c)
    return out


@case
def binary_cases():
    out = []
    for name, kind, sa, sb, notes in [
        ("binary_add_bcast_channel", "add", [2, 320, 2, 3], [2, 320, 1, 1], "ResBlock: h + temb[:, :, None, None]"),
        ("binary_mul_bcast_last", "mul", [1, 7, 768], [768], "[B,N,C] * [C]"),
        ("binary_add_same", "add", [2, 32, 5, 7], [2, 32, 5, 7], "residual add"),
        ("binary_sub_same", "sub", [3, 11, 13], [3, 11, 13], "same shape"),
        ("binary_div_bcast", "div", [2, 16, 3, 5], [1, 16, 1, 1], "divide by per-channel values (|b| >= 0.5)"),
        ("binary_add_both_bcast", "add", [4, 1, 6], [1, 5, 1], "both sides broadcast -> [4,5,6]"),
        ("binary_mul_scalar_left", "mul", [1], [3, 4], "[1] * [3,4]"),
        ("binary_sub_rank_mix", "sub", [5, 1, 7], [3, 1], "ranks 3 and 2 -> [5,3,7]"),
        ("binary_mul_bcast_first", "mul", [1, 8, 9], [3, 8, 9], "a broadcast along the batch"),
    ]:
        seed(name)
        a = act(sa, 1.0, big=False)
        b = act(sb, 1.0, big=False)
        if kind == "div":
            b = (torch.sign(b) * (0.5 + b.abs())).float().double()
        y = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b}[kind]
        c = Case(name, "binary", {"kind": kind}, notes)
        c.input("a", a)
        c.input("b", b)
        c.output("y", y)
        out.append(c)
    return out


@case
def scale_cases():
    out = []
    for name, shape, mul, add, notes in [
        ("scale_vae", [1, 4, 8, 8], 0.18215, 0.0, "latent scale factor"),
        ("scale_affine", [2, 3, 7, 9], 2.0, -1.0, "[0,1] -> [-1,1] image mapping"),
        ("scale_inv", [1, 4, 5, 5], 1 / 0.18215, 0.25, "inverse latent scale with offset"),
    ]:
        seed(name)
        x = act(shape, 1.0, big=False)
        y = x * mul + add
        c = Case(name, "scale", {"mul": mul, "add": add}, notes)
        c.input("x", x)
        c.output("y", y)
        out.append(c)
    return out


# ---- data movement ----------------------------------------------------------------


@case
def concat_cases():
    out = []
    for name, shapes, axis, notes in [
        ("concat_axis1", [[2, 32, 4, 4], [2, 16, 4, 4]], 1, "UNet skip concat on channels"),
        ("concat_last", [[2, 5, 7], [2, 5, 3]], -1, "last axis, negative index"),
        ("concat_axis0_three", [[1, 4, 3, 3], [2, 4, 3, 3], [1, 4, 3, 3]], 0, "three parts along the batch (CFG)"),
        ("concat_axis2", [[1, 3, 5, 6], [1, 3, 2, 6]], 2, "middle axis"),
    ]:
        seed(name)
        parts = [act(s, 1.0, big=False) for s in shapes]
        ax = axis if axis >= 0 else axis + len(shapes[0])
        y = torch.cat(parts, dim=ax)
        c = Case(name, "concat", {"axis": axis}, notes)
        for i, p in enumerate(parts):
            c.input(f"x{i}", p)
        c.output("y", y)
        out.append(c)
    return out


@case
def upsample_cases():
    out = []
    for name, shape, factor, notes in [
        ("upsample_nearest_2x", [1, 32, 5, 7], 2, "UNet/VAE Upsample, odd map"),
        ("upsample_nearest_2x_b2", [2, 4, 4, 4], 2, "batch 2"),
        ("upsample_nearest_3x", [1, 3, 2, 3], 3, "factor 3"),
    ]:
        seed(name)
        x = act(shape, 1.0, big=False)
        y = F.interpolate(x, scale_factor=factor, mode="nearest")
        c = Case(name, "upsample_nearest", {"factor": factor}, notes)
        c.input("x", x)
        c.output("y", y)
        out.append(c)
    return out


def timestep_ref(t, dim, flip, max_period=10000.0):
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half, dtype=np.float64) / half)
    args = t.numpy()[:, None] * freqs[None]
    parts = [np.sin(args), np.cos(args)] if flip else [np.cos(args), np.sin(args)]
    return torch.from_numpy(np.concatenate(parts, axis=1))


@case
def timestep_cases():
    out = []
    ts = torch.tensor([999.0, 500.5, 0.0, 1.0, 261.0], dtype=torch.float64)
    for name, dim, flip, mp in [
        ("timestep_embedding_320", 320, False, 10000.0),
        ("timestep_embedding_320_flip", 320, True, 10000.0),
        ("timestep_embedding_256", 256, False, 10000.0),
        ("timestep_embedding_256_flip", 256, True, 10000.0),
        ("timestep_embedding_64_period1000", 64, False, 1000.0),
    ]:
        y = timestep_ref(ts, dim, flip, mp)
        attrs = {"dim": dim, "flip": flip, "maxPeriod": mp}
        c = Case(name, "timestep_embedding", attrs,
                 "ldm timestep_embedding: half=dim//2, freqs=exp(-ln(max_period)*arange(half)/half), "
                 "args=t*freqs, cat([cos, sin]); flip (attr 1) -> cat([sin, cos])",
                 "float64 NumPy (exact math; ldm itself computes in float32)")
        c.input("t", ts)
        c.output("y", y)
        out.append(c)
    return out


@case
def permute_cases():
    out = []
    for name, shape, perm, notes in [
        ("permute_nchw_nhwc", [2, 6, 4, 5], [0, 2, 3, 1], "NCHW -> NHWC (proj_in)"),
        ("permute_heads", [2, 11, 8, 5], [0, 2, 1, 3], "[B,N,H,D] -> [B,H,N,D]"),
        ("permute_rank3", [4, 5, 6], [2, 0, 1], "rank 3 rotation"),
        ("permute_rank5", [2, 3, 2, 4, 3], [4, 1, 3, 0, 2], "rank 5"),
        ("permute_identity", [3, 7], [0, 1], "identity"),
    ]:
        seed(name)
        x = act(shape, 1.0, big=False)
        y = x.permute(*perm).contiguous()
        c = Case(name, "permute", {"perm": perm}, notes)
        c.input("x", x)
        c.output("y", y)
        out.append(c)
    return out


@case
def gather_cases():
    out = []
    for name, v, d, dtype, idx, notes in [
        ("gather_rows_f32", 100, 32, "f32", [0, 99, 5, 5, 42, 7, 0, 63, 1, 98], "token embedding, f32 table"),
        ("gather_rows_f16", 64, 48, "f16", [3, 63, 0, 3, 3, 17, 40], "f16 table, repeated indices"),
        ("gather_rows_bf16", 10, 24, "bf16", [9, 8, 7, 0], "bf16 table"),
    ]:
        seed(name)
        table = round_to(torch.randn(v, d, dtype=torch.float64) * 0.02, dtype)
        ix = torch.tensor(idx, dtype=torch.int32)
        y = table[ix.long()]
        c = Case(name, "gather_rows", {}, notes)
        c.const("table", table, dtype)
        c.const("idx", ix, "i32")
        c.output("y", y)
        out.append(c)
    return out


@case
def copy_cases():
    out = []
    specials16 = [0.0, -0.0, 1.0, -2.0, 65504.0, -65504.0, 6.1035156e-05, 5.9604645e-08, -5.9604645e-08,
                  3.0e-06, float("inf"), float("-inf"), 0.333251953125]
    specialsbf = [0.0, -0.0, 1.0, -2.0, 3.0e38, -3.0e38, 1.1754944e-38, 1e-30, float("inf"), float("-inf")]
    for name, shape, dtype, specials, kind, notes in [
        ("copy_f16_to_f32", [3, 5, 7], "f16", specials16, "constant", "f16 -> f32 incl. subnormals, max, +-inf, -0"),
        ("copy_bf16_to_f32", [64, 33], "bf16", specialsbf, "constant", "bf16 -> f32 incl. extremes, +-inf, -0"),
        ("copy_f32", [2, 9, 5], "f32", [], "input", "f32 -> f32"),
    ]:
        seed(name)
        x = torch.randn(*shape, dtype=torch.float64) * 3
        flat = x.reshape(-1)
        if specials:
            flat[: len(specials)] = torch.tensor(specials, dtype=torch.float64)
        x = round_to(x, dtype)
        c = Case(name, "copy", {}, notes, "exact: the stored values upcast")
        if kind == "constant":
            c.const("x", x, dtype)
        else:
            c.input("x", x, dtype)
        c.output("y", x)
        out.append(c)
    return out


@case
def slice_cases():
    out = []
    for name, shape, axis, start, length, notes in [
        ("slice_channels", [2, 64, 4, 4], 1, 16, 32, "channel range"),
        ("slice_last_half", [1, 5, 640], -1, 320, 320, "second half of the last axis (GEGLU-style chunk)"),
        ("slice_batch", [3, 4, 5], 0, 1, 1, "one batch entry"),
        ("slice_odd", [2, 5, 9, 11], 3, 3, 7, "odd range on the last axis"),
    ]:
        seed(name)
        x = act(shape, 1.0, big=False)
        ax = axis if axis >= 0 else axis + len(shape)
        y = x.narrow(ax, start, length).contiguous()
        c = Case(name, "slice", {"axis": axis, "start": start, "length": length}, notes)
        c.input("x", x)
        c.output("y", y)
        out.append(c)
    return out


@case
def reshape_cases():
    out = []
    for name, shape, new, then_perm, notes in [
        ("reshape_flatten", [2, 32, 4, 5], [2, 32, -1], None, "[N,C,H,W] -> [N,C,H*W], -1 inferred"),
        ("reshape_split_heads", [2, 7, 48], [2, 7, 8, 6], None, "split heads"),
        ("reshape_then_permute", [2, 8, 4, 5], [2, 8, 20], [0, 2, 1],
         "proj_in path: reshape view feeding a permute ([N,C,HW] -> [N,HW,C])"),
    ]:
        seed(name)
        x = act(shape, 1.0, big=False)
        ns = list(new)
        if -1 in ns:
            i = ns.index(-1)
            ns[i] = x.numel() // -int(np.prod(ns))
        y = x.reshape(ns)
        attrs = {"shape": new}
        if then_perm is not None:
            y = y.permute(*then_perm).contiguous()
            attrs["thenPermute"] = then_perm
        c = Case(name, "reshape", attrs, notes)
        c.input("x", x)
        c.output("y", y)
        out.append(c)
    return out


# ---- main ---------------------------------------------------------------------


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    total = 0
    names = []
    counts = {}
    for gen in CASES:
        for c in gen():
            assert c.name not in names, f"duplicate case {c.name}"
            names.append(c.name)
            counts[c.op] = counts.get(c.op, 0) + 1
            total += c.write()
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump({"format": "sdflow-op-fixture-index/1", "cases": names}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(names)} cases, {total / 1e6:.2f} MB of arrays to {os.path.relpath(OUT, ROOT)}")
    for op, n in counts.items():
        print(f"  {op:20s} {n}")


if __name__ == "__main__":
    sys.exit(main())
