/**
 * ggml's block-quantized formats q4_0, q4_1, q5_0, q5_1 and q8_0: quantization with ggml's reference
 * rounding (what `sd -M convert` writes, so files match byte for byte), dequantization, and the
 * scale check the loader runs. A block is 32 consecutive elements of the flattened tensor; every
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

/** The formats `--type` accepts, in sd.cpp's spelling. */
export const QUANT_TYPES: readonly QuantDType[] = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"];

const f = Math.fround;
const FLT_MAX = 3.4028234663852886e38;

/** Bytes of `n` elements of `type` (n a multiple of 32). */
export function quantBytes(type: QuantDType, n: number): number {
  return (n / QUANT_BLOCKS[type].elems) * QUANT_BLOCKS[type].bytes;
}

/** Quantizes `x` (length a multiple of 32) into ggml blocks of `type`, into `out` if given. */
export function quantize(type: QuantDType, x: Float32Array, out?: Uint8Array): Uint8Array {
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

const QUANTIZERS: Record<QuantDType, (x: Float32Array, o: number, y: Uint8Array, p: number) => void> = {
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

const half = (y: Uint8Array, o: number): number => f16BitsToF32(y[o] | (y[o + 1] << 8));

/** Dequantizes the first `n` elements (whole blocks) of `blocks`, into `out` if given. */
export function dequantize(type: QuantDType, blocks: Uint8Array, n: number, out?: Float32Array): Float32Array {
  const { elems, bytes } = QUANT_BLOCKS[type];
  if (n % elems !== 0 || blocks.length < (n / elems) * bytes) {
    throw new RangeError(`dequantize ${type}: ${n} values need ${(n / elems) * bytes} bytes of whole blocks`);
  }
  const y = out ?? new Float32Array(n);
  for (let b = 0, p = 0, o = 0; o < n; b++, p += bytes, o += 32) {
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

/**
 * The index of the first block of `blocks` whose f16 scale (or minimum) is NaN or ±Infinity, or -1.
 * Such a block turns every product it enters into NaN, so the loader refuses it.
 */
export function firstBadScale(type: QuantDType, blocks: Uint8Array): number {
  const { bytes } = QUANT_BLOCKS[type];
  const withMin = type === "q4_1" || type === "q5_1";
  for (let b = 0, p = 0; p + bytes <= blocks.length; b++, p += bytes) {
    // f16 exponent all ones (0x7c00) = Inf or NaN.
    if ((blocks[p + 1] & 0x7c) === 0x7c) return b;
    if (withMin && (blocks[p + 3] & 0x7c) === 0x7c) return b;
  }
  return -1;
}
