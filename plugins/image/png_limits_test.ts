/** PNGs that lie in their header (huge dimensions, a bad IHDR CRC, data that inflates past the header) are refused before decoding; NUL never reaches a text chunk. */

import assert from "node:assert/strict";
import { deflateSync } from "node:zlib";
import { checkPngHeader, decodePngImage, encodePngImage, MAX_PNG_SIDE } from "./png.ts";

const small = encodePngImage({ width: 2, height: 2, channels: 3, data: new Uint8Array(12).fill(7) });

/** CRC-32 of PNG chunks, computed here independently of png.ts (bitwise, no table). */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, body.length);
  out.set([...type].map((c) => c.charCodeAt(0)), 4);
  out.set(body, 8);
  dv.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

/** A PNG of RGB 8-bit IHDR `width`x`height` whose one IDAT holds `idat` (compressed). */
function png(width: number, height: number, idat: Uint8Array): Uint8Array {
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const parts = [small.subarray(0, 8), chunk("IHDR", ihdr), chunk("IDAT", idat), chunk("IEND", new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

Deno.test("PNG: a small file declaring 20000x20000 is refused before decoding", () => {
  const bomb = png(20000, 20000, deflateSync(new Uint8Array(1000)));
  assert.ok(bomb.length < 200);
  const t0 = performance.now();
  assert.throws(() => decodePngImage(bomb), /declares 20000x20000 pixels, more than sdflow reads/);
  assert.ok(performance.now() - t0 < 1000);
  assert.throws(() => checkPngHeader(png(MAX_PNG_SIDE + 1, 1, deflateSync(new Uint8Array(1)))), /more than sdflow/);
  // The generator above makes valid PNGs: one that tells the truth decodes.
  const rows = new Uint8Array(2 * (1 + 6)).fill(9);
  rows[0] = rows[7] = 0; // filter bytes
  assert.deepEqual(decodePngImage(png(2, 2, deflateSync(rows))).image.data, new Uint8Array(12).fill(9));
});

Deno.test("PNG: an IHDR with a bad CRC is refused", () => {
  const bad = small.slice();
  bad[29] ^= 0xff; // the IHDR's CRC (8 signature + 4 length + 4 type + 13 data)
  assert.throws(() => decodePngImage(bad), /IHDR chunk has a bad CRC/);
  const width = small.slice();
  width[19] ^= 1; // a changed width under the old CRC
  assert.throws(() => decodePngImage(width), /IHDR chunk has a bad CRC/);
});

Deno.test("PNG: image data that inflates past what the header declares is refused", () => {
  // 64 MB of zeros compresses to ~64 KB; the header says 64x64 RGB (12.4 KB of scanlines).
  const bomb = png(64, 64, deflateSync(new Uint8Array(64 << 20)));
  assert.ok(bomb.length < 200_000);
  assert.throws(() => decodePngImage(bomb), /inflates to more than its 64x64 header declares/);
});

Deno.test("PNG: NUL in text never reaches a tEXt or iTXt chunk", () => {
  const bytes = encodePngImage(
    { width: 1, height: 1, channels: 3, data: new Uint8Array(3) },
    { parameters: "a cat\0with a hat", text: { Comment: "latin\0one" } },
  );
  const dv = new DataView(bytes.buffer);
  let texts = 0;
  for (let at = 8; at + 12 <= bytes.length;) {
    const len = dv.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const body = bytes.subarray(at + 8, at + 8 + len);
    if (type === "tEXt") {
      texts++;
      // keyword NUL text: the one NUL separates the keyword
      assert.equal(body.filter((b) => b === 0).length, 1, type);
    } else if (type === "iTXt") {
      texts++;
      // keyword NUL flag method lang NUL translated NUL text: NULs only in the header part
      const header = body.indexOf(0) + 5;
      assert.equal(body.subarray(header).indexOf(0), -1, "NUL in iTXt text");
    }
    at += 12 + len;
  }
  assert.equal(texts, 2);
  const back = decodePngImage(bytes);
  assert.equal(back.parameters, "a cat\u2400with a hat");
  assert.equal(back.text.Comment, "latin\u2400one");
});
