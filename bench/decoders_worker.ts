/**
 * One timed decoder run in its own process, for `deno task bench decoders` (bench/decoders.ts), so that peak RSS
 * is this case's alone:
 *
 *   deno run -A bench/decoders_worker.ts --case vae|taesd|upscale --size PX [--tiled] [--model PATH]
 *     [--taesd PATH] [--esrgan PATH] [--threads N] [--warm]
 *
 * vae / taesd: decodes a random latent of PX/8 x PX/8 (SD latent magnitudes) with the checkpoint's VAE or a TAESD,
 * whole or in sd.cpp's VAE tiles (32 latent px, overlap 0.5). upscale: ESRGAN on a PX x PX picture (tiles of 128).
 * Prints one JSON line: `{ case, size, tiled, load_s, run_s, warm_s, peak_rss_bytes }`; run_s excludes loading and
 * includes compiling the network's program (as a one-off decode does); with --warm, warm_s is a second run of the
 * same input (the program kept, as for previews or a batch).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loadCheckpoint, loadTaesd, loadUpscaler } from "../models/mod.ts";

/** Peak resident set size (VmHWM) in bytes; null without /proc. */
function peakRssBytes(): number | null {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(Deno.readTextFileSync("/proc/self/status"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    case: { type: "string" },
    size: { type: "string", default: "512" },
    tiled: { type: "boolean", default: false },
    model: { type: "string" },
    taesd: { type: "string" },
    esrgan: { type: "string" },
    threads: { type: "string" },
    warm: { type: "boolean", default: false },
  },
});

function randomLatent(h: number, w: number) {
  let s = 12345;
  const data = Float32Array.from({ length: 4 * h * w }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648 - 0.5) * 2;
  });
  return { shape: [1, 4, h, w], data };
}

async function main(): Promise<void> {
  const size = Number(values.size);
  if (!Number.isInteger(size) || size < 64 || size % 8) throw new RangeError(`--size: a multiple of 8 from 64 up`);
  const threads = values.threads ? Number(values.threads) : undefined;
  const tiling = values.tiled ? { tiling: {} } : {};
  const sec = (ms: number) => Math.round(ms) / 1000;
  let t = performance.now();
  let loadMs = 0;
  let runMs = 0;
  let warmMs: number | null = null;
  const warm = values.warm;
  if (values.case === "vae" || values.case === "taesd") {
    const path = values.case === "vae" ? values.model : values.taesd;
    if (!path) throw new Error(`--${values.case === "vae" ? "model" : "taesd"} PATH is required`);
    const owner = values.case === "vae" ? await loadCheckpoint(path, { threads }) : await loadTaesd(path, { threads });
    const vae = "vae" in owner ? owner.vae : owner;
    loadMs = performance.now() - t;
    const z = randomLatent(size / 8, size / 8);
    t = performance.now();
    await vae.decode(z, undefined, tiling);
    runMs = performance.now() - t;
    if (warm) {
      t = performance.now();
      await vae.decode(z, undefined, tiling);
      warmMs = performance.now() - t;
    }
    owner.dispose();
  } else if (values.case === "upscale") {
    if (!values.esrgan) throw new Error("--esrgan PATH is required");
    const up = await loadUpscaler(values.esrgan, { threads });
    loadMs = performance.now() - t;
    const data = Uint8Array.from({ length: size * size * 3 }, (_, i) => (i * 2654435761) >>> 24);
    const im = { width: size, height: size, channels: 3 as const, data };
    t = performance.now();
    await up.upscale([im]);
    runMs = performance.now() - t;
    if (warm) {
      t = performance.now();
      await up.upscale([im]);
      warmMs = performance.now() - t;
    }
    up.dispose();
  } else {
    throw new Error("--case must be vae, taesd or upscale");
  }
  console.log(JSON.stringify({
    case: values.case,
    size,
    tiled: values.tiled,
    load_s: sec(loadMs),
    run_s: sec(runMs),
    warm_s: warmMs === null ? null : sec(warmMs),
    peak_rss_bytes: peakRssBytes(),
  }));
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`decoders_worker: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
