/**
 * The fuzz loop for one area, run as its own process by tests/fuzz_test.ts (a V8 heap limit then
 * stops only this process if a case exhausts memory):
 *
 *   deno run -A --v8-flags=--max-old-space-size=768 tests/fuzz_runner.ts <area> <seed> <cases> <timeout ms>
 *
 * Case i mutates a seed file with a PRNG seeded by (seed, i): the same arguments give the same
 * cases on every machine. Each case runs in a worker; one that takes longer than the timeout is a
 * hang (the worker is terminated and a new one started). Resident memory above 2 GiB after a case
 * is a failure too. Prints one JSON summary line; `start <i>` lines before each case let the
 * caller name the case that killed the process, if one does.
 */

import { FUZZ_TARGETS } from "./fuzz_targets.ts";

/** mulberry32: a small, fast, well-distributed 32-bit PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INTERESTING_INTS = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff];

/** Applies 1 to 4 byte-level mutations: flips, interesting values, inserts, deletes, copies, truncation, splices. */
export function mutateBytes(input: Uint8Array, rand: () => number, others: readonly Uint8Array[]): Uint8Array {
  let b = input.slice();
  const at = (n = b.length) => Math.floor(rand() * Math.max(1, n));
  const rounds = 1 + Math.floor(rand() * 4);
  for (let r = 0; r < rounds; r++) {
    const kind = Math.floor(rand() * 9);
    if (b.length === 0 && kind !== 3) continue;
    switch (kind) {
      case 0: // flip a bit
        b[at()] ^= 1 << Math.floor(rand() * 8);
        break;
      case 1: // an interesting byte
        b[at()] = [0, 1, 0x7f, 0x80, 0xff][Math.floor(rand() * 5)];
        break;
      case 2: { // an interesting 32- or 64-bit little- or big-endian integer
        const width = rand() < 0.5 ? 4 : 8;
        const pos = at(b.length - width + 1);
        if (pos + width > b.length) break;
        const v = BigInt(INTERESTING_INTS[Math.floor(rand() * INTERESTING_INTS.length)]) *
          (rand() < 0.2 ? 1n << 32n : 1n);
        const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
        const little = rand() < 0.5;
        if (width === 4) dv.setUint32(pos, Number(v & 0xffffffffn), little);
        else dv.setBigUint64(pos, v, little);
        break;
      }
      case 3: { // insert random bytes
        const n = 1 + Math.floor(rand() * 16);
        const pos = at(b.length + 1);
        const ins = Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
        b = Uint8Array.from([...b.subarray(0, pos), ...ins, ...b.subarray(pos)]);
        break;
      }
      case 4: { // delete a range
        const pos = at();
        const n = 1 + Math.floor(rand() * Math.min(64, b.length - pos));
        b = Uint8Array.from([...b.subarray(0, pos), ...b.subarray(pos + n)]);
        break;
      }
      case 5: { // copy a range over another place
        const from = at();
        const n = 1 + Math.floor(rand() * Math.min(32, b.length - from));
        const to = at(b.length - n + 1);
        b.copyWithin(to, from, from + n);
        break;
      }
      case 6: // truncate
        b = b.slice(0, at());
        break;
      case 7: { // splice in a piece of another seed
        const o = others[Math.floor(rand() * others.length)];
        if (!o.length) break;
        const from = Math.floor(rand() * o.length);
        const piece = o.subarray(from, from + 1 + Math.floor(rand() * 64));
        const pos = at();
        b = Uint8Array.from([...b.subarray(0, pos), ...piece, ...b.subarray(pos + piece.length)]);
        break;
      }
      default: // repeat a byte run (long runs stress length fields and loops)
      {
        const pos = at();
        const n = 1 + Math.floor(rand() * 4096);
        b = Uint8Array.from([...b.subarray(0, pos), ...new Uint8Array(n).fill(b[pos]), ...b.subarray(pos)]);
      }
    }
  }
  return b;
}

/** One failure: which case, what happened. */
export interface FuzzFailure {
  readonly case: number;
  readonly kind: "crash" | "hang" | "memory";
  readonly detail: string;
  readonly stack?: string;
  /** The first bytes of the input, hex, to reproduce by hand. */
  readonly head: string;
}

/** What a run found. */
export interface FuzzSummary {
  readonly area: string;
  readonly seed: number;
  readonly cases: number;
  readonly values: number;
  readonly ownErrors: number;
  readonly failures: readonly FuzzFailure[];
  readonly ms: number;
}

const MEMORY_LIMIT = 2 * 1024 ** 3;

async function main(): Promise<void> {
  const [area, seedArg, casesArg, timeoutArg] = Deno.args;
  const target = FUZZ_TARGETS[area];
  if (!target) throw new Error(`unknown area "${area}" (${Object.keys(FUZZ_TARGETS).join(", ")})`);
  const seed = Number(seedArg ?? 1);
  const cases = Number(casesArg ?? 500);
  const timeoutMs = Number(timeoutArg ?? 5000);
  const seeds = await target.seeds();
  const t0 = performance.now();
  let worker = new Worker(new URL("./fuzz_worker.ts", import.meta.url), { type: "module" });
  let values = 0;
  let ownErrors = 0;
  const failures: FuzzFailure[] = [];
  for (let i = 0; i < cases; i++) {
    const rand = prng((seed * 0x9e3779b1 + i) >>> 0);
    const base = seeds[Math.floor(rand() * seeds.length)];
    const input = target.structured && rand() < 0.5 ? target.structured(base, rand) : mutateBytes(base, rand, seeds);
    const head = [...input.subarray(0, 48)].map((x) => x.toString(16).padStart(2, "0")).join("");
    console.log(`start ${i}`);
    const reply = await new Promise<{ outcome: string; detail?: string; stack?: string } | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      worker.onmessage = (ev) => {
        clearTimeout(timer);
        resolve(ev.data);
      };
      worker.onerror = (ev) => {
        ev.preventDefault();
        clearTimeout(timer);
        resolve({ outcome: "crash", detail: `uncaught in worker: ${ev.message}` });
      };
      worker.postMessage({ area, i, bytes: input });
    });
    if (reply === undefined) {
      failures.push({ case: i, kind: "hang", detail: `no result within ${timeoutMs} ms`, head });
      worker.terminate();
      worker = new Worker(new URL("./fuzz_worker.ts", import.meta.url), { type: "module" });
    } else if (reply.outcome === "value") values++;
    else if (reply.outcome === "own-error") ownErrors++;
    else failures.push({ case: i, kind: "crash", detail: reply.detail ?? "", stack: reply.stack, head });
    const rss = Deno.memoryUsage().rss;
    if (rss > MEMORY_LIMIT) {
      failures.push({ case: i, kind: "memory", detail: `resident memory ${Math.round(rss / 2 ** 20)} MiB`, head });
      break;
    }
    if (failures.length >= 10) break;
  }
  worker.terminate();
  const summary: FuzzSummary = {
    area,
    seed,
    cases,
    values,
    ownErrors,
    failures,
    ms: Math.round(performance.now() - t0),
  };
  console.log(JSON.stringify(summary));
}

if (import.meta.main) await main();
