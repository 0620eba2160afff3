/**
 * The random number generators of stable-diffusion.cpp (`--rng cuda|std_default|cpu`), reproduced bit for
 * bit where the C++ is deterministic. Seeds are uint64 as in sd.cpp (`bigint`, or a non-negative safe
 * integer); a negative seed means "pick one at random" and is resolved by the caller (sd.cpp does
 * `srand(time(NULL)); seed = rand()` before seeding).
 *
 * Every generator is called once per tensor (`ggml_ext_im_set_randn_f32` → `rng->randn(nelements)`), and
 * the call boundaries matter: Philox advances its offset per call, and STDDefaultRNG discards the spare
 * Gaussian of its per-call `std::normal_distribution` at the end of each call.
 */

export interface Rng {
  /** n standard normal float32 values. */
  randn(n: number): Float32Array;
  /** Reseeds, as sd.cpp's `manual_seed` (before each image of a batch: seed + b). */
  manualSeed(seed: bigint | number): void;
}

export type RngKind = "cuda" | "std_default" | "cpu";

function toU64(seed: bigint | number): bigint {
  const s = typeof seed === "bigint" ? seed : BigInt(Math.trunc(seed));
  if (s < 0n) throw new RangeError("rng seed must be non-negative (resolve random seeds before seeding)");
  return BigInt.asUintN(64, s);
}

const f32 = Math.fround;

// ----------------------------------------------------------------------------------------------------------
// Philox-4x32-10 ("cuda"): torch.randn on a CUDA device, as sd-webui's rng_philox.py / sd.cpp's PhiloxRNG.
// ----------------------------------------------------------------------------------------------------------

const PHILOX_M0 = 0xd2511f53;
const PHILOX_M1 = 0xcd9e8d57;
const PHILOX_W0 = 0x9e3779b9;
const PHILOX_W1 = 0xbb67ae85;
// sd.cpp's float constants: 2^-32 spelled as 2.3283064e-10f, and that times 6.2831855f (2π as float).
const TWO_POW32_INV = f32(2.3283064e-10);
const TWO_POW32_INV_2PI = f32(TWO_POW32_INV * f32(6.2831855));
const HALF_INV = f32(TWO_POW32_INV / 2);
const HALF_INV_2PI = f32(TWO_POW32_INV_2PI / 2);

/** High 32 bits of the 64-bit product of two uint32 (exact, in 16-bit limbs). */
function mulhi32(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (hh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
}

/**
 * sd.cpp `PhiloxRNG`: element i of call k uses counter (k, 0, i, 0) and key (seed lo, seed hi); ten
 * Philox rounds; Box–Muller on the first two output words keeps only the sine branch.
 * The transform runs in float32 like the C++ (u, v in float; log/sqrt/sin evaluated in double and rounded
 * to float on assignment, which is what `log(float)` resolving to `::log(double)` does there).
 */
export class PhiloxRng implements Rng {
  #keyLo = 0;
  #keyHi = 0;
  #offset = 0;

  constructor(seed: bigint | number = 0) {
    this.manualSeed(seed);
  }

  manualSeed(seed: bigint | number): void {
    const s = toU64(seed);
    this.#keyLo = Number(s & 0xffffffffn);
    this.#keyHi = Number(s >> 32n);
    this.#offset = 0;
  }

  randn(n: number): Float32Array {
    const out = new Float32Array(n);
    const offset = this.#offset;
    this.#offset = (this.#offset + 1) >>> 0;
    for (let i = 0; i < n; i++) {
      let c0 = offset, c1 = 0, c2 = i >>> 0, c3 = 0;
      let k0 = this.#keyLo, k1 = this.#keyHi;
      for (let r = 0; r < 10; r++) {
        if (r > 0) {
          k0 = (k0 + PHILOX_W0) >>> 0;
          k1 = (k1 + PHILOX_W1) >>> 0;
        }
        const hi0 = mulhi32(c0, PHILOX_M0), lo0 = Math.imul(c0, PHILOX_M0) >>> 0;
        const hi1 = mulhi32(c2, PHILOX_M1), lo1 = Math.imul(c2, PHILOX_M1) >>> 0;
        const n0 = (hi1 ^ c1 ^ k0) >>> 0;
        const n2 = (hi0 ^ c3 ^ k1) >>> 0;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
      }
      // (float)uint32 rounds to nearest even, as Math.fround does.
      const u = f32(f32(f32(c0) * TWO_POW32_INV) + HALF_INV);
      const v = f32(f32(f32(c1) * TWO_POW32_INV_2PI) + HALF_INV_2PI);
      const s = f32(Math.sqrt(-2 * Math.log(u)));
      out[i] = f32(s * Math.sin(v));
    }
    return out;
  }
}

// ----------------------------------------------------------------------------------------------------------
// std_default: std::default_random_engine + std::normal_distribution<float>, libstdc++ algorithms.
// ----------------------------------------------------------------------------------------------------------

/** A uniform random bit engine as the C++ standard library defines it. */
interface UrbgEngine {
  readonly min: number;
  readonly max: number;
  next(): number;
}

/** std::minstd_rand0: x ← 16807·x mod (2^31 − 1); seed s mod m, 0 replaced by 1. */
class MinstdRand0 implements UrbgEngine {
  readonly min = 1;
  readonly max = 2147483646;
  #x: number;
  constructor(seed: number) {
    const s = seed % 2147483647;
    this.#x = s === 0 ? 1 : s;
  }
  next(): number {
    // 16807 · x < 2^46: exact in a double.
    this.#x = (this.#x * 16807) % 2147483647;
    return this.#x;
  }
}

/** std::mt19937 (32-bit Mersenne Twister, standard seeding). */
export class Mt19937 implements UrbgEngine {
  readonly min = 0;
  readonly max = 0xffffffff;
  readonly #mt = new Uint32Array(624);
  #i = 624;
  constructor(seed: number) {
    const mt = this.#mt;
    mt[0] = seed >>> 0;
    for (let i = 1; i < 624; i++) {
      const p = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = (Math.imul(1812433253, p) + i) >>> 0;
    }
  }
  next(): number {
    const mt = this.#mt;
    if (this.#i >= 624) {
      for (let k = 0; k < 624; k++) {
        const y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7fffffff);
        mt[k] = mt[(k + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.#i = 0;
    }
    let y = mt[this.#i++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

/**
 * libstdc++ `std::generate_canonical<float, 24>`: k = max(1, ceil(24 / floor(log2(R)))) engine calls
 * (one for both engines here), sum = float(x − min) · 1, divided by float(R); a result of 1 is replaced
 * by the largest float below 1.
 */
function generateCanonicalF32(g: UrbgEngine): number {
  const range = g.max - g.min + 1;
  const r = f32(f32(g.next() - g.min) / f32(range));
  return r >= 1 ? 0.99999994039535522 : r;
}

export type StdEngine = "minstd_rand0" | "mt19937";

/**
 * sd.cpp `STDDefaultRNG`: `std::default_random_engine` seeded with `(unsigned int)seed`, and per `randn`
 * call a fresh `std::normal_distribution<float>(0, 1)` (libstdc++'s Marsaglia polar method: pairs
 * x, y = 2·U − 1 until 0 < x² + y² ≤ 1, returns y·m and keeps x·m for the next draw of the same call;
 * the kept value is lost when the call returns).
 *
 * With GCC/libstdc++ (and clang/libc++) `std::default_random_engine` is `std::minstd_rand0` — checked with
 * `typeid` on g++ 12 — so that is the default; MSVC's is `std::mt19937` (its distribution code differs
 * from libstdc++'s, so only the engine is offered here, for libstdc++ builds using mt19937).
 */
export class StdDefaultRng implements Rng {
  #engine: UrbgEngine;
  readonly kind: StdEngine;

  constructor(seed: bigint | number = 0, engine: StdEngine = "minstd_rand0") {
    this.kind = engine;
    this.#engine = this.#make(seed);
  }

  #make(seed: bigint | number): UrbgEngine {
    const s = Number(BigInt.asUintN(32, toU64(seed)));
    return this.kind === "mt19937" ? new Mt19937(s) : new MinstdRand0(s);
  }

  manualSeed(seed: bigint | number): void {
    this.#engine = this.#make(seed);
  }

  randn(n: number): Float32Array {
    const out = new Float32Array(n);
    const g = this.#engine;
    let saved = 0, haveSaved = false;
    for (let i = 0; i < n; i++) {
      if (haveSaved) {
        haveSaved = false;
        out[i] = saved;
        continue;
      }
      let x: number, y: number, r2: number;
      do {
        // `result_type(2.0) * u - 1.0`: float times float, minus a double literal, stored as float.
        x = f32(f32(2 * generateCanonicalF32(g)) - 1);
        y = f32(f32(2 * generateCanonicalF32(g)) - 1);
        r2 = f32(f32(x * x) + f32(y * y));
      } while (r2 > 1 || r2 === 0);
      // std::log/std::sqrt on float: correctly rounded float results (glibc logf agrees with this on all
      // values checked against g++ output; see rng_test.ts).
      const mult = f32(Math.sqrt(f32(f32(-2 * f32(Math.log(r2))) / r2)));
      saved = f32(x * mult);
      haveSaved = true;
      out[i] = f32(y * mult);
    }
    return out;
  }
}

// ----------------------------------------------------------------------------------------------------------
// "cpu": torch.randn on the CPU (sd.cpp's MT19937RNG, a port of PyTorch's CPU generator).
// ----------------------------------------------------------------------------------------------------------

/**
 * sd.cpp `MT19937RNG` / PyTorch CPU `randn`: mt19937 seeded with the low 32 bits of the seed. For n ≥ 16,
 * n uniform floats (24-bit) are drawn, then transformed 16 at a time (Box–Muller, cos half in the first 8,
 * sin half in the next 8); when n is not a multiple of 16 the last 16 values are redrawn and transformed
 * again. For n < 16, a double Box–Muller with a cached second value (kept across calls until reseeded).
 */
export class TorchCpuRng implements Rng {
  #mt!: Mt19937;
  #hasNextGauss = false;
  #nextGauss = 0;

  constructor(seed: bigint | number = 0) {
    this.manualSeed(seed);
  }

  manualSeed(seed: bigint | number): void {
    this.#mt = new Mt19937(Number(toU64(seed) & 0xffffffffn));
    this.#hasNextGauss = false;
  }

  #uniformF32(): number {
    // (x & (2^24 − 1)) · 2^-24
    return (this.#mt.next() & 0xffffff) / 16777216;
  }

  #uniformF64(): number {
    const hi = this.#mt.next(), lo = this.#mt.next();
    // ((hi << 32 | lo) & (2^53 − 1)) · 2^-53, exact in doubles.
    return ((hi & 0x1fffff) * 4294967296 + lo) / 9007199254740992;
  }

  #fill16(d: Float32Array, at: number): void {
    const twoPi = f32(2 * Math.PI);
    for (let j = 0; j < 8; j++) {
      const u1 = f32(1 - d[at + j]);
      const u2 = d[at + j + 8];
      const r = f32(Math.sqrt(f32(-2 * f32(Math.log(u1)))));
      const theta = f32(twoPi * u2);
      d[at + j] = f32(r * f32(Math.cos(theta)));
      d[at + j + 8] = f32(r * f32(Math.sin(theta)));
    }
  }

  randn(n: number): Float32Array {
    const d = new Float32Array(n);
    if (n >= 16) {
      for (let i = 0; i < n; i++) d[i] = this.#uniformF32();
      for (let i = 0; i + 16 <= n; i += 16) this.#fill16(d, i);
      if (n % 16 !== 0) {
        for (let i = 0; i < 16; i++) d[n - 16 + i] = this.#uniformF32();
        this.#fill16(d, n - 16);
      }
    } else {
      for (let i = 0; i < n; i++) {
        if (this.#hasNextGauss) {
          this.#hasNextGauss = false;
          d[i] = this.#nextGauss;
          continue;
        }
        const u1 = this.#uniformF64();
        const u2 = this.#uniformF64();
        const r = Math.sqrt(-2 * Math.log1p(-u2));
        const theta = 2 * Math.PI * u1;
        this.#nextGauss = r * Math.sin(theta);
        this.#hasNextGauss = true;
        d[i] = r * Math.cos(theta);
      }
    }
    return d;
  }
}

/** The generator sd.cpp makes for `--rng <kind>`, seeded. */
export function createRng(kind: RngKind, seed: bigint | number = 0): Rng {
  switch (kind) {
    case "cuda":
      return new PhiloxRng(seed);
    case "std_default":
      return new StdDefaultRng(seed);
    case "cpu":
      return new TorchCpuRng(seed);
  }
}
