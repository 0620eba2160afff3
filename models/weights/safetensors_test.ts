import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertMatch,
  assertRejects,
  assertThrows,
} from "../../tests/assert.ts";
import {
  CorruptHeaderError,
  encodeSafetensors,
  MissingTensorError,
  openSafetensors,
  openWeights,
  readTensorF32,
  TruncatedFileError,
  UnsupportedDtypeError,
  UnsupportedFormatError,
} from "./mod.ts";
import { f32Bytes, rawSafetensors, tempFile } from "./test_util.ts";

const h16 = new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x3800]).buffer); // 1, -2, 0.5
const bf = new Uint8Array(new Uint16Array([0x3f80, 0x4040]).buffer); // 1, 3

function sample(): Uint8Array {
  return encodeSafetensors([
    { name: "a.weight", dtype: "F32", shape: [2, 2], data: f32Bytes([1, 2, 3, 4]) },
    { name: "b.half", dtype: "F16", shape: [3], data: h16 },
    { name: "c.bf16", dtype: "BF16", shape: [2], data: bf },
    { name: "pos_ids", dtype: "I64", shape: [1, 2], data: new Uint8Array(new BigInt64Array([0n, 1n]).buffer) },
  ], { format: "pt", note: "tiny" });
}

Deno.test("safetensors: header, file ranges, metadata, values", async () => {
  const p = await tempFile(sample());
  const f = await openWeights(p);
  assertEquals(f.format, "safetensors");
  assertEquals(f.metadata, { format: "pt", note: "tiny" });
  const a = f.get("a.weight");
  assertEquals([a.dtype, a.shape], ["f32", [2, 2]]);
  assertEquals(a.source.kind, "file");
  if (a.source.kind === "file") {
    assertEquals(a.source.bytes, 16);
    const raw = (await Deno.readFile(p)).subarray(a.source.offset, a.source.offset + 16);
    assertEquals([...new Float32Array(raw.slice().buffer)], [1, 2, 3, 4]);
  }
  assertEquals([...readTensorF32(a)], [1, 2, 3, 4]);
  assertEquals([...readTensorF32(f.get("b.half"))], [1, -2, 0.5]);
  assertEquals([...readTensorF32(f.get("c.bf16"))], [1, 3]);
  // int64 tensors do not break loading; requesting one is refused, reading it in JS works.
  assert(f.has("pos_ids"));
  const e = assertThrows(() => f.get("pos_ids"), UnsupportedDtypeError);
  assertMatch(e.message, /unsupported dtype I64 for tensor pos_ids/);
  assertEquals([...readTensorF32(f.tensors.get("pos_ids")!)], [0, 1]);
});

Deno.test("safetensors: missing tensor names the file and suggests the closest name", async () => {
  const p = await tempFile(sample());
  const f = await openSafetensors(p);
  const e = assertThrows(() => f.get("a.weigth"), MissingTensorError);
  assertMatch(e.message, /tensor a\.weigth is not in .*w\.bin \(did you mean a\.weight\?\)/);
  assertEquals(e.suggestion, "a.weight");
  assertEquals(assertThrows(() => f.get("zzzzzzzzzzzzzzzz"), MissingTensorError).suggestion, undefined);
});

Deno.test("safetensors: truncated file names the tensor and both sizes", async () => {
  const full = sample();
  const p = await tempFile(full.subarray(0, full.length - 5));
  const e = await assertRejects(() => openWeights(p), TruncatedFileError);
  assertMatch(
    e.message,
    new RegExp(`tensor pos_ids ends at byte ${full.length} but the file has ${full.length - 5} bytes`),
  );
  assertEquals(e.path, p);
});

Deno.test("safetensors: header length beyond the file / beyond 100 MB", async () => {
  const p = await tempFile(rawSafetensors({}, new Uint8Array(0), 4096n));
  assertMatch(
    (await assertRejects(() => openSafetensors(p), TruncatedFileError)).message,
    /header length 4096 runs past/,
  );
  const q = await tempFile(rawSafetensors({}, new Uint8Array(0), 1n << 62n));
  assertMatch((await assertRejects(() => openSafetensors(q), CorruptHeaderError)).message, /exceeds the 100 MB limit/);
  const tiny = await tempFile(new Uint8Array(3));
  await assertRejects(() => openSafetensors(tiny), TruncatedFileError);
});

Deno.test("safetensors: bad JSON, bad entries", async () => {
  const cases: [unknown, RegExp][] = [
    ['{"a": {"dtype": "F32", ', /not valid UTF-8 JSON/],
    ["[1, 2]", /not a JSON object/],
    [{ a: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, /invalid shape/],
    [{ a: { dtype: "F32", shape: [1], data_offsets: [4, 0] } }, /invalid data_offsets/],
    [{ a: { dtype: "F32", shape: [1], data_offsets: [0] } }, /invalid data_offsets/],
    [{ a: { shape: [1], data_offsets: [0, 4] } }, /has no dtype/],
    [{ __metadata__: [1] }, /__metadata__ is not an object/],
    [{ a: 5 }, /not an object/],
  ];
  for (const [header, re] of cases) {
    const p = await tempFile(rawSafetensors(header, new Uint8Array(8)));
    assertMatch((await assertRejects(() => openSafetensors(p), CorruptHeaderError)).message, re);
  }
});

Deno.test("safetensors: data_offsets beyond the file", async () => {
  const p = await tempFile(
    rawSafetensors({ a: { dtype: "F32", shape: [4], data_offsets: [1 << 30, (1 << 30) + 16] } }, f32Bytes([1])),
  );
  assertMatch((await assertRejects(() => openSafetensors(p), TruncatedFileError)).message, /tensor a ends at byte/);
});

Deno.test("safetensors: shape x dtype that disagrees with the byte range", async () => {
  const p = await tempFile(
    rawSafetensors({ a: { dtype: "F16", shape: [3, 3], data_offsets: [0, 16] } }, new Uint8Array(16)),
  );
  const e = await assertRejects(() => openSafetensors(p), CorruptHeaderError);
  assertMatch(
    e.message,
    /header lies about sizes: tensor a is F16 \[3, 3\] = 18 bytes but its data_offsets \[0, 16\] span 16/,
  );
});

Deno.test("safetensors: overlapping ranges", async () => {
  const header = {
    a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
    b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
  };
  const p = await tempFile(rawSafetensors(header, new Uint8Array(12)));
  assertMatch(
    (await assertRejects(() => openSafetensors(p), CorruptHeaderError)).message,
    /tensors a .* and b .* overlap/,
  );
});

Deno.test("safetensors: unknown dtype opens, refused only on request", async () => {
  const header = {
    a: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
    q: { dtype: "Q9_WEIRD", shape: [3], data_offsets: [4, 7] },
  };
  const f = await openSafetensors(await tempFile(rawSafetensors(header, new Uint8Array(7))));
  assertEquals(f.get("a").shape, [1]);
  const e = assertThrows(() => f.get("q"), UnsupportedDtypeError);
  assertInstanceOf(e, UnsupportedDtypeError);
  assertMatch(e.message, /unsupported dtype Q9_WEIRD for tensor q/);
});

Deno.test("openWeights: format comes from the bytes, not the extension", async () => {
  const f = await openWeights(await tempFile(sample(), "looks-like.ckpt"));
  assertEquals(f.format, "safetensors");
  const g = await openWeights(
    await tempFile(await Deno.readFile(new URL("./testdata/tiny.pt", import.meta.url)), "x.safetensors"),
  );
  assertEquals(g.format, "ckpt");
  const junk = await tempFile(new TextEncoder().encode("hello, this is not a model"), "m.safetensors");
  await assertRejects(() => openWeights(junk), UnsupportedFormatError);
});
