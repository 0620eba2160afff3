/**
 * Running a network over a big image in overlapping tiles and blending the
 * tiles back into one tensor, the way stable-diffusion.cpp does it
 * (`sd_tiling_calc_tiles`, `process_tiles_2d`, `sd_tensor_merge_2d` in its
 * ggml_extend.hpp), so that tiled results match its pixels:
 *
 * - the tile count and the real overlap per axis are recomputed from the
 *   requested overlap ({@link calcTiles});
 * - tiles step by `tile - overlap` from 0; the last one is shifted back to end
 *   at the border, and its first `shift` columns/rows (already covered) are
 *   skipped when merging;
 * - the output starts at zero and each tile adds `value * s(fx) * s(fy)`, with
 *   s the smootherstep t^3 (6t^2 - 15t + 10) and f = min(1, distance from the
 *   tile's inner edge / overlap); a side on the image border gets no ramp.
 *
 * Sizes are in the "small" grid (the latent for a VAE decode, the input
 * image for an upscaler): `scale` maps it to the other side.
 */

import type { HostTensor, VaeTilingOptions } from "./types.ts";

/** A tiling request that cannot be honoured. */
export class TilingError extends Error {
  override name = "TilingError";
}

/** Tile count along one axis and the overlap (fraction of a tile) they really have. */
export interface AxisTiles {
  readonly count: number;
  readonly overlapFactor: number;
}

/** stable-diffusion.cpp's `sd_tiling_calc_tiles` (non-circular). */
export function calcTiles(smallDim: number, tileSize: number, targetOverlap: number): AxisTiles {
  const tileOverlap = Math.trunc(Math.fround(tileSize * Math.fround(targetOverlap)));
  const nonOverlap = tileSize - tileOverlap;
  let count = Math.trunc((smallDim - tileOverlap) / nonOverlap);
  const overshoot = ((count + 1) * nonOverlap + tileOverlap) % smallDim;
  if (overshoot !== nonOverlap && overshoot <= count * (Math.trunc(tileSize / 2) - tileOverlap)) count++;
  let overlapFactor = Math.fround((tileSize * count - smallDim) / (tileSize * (count - 1)));
  if (count <= 2) {
    if (smallDim <= tileSize) {
      count = 1;
      overlapFactor = 0;
    } else {
      count = 2;
      overlapFactor = Math.fround((2 * tileSize - smallDim) / tileSize);
    }
  }
  return { count, overlapFactor };
}

export interface TileOptions {
  /** Output width and height (the input's times `scale`, or divided by it). */
  outWidth: number;
  outHeight: number;
  /** Ratio between the two sides (8 for a VAE, the upscaler's factor). */
  scale: number;
  /** Tile size in the small grid, per axis. */
  tileX: number;
  tileY: number;
  /** Requested overlap, a fraction of the tile (sd.cpp: 0.5 for the VAE, 0.25 for upscalers). */
  overlap: number;
  /** Called after each tile: done of total. */
  onTile?: (done: number, total: number) => void;
}

/** The tile grid that {@link processTiles} walks, for messages and tests. */
export interface TileGrid {
  readonly tilesX: number;
  readonly tilesY: number;
  readonly overlapX: number;
  readonly overlapY: number;
  /** Tile sizes in the small grid (the requested size, or the whole side if smaller). */
  readonly tileW: number;
  readonly tileH: number;
}

function smootherstep(x: number): number {
  return Math.fround(x * x * x * Math.fround(x * Math.fround(6 * x - 15) + 10));
}

/** The tile grid of {@link processTiles} for an input of `inW` x `inH`. */
export function tileGrid(inW: number, inH: number, opts: TileOptions): TileGrid {
  const decode = opts.outWidth > inW;
  const smallW = decode ? inW : opts.outWidth;
  const smallH = decode ? inH : opts.outHeight;
  const x = calcTiles(smallW, opts.tileX, opts.overlap);
  const y = calcTiles(smallH, opts.tileY, opts.overlap);
  return {
    tilesX: x.count,
    tilesY: y.count,
    overlapX: x.overlapFactor,
    overlapY: y.overlapFactor,
    tileW: Math.min(opts.tileX, smallW),
    tileH: Math.min(opts.tileY, smallH),
  };
}

/**
 * Runs `fn` on tiles of `input` ([1, C, H, W]) and blends its outputs into one
 * [1, C', outHeight, outWidth] tensor, exactly as stable-diffusion.cpp's
 * `process_tiles_2d` does. `fn` gets tiles of one fixed size (so one compiled
 * program serves every tile) and must return [1, C', th', tw'] with th', tw'
 * the tile's size on the other side of `scale`.
 */
export async function processTiles(
  input: HostTensor,
  fn: (tile: HostTensor) => Promise<HostTensor>,
  opts: TileOptions,
): Promise<HostTensor> {
  const [n, , inH, inW] = input.shape;
  const { outWidth, outHeight, scale } = opts;
  if (n !== 1) throw new TilingError(`tiling takes one image at a time, got a batch of ${n}`);
  const decode = outWidth > inW;
  const ratioOk = decode
    ? outWidth === inW * scale && outHeight === inH * scale
    : inW === outWidth * scale && inH === outHeight * scale;
  if (!ratioOk) throw new TilingError(`tiling: ${inW}x${inH} -> ${outWidth}x${outHeight} is not a scale of ${scale}`);
  if (!(opts.tileX >= 1 && opts.tileY >= 1)) throw new TilingError(`tile size must be >= 1`);
  if (!(opts.overlap >= 0 && opts.overlap <= 0.5)) throw new TilingError(`tile overlap must be in [0, 0.5]`);
  const smallW = decode ? inW : outWidth;
  const smallH = decode ? inH : outHeight;
  const grid = tileGrid(inW, inH, opts);
  // int * float in C++: a float product, truncated.
  const overlapX = Math.trunc(Math.fround(opts.tileX * grid.overlapX));
  const overlapY = Math.trunc(Math.fround(opts.tileY * grid.overlapY));
  const stepX = opts.tileX - overlapX;
  const stepY = opts.tileY - overlapY;
  const { tileW, tileH } = grid;
  const inTileW = decode ? tileW : tileW * scale;
  const inTileH = decode ? tileH : tileH * scale;
  const outTileW = decode ? tileW * scale : tileW;
  const outTileH = decode ? tileH * scale : tileH;
  const ovOutX = decode ? overlapX * scale : overlapX;
  const ovOutY = decode ? overlapY * scale : overlapY;
  const total = grid.tilesX * grid.tilesY;

  let out: Float32Array | undefined;
  let outC = 0;
  let done = 0;
  let lastY = false;
  for (let y = 0; y < smallH && !lastY; y += stepY) {
    let dy = 0;
    if (y + tileH >= smallH) {
      const orig = y;
      y = smallH - tileH;
      dy = (orig - y) * (decode ? scale : 1);
      lastY = true;
    }
    let lastX = false;
    for (let x = 0; x < smallW && !lastX; x += stepX) {
      let dx = 0;
      if (x + tileW >= smallW) {
        const orig = x;
        x = smallW - tileW;
        dx = (orig - x) * (decode ? scale : 1);
        lastX = true;
      }
      const xIn = decode ? x : x * scale;
      const yIn = decode ? y : y * scale;
      const tile = cropTile(input, xIn, yIn, inTileW, inTileH);
      const res = await fn(tile);
      const [rn, rc, rh, rw] = res.shape;
      if (rn !== 1 || rh !== outTileH || rw !== outTileW) {
        throw new TilingError(`a tile gave [${res.shape.join(", ")}], expected [1, C, ${outTileH}, ${outTileW}]`);
      }
      if (!out) {
        outC = rc;
        out = new Float32Array(rc * outWidth * outHeight);
      } else if (rc !== outC) throw new TilingError(`tiles gave ${outC} and ${rc} channels`);
      mergeTile(res.data, rc, outTileW, outTileH, out, outWidth, outHeight, {
        x: decode ? x * scale : x,
        y: decode ? y * scale : y,
        overlapX: ovOutX,
        overlapY: ovOutY,
        skipX: dx,
        skipY: dy,
      });
      done++;
      opts.onTile?.(done, total);
    }
  }
  return { shape: [1, outC, outHeight, outWidth], data: out! };
}

/** Copies a w x h window at (x, y) of every channel plane of a [1, C, H, W] tensor. */
function cropTile(input: HostTensor, x: number, y: number, w: number, h: number): HostTensor {
  const [, c, H, W] = input.shape;
  const data = new Float32Array(c * w * h);
  for (let k = 0; k < c; k++) {
    for (let iy = 0; iy < h; iy++) {
      const src = (k * H + y + iy) * W + x;
      data.set(input.data.subarray(src, src + w), (k * h + iy) * w);
    }
  }
  return { shape: [1, c, h, w], data };
}

/** `sd_tensor_merge_2d`, non-circular, in float32 arithmetic as sd.cpp. */
function mergeTile(
  tile: Float32Array,
  c: number,
  w: number,
  h: number,
  out: Float32Array,
  outW: number,
  outH: number,
  p: { x: number; y: number; overlapX: number; overlapY: number; skipX: number; skipY: number },
): void {
  const f = Math.fround;
  const blend = p.overlapX > 0 || p.overlapY > 0;
  const fx = new Float32Array(w);
  for (let ix = p.skipX; ix < w; ix++) {
    const f0 = p.overlapX > 0 && p.x > 0 ? f((ix - p.skipX) / p.overlapX) : 1;
    const f1 = p.overlapX > 0 && p.x < outW - w ? f((w - ix) / p.overlapX) : 1;
    fx[ix] = smootherstep(Math.min(f0, f1, 1));
  }
  for (let k = 0; k < c; k++) {
    for (let iy = p.skipY; iy < h; iy++) {
      const f0 = p.overlapY > 0 && p.y > 0 ? f((iy - p.skipY) / p.overlapY) : 1;
      const f1 = p.overlapY > 0 && p.y < outH - h ? f((h - iy) / p.overlapY) : 1;
      const sy = smootherstep(Math.min(f0, f1, 1));
      const src = (k * h + iy) * w;
      const dst = (k * outH + p.y + iy) * outW + p.x;
      if (!blend) {
        out.set(tile.subarray(src + p.skipX, src + w), dst + p.skipX);
        continue;
      }
      for (let ix = p.skipX; ix < w; ix++) {
        out[dst + ix] = f(out[dst + ix] + f(f(tile[src + ix] * sy) * fx[ix]));
      }
    }
  }
}

/** VAE tiling as stable-diffusion.cpp's `--vae-tiling`, `--vae-tile-size`, `--vae-tile-overlap` set it. */
/**
 * VAE tiling as stable-diffusion.cpp's `--vae-tiling`, `--vae-tile-size`, `--vae-tile-overlap` set it:
 * tile size in latent pixels per axis (default 32x32; values below 4 mean the default); relative sizes
 * (`--vae-relative-tile-size`: a fraction of the latent side if <= 1, a number of tiles if > 1; they
 * override the tile size when > 0); the requested overlap, clamped to [0, 0.5] (default 0.5).
 */
export type VaeTiling = VaeTilingOptions;

/** sd.cpp's default VAE tile size (latent pixels) and overlap. */
export const VAE_TILE_DEFAULT = 32;
export const VAE_TILE_OVERLAP_DEFAULT = 0.5;
/**
 * sd.cpp encodes images in tiles twice the decode size ("image VAE encode is more sensitive to tile
 * boundary context than decode"): a 512x512 image is one tile.
 */
export const VAE_ENCODE_TILE_FACTOR = 2;

/**
 * Tile sizes (latent pixels) and overlap for a latent of `latentW` x `latentH`, as sd.cpp's
 * `VAE::get_tile_sizes`; `encodingFactor` is {@link VAE_ENCODE_TILE_FACTOR} when encoding.
 */
export function vaeTileSizes(
  t: VaeTiling,
  latentW: number,
  latentH: number,
  encodingFactor = 1,
): { tileX: number; tileY: number; overlap: number } {
  const overlap = Math.fround(Math.max(Math.min(t.overlap ?? VAE_TILE_OVERLAP_DEFAULT, 0.5), 0));
  const size = (requested: number | undefined, rel: number | undefined, latent: number): number => {
    let tile = VAE_TILE_DEFAULT;
    let factor = Math.fround(rel ?? 0);
    if (factor > 0) {
      if (factor > 1) factor = Math.fround(1 / Math.fround(factor - factor * overlap + overlap));
      tile = Math.round(Math.fround(latent * factor));
    } else if ((requested ?? 0) >= 4) {
      tile = requested!;
    }
    tile = Math.trunc(Math.fround(tile * encodingFactor));
    return Math.max(Math.min(tile, latent), 4);
  };
  return { tileX: size(t.tileX, t.relX, latentW), tileY: size(t.tileY, t.relY, latentH), overlap };
}

/**
 * One image through a VAE's `run` in sd.cpp's VAE tiles (decode: latent -> x `scale`; encode: image ->
 * / `scale`), tile sizes from {@link vaeTileSizes}.
 */
export function vaeTiled(
  x: HostTensor,
  outWidth: number,
  outHeight: number,
  scale: number,
  tiling: VaeTiling,
  encodingFactor: number,
  run: (tile: HostTensor) => Promise<HostTensor>,
  onTile?: (done: number, total: number) => void,
): Promise<HostTensor> {
  const [, , h, w] = x.shape;
  const decode = outWidth > w;
  const lw = decode ? w : outWidth;
  const lh = decode ? h : outHeight;
  const t = vaeTileSizes(tiling, lw, lh, encodingFactor);
  return processTiles(x, run, {
    outWidth,
    outHeight,
    scale,
    tileX: t.tileX,
    tileY: t.tileY,
    overlap: t.overlap,
    onTile,
  });
}
