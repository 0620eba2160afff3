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
  assertEquals(f.tensors.get("q")!.dtype, "q4_0");
  const e = assertThrows(() => f.get("q"), UnsupportedDtypeError);
  assertMatch(e.message, /^unsupported GGUF tensor type Q4_0 for q: sdflow loads F32\/F16\/BF16 GGUF files/);
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
