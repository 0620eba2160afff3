/**
 * The CPU backend's capabilities, and its Winograd cost model: which F(m,3)
 * tile pays for a conv of a given shape. The C kernels keep their own copy of
 * the model (`sdfw_choose_m` in src/winograd.c) for convs they lower
 * themselves; the two must agree (backends/wino_bands_test.ts, engine tests).
 *
 * @example
 * ```ts
 * import { cpuChooseWinograd } from "./capabilities.ts";
 * cpuChooseWinograd(2, 320, 320, 64, 64); // 6
 * ```
 */

import { ALL_OPS, type BackendCapabilities, type WinogradTile } from "../backend.ts";

/**
 * F(m,3) tile size for a 3x3 stride-1 conv producing n images of oh x ow, or
 * 0 when Winograd does not pay (fitted on Zen 5): larger tiles cut
 * multiplications (m=6: 5.1x, m=4: 4x, m=2: 2.25x) but waste work on partial
 * edge tiles and cost more transform traffic; the products run in column
 * blocks of 16/32 tiles, so a tile count just past a block boundary is
 * expensive too.
 */
export function cpuChooseWinograd(n: number, ci: number, co: number, oh: number, ow: number): WinogradTile {
  // Too few channels: the products are memory-bound and im2col (or the direct kernel) is cheaper.
  if (ci < 16 || co < 16) return 0;
  let best: WinogradTile = 0;
  let bestCost = Infinity;
  for (const m of [6, 4, 2] as const) {
    const t = n * Math.ceil(oh / m) * Math.ceil(ow / m);
    const rest = t % 32;
    const cols = t - rest + (rest === 0 ? 0 : rest <= 16 ? 16 : 32);
    const cost = (m + 2) ** 2 * (cols * ci * co + 60 * t * (ci + co));
    if (cost < bestCost) {
      best = m;
      bestCost = cost;
    }
  }
  return best;
}

/**
 * Winograd intermediates per band: 48 MiB is 8 tile rows of the VAE's
 * 128@512² F(6,3) conv, within 3% of unbanded time at 1/10 the memory.
 */
export const CPU_BAND_BYTES = 48 * 2 ** 20;

/** Host memory, or 16 GiB where the OS does not say. */
function hostMemory(): number {
  try {
    return Deno.systemMemoryInfo().total;
  } catch {
    return 16 * 2 ** 30;
  }
}

/** Capabilities of the bundled CPU backend (or of a native backend that runs like it), given its op list. */
export function cpuCapabilities(
  ops: readonly string[] = ALL_OPS,
  dtypes: readonly string[] = ["f32", "f16", "bf16", "i32"],
): BackendCapabilities {
  return {
    ops: new Set(ops),
    dtypes: new Set(dtypes),
    conv: { kind: "winograd", tiles: [2, 4, 6], choose: cpuChooseWinograd, bandBytes: CPU_BAND_BYTES },
    // One AVX-512 register / cache line.
    alignment: 64,
    memoryBytes: hostMemory(),
    deviceMemory: false,
    maxTensorBytes: Infinity,
    maxBufferBytes: Infinity,
  };
}
