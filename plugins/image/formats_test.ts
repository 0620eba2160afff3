/** Image formats by extension: JPEG and WebP decode back (with other codecs' decoders) with their metadata. */

import assert from "node:assert/strict";
import decodeWebp from "@jsquash/webp/decode.js";
import jpeg from "jpeg-js";
import type { Image } from "../../models/types.ts";
import { encodeImage, imageFormat, writeFileAtomic } from "./formats.ts";

/** A smooth RGB gradient (lossy codecs keep it within a few levels). */
function gradient(width: number, height: number): Image {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = 3 * (y * width + x);
      data.set([Math.round((255 * x) / (width - 1)), Math.round((255 * y) / (height - 1)), 128], i);
    }
  }
  return { width, height, channels: 3, data };
}

/** Mean absolute difference between an RGB image and RGBA pixels. */
function meanError(image: Image, rgba: ArrayLike<number>): number {
  let sum = 0;
  for (let p = 0; p < image.width * image.height; p++) {
    for (let c = 0; c < 3; c++) sum += Math.abs(image.data[3 * p + c] - rgba[4 * p + c]);
  }
  return sum / (image.width * image.height * 3);
}

const PARAMETERS = "a cat, 猫 🐱\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 42, Size: 64x48";

Deno.test("imageFormat: the extension names the format; others are refused", () => {
  assert.equal(imageFormat("a/b.png"), "png");
  assert.equal(imageFormat("b.JPG"), "jpeg");
  assert.equal(imageFormat("b.jpeg"), "jpeg");
  assert.equal(imageFormat("b.webp"), "webp");
  assert.throws(() => imageFormat("b.gif"), /b\.gif: unsupported image format "\.gif"; write \.png, \.jpg/);
  assert.throws(() => imageFormat("dir.x/out"), /dir\.x\/out: no file extension/);
});

Deno.test("JPEG: jpeg-js decodes it within 3 levels; the parameters are a UTF-8 comment", async () => {
  const image = gradient(64, 48);
  const bytes = await encodeImage("jpeg", image, { parameters: PARAMETERS, quality: 95 });
  assert.deepEqual([...bytes.subarray(0, 2)], [0xff, 0xd8]);
  const back = jpeg.decode(bytes, { useTArray: true });
  assert.deepEqual([back.width, back.height], [64, 48]);
  const err = meanError(image, back.data);
  assert.ok(err < 3, `mean error ${err}`);
  const comment = Uint8Array.from(back.comments![0], (c) => c.charCodeAt(0));
  assert.equal(new TextDecoder().decode(comment), PARAMETERS);
});

Deno.test("WebP: libwebp decodes it within 3 levels; the parameters are an EXIF UserComment", async () => {
  const image = gradient(64, 48);
  const bytes = await encodeImage("webp", image, { parameters: PARAMETERS, quality: 95 });
  const back = await decodeWebp(bytes.buffer as ArrayBuffer);
  assert.deepEqual([back.width, back.height], [64, 48]);
  const err = meanError(image, back.data);
  assert.ok(err < 3, `mean error ${err}`);

  // The RIFF container, read here: size, VP8X with the EXIF flag and the canvas, the EXIF chunk.
  const text = (at: number, n = 4) => String.fromCharCode(...bytes.subarray(at, at + n));
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  assert.equal(text(0) + text(8), "RIFFWEBP");
  assert.equal(dv.getUint32(4, true), bytes.length - 8);
  assert.equal(text(12), "VP8X");
  assert.equal(bytes[20] & 0x08, 0x08);
  assert.equal(bytes[24] | (bytes[25] << 8) | (bytes[26] << 16), 63);
  assert.equal(bytes[27] | (bytes[28] << 8) | (bytes[29] << 16), 47);
  const chunks: Record<string, Uint8Array> = {};
  for (let at = 12; at + 8 <= bytes.length;) {
    const size = dv.getUint32(at + 4, true);
    chunks[text(at)] = bytes.subarray(at + 8, at + 8 + size);
    at += 8 + size + (size & 1);
  }
  assert.deepEqual(Object.keys(chunks), ["VP8X", "VP8 ", "EXIF"]);
  // TIFF: IFD0 → Exif IFD pointer (0x8769) → UserComment (0x9286) = "UNICODE\0" + UTF-16BE.
  const tiff = chunks.EXIF;
  const t = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  assert.equal(text(tiff.byteOffset, 2), "II");
  const entry = (ifd: number, tag: number) => {
    for (let i = 0; i < t.getUint16(ifd, true); i++) {
      const e = ifd + 2 + 12 * i;
      if (t.getUint16(e, true) === tag) return { count: t.getUint32(e + 4, true), value: t.getUint32(e + 8, true) };
    }
    throw new Error(`tag ${tag} not found`);
  };
  const exifIfd = entry(t.getUint32(4, true), 0x8769).value;
  const comment = entry(exifIfd, 0x9286);
  const raw = tiff.subarray(comment.value, comment.value + comment.count);
  assert.equal(String.fromCharCode(...raw.subarray(0, 8)), "UNICODE\0");
  assert.equal(new TextDecoder("utf-16be").decode(raw.subarray(8)), PARAMETERS);
});

Deno.test("writeFileAtomic: writes the file, leaves no temporary file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.png`, "old");
    await writeFileAtomic(`${dir}/a.png`, new TextEncoder().encode("new"));
    assert.equal(await Deno.readTextFile(`${dir}/a.png`), "new");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.png"]);
    await assert.rejects(() => writeFileAtomic(`${dir}/missing/a.png`, new Uint8Array(1)), /could not write/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
