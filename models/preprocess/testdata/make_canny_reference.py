#!/usr/bin/python3
"""numpy reference for models/preprocess/canny.ts, written from the description of stable-diffusion.cpp's
`--canny` (../shared/reference/sdcpp-facts.md and the module comment of canny.ts), vectorised where the
algorithm allows, in float64 (the TypeScript computes in float32):

  grey = 0.2989 R + 0.5870 G + 0.1140 B (u8/255); 5x5 Gaussian sigma 1.4, weights exp(-(x²+y²)/2σ²)/(2πσ²),
  zero padding; Sobel kX = [-1 0 1; -2 0 2; -1 0 1], kY = [1 2 1; 0 0 0; -1 -2 -1] (correlation);
  G = hypot / max; angle = atan2(gy, gx) in degrees, + 180 when negative; interior non-maximum suppression:
  angle <= 157.5 -> compare with the pixels above and below; above 157.5 -> with 1 (sd.cpp's tests);
  hysteresis: ht = max·0.08, lt = ht·0.08, >= ht -> 1, in [lt, ht] -> 0.8; border (x < 3, x > W-3, same in y)
  -> 0; row-major scan of the interior: a 0.8 pixel becomes 1 if one of (x+1,y-1), (x+1,y), (x,y-1),
  (x,y+1), (x-1,y-1), (x-1,y) is 1 (as already updated), else 0; u8 = trunc(v·255 + 0.5) clamped.

Usage: /usr/bin/python3 models/preprocess/testdata/make_canny_reference.py models/preprocess/testdata/canny_reference.safetensors
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "testdata"))
from make_reference import write_safetensors  # noqa: E402


def picture(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    img[..., 0] = 40 + 100 * x / w
    img[..., 1] = 60 + 80 * y / h
    img[..., 2] = 90
    disc = (x - 0.6 * w) ** 2 + (y - 0.45 * h) ** 2 < (0.25 * min(w, h)) ** 2
    img[disc] = [230, 200, 40]
    img[int(0.15 * h):int(0.5 * h), int(0.1 * w):int(0.35 * w)] = [20, 20, 160]
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def correlate(a, k):
    kh, kw = k.shape
    p = kh // 2
    pad = np.pad(a, p)
    out = np.zeros_like(a)
    for dy in range(kh):
        for dx in range(kw):
            out += k[dy, dx] * pad[dy:dy + a.shape[0], dx:dx + a.shape[1]]
    return out


def canny(img):
    h, w, _ = img.shape
    f = img.astype(np.float64) / 255
    grey = 0.2989 * f[..., 0] + 0.5870 * f[..., 1] + 0.1140 * f[..., 2]
    s = 1.4
    g = np.arange(-2, 3)
    gk = np.exp(-(g[:, None] ** 2 + g[None, :] ** 2) / (2 * s * s)) / (2 * np.pi * s * s)
    b = correlate(grey, gk)
    gx = correlate(b, np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64))
    gy = correlate(b, np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64))
    mag = np.hypot(gx, gy)
    if mag.max() > 0:
        mag = mag / mag.max()
    ang = np.degrees(np.arctan2(gy, gx))
    ang[ang < 0] += 180
    up = np.ones_like(mag)
    down = np.ones_like(mag)
    up[1:, :] = mag[:-1, :]
    down[:-1, :] = mag[1:, :]
    vertical = ang <= 157.5
    q = np.where(vertical, down, 1.0)
    r = np.where(vertical, up, 1.0)
    nms = np.where((mag >= q) & (mag >= r), mag, 0.0)
    inner = np.zeros_like(nms)
    inner[1:-1, 1:-1] = nms[1:-1, 1:-1]
    ht = inner.max() * 0.08
    lt = ht * 0.08
    out = inner.copy()
    out[inner >= ht] = 1.0
    out[(inner < ht) & (inner >= lt)] = 0.8
    yy, xx = np.mgrid[0:h, 0:w]
    out[~((xx >= 3) & (xx <= w - 3) & (yy >= 3) & (yy <= h - 3))] = 0
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            if out[y, x] == 0.8:
                nb = [out[y - 1, x + 1], out[y, x + 1], out[y - 1, x], out[y + 1, x], out[y - 1, x - 1], out[y, x - 1]]
                out[y, x] = 1.0 if 1.0 in nb else 0.0
    return np.clip(np.trunc(out * 255 + 0.5), 0, 255)


def main():
    res = {}
    for i, (w, h, seed) in enumerate([(96, 80, 1), (64, 64, 2)]):
        img = picture(w, h, seed)
        res[f"image_{i}"] = img.astype(np.float32)
        res[f"edges_{i}"] = canny(img).astype(np.float32)
        print(f"picture {i}: {w}x{h}, {int((res[f'edges_{i}'] == 255).sum())} edge pixels", file=sys.stderr)
    write_safetensors(sys.argv[1], res, {"generator": "make_canny_reference.py"})


if __name__ == "__main__":
    main()
