/**
 * Test-side references that share no code with the engine or the backends:
 * a direct 2-D convolution accumulating in float64, a seeded PRNG, and the
 * error measures the op tests use.
 */

export interface ConvShape {
  /** [N, Ci, H, W] */
  x: readonly number[];
  /** [Co, Ci, KH, KW] */
  w: readonly number[];
  stride: number;
  pad: number;
}

/** Output shape [N, Co, OH, OW] of a convolution. */
export function convOutShape(s: ConvShape): [number, number, number, number] {
  const [n, , h, w] = s.x;
  const [co, , kh, kw] = s.w;
  return [n, co, Math.floor((h + 2 * s.pad - kh) / s.stride) + 1, Math.floor((w + 2 * s.pad - kw) / s.stride) + 1];
}

/**
 * Direct convolution (PyTorch semantics: cross-correlation, zero padding),
 * every product and sum in float64. Optional `residual` is added after the bias.
 */
export function conv2dReference(
  s: ConvShape,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  bias?: ArrayLike<number>,
  residual?: ArrayLike<number>,
): Float64Array {
  const [n, ci, h, wd] = s.x;
  const [co, wci, kh, kw] = s.w;
  if (wci !== ci) throw new Error(`conv2dReference: Ci ${ci} vs weight ${wci}`);
  if (x.length !== n * ci * h * wd || w.length !== co * ci * kh * kw) throw new Error("conv2dReference: bad sizes");
  const [, , oh, ow] = convOutShape(s);
  const y = new Float64Array(n * co * oh * ow);
  const xs = Float64Array.from(x);
  const ws = Float64Array.from(w);
  for (let b = 0; b < n; b++) {
    for (let o = 0; o < co; o++) {
      const yBase = (b * co + o) * oh * ow;
      const bv = bias ? bias[o] : 0;
      for (let i = 0; i < oh * ow; i++) y[yBase + i] = bv;
      for (let c = 0; c < ci; c++) {
        const xBase = (b * ci + c) * h * wd;
        const wBase = (o * ci + c) * kh * kw;
        for (let ky = 0; ky < kh; ky++) {
          for (let kx = 0; kx < kw; kx++) {
            const wv = ws[wBase + ky * kw + kx];
            if (wv === 0) continue;
            for (let oy = 0; oy < oh; oy++) {
              const iy = oy * s.stride - s.pad + ky;
              if (iy < 0 || iy >= h) continue;
              const xRow = xBase + iy * wd;
              const yRow = yBase + oy * ow;
              for (let ox = 0; ox < ow; ox++) {
                const ix = ox * s.stride - s.pad + kx;
                if (ix < 0 || ix >= wd) continue;
                y[yRow + ox] += wv * xs[xRow + ix];
              }
            }
          }
        }
      }
    }
  }
  if (residual) {
    if (residual.length !== y.length) throw new Error("conv2dReference: residual size");
    for (let i = 0; i < y.length; i++) y[i] += residual[i];
  }
  return y;
}

// ---- PRNG -------------------------------------------------------------------

/** mulberry32: a small, well-mixed 32-bit PRNG; the same seed gives the same stream everywhere. */
export class Rng {
  private s: number;
  private spare: number | undefined;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi] inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
  /** Standard normal (Box-Muller). */
  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  /** n values N(0, 1) * k, rounded to f32. */
  normals(n: number, k = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal() * k;
    return out;
  }
}

// ---- error measures ------------------------------------------------------------

export interface ErrorReport {
  /** max |got - want| / max |want| (want's max taken over finite entries, floored at `floor`). */
  rel: number;
  /** Index of the worst element (by the bound's own measure). */
  worst: number;
  got: number;
  want: number;
  /** Count of elements that broke the bound (0 when it holds). */
  failures: number;
  maxAbsRef: number;
}

/**
 * Compares `got` with `want` element by element under
 *   |got - want| <= relMax * max|want| + relElem * |want|
 * (relElem defaults to 0). Non-finite expected values must match exactly
 * (same infinity); any NaN in `got` is a failure. The worst index is the one
 * with the largest ratio error / allowed.
 */
export function compare(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  relMax: number,
  relElem = 0,
  floor = 1e-30,
): ErrorReport {
  if (got.length !== want.length) throw new Error(`compare: ${got.length} values vs ${want.length} expected`);
  let maxAbs = 0;
  for (let i = 0; i < want.length; i++) {
    const a = Math.abs(want[i]);
    if (Number.isFinite(a) && a > maxAbs) maxAbs = a;
  }
  maxAbs = Math.max(maxAbs, floor);
  let rel = 0;
  let worst = -1;
  let worstRatio = -1;
  let failures = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const e = want[i];
    let err: number;
    let allowed: number;
    if (!Number.isFinite(e)) {
      err = Object.is(g, e) ? 0 : Infinity;
      allowed = 0;
    } else {
      err = Number.isNaN(g) ? Infinity : Math.abs(g - e);
      allowed = relMax * maxAbs + relElem * Math.abs(e);
    }
    if (Number.isFinite(e)) rel = Math.max(rel, err / maxAbs);
    else if (err > 0) rel = Infinity;
    const ratio = err === 0 ? 0 : allowed === 0 ? Infinity : err / allowed;
    if (ratio > 1) failures++;
    if (ratio > worstRatio) {
      worstRatio = ratio;
      worst = i;
    }
  }
  return { rel, worst, got: got[worst], want: want[worst], failures, maxAbsRef: maxAbs };
}

/** Multi-index of flat index `i` in `shape`, e.g. "[0, 3, 2, 1]". */
export function indexOf(shape: readonly number[], i: number): string {
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(i % shape[d]);
    i = Math.floor(i / shape[d]);
  }
  return `[${idx.join(", ")}]`;
}

// ---- Winograd error bounds -----------------------------------------------------------

/**
 * Bounds on max |got - ref| / max |ref| for 3x3 convolutions run as Winograd
 * F(m,3), against the float64 direct reference, with f32 arithmetic.
 *
 * Why they grow with m: F(m,3) evaluates the filter and input polynomials at
 * m+1 points (plus infinity) and interpolates back. F(2,3) uses 0, +-1: every
 * transform entry is 0, +-1 or +-1/2, so it is about as accurate as direct
 * summation (direct/im2col reach ~1.4e-6 on the same shapes). F(4,3) adds
 * +-2 (A^T entries up to 8, B^T up to 5), and F(6,3) adds +-1/2 as well (A^T
 * entries up to 32, B^T up to 21/4): each stage's rounding errors are
 * multiplied by the rows' 1-norms on their way to the output, and the
 * transformed values' magnitudes spread by the same factors, so the products
 * sum terms of very different sizes.
 *
 * Measured on this suite (winograd_test.ts: 200 f32 shapes, f16/bf16 weights,
 * fused residuals, all ISAs; Ci up to 136, SD-like magnitudes), worst
 * max err / max|ref|:  F(2,3) 5.8e-7,  F(4,3) 1.2e-5,  F(6,3) 1.8e-5.
 * (A float32 NumPy model with the same points gives 4.9e-7 / 7.8e-6 / 2.5e-5.)
 * The bounds keep a 4-9x margin over that and no more, so a subtly wrong
 * transform (a bad constant, a dropped edge tap, f16 rounding: errors of
 * 1e-3 and up) cannot hide.
 */
export const WINOGRAD_REL_BOUND: Readonly<Record<number, number>> = {
  2: 5e-6,
  4: 5e-5,
  6: 1e-4,
};
