import { assert, assertEquals, assertThrows } from "../tests/assert.ts";
import { calcTiles, processTiles, tileGrid, TilingError, vaeTileSizes } from "./tiling.ts";
import type { HostTensor } from "./types.ts";

Deno.test("calcTiles: stable-diffusion.cpp's tile counts and recomputed overlaps", () => {
  // sd.cpp's log for ESRGAN on 256 px with tile 128, target 0.25: "num tiles : 3, 3", "optimal overlap : 0.500000".
  assertEquals(calcTiles(256, 128, 0.25), { count: 3, overlapFactor: 0.5 });
  // (200 - 32) / 96 = 1, overshoot 24 <= 32: one more tile; two tiles overlap (256 - 200) / 128.
  assertEquals(calcTiles(200, 128, 0.25), { count: 2, overlapFactor: 0.4375 });
  // A side no larger than the tile: one tile, no overlap.
  assertEquals(calcTiles(100, 128, 0.25), { count: 1, overlapFactor: 0 });
  // A 2048x2048 decode: 256 latent px, tile 32, target 0.5: 15 tiles at exactly 0.5.
  assertEquals(calcTiles(256, 32, 0.5), { count: 15, overlapFactor: 0.5 });
});

Deno.test("vaeTileSizes: sd.cpp's defaults, clamps and the encode factor", () => {
  assertEquals(vaeTileSizes({}, 64, 64), { tileX: 32, tileY: 32, overlap: 0.5 });
  assertEquals(vaeTileSizes({ tileX: 48, tileY: 16, overlap: 0.9 }, 40, 64), { tileX: 40, tileY: 16, overlap: 0.5 });
  assertEquals(vaeTileSizes({ tileX: 2 }, 64, 64).tileX, 32); // below 4: the default
  assertEquals(vaeTileSizes({}, 64, 48, 2), { tileX: 64, tileY: 48, overlap: 0.5 }); // encode: 64, clamped
  // relative: 0.25 of 64; 3 tiles with overlap 0.5 -> 1 / (3 - 1.5 + 0.5) = 0.5 of 64
  assertEquals(vaeTileSizes({ relX: 0.25, relY: 3 }, 64, 64), { tileX: 16, tileY: 32, overlap: 0.5 });
});

function random(shape: number[], seed: number): HostTensor {
  let s = seed;
  const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
  return { shape, data };
}

/** Nearest x2 upsampling of [1, C, H, W] on the host: a "network" whose tiled result is known exactly. */
async function upsample2(t: HostTensor): Promise<HostTensor> {
  const [, c, h, w] = t.shape;
  const out = new Float32Array(c * 4 * h * w);
  for (let k = 0; k < c; k++) {
    for (let y = 0; y < 2 * h; y++) {
      for (let x = 0; x < 2 * w; x++) out[(k * 2 * h + y) * 2 * w + x] = t.data[(k * h + (y >> 1)) * w + (x >> 1)];
    }
  }
  return await Promise.resolve({ shape: [1, c, 2 * h, 2 * w], data: out });
}

/** 2x2 mean pooling: the encode direction. */
async function pool2(t: HostTensor): Promise<HostTensor> {
  const [, c, h, w] = t.shape;
  const out = new Float32Array((c * h * w) / 4);
  for (let k = 0; k < c; k++) {
    for (let y = 0; y < h / 2; y++) {
      for (let x = 0; x < w / 2; x++) {
        const at = (yy: number, xx: number) => t.data[(k * h + yy) * w + xx];
        out[(k * h / 2 + y) * w / 2 + x] = (at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) +
          at(2 * y + 1, 2 * x + 1)) / 4;
      }
    }
  }
  return await Promise.resolve({ shape: [1, c, h / 2, w / 2], data: out });
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assertEquals(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// A network that acts pixel by pixel gives the same result tiled or whole exactly when the blend weights of every
// output pixel sum to 1 (no seams, no gaps), including under shifted last tiles whose first columns are skipped.
// Bound: float32 rounding of at most 4 weighted adds, 1e-6 on values in [-0.5, 0.5].
Deno.test("processTiles: blend weights sum to one everywhere (decode x2 and encode /2, shifted last tiles)", async () => {
  for (const [w, h, tile, overlap] of [[100, 70, 32, 0.5], [96, 40, 16, 0.25], [37, 50, 8, 0.3], [20, 20, 32, 0.5]]) {
    const x = random([1, 3, h, w], w * h);
    let calls = 0;
    const opts = { outWidth: 2 * w, outHeight: 2 * h, scale: 2, tileX: tile, tileY: tile, overlap };
    const tiled = await processTiles(x, (t) => {
      calls++;
      return upsample2(t);
    }, opts);
    const grid = tileGrid(w, h, opts);
    assertEquals(calls, grid.tilesX * grid.tilesY, `${w}x${h}: tiles run`);
    const whole = await upsample2(x);
    assert(
      maxDiff(tiled.data, whole.data) <= 1e-6,
      `${w}x${h} tile ${tile}: tiled x2 differs by ${maxDiff(tiled.data, whole.data)}`,
    );
    const y = random([1, 2, 2 * h, 2 * w], w + h);
    const pooled = await processTiles(y, pool2, { ...opts, outWidth: w, outHeight: h });
    const direct = await pool2(y);
    assert(maxDiff(pooled.data, direct.data) <= 1e-6, `${w}x${h}: tiled pooling differs`);
  }
});

Deno.test("processTiles: bad requests are errors", async () => {
  const x = random([1, 1, 8, 8], 1);
  const opts = { outWidth: 16, outHeight: 16, scale: 2, tileX: 4, tileY: 4, overlap: 0.25 };
  await assertRejects(() => processTiles(x, upsample2, { ...opts, outWidth: 17 }), "not a scale");
  await assertRejects(() => processTiles(x, upsample2, { ...opts, overlap: 0.7 }), "overlap");
  await assertRejects(() => processTiles(x, pool2, opts), "expected [1, C, 8, 8]");
  assertThrows(() => {
    throw new TilingError("x");
  }, TilingError);
});

async function assertRejects(fn: () => Promise<unknown>, includes: string): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert(e instanceof TilingError && e.message.includes(includes), `unexpected error: ${(e as Error).message}`);
    return;
  }
  throw new Error(`expected a TilingError (${includes})`);
}
