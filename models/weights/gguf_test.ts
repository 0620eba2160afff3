import { assertEquals, assertMatch, assertRejects, assertThrows } from "../../tests/assert.ts";
import {
  CorruptHeaderError,
  encodeGguf,
  openGguf,
  openWeights,
  readTensorF32,
  TruncatedFileError,
  UnsupportedDtypeError,
  UnsupportedFormatError,
} from "./mod.ts";
import { f32Bytes, tempFile } from "./test_util.ts";

function sample(): Uint8Array {
  return encodeGguf({ "general.architecture": "sd1", "general.alignment": 32 }, [
    { name: "a", type: 0, shape: [2, 3], data: f32Bytes([0, 1, 2, 3, 4, 5]) },
    { name: "h", type: 1, shape: [2], data: new Uint8Array(new Uint16Array([0x3c00, 0x4000]).buffer) },
    { name: "b", type: 30, shape: [1], data: new Uint8Array(new Uint16Array([0x4040]).buffer) },
    { name: "q", type: 2, shape: [2, 32], data: new Uint8Array(36) },
  ]);
}

Deno.test("gguf: metadata, shapes in PyTorch order, aligned data offsets", async () => {
  const f = await openWeights(await tempFile(sample(), "m.gguf"));
  assertEquals(f.format, "gguf");
  assertEquals(f.metadata["general.architecture"], "sd1");
  const a = f.get("a");
  assertEquals([a.dtype, a.shape], ["f32", [2, 3]]);
  if (a.source.kind === "file") assertEquals(a.source.offset % 32, 0);
  assertEquals([...readTensorF32(a)], [0, 1, 2, 3, 4, 5]);
  assertEquals([...readTensorF32(f.get("h"))], [1, 2]);
  assertEquals([f.get("b").dtype, ...readTensorF32(f.get("b"))], ["bf16", 3]);
  // q4_0 loads (zero scales: all zeros); see quant_test.ts for the block formats.
  assertEquals([f.get("q").dtype, [...readTensorF32(f.get("q"))].every((v) => v === 0)], ["q4_0", true]);
});

Deno.test("gguf: IQ formats and unknown type ids are refused in one line naming the tensor", async () => {
  const bytes = encodeGguf({}, [
    { name: "k", type: 20, shape: [1, 32], data: new Uint8Array(18) },
    { name: "x", type: 99, shape: [4], data: new Uint8Array(0) },
  ]);
  const f = await openWeights(await tempFile(bytes, "k.gguf"));
  const k = assertThrows(() => f.get("k"), UnsupportedDtypeError);
  assertMatch(k.message, /k\.gguf: tensor k is IQ4_NL, which sdflow does not load \(it loads F32, F16, BF16, Q4_0/);
  const x = assertThrows(() => f.get("x"), UnsupportedDtypeError);
  assertMatch(x.message, /k\.gguf: tensor x has GGUF type id 99, which sdflow does not know/);
  assertEquals(k.message.includes("\n") || x.message.includes("\n"), false);
});

Deno.test("gguf: truncated, bad version, absurd counts", async () => {
  const full = sample();
  const p = await tempFile(full.subarray(0, full.length - 40), "t.gguf");
  assertMatch((await assertRejects(() => openGguf(p), TruncatedFileError)).message, /tensor \w ends at byte/);
  const v1 = full.slice();
  v1[4] = 1;
  const pv1 = await tempFile(v1, "v1.gguf");
  await assertRejects(() => openGguf(pv1), UnsupportedFormatError);
  const huge = full.slice();
  new DataView(huge.buffer).setBigUint64(8, 1n << 40n, true);
  const ph = await tempFile(huge, "h.gguf");
  await assertRejects(() => openGguf(ph), CorruptHeaderError);
  // Every prefix of the header fails cleanly.
  for (let n = 0; n < 200; n += 7) {
    try {
      await openGguf(await tempFile(full.subarray(0, n), `p${n}.gguf`));
    } catch (e) {
      if (!(e instanceof TruncatedFileError || e instanceof CorruptHeaderError)) throw e;
    }
  }
});
