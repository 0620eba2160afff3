/**
 * Loader for the op-level reference fixtures written by tools/gen_fixtures.py
 * (format "sdflow-op-fixture/1", described in tests/README.md).
 */

import { type Backend, loadBackend } from "../backends/mod.ts";
import { halfBitsToF32Array } from "../backends/float16.ts";

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

/** Upcasts raw f16/bf16 bits (or copies f32 values) to a Float32Array. */
export function toF32(data: Float32Array | Uint16Array | Int32Array, dtype: FixtureDType): Float32Array {
  if (dtype === "f32") return Float32Array.from(data as Float32Array);
  if (dtype === "i32") return Float32Array.from(data as Int32Array);
  return halfBitsToF32Array(data, dtype);
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
