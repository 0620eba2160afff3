#!/usr/bin/env python3
"""Reference values for models/lora/lora_test.ts: LoRA merges and run-time deltas on tiny shapes,
computed with numpy in float64 (independently of sdflow's code).

  /usr/bin/python3 models/lora/testdata/make_lora_reference.py  # writes lora_reference.safetensors here

Cases (each tensor named "<case>.<what>"):
  lin   linear W [6, 5] f16; down [2, 5], up [6, 2] f16; alpha 1 (scale alpha/rank = 0.5), strength 0.8
  conv  3x3 conv W [4, 3, 3, 3] f16; LoCon down [2, 3, 3, 3], up [4, 2, 1, 1]; alpha 2 (scale 1); stride 1, pad 1
  rows  fused in_proj W [9, 3] f16; a delta on rows [3, 6) only: down [1, 3], up [3, 1]; `.scale` 0.25
  dense linear W [4, 4] f32; dense diff [4, 4] f32; strength 1.5
  wide  linear W [5, 7] f16; rank 13 (the merge's 8-, 4- and 1-term paths); alpha 6.5 (scale 0.5)
Per case: "merged" = W + s * up @ down in float64, rounded to W's dtype (f16: numpy's round to nearest
even); "x" an input, "y" the layer's output with the unrounded merged weight (float64, stored f32).
"""
import json
import os
import struct

import numpy as np

rng = np.random.default_rng(20261202)


def r(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float64)


tensors = {}


def put(name, a, dtype):
    tensors[name] = np.ascontiguousarray(a.astype(dtype))


def conv2d(x, w, pad):
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - k + 1, wd + 2 * pad - k + 1
    y = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i:i + k, j:j + k].reshape(n, -1)
            y[:, :, i, j] = patch @ w.reshape(o, -1).T
    return y


# lin
W = r(6, 5, scale=0.5).astype(np.float16).astype(np.float64)
down = r(2, 5, scale=0.3).astype(np.float16).astype(np.float64)
up = r(6, 2, scale=0.3).astype(np.float16).astype(np.float64)
s = 1.0 / 2 * 0.8
merged = W + s * up @ down
x = r(3, 5)
put("lin.w", W, np.float16); put("lin.down", down, np.float16); put("lin.up", up, np.float16)
put("lin.merged", merged, np.float16); put("lin.x", x, np.float32)
put("lin.y", x.astype(np.float32).astype(np.float64) @ merged.T, np.float32)

# conv (LoCon)
W = r(4, 3, 3, 3, scale=0.3).astype(np.float16).astype(np.float64)
down = r(2, 3, 3, 3, scale=0.3).astype(np.float16).astype(np.float64)
up = r(4, 2, 1, 1, scale=0.3).astype(np.float16).astype(np.float64)
s = 2.0 / 2
merged = W + s * (up.reshape(4, 2) @ down.reshape(2, -1)).reshape(W.shape)
x = r(1, 3, 5, 5).astype(np.float32).astype(np.float64)
put("conv.w", W, np.float16); put("conv.down", down, np.float16); put("conv.up", up, np.float16)
put("conv.merged", merged, np.float16); put("conv.x", x, np.float32); put("conv.y", conv2d(x, merged, 1), np.float32)

# rows (the k third of a fused in_proj)
W = r(9, 3, scale=0.5).astype(np.float16).astype(np.float64)
down = r(1, 3, scale=0.5).astype(np.float16).astype(np.float64)
up = r(3, 1, scale=0.5).astype(np.float16).astype(np.float64)
merged = W.copy()
merged[3:6] += 0.25 * up @ down
x = r(2, 3).astype(np.float32).astype(np.float64)
put("rows.w", W, np.float16); put("rows.down", down, np.float16); put("rows.up", up, np.float16)
put("rows.merged", merged, np.float16); put("rows.x", x, np.float32); put("rows.y", x @ merged[3:6].T, np.float32)

# dense
W = r(4, 4, scale=0.5).astype(np.float32).astype(np.float64)
diff = r(4, 4, scale=0.1).astype(np.float32).astype(np.float64)
merged = W + 1.5 * diff
x = r(2, 4).astype(np.float32).astype(np.float64)
put("dense.w", W, np.float32); put("dense.diff", diff, np.float32)
put("dense.merged", merged, np.float32); put("dense.x", x, np.float32); put("dense.y", x @ merged.T, np.float32)

# wide: rank 13
W = r(5, 7, scale=0.5).astype(np.float16).astype(np.float64)
down = r(13, 7, scale=0.3).astype(np.float16).astype(np.float64)
up = r(5, 13, scale=0.3).astype(np.float16).astype(np.float64)
merged = W + 0.5 * up @ down
x = r(2, 7).astype(np.float32).astype(np.float64)
put("wide.w", W, np.float16); put("wide.down", down, np.float16); put("wide.up", up, np.float16)
put("wide.merged", merged, np.float16); put("wide.x", x, np.float32); put("wide.y", x @ merged.T, np.float32)

header, blobs, off = {}, [], 0
for name in sorted(tensors):
    a = tensors[name]
    b = a.tobytes()
    header[name] = {"dtype": {np.float16: "F16", np.float32: "F32"}[a.dtype.type], "shape": list(a.shape),
                    "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lora_reference.safetensors")
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
print(f"wrote {out} ({len(tensors)} tensors)")
