/**
 * IEEE binary16 (f16) and bfloat16 (bf16) bits to and from numbers: the one
 * place sdflow's TypeScript converts them (weights it writes, reads and tests).
 * Narrowing rounds to nearest, ties to even, as PyTorch and the C backend do;
 * widening is exact.
 *
 * @example
 * ```ts
 * import { f16BitsToF32, f32ToF16Bits } from "./backends/float16.ts";
 * f16BitsToF32(f32ToF16Bits(0.1)); // 0.0999755859375
 * ```
 */

const scratch = new ArrayBuffer(4);
const scratchF32 = new Float32Array(scratch);
const scratchU32 = new Uint32Array(scratch);

/** IEEE binary16 bits -> number (exact; subnormals, infinities and NaN included). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bits -> number (exact: the top half of an f32). */
export function bf16BitsToF32(h: number): number {
  scratchU32[0] = (h & 0xffff) << 16;
  return scratchF32[0];
}

/**
 * number -> IEEE binary16 bits. The number is first rounded to f32 (as a Float32Array would hold
 * it), then to f16 with ties to even; magnitudes from 65520 overflow to infinity; NaN stays NaN.
 */
export function f32ToF16Bits(x: number): number {
  scratchF32[0] = x;
  const bits = scratchU32[0];
  const sign = (bits >>> 16) & 0x8000;
  const abs = bits & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | (abs > 0x7f800000 ? 0x7e00 : 0x7c00);
  if (abs >= 0x477ff000) return sign | 0x7c00; // >= 65520 rounds past the largest finite half (65504)
  if (abs < 0x38800000) {
    // Below 2^-14: a subnormal half, a multiple of 2^-24.
    if (abs < 0x33000000) return sign; // < 2^-25 (half the smallest subnormal) rounds to zero
    const mant = (abs & 0x7fffff) | 0x800000;
    const shift = 126 - (abs >>> 23); // 14..24
    return sign | roundShiftEven(mant, shift);
  }
  // Normal: rebias the exponent (127 -> 15) and round 13 mantissa bits away; a carry into the
  // exponent is the right result (it may reach infinity only above the 65520 check).
  return sign | (roundShiftEven(abs, 13) - (112 << 10));
}

/** number -> bfloat16 bits via f32, ties to even (as PyTorch's `.bfloat16()`); NaN stays a quiet NaN. */
export function f32ToBf16Bits(x: number): number {
  scratchF32[0] = x;
  const bits = scratchU32[0];
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40;
  return roundShiftEven(bits, 16);
}

/** `v >>> shift`, rounded to nearest with ties to even (v < 2^32, 1 <= shift <= 24). */
function roundShiftEven(v: number, shift: number): number {
  const q = v >>> shift;
  const rem = v - q * 2 ** shift;
  const half = 2 ** (shift - 1);
  return rem > half || (rem === half && (q & 1)) ? q + 1 : q;
}

/** f32 values -> f16 bits, ties to even. */
export function f32ArrayToF16Bits(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]);
  return out;
}

/** f32 values -> bf16 bits, ties to even. */
export function f32ArrayToBf16Bits(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToBf16Bits(src[i]);
  return out;
}

/** f16 or bf16 bits -> f32 values. */
export function halfBitsToF32Array(src: ArrayLike<number>, dtype: "f16" | "bf16"): Float32Array {
  const widen = dtype === "f16" ? f16BitsToF32 : bf16BitsToF32;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = widen(src[i]);
  return out;
}

/** f16 bits → float32 for every 16-bit pattern (a lookup table for widening whole arrays fast). */
let halfTable: Float32Array | undefined;
export function f16BitsTable(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    const v = e === 0 ? m * 2 ** -24 : e === 31 ? (m ? NaN : Infinity) : (1 + m / 1024) * 2 ** (e - 15);
    halfTable[h] = h & 0x8000 ? -v : v;
  }
  return halfTable;
}

/**
 * Float32 values → f16 bits into `out`, ties to even: what {@link f32ToF16Bits} gives for each value,
 * in one loop over the bits without per-value calls (for arrays of millions, e.g. merged weights).
 */
export function f32ToF16BitsInto(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    const sign = (x >>> 16) & 0x8000;
    const e = ((x >>> 23) & 0xff) - 112; // rebias 127 → 15
    let m = x & 0x7fffff;
    let h: number;
    if (e >= 31) {
      // Inf/NaN, or too large: infinity (NaN keeps a payload bit).
      h = (x & 0x7f800000) === 0x7f800000 && m ? 0x7e00 : 0x7c00;
    } else if (e <= 0) {
      if (e < -10) {
        h = 0;
      } else {
        m |= 0x800000;
        const shift = 14 - e;
        h = m >>> shift;
        const rem = m & ((1 << shift) - 1);
        const half = 1 << (shift - 1);
        if (rem > half || (rem === half && (h & 1))) h++;
      }
    } else {
      h = (e << 10) | (m >>> 13);
      const rem = m & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // a carry into the exponent is correct
    }
    out[i] = sign | h;
  }
  return out;
}

/** Float32 values → bf16 bits into `out`, ties to even: {@link f32ToBf16Bits} for each value, in one loop. */
export function f32ToBf16BitsInto(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}
