/** Helpers shared by the weights tests. */

export function f32Bytes(values: readonly number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

let root: string | undefined;
/** A fresh directory under one per-process temp root, removed when the test process exits. */
export function tempDir(): string {
  if (!root) {
    root = Deno.makeTempDirSync({ prefix: "sdflow-weights-" });
    const r = root;
    globalThis.addEventListener("unload", () => Deno.removeSync(r, { recursive: true }));
  }
  return Deno.makeTempDirSync({ dir: root });
}

export async function tempFile(bytes: Uint8Array, name = "w.bin"): Promise<string> {
  const dir = tempDir();
  const p = `${dir}/${name}`;
  await Deno.writeFile(p, bytes);
  return p;
}

/** A safetensors file from a raw JSON header and payload (for hostile headers). */
export function rawSafetensors(header: unknown, payload: Uint8Array, lengthOverride?: bigint): Uint8Array {
  const hj = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + hj.length + payload.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(hj.length), true);
  out.set(hj, 8);
  out.set(payload, 8 + hj.length);
  return out;
}

export const fixture = (name: string): string => new URL(`./testdata/${name}`, import.meta.url).pathname;
