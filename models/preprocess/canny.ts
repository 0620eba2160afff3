/**
 * Canny edge detection as stable-diffusion.cpp's `--canny` preprocessor
 * (`preprocess_canny` in src/runtime/preprocessing.hpp), in float32 as it
 * computes it, so that a control image preprocessed here matches sd.cpp's:
 *
 * 1. grey = 0.2989 R + 0.5870 G + 0.1140 B, on values u8/255;
 * 2. 5x5 Gaussian, sigma 1.4, weights exp(-(x²+y²)/2σ²)/(2πσ²) (not renormalised to sum 1), zero padding;
 * 3. Sobel kX = [-1 0 1; -2 0 2; -1 0 1], kY = [1 2 1; 0 0 0; -1 -2 -1] (correlation, zero padding);
 * 4. G = hypot, scaled so that its maximum is 1; direction atan2(gy, gx) in degrees folded into [0, 180];
 * 5. non-maximum suppression on the interior, comparing with the neighbours that sd.cpp's tests
 *    pick (written `0 >= angle && angle < 22.5 || 157.5 >= angle && angle <= 180` and so on, they send
 *    every angle up to 157.5 to the vertical pair; kept as is, because matching its pictures is the point);
 * 6. hysteresis: high = max·high_threshold, low = high·low_threshold; ≥ high → strong, in between → weak;
 *    a border of 3 pixels (2 on the right and bottom) cleared; a weak pixel with a strong neighbour among six of
 *    its eight (sd.cpp leaves out the two lower diagonals) becomes strong, else 0, scanning in place;
 *    values below low keep their magnitude;
 * 7. the result (optionally inverted) written to the R, G and B channels; alpha kept.
 */

import type { Image } from "../types.ts";

const f = Math.fround;

export interface CannyOptions {
  /** Fraction of the largest suppressed magnitude above which a pixel is an edge (sd.cpp: 0.08). */
  high?: number;
  /** Fraction of the high threshold above which a pixel is a weak edge (sd.cpp: 0.08). */
  low?: number;
  /** Value of weak edges before hysteresis (sd.cpp: 0.8). */
  weak?: number;
  /** Value of strong edges (sd.cpp: 1.0). */
  strong?: number;
  /** White background, black edges. */
  inverse?: boolean;
}

/** sd.cpp's `--canny` parameters. */
export const SDCPP_CANNY = { high: 0.08, low: 0.08, weak: 0.8, strong: 1.0, inverse: false } as const;

/** Correlation of a W x H plane with a k x k kernel (row-major), zero padding `pad`, float32 sums in sd.cpp's order. */
function correlate(
  src: Float32Array,
  w: number,
  h: number,
  kernel: Float32Array,
  k: number,
  pad: number,
): Float32Array {
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let sum = 0;
      for (let ky = 0; ky < k; ky++) {
        const iy = y + ky - pad;
        if (iy < 0 || iy >= h) continue;
        for (let kx = 0; kx < k; kx++) {
          const ix = x + kx - pad;
          if (ix < 0 || ix >= w) continue;
          sum = f(sum + f(src[iy * w + ix] * kernel[ky * k + kx]));
        }
      }
      out[y * w + x] = sum;
    }
  }
  return out;
}

function gaussianKernel5(): Float32Array {
  const sigma = f(1.4);
  const s2 = f(sigma * sigma);
  const normal = f(1 / f(f(2 * f(Math.PI)) * s2));
  const k = new Float32Array(25);
  for (let y = 0; y < 5; y++) {
    for (let x = 0; x < 5; x++) {
      const gx = y - 2, gy = x - 2;
      k[y * 5 + x] = f(f(Math.exp(f(-f(f(gx * gx + gy * gy) / f(2 * s2))))) * normal);
    }
  }
  return k;
}

const SOBEL_X = Float32Array.of(-1, 0, 1, -2, 0, 2, -1, 0, 1);
const SOBEL_Y = Float32Array.of(1, 2, 1, 0, 0, 0, -1, -2, -1);

/** The edge map of `image` (edges 1, weak leftovers their magnitude), one float per pixel. */
export function cannyMap(image: Image, opts: CannyOptions = {}): Float32Array {
  const { high, low, weak, strong } = { ...SDCPP_CANNY, ...opts };
  const { width: w, height: h, channels: ch, data } = image;
  const gray = new Float32Array(w * h);
  for (let i = 0; i < w * h; i++) {
    const r = f(data[i * ch] / 255), g = f(data[i * ch + 1] / 255), b = f(data[i * ch + 2] / 255);
    gray[i] = f(f(f(f(0.2989) * r) + f(f(0.5870) * g)) + f(f(0.1140) * b));
  }
  const blurred = correlate(gray, w, h, gaussianKernel5(), 5, 2);
  const gx = correlate(blurred, w, h, SOBEL_X, 3, 1);
  const gy = correlate(blurred, w, h, SOBEL_Y, 3, 1);
  const mag = new Float32Array(w * h);
  let max = -Infinity;
  for (let i = 0; i < w * h; i++) {
    mag[i] = f(Math.sqrt(f(f(gx[i] * gx[i]) + f(gy[i] * gy[i]))));
    if (mag[i] > max) max = mag[i];
  }
  if (max !== 0 && Number.isFinite(max)) {
    const inv = f(1 / max);
    for (let i = 0; i < w * h; i++) mag[i] = f(mag[i] * inv);
  }
  // Non-maximum suppression.
  const img = new Float32Array(w * h);
  const at = (x: number, y: number) => mag[y * w + x];
  const PI = f(Math.PI);
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      let angle = f(f(f(Math.atan2(gy[y * w + x], gx[y * w + x])) * 180) / PI);
      if (angle < 0) angle = f(angle + 180);
      let q = 1, r = 1;
      if ((0 >= angle && angle < 22.5) || (157.5 >= angle && angle <= 180)) {
        // As sd.cpp's tests read: every angle up to 157.5 compares vertically, and angles above 157.5
        // fall through every test (q = r = 1: only a magnitude of exactly 1 survives).
        q = at(x, y + 1);
        r = at(x, y - 1);
      } else if (22.5 >= angle && angle < 67.5) {
        q = at(x + 1, y - 1);
        r = at(x - 1, y + 1);
      } else if (67.5 >= angle && angle < 112.5) {
        q = at(x + 1, y);
        r = at(x - 1, y);
      } else if (112.5 >= angle && angle < 157.5) {
        q = at(x - 1, y - 1);
        r = at(x + 1, y + 1);
      }
      const cur = at(x, y);
      img[y * w + x] = cur >= q && cur >= r ? cur : 0;
    }
  }
  // Hysteresis.
  let top = -Infinity;
  for (let i = 0; i < w * h; i++) if (img[i] > top) top = img[i];
  const ht = f(top * f(high));
  const lt = f(ht * f(low));
  const fw = f(weak), fs = f(strong);
  for (let i = 0; i < w * h; i++) {
    const v = img[i];
    if (v >= ht) img[i] = fs;
    else if (v <= ht && v >= lt) img[i] = fw;
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!(x >= 3 && x <= w - 3 && y >= 3 && y <= h - 3)) img[y * w + x] = 0;
    }
  }
  const px = (x: number, y: number) => img[y * w + x];
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      if (px(x, y) !== fw) continue;
      const strongNeighbour = px(x + 1, y - 1) === fs || px(x + 1, y) === fs || px(x, y - 1) === fs ||
        px(x, y + 1) === fs || px(x - 1, y - 1) === fs || px(x - 1, y) === fs;
      img[y * w + x] = strongNeighbour ? fs : 0;
    }
  }
  return img;
}

/** sd.cpp's float -> u8 (`preprocessing_float_to_u8`): clamp, then round half up in float32. */
function toU8(v: number): number {
  if (v <= 0) return 0;
  if (v >= 1) return 255;
  return Math.trunc(f(f(v * 255) + 0.5));
}

/** `image` replaced by its Canny edge map (white edges on black unless `inverse`), as sd.cpp's `--canny`. */
export function canny(image: Image, opts: CannyOptions = {}): Image {
  if (image.width < 1 || image.height < 1) throw new RangeError("canny: empty image");
  const map = cannyMap(image, opts);
  const inverse = opts.inverse ?? SDCPP_CANNY.inverse;
  const ch = image.channels;
  const out = new Uint8Array(image.data);
  for (let i = 0; i < map.length; i++) {
    const v = toU8(inverse ? f(1 - map[i]) : map[i]);
    out[i * ch] = out[i * ch + 1] = out[i * ch + 2] = v;
  }
  return { ...image, data: out };
}
