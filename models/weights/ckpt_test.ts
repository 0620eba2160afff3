import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "../../tests/assert.ts";
import {
  CorruptHeaderError,
  isContiguous,
  openWeights,
  readTensorF32,
  TruncatedFileError,
  UnsafePickleError,
  UnsupportedDtypeError,
  UnsupportedFormatError,
  UnsupportedLayoutError,
} from "./mod.ts";
import { unpickle } from "./pickle.ts";
import { fixture } from "./test_util.ts";

// Fixtures: testdata/make_ckpt_fixtures.py (torch.save of deterministic tiny tensors).
const MARKER = "/tmp/sdflow-weights-test-pwned";

Deno.test("ckpt: f32/f16/bf16 tensors, shared storages with offsets, scalars", async () => {
  const f = await openWeights(fixture("tiny.pt"));
  assertEquals(f.format, "ckpt");
  const w = f.get("w32");
  assertEquals([w.dtype, w.shape, w.source.kind], ["f32", [3, 4], "file"]);
  assertEquals([...readTensorF32(w)], Array.from({ length: 12 }, (_, i) => i / 4));
  assertEquals(f.get("w16").dtype, "f16");
  assertEquals([...readTensorF32(f.get("w16"))], [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]);
  assertEquals([f.get("wbf16").dtype, ...readTensorF32(f.get("wbf16"))], ["bf16", 0, 0.5, 1, 1.5]);
  assertEquals([...readTensorF32(f.get("view_tail"))], [4, 5, 6, 7]);
  assertEquals([...readTensorF32(f.get("view_head"))], [0, 1, 2, 3]);
  const tail = f.get("view_tail").source;
  const head = f.get("view_head").source;
  if (tail.kind === "file" && head.kind === "file") assertEquals(tail.offset - head.offset, 16);
  assertEquals([f.get("scalar").shape, [...readTensorF32(f.get("scalar"))]], [[], [2]]);
  assertMatch(assertThrows(() => f.get("position_ids"), UnsupportedDtypeError).message, /torch\.LongStorage/);
  assertEquals([...readTensorF32(f.tensors.get("position_ids")!)], [0, 1, 2, 3, 4]);
});

Deno.test("ckpt: state_dict nesting and scalar metadata", async () => {
  const f = await openWeights(fixture("nested.ckpt"));
  assertEquals(f.metadata, { global_step: 123, epoch: 4 });
  assertEquals([...readTensorF32(f.get("w32"))].length, 12);
});

Deno.test("ckpt: non-contiguous tensor refused on request, others load", async () => {
  const f = await openWeights(fixture("noncontig.pt"));
  assertEquals([...readTensorF32(f.get("ok"))], [0, 1, 2, 3, 4, 5]);
  const e = assertThrows(() => f.get("t"), UnsupportedLayoutError);
  assertMatch(e.message, /tensor t .* is not contiguous \(shape \[3, 2\], strides \[1, 3\]\)/);
  assert(isContiguous([2, 1, 3], [3, 99, 1]));
  assert(!isContiguous([3, 2], [1, 3]));
});

for (const [file, imported] of [["evil_system.pt", "posix.system"], ["evil_eval.pt", "__builtin__.eval"]]) {
  Deno.test(`ckpt: hostile pickle importing ${imported} is refused without running it`, async () => {
    await Deno.remove(MARKER).catch(() => {});
    const e = await assertRejects(() => openWeights(fixture(file)), UnsafePickleError);
    assertEquals(
      e.message.split(";")[0],
      `refusing to load ${fixture(file)}: pickle imports ${imported}, which a tensor checkpoint never needs`,
    );
    assertEquals(await Deno.stat(MARKER).then(() => true, () => false), false);
  });
}

Deno.test("ckpt: truncated zip, missing storage, legacy format", async () => {
  assertMatch(
    (await assertRejects(() => openWeights(fixture("truncated.pt")), TruncatedFileError)).message,
    /truncated/,
  );
  assertMatch(
    (await assertRejects(() => openWeights(fixture("missing_storage.pt")), CorruptHeaderError)).message,
    /storage \d+ of tensor \S+ is missing from the archive/,
  );
  assertMatch(
    (await assertRejects(() => openWeights(fixture("legacy.pt")), UnsupportedFormatError)).message,
    /legacy \(pre-1\.6, non-zip\) format/,
  );
});

Deno.test("ckpt: deflated entries become in-memory sources", async () => {
  const f = await openWeights(fixture("deflated.pt"));
  const w = f.get("w32");
  assertEquals(w.source.kind, "data");
  assert(w.source.kind === "data" && w.source.data instanceof Float32Array && w.source.data.byteLength === 48);
  assertEquals([...readTensorF32(w)], Array.from({ length: 12 }, (_, i) => i / 4));
  assert(f.get("w16").source.kind === "data");
  assertEquals([...readTensorF32(f.get("w16"))], [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]);
  assertEquals([...readTensorF32(f.tensors.get("position_ids")!)], [0, 1, 2, 3, 4]);
});

Deno.test("pickle: hostile opcodes and bytes never crash, only CorruptHeaderError/UnsafePickleError", () => {
  const opts = { path: "x.pkl", persistentLoad: () => null };
  const bad: number[][] = [
    [],
    [0x80, 0x02], // no STOP
    [0x2e], // STOP on empty stack
    [0x74], // TUPLE without MARK
    [0x68, 0x05, 0x2e], // BINGET of missing memo
    [0x58, 0xff, 0xff, 0xff, 0x7f], // BINUNICODE longer than data
    [0x8a, 0x09, 0x01], // LONG1 short
    [0x52, 0x2e], // REDUCE on empty stack
    [0x4e, 0x29, 0x52, 0x2e], // REDUCE of None
    [0x69], // INST: unsupported opcode
    [0x8c, 0x02, 0x6f, 0x73, 0x8c, 0x06, ...new TextEncoder().encode("system"), 0x93, 0x2e],
  ];
  for (const b of bad) {
    try {
      unpickle(new Uint8Array(b), opts);
      throw new Error(`accepted ${b}`);
    } catch (e) {
      assert(e instanceof CorruptHeaderError || e instanceof UnsafePickleError, String(e));
    }
  }
  // A valid protocol-2 dict with a big LONG1 and a float.
  const ok = unpickle(
    new Uint8Array([
      0x80,
      2,
      0x7d,
      0x28,
      0x8c,
      1,
      0x61,
      0x8a,
      9,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      1,
      0x8c,
      1,
      0x62,
      0x47,
      0x3f,
      0xf8,
      0,
      0,
      0,
      0,
      0,
      0,
      0x75,
      0x2e,
    ]),
    opts,
  ) as Map<string, unknown>;
  assertEquals(ok.get("a"), 1n << 64n);
  assertEquals(ok.get("b"), 1.5);
});
