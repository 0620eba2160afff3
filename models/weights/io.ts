/** Bounded reads of byte ranges of a file: only what is asked, never past its end. */
import { TruncatedFileError, UnsupportedFormatError } from "./errors.ts";

/** What kind of thing a non-regular path is, for messages. */
export function fileKind(st: Deno.FileInfo): string {
  if (st.isDirectory) return "a folder";
  if (st.isFifo) return "a named pipe (FIFO)";
  if (st.isSocket) return "a socket";
  if (st.isCharDevice) return "a character device";
  if (st.isBlockDevice) return "a block device";
  return "not a regular file";
}

/**
 * Throws unless `path` is a regular file. Checked BEFORE opening: opening a named pipe blocks
 * until something writes to it, so a FIFO given as a model would hang forever.
 */
export async function assertRegularFile(path: string): Promise<Deno.FileInfo> {
  const st = await Deno.stat(path);
  if (!st.isFile) {
    throw new UnsupportedFormatError(
      path,
      `${path} is ${fileKind(st)}, not a regular file; give the model file itself`,
    );
  }
  return st;
}

/** A file opened for random-access reads of small ranges (headers, directories). */
export class RangeReader {
  private constructor(readonly path: string, private readonly file: Deno.FsFile, readonly size: number) {}

  static async open(path: string): Promise<RangeReader> {
    await assertRegularFile(path);
    const file = await Deno.open(path, { read: true });
    try {
      const st = await file.stat();
      if (!st.isFile) throw new Error(`${path} is not a regular file`);
      return new RangeReader(path, file, st.size);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** Reads exactly `length` bytes at `offset`; `what` names the range in the error if the file is too short. */
  async read(offset: number, length: number, what: string): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new TruncatedFileError(
        this.path,
        `${this.path}: invalid range for ${what} (offset ${offset}, ${length} bytes)`,
      );
    }
    if (offset + length > this.size) {
      throw new TruncatedFileError(
        this.path,
        `${this.path} is truncated: ${what} needs bytes up to ${offset + length} but the file has ${this.size}; ` +
          `download or copy it again`,
      );
    }
    const buf = new Uint8Array(length);
    await this.file.seek(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < length) {
      const n = await this.file.read(buf.subarray(got));
      if (n === null) {
        throw new TruncatedFileError(this.path, `${this.path} ended while reading ${what}; download or copy it again`);
      }
      got += n;
    }
    return buf;
  }

  close(): void {
    try {
      this.file.close();
    } catch {
      // already closed
    }
  }
}

/** Opens `path`, runs `fn`, and closes the file whatever happens. */
export async function withReader<T>(path: string, fn: (r: RangeReader) => Promise<T>): Promise<T> {
  const r = await RangeReader.open(path);
  try {
    return await fn(r);
  } finally {
    r.close();
  }
}

/** Synchronous exact read of a byte range (for the few small tensors JS itself needs). */
export function readRangeSync(path: string, offset: number, length: number): Uint8Array {
  const st = Deno.statSync(path);
  if (!st.isFile) {
    throw new UnsupportedFormatError(
      path,
      `${path} is ${fileKind(st)}, not a regular file; give the model file itself`,
    );
  }
  const f = Deno.openSync(path, { read: true });
  try {
    const size = f.statSync().size;
    if (offset + length > size) {
      throw new TruncatedFileError(
        path,
        `${path} is truncated: needs bytes up to ${offset + length} but the file has ${size}; download it again`,
      );
    }
    const buf = new Uint8Array(length);
    f.seekSync(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < length) {
      const n = f.readSync(buf.subarray(got));
      if (n === null) throw new TruncatedFileError(path, `${path} ended early; download it again`);
      got += n;
    }
    return buf;
  } finally {
    f.close();
  }
}
