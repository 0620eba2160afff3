import { assert, assertEquals } from "../tests/assert.ts";
import {
  bf16BitsToF32,
  f16BitsTable,
  f16BitsToF32,
  f32ArrayToBf16Bits,
  f32ToBf16Bits,
  f32ToBf16BitsInto,
  f32ToF16Bits,
  f32ToF16BitsInto,
} from "./float16.ts";
import { rng } from "./test_helpers.ts";

// The independent references: V8's Float16Array (IEEE round to nearest even from the f32 value it is
// given) and, for bf16, the definition (the f32 nearest with 16 low zero bits, ties to even mantissa).

Deno.test("float16: every f16 bit pattern widens exactly and narrows back to itself", () => {
  const ref = new Float16Array(1);
  const refBits = new Uint16Array(ref.buffer);
  for (let h = 0; h < 0x10000; h++) {
    refBits[0] = h;
    const v = f16BitsToF32(h);
    if (Number.isNaN(ref[0])) {
      assert(Number.isNaN(v), `bits ${h.toString(16)}`);
      assertEquals(f32ToF16Bits(v) & 0x7e00, 0x7e00);
      continue;
    }
    assert(Object.is(v, ref[0]), `bits ${h.toString(16)}: ${v} vs ${ref[0]}`);
    assertEquals(f32ToF16Bits(v), h, `round trip of bits ${h.toString(16)}`);
  }
});

Deno.test("float16: f32 -> f16 matches Float16Array on ties, subnormals, overflow and random f32 bits", () => {
  const ref = new Float16Array(1);
  const refBits = new Uint16Array(ref.buffer);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const check = (x: number) => {
    ref[0] = x;
    assertEquals(f32ToF16Bits(x), refBits[0], `f32ToF16Bits(${x})`);
  };
  // Exact ties between neighbouring halves (normal and subnormal), both parities, and the edges.
  for (const x of [1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -25, 3 * 2 ** -25, 5 * 2 ** -25, 2 ** -14 - 2 ** -25]) {
    check(x);
    check(-x);
  }
  for (const x of [0, -0, 65504, 65519.99, 65520, 1e9, Infinity, -Infinity, 2 ** -24, 2 ** -26, 6.1e-5, 0.1, 1 / 3]) {
    check(x);
  }
  const r = rng(7);
  for (let i = 0; i < 200_000; i++) {
    u32[0] = (r() * 2 ** 32) >>> 0;
    if (Number.isNaN(f32[0])) continue;
    check(f32[0]);
  }
  assertEquals(
    [0, 1, -2.5, 65504, 65520, 6.1e-5, 5.96e-8, 2.98e-8, 0.1, 1 / 3, 1e5, -Infinity].map(f32ToF16Bits),
    [0, 15360, 49408, 31743, 31744, 1023, 1, 0, 11878, 13653, 31744, 64512],
  );
});

Deno.test("float16: f32 -> bf16 rounds to nearest even, NaN stays NaN", () => {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const r = rng(11);
  for (let i = 0; i < 200_000; i++) {
    u32[0] = (r() * 2 ** 32) >>> 0;
    const x = f32[0];
    const b = f32ToBf16Bits(x);
    if (Number.isNaN(x)) {
      assert(Number.isNaN(bf16BitsToF32(b)));
      continue;
    }
    // The two bf16 neighbours of x, by truncation and one up; the nearer wins, ties to the even one.
    const lo = u32[0] >>> 16;
    // Past the largest finite bf16 the next value up is +-2^128 (IEEE rounds as if the exponent went on).
    const down = bf16BitsToF32(lo), next = bf16BitsToF32(lo + 1);
    const up = Number.isFinite(next) ? next : Math.sign(next) * 2 ** 128;
    const dd = Math.abs(x - down), du = Math.abs(up - x);
    const want = u32[0] & 0xffff ? (du < dd || (du === dd && (lo & 1)) ? lo + 1 : lo) : lo;
    assertEquals(b, want & 0xffff, `f32ToBf16Bits(${x})`);
  }
  assertEquals([...f32ArrayToBf16Bits([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 0.1])], [0x3f80, 0x3f80, 0x3f82, 0x3dcd]);
});

Deno.test("f32ToF16BitsInto / f32ToBf16BitsInto / f16BitsTable agree with the scalar conversions on every kind of value", () => {
  // Random bit patterns (every exponent: subnormal halves, overflow, NaN) plus ties and edges.
  const n = 200_000;
  const bits = new Uint32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    bits[i] = s >>> 0;
  }
  const edges = [
    0,
    0x80000000,
    0x3f801000,
    0x3f803000,
    0x477ff000,
    0x477fefff,
    0x33000000,
    0x33000001,
    0x38800000,
    0x7f800000,
    0x7fc00000,
  ];
  bits.set(edges);
  const f = new Float32Array(bits.buffer);
  const h = f32ToF16BitsInto(f);
  const b = f32ToBf16BitsInto(f);
  const table = f16BitsTable();
  for (let i = 0; i < n; i++) {
    if (h[i] !== f32ToF16Bits(f[i])) {
      throw new Error(`f16 of ${f[i]} (0x${bits[i].toString(16)}): ${h[i]} vs ${f32ToF16Bits(f[i])}`);
    }
    if (b[i] !== f32ToBf16Bits(f[i])) throw new Error(`bf16 of ${f[i]}: ${b[i]} vs ${f32ToBf16Bits(f[i])}`);
  }
  for (let x = 0; x < 65536; x++) {
    const want = f16BitsToF32(x);
    if (!(Object.is(table[x], Math.fround(want)) || (Number.isNaN(want) && Number.isNaN(table[x])))) {
      throw new Error(`table[${x}] = ${table[x]}, expected ${want}`);
    }
  }
});
