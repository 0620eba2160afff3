/**
 * ggml's block formats in TypeScript (quant.ts) and in GGUF files:
 *
 * - dequantize: bit-identical to ggml's dequantize_row_* on random blocks (scales include 0, -0,
 *   subnormals, ±65504), for the five block formats and the K-quants: testdata/ggml_dequant/, made by
 *   ggml itself (make_fixtures.ts);
 * - quantize: on x[j] = j - 16 every format's block is worked out by hand from ggml's reference
 *   formulas (in the comments) and compared byte for byte; dequantize gives back the values stated;
 * - round trip on ggml's own test data (0.1 + 2 cos(i), 4096 values), for the reference rounding and
 *   for sd.cpp's weighted search (`quantizeRows`; its bytes are checked against sd.cpp's own output in
 *   sdcpp_convert_test.ts): RMSE as ggml's test-quantize-fns computes it (sqrt(sum d^2) / n) below its
 *   bound 0.002, and (reference rounding) dequantize(quantize(x)) re-quantizes to values that decode the same;
 * - GGUF: quantized tensors load and read back as dequantize says; a NaN/Inf block scale, rows that are
 *   not whole blocks and a truncated data section are one-line errors.
 */
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "../../tests/assert.ts";
import { CorruptHeaderError, encodeGguf, openWeights, readTensorF32, TruncatedFileError } from "./mod.ts";
import { dequantize, QUANT_TYPES, type QuantDType, quantize, quantizeRows } from "./quant.ts";
import { tempFile } from "./test_util.ts";

const GGML_FIXTURES = new URL("./testdata/ggml_dequant/", import.meta.url);
const ALL_QUANT: QuantDType[] = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"];

Deno.test("dequantize: bit-identical to ggml's own dequantize_row_* (fixtures made with ggml) for every format", async () => {
  for (const type of ALL_QUANT) {
    const blocks = await Deno.readFile(new URL(`${type}.blocks`, GGML_FIXTURES));
    const bytes = await Deno.readFile(new URL(`${type}.f32`, GGML_FIXTURES));
    const want = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    const got = new Uint32Array(dequantize(type, blocks, want.length).buffer);
    const at = got.findIndex((v, i) => v !== want[i]);
    assertEquals(at, -1, `${type}: first element differing from ggml`);
  }
});

const ramp = Float32Array.from({ length: 32 }, (_, j) => j - 16);

Deno.test("quantize: hand-worked blocks of x[j] = j - 16, and their dequantization", () => {
  // q8_0: amax 16, d = 16/127 -> f16 0x3008 (0.1259765625); id = 1/d = 7.9375; q = roundf(x * id)
  // (halves away from zero: -8 * 7.9375 = -63.5 -> -64).
  const q8 = quantize("q8_0", ramp);
  assertEquals([q8[0], q8[1]], [0x08, 0x30]);
  assertEquals(
    Array.from(new Int8Array(q8.buffer, 2, 32)),
    Array.from(ramp, (x) => Math.sign(x) * Math.round(Math.abs(x * 7.9375))),
  );
  assertEquals(dequantize("q8_0", q8, 32)[17], 8 * 0.1259765625);
  // q4_0: the largest |x| is x[0] = -16, d = -16 / -8 = 2 (0x4000), q = min(15, trunc(x / 2 + 8.5)):
  // q[j] = trunc(j/2 + 0.5) -> 0, 1, 1, 2, ..., 15 clamped; byte j = q[j] | q[j+16] << 4.
  const q4 = quantize("q4_0", ramp);
  const n4 = Array.from({ length: 32 }, (_, j) => Math.min(15, Math.trunc(j / 2 + 0.5)));
  assertEquals([q4[0], q4[1]], [0x00, 0x40]);
  assertEquals(Array.from(q4.subarray(2)), Array.from({ length: 16 }, (_, j) => n4[j] | (n4[j + 16] << 4)));
  assertEquals(Array.from(dequantize("q4_0", q4, 32)), n4.map((q) => (q - 8) * 2));
  // q5_0: d = -16 / -16 = 1 (0x3c00), q = trunc(x + 16.5) = j: low nibbles j & 15, bit 4 (set for j >= 16) in qh.
  const q5 = quantize("q5_0", ramp);
  assertEquals(Array.from(q5.subarray(0, 6)), [0x00, 0x3c, 0x00, 0x00, 0xff, 0xff]);
  assertEquals(Array.from(q5.subarray(6)), Array.from({ length: 16 }, (_, j) => j * 17));
  assertEquals(Array.from(dequantize("q5_0", q5, 32)), Array.from(ramp));
  // q5_1: min -16 (0xcc00), d = 31 / 31 = 1, q = trunc(x + 16 + 0.5) = j: same quants, x = j * 1 - 16.
  const q51 = quantize("q5_1", ramp);
  assertEquals(Array.from(q51.subarray(0, 8)), [0x00, 0x3c, 0x00, 0xcc, 0x00, 0x00, 0xff, 0xff]);
  assertEquals(Array.from(dequantize("q5_1", q51, 32)), Array.from(ramp));
  // q4_1: min -16, d = 31/15 -> f16 0x4022 (2.06640625), q = min(15, trunc((x + 16) * (15/31) + 0.5)).
  const q41 = quantize("q4_1", ramp);
  assertEquals(Array.from(q41.subarray(0, 4)), [0x22, 0x40, 0x00, 0xcc]);
  const n41 = Array.from(
    { length: 32 },
    (_, j) => Math.min(15, Math.trunc(Math.fround(j * Math.fround(15 / 31)) + 0.5)),
  );
  assertEquals(Array.from(q41.subarray(4)), Array.from({ length: 16 }, (_, j) => n41[j] | (n41[j + 16] << 4)));
  assertEquals(dequantize("q4_1", q41, 32)[31], Math.fround(15 * 2.06640625) - 16);
  // An all-zero block: max 0, d = 0 / -8 = -0 (f16 0x8000), id = 0, every code the zero point 8: x = 0 * -0.
  const z = quantize("q4_0", new Float32Array(32));
  assertEquals([z[0], z[1], z[2]], [0x00, 0x80, 0x88]);
  assert(dequantize("q4_0", z, 32).every((v) => v === 0));
});

Deno.test("quantize: ggml's round-trip test data stays under ggml's error bound; requantizing is stable", () => {
  const n = 32 * 128;
  const x = Float32Array.from({ length: n }, (_, i) => Math.fround(0.1 + 2 * Math.cos(i)));
  for (const [type, rows] of QUANT_TYPES.flatMap((t) => [[t, 0], [t, 512]] as const)) {
    // rows 0: ggml's reference rounding; 512: sd.cpp's weighted search over rows of 512
    const blocks = rows ? quantizeRows(type, x, rows) : quantize(type, x);
    const y = dequantize(type, blocks, n);
    let sum = 0;
    for (let i = 0; i < n; i++) sum += (x[i] - y[i]) ** 2;
    const rmse = Math.sqrt(sum) / n;
    assert(rmse < 0.002, `${type}/${rows}: ggml's total quantization error ${rmse} >= 0.002`);
    // The dequantized values are representable: quantizing them again gives bytes that decode the same.
    // (the weighted search may pick another scale for values already on a grid: reference rounding only)
    if (!rows) assertEquals(Array.from(dequantize(type, quantize(type, y), n)), Array.from(y), `${type}: requantized`);
  }
});

const q8Block = (d: number, qs: (j: number) => number): Uint8Array => {
  const b = new Uint8Array(34);
  b[0] = d & 0xff;
  b[1] = d >>> 8;
  for (let j = 0; j < 32; j++) b[2 + j] = qs(j) & 0xff;
  return b;
};

Deno.test("gguf: quantized tensors load; NaN/Inf scales, partial blocks and truncation are one-line errors", async () => {
  const x = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i));
  const tensors = QUANT_TYPES.map((type, i) => ({
    name: `w.${type}`,
    type: [2, 3, 6, 7, 8][i],
    shape: [2, 32],
    data: quantize(type, x),
  }));
  const f = await openWeights(await tempFile(encodeGguf({}, tensors), "q.gguf"));
  for (const type of QUANT_TYPES) {
    const t = f.get(`w.${type}`);
    assertEquals([t.dtype, t.shape], [type, [2, 32]]);
    assertEquals(Array.from(readTensorF32(t)), Array.from(dequantize(type, quantize(type, x), 64)), type);
  }

  // A K-quant tensor (q4_K, GGUF type 12): 2 rows of one 256-element super-block each, from ggml's fixture.
  const kBlocks = (await Deno.readFile(new URL("q4_k.blocks", GGML_FIXTURES))).subarray(0, 2 * 144);
  const kWant = await Deno.readFile(new URL("q4_k.f32", GGML_FIXTURES));
  const kf = await openWeights(
    await tempFile(encodeGguf({}, [{ name: "k", type: 12, shape: [2, 256], data: kBlocks }]), "k.gguf"),
  );
  assertEquals(kf.get("k").dtype, "q4_k");
  assertEquals(
    new Uint8Array(readTensorF32(kf.get("k")).buffer),
    kWant.subarray(0, 2 * 256 * 4),
    "q4_K tensor read back as ggml dequantizes it",
  );

  for (const [what, d] of [["NaN", 0x7e00], ["Inf", 0x7c00], ["-Inf", 0xfc00]] as const) {
    const bytes = encodeGguf({}, [{
      name: "bad",
      type: 8,
      shape: [3, 32],
      data: new Uint8Array([...q8Block(0x3c00, (j) => j), ...q8Block(d, (j) => j), ...q8Block(0x3c00, () => 1)]),
    }]);
    const g = await openWeights(await tempFile(bytes, `${what}.gguf`));
    const e = assertThrows(() => g.get("bad"), CorruptHeaderError);
    assertMatch(e.message, /: tensor bad \(Q8_0\) block 1 has a NaN or infinite scale; the file is corrupt$/);
  }

  const partial = encodeGguf({}, [{ name: "p", type: 8, shape: [2, 48], data: new Uint8Array(102) }]);
  const pe = await assertRejects(async () => openWeights(await tempFile(partial, "partial.gguf")), CorruptHeaderError);
  assertMatch(pe.message, /tensor p rows of 48 do not split into 32-element blocks; the file is corrupt/);

  const whole = encodeGguf({}, [{ name: "t", type: 2, shape: [4, 64], data: new Uint8Array(144) }]);
  const te = await assertRejects(
    async () => openWeights(await tempFile(whole.subarray(0, whole.length - 20), "trunc.gguf")),
    TruncatedFileError,
  );
  assertMatch(te.message, /is truncated: tensor t ends at byte \d+ but the file has \d+ bytes/);
});
