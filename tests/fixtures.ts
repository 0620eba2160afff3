/**
 * Loader for the op-level reference fixtures written by tools/gen_fixtures.py
 * (format "sdflow-op-fixture/1", described in tests/README.md), plus the
 * f16/bf16 bit conversions the tests share.
 */

import { type Backend, loadBackend } from "../backends/mod.ts";

export type FixtureDType = "f32" | "f16" | "bf16" | "i32";

/** One array of a case as the header describes it. */
interface ArrayHeader {
  name: string;
  kind?: "input" | "constant";
  dtype: FixtureDType;
  shape: number[];
  /** Only "f16": an f32 array whose values are exact f16 values, stored as f16. */
  storage?: "f16";
  offset: number;
  bytes: number;
}

interface CaseHeader {
  format: string;
  name: string;
  op: string;
  attrs: Record<string, number | boolean | string | number[]>;
  inputs: ArrayHeader[];
  outputs: ArrayHeader[];
  reference: string;
  notes: string;
}

/** An array of a case, decoded. f32 arrays are Float32Array; f16/bf16 keep their raw bits. */
export interface FixtureArray {
  name: string;
  kind: "input" | "constant" | "output";
  dtype: FixtureDType;
  shape: number[];
  data: Float32Array | Uint16Array | Int32Array;
}

export interface Fixture {
  name: string;
  op: string;
  attrs: Record<string, number | boolean | string | number[]>;
  /** In operand order. */
  inputs: FixtureArray[];
  outputs: FixtureArray[];
  reference: string;
  notes: string;
}

export const FIXTURE_DIR = new URL("./fixtures/ops/", import.meta.url);

const BYTES: Record<FixtureDType, number> = { f32: 4, f16: 2, bf16: 2, i32: 4 };

/** Names of every case, in generation order. Throws if the index and the directory disagree. */
export function listFixtures(): string[] {
  const index = JSON.parse(Deno.readTextFileSync(new URL("index.json", FIXTURE_DIR)));
  if (index.format !== "sdflow-op-fixture-index/1") throw new Error(`fixture index: unknown format ${index.format}`);
  const names: string[] = index.cases;
  const onDisk = new Set<string>();
  for (const e of Deno.readDirSync(FIXTURE_DIR)) {
    if (e.name.endsWith(".json") && e.name !== "index.json") onDisk.add(e.name.slice(0, -5));
  }
  const listed = new Set(names);
  const unlisted = [...onDisk].filter((n) => !listed.has(n));
  const missing = names.filter((n) => !onDisk.has(n));
  if (unlisted.length || missing.length) {
    throw new Error(
      `fixture index out of date (run deno task fixtures): unlisted ${unlisted.join(",")} missing ${missing.join(",")}`,
    );
  }
  return names;
}

export function loadFixture(name: string): Fixture {
  const hdr: CaseHeader = JSON.parse(Deno.readTextFileSync(new URL(`${name}.json`, FIXTURE_DIR)));
  if (hdr.format !== "sdflow-op-fixture/1") throw new Error(`${name}: unknown fixture format ${hdr.format}`);
  const bin = Deno.readFileSync(new URL(`${name}.bin`, FIXTURE_DIR));
  const decode = (a: ArrayHeader, kind: FixtureArray["kind"]): FixtureArray => {
    const n = a.shape.reduce((x, y) => x * y, 1);
    const stored: FixtureDType = a.storage ?? a.dtype;
    if (a.storage !== undefined && (a.storage !== "f16" || a.dtype !== "f32")) {
      throw new Error(`${name}/${a.name}: storage ${a.storage} for ${a.dtype} is not supported`);
    }
    if (a.bytes !== n * BYTES[stored] || a.offset % 8 !== 0 || a.offset + a.bytes > bin.byteLength) {
      throw new Error(`${name}/${a.name}: bad byte range ${a.offset}+${a.bytes} for ${stored}[${a.shape}]`);
    }
    // Copy out so each array is aligned and independent of the file buffer.
    const bytes = bin.slice(a.offset, a.offset + a.bytes);
    let data: FixtureArray["data"];
    if (stored === "f32") data = new Float32Array(bytes.buffer);
    else if (stored === "i32") data = new Int32Array(bytes.buffer);
    else data = new Uint16Array(bytes.buffer);
    if (a.storage === "f16") data = toF32(data as Uint16Array, "f16");
    return { name: a.name, kind, dtype: a.dtype, shape: a.shape, data };
  };
  return {
    name: hdr.name,
    op: hdr.op,
    attrs: hdr.attrs,
    inputs: hdr.inputs.map((a) => decode(a, a.kind ?? "input")),
    outputs: hdr.outputs.map((a) => decode(a, "output")),
    reference: hdr.reference,
    notes: hdr.notes,
  };
}

// ---- half-precision bits ------------------------------------------------------

const cvtBuf = new ArrayBuffer(4);
const cvtF32 = new Float32Array(cvtBuf);
const cvtU32 = new Uint32Array(cvtBuf);

/** IEEE binary16 bits -> number (exact; subnormals, infinities and NaN included). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bits -> number (exact: the top half of an f32). */
export function bf16BitsToF32(h: number): number {
  cvtU32[0] = (h & 0xffff) << 16;
  return cvtF32[0];
}

/** number -> IEEE binary16 bits, rounded to nearest even (overflow to infinity). */
export function f32ToF16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  let a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // rounds past the largest finite (65504)
  if (a < 2 ** -14) {
    // Subnormal: multiple of 2^-24, ties to even.
    return sign | roundHalfEven(a * 2 ** 24);
  }
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; // guard log2 rounding
  if (2 ** (e + 1) <= a) e++;
  a = a / 2 ** e - 1; // [0, 1)
  let frac = roundHalfEven(a * 1024);
  if (frac === 1024) {
    frac = 0;
    e++;
  }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | frac;
}

/** number -> bfloat16 bits via f32, rounded to nearest even (as PyTorch does). */
export function f32ToBf16Bits(x: number): number {
  cvtF32[0] = x;
  const b = cvtU32[0];
  if (Number.isNaN(cvtF32[0])) return 0x7fc0;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Upcasts raw f16/bf16 bits (or copies f32 values) to a Float32Array. */
export function toF32(data: Float32Array | Uint16Array | Int32Array, dtype: FixtureDType): Float32Array {
  if (dtype === "f32") return Float32Array.from(data as Float32Array);
  if (dtype === "i32") return Float32Array.from(data as Int32Array);
  const cvt = dtype === "f16" ? f16BitsToF32 : bf16BitsToF32;
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = cvt(data[i]);
  return out;
}

// ---- the backend under test ----------------------------------------------------

export const ALL_ISAS = ["scalar", "avx2", "avx512"] as const;
export type Isa = typeof ALL_ISAS[number];

/** ISAs the CPU backend reports for this machine (it runs cpuid itself), lowest first. */
export async function machineIsas(): Promise<Isa[]> {
  const b = await loadBackend("cpu", { threads: 2, isa: "auto" });
  const isas = (b.info as { isas?: string[] }).isas;
  if (!Array.isArray(isas)) throw new Error(`backend info lacks "isas": ${JSON.stringify(b.info)}`);
  return ALL_ISAS.filter((i) => isas.includes(i));
}

/** The CPU backend forced to `isa` (2 threads); fails if the backend does not report that ISA back. */
export async function backendFor(isa: Isa): Promise<Backend> {
  const b = await loadBackend("cpu", { threads: 2, isa });
  const got = (b.info as { isa?: string }).isa;
  // Without this a silently ignored "isa" would test the same path several times.
  if (got !== isa) throw new Error(`asked the CPU backend for isa ${isa}, it reports ${got}`);
  return b;
}
