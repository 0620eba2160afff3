/**
 * Peak signal-to-noise ratio between two 8-bit images, over their RGB channels (alpha is ignored).
 *
 *   PSNR = 10·log10(255² / MSE), MSE = mean over H·W·3 of (a − b)²; identical images give Infinity.
 *
 * CLI: `deno run -A tools/psnr.ts a.png b.png` prints the PSNR in dB and per-channel means of both.
 *
 * @module
 */

import { decodePngImage } from "../plugins/image/png.ts";
import type { Image } from "../models/types.ts";

export interface ImageComparison {
  psnr: number;
  mse: number;
  /** Largest absolute difference of any RGB sample. */
  maxAbs: number;
  /** Mean of each RGB channel of `a` and of `b`. */
  meanA: [number, number, number];
  meanB: [number, number, number];
}

/** Compares the RGB samples of two images of the same size. */
export function compareImages(a: Image, b: Image): ImageComparison {
  if (a.width !== b.width || a.height !== b.height) {
    throw new RangeError(`image sizes differ: ${a.width}x${a.height} vs ${b.width}x${b.height}`);
  }
  const n = a.width * a.height;
  let se = 0;
  let maxAbs = 0;
  const meanA: [number, number, number] = [0, 0, 0];
  const meanB: [number, number, number] = [0, 0, 0];
  for (let p = 0; p < n; p++) {
    for (let k = 0; k < 3; k++) {
      const x = a.data[p * a.channels + k];
      const y = b.data[p * b.channels + k];
      const d = x - y;
      se += d * d;
      if (Math.abs(d) > maxAbs) maxAbs = Math.abs(d);
      meanA[k] += x;
      meanB[k] += y;
    }
  }
  for (let k = 0; k < 3; k++) {
    meanA[k] /= n;
    meanB[k] /= n;
  }
  const mse = se / (n * 3);
  const psnr = mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
  return { psnr, mse, maxAbs, meanA, meanB };
}

/** PSNR in dB between two images (RGB channels). */
export function psnr(a: Image, b: Image): number {
  return compareImages(a, b).psnr;
}

/** Compares two PNG files. */
export async function comparePngFiles(a: string, b: string): Promise<ImageComparison> {
  const [ia, ib] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
  return compareImages(decodePngImage(ia).image, decodePngImage(ib).image);
}

if (import.meta.main) {
  if (Deno.args.length !== 2) {
    console.error("usage: deno run -A tools/psnr.ts a.png b.png");
    Deno.exit(2);
  }
  try {
    const c = await comparePngFiles(Deno.args[0], Deno.args[1]);
    const m = (v: number[]) => v.map((x) => x.toFixed(3)).join(", ");
    console.log(`PSNR ${c.psnr.toFixed(2)} dB, max |diff| ${c.maxAbs}, mean a ${m(c.meanA)}, mean b ${m(c.meanB)}`);
  } catch (e) {
    console.error(`psnr: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
