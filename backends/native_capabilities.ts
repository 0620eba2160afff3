/**
 * Capabilities of a native backend, read from its `sdf_backend_info()` JSON.
 * Besides the required `ops` and `dtypes`, a library may state (all optional,
 * additive to ABI version 1):
 * - `"conv": "winograd" | "direct"` — default: winograd when it lists the
 *   `wino_*` ops, with the CPU backend's cost model;
 * - `"winograd_tiles": [2, 4, 6]` — the F(m,3) tiles it runs;
 * - `"alignment"` (bytes, default 64), `"memory_bytes"` (default: host memory),
 *   `"device_memory"` (bool, default false), `"max_tensor_bytes"`, `"max_buffer_bytes"`;
 * - `"precision": "bf16"` with `"bf16_unit": "amx"` (the CPU backend's bf16 mode on AMX): convs the
 *   cost model gives F(2,3) or F(4,3) are lowered to im2col instead, whose AMX GEMM is about as fast as
 *   those f32 Winograd products or faster (bench conv --precision bf16) and rounds only once (Winograd
 *   products stay f32 there, see winograd_gemm.c); F(6,3) stays.
 *
 * @example
 * ```ts
 * const caps = nativeCapabilities({ name: "x", abi: 1, isa: "", isas: [], threads: 1, dtypes: ["f32"], ops: ["unary"] });
 * caps.conv.kind; // "direct"
 * ```
 */

import type { BackendCapabilities, BackendInfo, WinogradTile } from "./backend.ts";
import { cpuCapabilities, cpuChooseWinograd } from "./cpu/capabilities.ts";

const WINO_OPS = ["wino_input", "wino_gemm", "wino_output"];

function positive(v: unknown, fallback: number): number {
  return typeof v === "number" && v > 0 ? v : fallback;
}

/** Capabilities from a native backend's info (see the module doc for the optional keys). */
export function nativeCapabilities(info: BackendInfo): BackendCapabilities {
  const ops = Array.isArray(info.ops) ? info.ops.map(String) : [];
  const dtypes = Array.isArray(info.dtypes) ? info.dtypes.map(String) : ["f32"];
  const base = cpuCapabilities(ops, dtypes);
  const hasWino = WINO_OPS.every((o) => ops.includes(o)) && info.conv !== "direct";
  const tiles = Array.isArray(info.winograd_tiles)
    ? (info.winograd_tiles as unknown[]).filter((t): t is 2 | 4 | 6 => t === 2 || t === 4 || t === 6)
    : [2, 4, 6] as const;
  let conv = base.conv;
  if (!hasWino || tiles.length === 0) conv = { kind: "direct" };
  else if (tiles.length < 3 && conv.kind === "winograd") {
    // Restrict the CPU model's choice to the tiles the library has (the largest it has when the model picks another).
    const allowed = new Set<number>(tiles);
    const fitted = conv;
    conv = {
      ...fitted,
      tiles,
      choose: (n, ci, co, oh, ow): WinogradTile => {
        const m = cpuChooseWinograd(n, ci, co, oh, ow);
        if (m === 0 || allowed.has(m)) return m;
        return Math.max(...tiles) as WinogradTile;
      },
    };
  }
  if (info.precision === "bf16" && info.bf16_unit === "amx" && conv.kind === "winograd") {
    const winograd = conv;
    conv = { ...winograd, choose: (n, ci, co, oh, ow) => winograd.choose(n, ci, co, oh, ow) === 6 ? 6 : 0 };
  }
  const alignment = positive(info.alignment, 64);
  return {
    ...base,
    conv,
    alignment: Math.max(64, 2 ** Math.ceil(Math.log2(alignment))),
    memoryBytes: positive(info.memory_bytes, base.memoryBytes),
    deviceMemory: info.device_memory === true,
    maxTensorBytes: positive(info.max_tensor_bytes, Infinity),
    maxBufferBytes: positive(info.max_buffer_bytes, Infinity),
  };
}
