/**
 * ggml's block-quantized formats q4_0, q4_1, q5_0, q5_1 and q8_0: quantization with ggml's reference
 * rounding (`quantize`) and with the weighted search stable-diffusion.cpp's convert and `--type` use
 * (`quantizeRows`: what `sd -M convert` writes, byte for byte), dequantization, and the scale check the
 * loader runs. A block is 32 consecutive elements of the flattened tensor; every
 * f32 operation is rounded like the C code (`Math.fround` after each one, no fused multiply-add).
 *
 * @example
 * ```ts
 * const blocks = quantize("q8_0", new Float32Array(64).fill(0.5)); // 2 blocks of 34 bytes
 * const back = dequantize("q8_0", blocks, 64);
 * ```
 */
import { f16BitsToF32, f32ToF16Bits } from "../../backends/float16.ts";
import { isQuantDType, QUANT_BLOCKS, type QuantDType } from "../../engine/graph.ts";

export { isQuantDType, QUANT_BLOCKS, type QuantDType };

/** The formats sdflow quantizes to (`--type`), in sd.cpp's spelling; the K-quants are read only. */
export type QuantizeType = "q4_0" | "q4_1" | "q5_0" | "q5_1" | "q8_0";
export const QUANT_TYPES: readonly QuantizeType[] = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"];

const f = Math.fround;
const FLT_MAX = 3.4028234663852886e38;

/** Bytes of `n` elements of `type` (n a multiple of 32). */
export function quantBytes(type: QuantDType, n: number): number {
  return (n / QUANT_BLOCKS[type].elems) * QUANT_BLOCKS[type].bytes;
}

/** Quantizes `x` (length a multiple of 32) into ggml blocks of `type`, into `out` if given. */
export function quantize(type: QuantizeType, x: Float32Array, out?: Uint8Array): Uint8Array {
  const { elems, bytes } = QUANT_BLOCKS[type];
  if (x.length % elems !== 0) throw new RangeError(`quantize ${type}: ${x.length} values are not whole blocks`);
  const nb = x.length / elems;
  const y = out ?? new Uint8Array(nb * bytes);
  for (let b = 0; b < nb; b++) QUANTIZERS[type](x, b * 32, y, b * bytes);
  return y;
}

const setHalf = (y: Uint8Array, o: number, v: number): void => {
  const h = f32ToF16Bits(v);
  y[o] = h & 0xff;
  y[o + 1] = h >>> 8;
};

/** roundf: halves away from zero. */
const roundAway = (v: number): number => (v < 0 ? -Math.round(-v) : Math.round(v));

/** The element of largest magnitude (the first one, on ties), as ggml's q4_0 / q5_0 pick it. */
function signedAbsMax(x: Float32Array, o: number): number {
  let amax = 0, max = 0;
  for (let j = 0; j < 32; j++) {
    const v = x[o + j];
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return max;
}

function minMax(x: Float32Array, o: number): [number, number] {
  let min = FLT_MAX, max = -FLT_MAX;
  for (let j = 0; j < 32; j++) {
    const v = x[o + j];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

const QUANTIZERS: Record<QuantizeType, (x: Float32Array, o: number, y: Uint8Array, p: number) => void> = {
  q8_0(x, o, y, p) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[o + j]));
    const d = f(amax / 127);
    const id = d ? f(1 / d) : 0;
    setHalf(y, p, d);
    for (let j = 0; j < 32; j++) y[p + 2 + j] = roundAway(f(x[o + j] * id)) & 0xff;
  },
  q4_0(x, o, y, p) {
    const d = f(signedAbsMax(x, o) / -8);
    const id = d ? f(1 / d) : 0;
    setHalf(y, p, d);
    for (let j = 0; j < 16; j++) {
      const a = Math.min(15, Math.trunc(f(f(x[o + j] * id) + 8.5)));
      const b = Math.min(15, Math.trunc(f(f(x[o + 16 + j] * id) + 8.5)));
      y[p + 2 + j] = a | (b << 4);
    }
  },
  q4_1(x, o, y, p) {
    const [min, max] = minMax(x, o);
    const d = f(f(max - min) / 15);
    const id = d ? f(1 / d) : 0;
    setHalf(y, p, d);
    setHalf(y, p + 2, min);
    for (let j = 0; j < 16; j++) {
      const a = Math.min(15, Math.trunc(f(f(f(x[o + j] - min) * id) + 0.5)));
      const b = Math.min(15, Math.trunc(f(f(f(x[o + 16 + j] - min) * id) + 0.5)));
      y[p + 4 + j] = a | (b << 4);
    }
  },
  q5_0(x, o, y, p) {
    const d = f(signedAbsMax(x, o) / -16);
    const id = d ? f(1 / d) : 0;
    setHalf(y, p, d);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const a = Math.min(31, Math.trunc(f(f(x[o + j] * id) + 16.5)));
      const b = Math.min(31, Math.trunc(f(f(x[o + 16 + j] * id) + 16.5)));
      y[p + 6 + j] = (a & 15) | ((b & 15) << 4);
      qh |= ((a >> 4) & 1) << j;
      qh |= ((b >> 4) & 1) << (j + 16);
    }
    new DataView(y.buffer, y.byteOffset + p + 2, 4).setUint32(0, qh >>> 0, true);
  },
  q5_1(x, o, y, p) {
    const [min, max] = minMax(x, o);
    const d = f(f(max - min) / 31);
    const id = d ? f(1 / d) : 0;
    setHalf(y, p, d);
    setHalf(y, p + 2, min);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      // ggml casts to uint8 without clamping; the values are in [0, 31] up to rounding.
      const a = Math.trunc(f(f(f(x[o + j] - min) * id) + 0.5)) & 0xff;
      const b = Math.trunc(f(f(f(x[o + 16 + j] - min) * id) + 0.5)) & 0xff;
      y[p + 8 + j] = (a & 15) | ((b & 15) << 4);
      qh |= ((a >> 4) & 1) << j;
      qh |= ((b >> 4) & 1) << (j + 16);
    }
    new DataView(y.buffer, y.byteOffset + p + 4, 4).setUint32(0, qh >>> 0, true);
  },
};

// ---- stable-diffusion.cpp's quantization: ggml's importance-weighted search, all weights 1 -------------

/** ggml's nearest_int: round to nearest, ties to even, through the f32 add of 1.5 * 2^23. */
const nearestInt = (v: number): number => f(v + 12582912) - 12582912;

/**
 * Quantizes `x` as stable-diffusion.cpp does when it converts or loads with `--type`: it hands ggml an
 * importance matrix of ones, so q4_0, q4_1, q5_0 and q5_1 take ggml's weighted search (per block,
 * weights sqrt(sigma2 + x^2), sigma2 the row's mean square) instead of the reference rounding; q8_0
 * has no weighted form. `rowLength` is the innermost dimension (whole blocks); `x` holds whole rows.
 */
export function quantizeRows(type: QuantizeType, x: Float32Array, rowLength: number, out?: Uint8Array): Uint8Array {
  if (type === "q8_0") return quantize(type, x, out);
  const { bytes } = QUANT_BLOCKS[type];
  if (rowLength % 32 !== 0 || x.length % rowLength !== 0) {
    throw new RangeError(`quantize ${type}: ${x.length} values are not whole rows of ${rowLength} (whole blocks)`);
  }
  const y = out ?? new Uint8Array((x.length / 32) * bytes);
  const weight = new Float32Array(32), L = new Uint8Array(32), aux = new Uint8Array(32);
  for (let r0 = 0; r0 < x.length; r0 += rowLength) {
    let sumX2 = 0;
    for (let j = 0; j < rowLength; j++) sumX2 = f(sumX2 + f(x[r0 + j] * x[r0 + j]));
    const sigma2 = f(sumX2 / rowLength);
    for (let o = r0; o < r0 + rowLength; o += 32) {
      for (let j = 0; j < 32; j++) weight[j] = f(Math.sqrt(f(sigma2 + f(x[o + j] * x[o + j]))));
      const p = (o / 32) * bytes;
      if (type === "q4_0" || type === "q5_0") {
        const nmax = type === "q4_0" ? 8 : 16;
        setHalf(y, p, makeQxQuants(nmax, x, o, L, weight));
        packQuants(type, L, y, p);
      } else {
        const [d, min] = makeQkx3Quants(type === "q4_1" ? 15 : 31, x, o, weight, L, aux);
        setHalf(y, p, d);
        setHalf(y, p + 2, min);
        packQuants(type, L, y, p);
      }
    }
  }
  return y;
}

/** Codes L[0..32) (0..15 or 0..31) into a block's nibbles (and qh bits) at y[p]. */
function packQuants(type: QuantizeType, L: Uint8Array, y: Uint8Array, p: number): void {
  const five = type === "q5_0" || type === "q5_1";
  const qs = p + { q4_0: 2, q4_1: 4, q5_0: 6, q5_1: 8, q8_0: 2 }[type];
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    y[qs + j] = (L[j] & 15) | ((L[j + 16] & 15) << 4);
    qh |= ((L[j] >> 4) & 1) << j;
    qh |= ((L[j + 16] >> 4) & 1) << (j + 16);
  }
  if (five) new DataView(y.buffer, y.byteOffset + p + (type === "q5_0" ? 2 : 4), 4).setUint32(0, qh >>> 0, true);
}

/** ggml's make_qx_quants(32, nmax, x, L, rmse_type 1, weights): a symmetric scale searched over 19 candidates. */
function makeQxQuants(nmax: number, x: Float32Array, o: number, L: Uint8Array, w: Float32Array): number {
  let max = 0, amax = 0;
  for (let i = 0; i < 32; i++) {
    const ax = Math.abs(x[o + i]);
    if (ax > amax) {
      amax = ax;
      max = x[o + i];
    }
  }
  if (amax < f(1e-15)) {
    L.fill(0);
    return 0;
  }
  const clampL = (v: number) => Math.max(-nmax, Math.min(nmax - 1, nearestInt(v)));
  let iscale = f(-nmax / max);
  let sumlx = 0, suml2 = 0;
  for (let i = 0; i < 32; i++) {
    const l = clampL(f(iscale * x[o + i]));
    L[i] = l + nmax;
    sumlx = f(sumlx + f(f(w[i] * x[o + i]) * l));
    suml2 = f(suml2 + f(f(w[i] * l) * l));
  }
  let scale = suml2 ? f(sumlx / suml2) : 0;
  let best = f(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = f(-f(nmax + f(f(0.1) * is)) / max);
    sumlx = suml2 = 0;
    for (let i = 0; i < 32; i++) {
      const l = clampL(f(iscale * x[o + i]));
      sumlx = f(sumlx + f(f(w[i] * x[o + i]) * l));
      suml2 = f(suml2 + f(f(w[i] * l) * l));
    }
    if (suml2 > 0 && f(sumlx * sumlx) > f(best * suml2)) {
      for (let i = 0; i < 32; i++) L[i] = nmax + clampL(f(iscale * x[o + i]));
      scale = f(sumlx / suml2);
      best = f(scale * sumlx);
    }
  }
  return scale;
}

/**
 * ggml's make_qkx3_quants(32, nmax, x, weights, L, &min, Laux, -0.9, 0.05, 36, false): scale and minimum
 * searched over 37 candidates by weighted least squares. Returns [d, the block's minimum m].
 */
function makeQkx3Quants(
  nmax: number,
  x: Float32Array,
  o: number,
  w: Float32Array,
  L: Uint8Array,
  aux: Uint8Array,
): [number, number] {
  let min = x[o], max = x[o];
  let sumW = w[0];
  let sumX = f(sumW * x[o]);
  for (let i = 1; i < 32; i++) {
    const v = x[o + i];
    if (v < min) min = v;
    if (v > max) max = v;
    sumW = f(sumW + w[i]);
    sumX = f(sumX + f(w[i] * v));
  }
  if (min > 0) min = 0;
  if (max <= min) {
    L.fill(0);
    return [0, min];
  }
  // `min` moves to the best candidate's as the search goes, and the next candidates scale from it.
  let iscale = f(nmax / f(max - min));
  let scale = f(1 / iscale);
  let bestMad = 0;
  for (let i = 0; i < 32; i++) {
    const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(x[o + i] - min)))));
    L[i] = l;
    const diff = f(f(f(scale * l) + min) - x[o + i]);
    bestMad = f(bestMad + f(w[i] * f(diff * diff)));
  }
  for (let is = 0; is <= 36; is++) {
    iscale = f(f(f(f(-0.9) + f(f(0.05) * is)) + nmax) / f(max - min));
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < 32; i++) {
      const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(x[o + i] - min)))));
      aux[i] = l;
      const wl = f(w[i] * l);
      sumL = f(sumL + wl);
      sumL2 = f(sumL2 + f(wl * l));
      sumXL = f(sumXL + f(wl * x[o + i]));
    }
    const D = f(f(sumW * sumL2) - f(sumL * sumL));
    if (D > 0) {
      let thisScale = f(f(f(sumW * sumXL) - f(sumX * sumL)) / D);
      let thisMin = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = f(sumXL / sumL2);
      }
      let mad = 0;
      for (let i = 0; i < 32; i++) {
        const diff = f(f(f(thisScale * aux[i]) + thisMin) - x[o + i]);
        mad = f(mad + f(w[i] * f(diff * diff)));
      }
      if (mad < bestMad) {
        L.set(aux);
        bestMad = mad;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return [scale, min];
}

const half = (y: Uint8Array, o: number): number => f16BitsToF32(y[o] | (y[o + 1] << 8));

/** Dequantizes the first `n` elements (whole blocks) of `blocks`, into `out` if given. */
export function dequantize(type: QuantDType, blocks: Uint8Array, n: number, out?: Float32Array): Float32Array {
  const { elems, bytes } = QUANT_BLOCKS[type];
  if (n % elems !== 0 || blocks.length < (n / elems) * bytes) {
    throw new RangeError(`dequantize ${type}: ${n} values need ${(n / elems) * bytes} bytes of whole blocks`);
  }
  const y = out ?? new Float32Array(n);
  if (elems === 256) {
    for (let p = 0, o = 0; o < n; p += bytes, o += 256) dequantizeK(type, blocks, p, y, o);
    return y;
  }
  for (let p = 0, o = 0; o < n; p += bytes, o += 32) {
    const d = half(blocks, p);
    if (type === "q8_0") {
      for (let j = 0; j < 32; j++) y[o + j] = f(((blocks[p + 2 + j] << 24) >> 24) * d);
    } else if (type === "q4_0") {
      for (let j = 0; j < 16; j++) {
        y[o + j] = f(((blocks[p + 2 + j] & 15) - 8) * d);
        y[o + 16 + j] = f(((blocks[p + 2 + j] >> 4) - 8) * d);
      }
    } else if (type === "q4_1") {
      const m = half(blocks, p + 2);
      for (let j = 0; j < 16; j++) {
        y[o + j] = f(f((blocks[p + 4 + j] & 15) * d) + m);
        y[o + 16 + j] = f(f((blocks[p + 4 + j] >> 4) * d) + m);
      }
    } else {
      const one = type === "q5_1";
      const m = one ? half(blocks, p + 2) : 0;
      const hp = p + (one ? 4 : 2), qp = p + (one ? 8 : 6);
      const qh = (blocks[hp] | (blocks[hp + 1] << 8) | (blocks[hp + 2] << 16) | (blocks[hp + 3] << 24)) >>> 0;
      for (let j = 0; j < 16; j++) {
        const lo = (blocks[qp + j] & 15) | (((qh >>> j) & 1) << 4);
        const hi = (blocks[qp + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4);
        y[o + j] = one ? f(f(lo * d) + m) : f((lo - 16) * d);
        y[o + 16 + j] = one ? f(f(hi * d) + m) : f((hi - 16) * d);
      }
    }
  }
  return y;
}

/** The 6-bit scale and minimum j of a q4_K / q5_K block's 12 scale bytes at b[s]. */
function scaleMinK4(j: number, b: Uint8Array, s: number): [number, number] {
  if (j < 4) return [b[s + j] & 63, b[s + j + 4] & 63];
  return [(b[s + j + 4] & 15) | ((b[s + j - 4] >> 6) << 4), (b[s + j + 4] >> 4) | ((b[s + j] >> 6) << 4)];
}

/** One 256-element K-quant block at b[p] into y[o..o+256), with ggml's dequantize_row_q*_K arithmetic. */
function dequantizeK(type: QuantDType, b: Uint8Array, p: number, y: Float32Array, o: number): void {
  switch (type) {
    case "q2_k": { // scales[16], qs[64], d, dmin
      const d = half(b, p + 80), min = half(b, p + 82);
      let is = 0;
      for (let n = 0; n < 2; n++) {
        const q = p + 16 + 32 * n;
        for (let shift = 0; shift < 8; shift += 2) {
          for (let h = 0; h < 2; h++, is++) {
            const dl = f(d * (b[p + is] & 15)), ml = f(min * (b[p + is] >> 4));
            for (let l = 0; l < 16; l++) y[o++] = f(f(dl * ((b[q + l + 16 * h] >> shift) & 3)) - ml);
          }
        }
      }
      return;
    }
    case "q3_k": { // hmask[32], qs[64], scales[12], d
      const d = half(b, p + 108), s = p + 96;
      let m = 1, is = 0;
      for (let n = 0; n < 2; n++) {
        const q = p + 32 + 32 * n;
        for (let shift = 0; shift < 8; shift += 2, m <<= 1) {
          for (let h = 0; h < 2; h++, is++) {
            const lo = is < 8 ? b[s + is] & 15 : b[s + is - 8] >> 4;
            const hi = (b[s + 8 + (is % 4)] >> (2 * Math.floor(is / 4))) & 3;
            const dl = f(d * ((lo | (hi << 4)) - 32));
            for (let l = 0; l < 16; l++) {
              const k = l + 16 * h;
              y[o++] = f(dl * (((b[q + k] >> shift) & 3) - ((b[p + k] & m) ? 0 : 4)));
            }
          }
        }
      }
      return;
    }
    case "q4_k":
    case "q5_k": { // d, dmin, scales[12], (q5_K: qh[32]), qs[128]
      const five = type === "q5_k";
      const d = half(b, p), min = half(b, p + 2);
      for (let j = 0, is = 0; j < 256; j += 64, is += 2) {
        const q = p + (five ? 48 : 16) + j / 2;
        const [s1, m1] = scaleMinK4(is, b, p + 4), [s2, m2] = scaleMinK4(is + 1, b, p + 4);
        const d1 = f(d * s1), dm1 = f(min * m1), d2 = f(d * s2), dm2 = f(min * m2);
        const u1 = 1 << (j / 32), u2 = 2 << (j / 32);
        for (let l = 0; l < 32; l++) {
          y[o++] = f(f(d1 * ((b[q + l] & 15) + (five && (b[p + 16 + l] & u1) ? 16 : 0))) - dm1);
        }
        for (let l = 0; l < 32; l++) {
          y[o++] = f(f(d2 * ((b[q + l] >> 4) + (five && (b[p + 16 + l] & u2) ? 16 : 0))) - dm2);
        }
      }
      return;
    }
    case "q6_k": { // ql[128], qh[64], scales[16] (int8), d
      const d = half(b, p + 208);
      for (let n = 0; n < 2; n++) {
        const ql = p + 64 * n, qh = p + 128 + 32 * n, sc = p + 192 + 8 * n, yo = o + 128 * n;
        const s8 = (i: number) => (b[sc + i] << 24) >> 24;
        for (let l = 0; l < 32; l++) {
          const is = l >> 4;
          const q1 = ((b[ql + l] & 15) | (((b[qh + l] >> 0) & 3) << 4)) - 32;
          const q2 = ((b[ql + l + 32] & 15) | (((b[qh + l] >> 2) & 3) << 4)) - 32;
          const q3 = ((b[ql + l] >> 4) | (((b[qh + l] >> 4) & 3) << 4)) - 32;
          const q4 = ((b[ql + l + 32] >> 4) | (((b[qh + l] >> 6) & 3) << 4)) - 32;
          y[yo + l] = f(f(d * s8(is)) * q1);
          y[yo + l + 32] = f(f(d * s8(is + 2)) * q2);
          y[yo + l + 64] = f(f(d * s8(is + 4)) * q3);
          y[yo + l + 96] = f(f(d * s8(is + 6)) * q4);
        }
      }
      return;
    }
    default:
      throw new RangeError(`dequantize: ${type} is not a K-quant`);
  }
}

/** Byte offsets of each format's f16 super-scales (and minimums) within a block. */
const SCALE_OFFSETS: Record<QuantDType, readonly number[]> = {
  q4_0: [0],
  q4_1: [0, 2],
  q5_0: [0],
  q5_1: [0, 2],
  q8_0: [0],
  q2_k: [80, 82],
  q3_k: [108],
  q4_k: [0, 2],
  q5_k: [0, 2],
  q6_k: [208],
};

/**
 * The index of the first block of `blocks` whose f16 scale (or minimum) is NaN or ±Infinity, or -1.
 * Such a block turns every product it enters into NaN, so the loader refuses it.
 */
export function firstBadScale(type: QuantDType, blocks: Uint8Array): number {
  const { bytes } = QUANT_BLOCKS[type];
  const offsets = SCALE_OFFSETS[type];
  for (let b = 0, p = 0; p + bytes <= blocks.length; b++, p += bytes) {
    // f16 exponent all ones (0x7c00) = Inf or NaN.
    for (const s of offsets) if ((blocks[p + s + 1] & 0x7c) === 0x7c) return b;
  }
  return -1;
}
