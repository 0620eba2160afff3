/**
 * Just enough of the zip format to find entries of a PyTorch checkpoint: the end
 * record (with Zip64), the central directory, and each entry's local header, which
 * gives the absolute offset of its data. Every size is checked against the file.
 */
import { inflateRawSync } from "node:zlib";
import { CorruptHeaderError, TruncatedFileError, UnsupportedFormatError } from "./errors.ts";
import type { RangeReader } from "./io.ts";

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflate. */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeaderOffset: number;
}

const EOCD = 0x06054b50;
const EOCD64 = 0x06064b50;
const EOCD64_LOCATOR = 0x07064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
/** Largest central directory or in-memory entry accepted (a checkpoint's directory is KBs). */
const MAX_DIRECTORY = 256 * 1024 * 1024;

/** Reads the central directory of the zip file `r`. */
export async function readZipDirectory(r: RangeReader): Promise<Map<string, ZipEntry>> {
  const path = r.path;
  const bad = (m: string) => new CorruptHeaderError(path, `${path}: ${m}; the file is corrupt`);
  const tailLen = Math.min(r.size, 22 + 0xffff);
  const tailStart = r.size - tailLen;
  const tail = await r.read(tailStart, tailLen, "the zip end record");
  const tv = new DataView(tail.buffer);
  let e = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tv.getUint32(i, true) === EOCD && i + 22 + tv.getUint16(i + 20, true) === tailLen) {
      e = i;
      break;
    }
  }
  if (e < 0) {
    throw new TruncatedFileError(
      path,
      `${path}: no zip end-of-directory record: the checkpoint is truncated (incomplete download?) or not a zip; download it again`,
    );
  }
  let count = tv.getUint16(e + 10, true);
  let cdSize = tv.getUint32(e + 12, true);
  let cdOffset = tv.getUint32(e + 16, true);
  const eocdAbs = tailStart + e;
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    if (eocdAbs < 20) throw bad("Zip64 end record locator missing");
    const loc = new DataView((await r.read(eocdAbs - 20, 20, "the Zip64 locator")).buffer);
    if (loc.getUint32(0, true) !== EOCD64_LOCATOR) throw bad("Zip64 end record locator missing");
    const off = Number(loc.getBigUint64(8, true));
    if (off + 56 > eocdAbs) throw bad("Zip64 end record points outside the file");
    const z = new DataView((await r.read(off, 56, "the Zip64 end record")).buffer);
    if (z.getUint32(0, true) !== EOCD64) throw bad("Zip64 end record signature mismatch");
    count = Number(z.getBigUint64(32, true));
    cdSize = Number(z.getBigUint64(40, true));
    cdOffset = Number(z.getBigUint64(48, true));
  }
  if (cdSize > MAX_DIRECTORY || cdOffset + cdSize > r.size || count * 46 > cdSize) {
    throw new TruncatedFileError(
      path,
      `${path}: zip directory (${count} entries, ${cdSize} bytes at ${cdOffset}) does not fit in the file ` +
        `(${r.size} bytes): the checkpoint is truncated or corrupt`,
    );
  }
  const cd = await r.read(cdOffset, cdSize, "the zip central directory");
  const dv = new DataView(cd.buffer);
  const dec = new TextDecoder();
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize || dv.getUint32(p, true) !== CENTRAL) throw bad(`zip directory entry ${i} is malformed`);
    const method = dv.getUint16(p + 10, true);
    let compressedSize = dv.getUint32(p + 20, true);
    let size = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    let localHeaderOffset = dv.getUint32(p + 42, true);
    if (p + 46 + nameLen + extraLen + commentLen > cdSize) throw bad(`zip directory entry ${i} overruns the directory`);
    const name = dec.decode(cd.subarray(p + 46, p + 46 + nameLen));
    // Zip64 extended information: the 0xFFFFFFFF fields, in order.
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = dv.getUint16(x, true);
      const len = dv.getUint16(x + 2, true);
      if (id === 0x0001) {
        let q = x + 4;
        const next = () => {
          if (q + 8 > x + 4 + len) throw bad(`Zip64 field of ${name} is short`);
          const v = Number(dv.getBigUint64(q, true));
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = next();
      }
      x += 4 + len;
    }
    entries.set(name, { name, method, compressedSize, size, localHeaderOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** Absolute offset of an entry's data (after its local header), checked to lie inside the file. */
export async function entryDataOffset(r: RangeReader, e: ZipEntry): Promise<number> {
  const h = await r.read(e.localHeaderOffset, 30, `the zip header of ${e.name}`);
  const dv = new DataView(h.buffer);
  if (dv.getUint32(0, true) !== LOCAL) {
    throw new CorruptHeaderError(r.path, `${r.path}: zip entry ${e.name} has no local header; the file is corrupt`);
  }
  const start = e.localHeaderOffset + 30 + dv.getUint16(26, true) + dv.getUint16(28, true);
  if (start + e.compressedSize > r.size) {
    throw new TruncatedFileError(
      r.path,
      `${r.path} is truncated: zip entry ${e.name} needs bytes up to ${start + e.compressedSize} ` +
        `but the file has ${r.size}; download it again`,
    );
  }
  return start;
}

/** Reads (and inflates if needed) a whole entry into memory; for small entries (pickles) and deflated storages. */
export async function readEntry(r: RangeReader, e: ZipEntry): Promise<Uint8Array> {
  if (e.size > MAX_DIRECTORY || e.compressedSize > MAX_DIRECTORY) {
    throw new UnsupportedFormatError(
      r.path,
      `${r.path}: zip entry ${e.name} is ${e.size} bytes, too large to read into memory; store it uncompressed`,
    );
  }
  const start = await entryDataOffset(r, e);
  const raw = await r.read(start, e.compressedSize, `zip entry ${e.name}`);
  if (e.method === 0) {
    if (e.size !== e.compressedSize) {
      throw new CorruptHeaderError(r.path, `${r.path}: stored zip entry ${e.name} has inconsistent sizes`);
    }
    return raw;
  }
  if (e.method !== 8) {
    throw new UnsupportedFormatError(
      r.path,
      `${r.path}: zip entry ${e.name} uses compression method ${e.method}; re-save it with torch.save`,
    );
  }
  let out: Uint8Array;
  try {
    out = new Uint8Array(inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) }));
  } catch (err) {
    throw new CorruptHeaderError(r.path, `${r.path}: zip entry ${e.name} does not inflate (${(err as Error).message})`);
  }
  if (out.length !== e.size) {
    throw new CorruptHeaderError(
      r.path,
      `${r.path}: zip entry ${e.name} inflates to ${out.length} bytes, not ${e.size}`,
    );
  }
  return out;
}
