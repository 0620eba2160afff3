/**
 * Constants of the backend ABI, mirrored from `sdflow_backend.h` (version 1).
 * The plan writer and the engine's planner use these; keep them in sync with
 * the header.
 *
 * @example
 * ```ts
 * import { SDF_OP, SDF_DTYPE } from "./abi.ts";
 * w.op(SDF_OP.SOFTMAX, [x], [y], [], [1], []);
 * w.tensor(0, SDF_DTYPE.f32, 0, [2, 3]);
 * ```
 */

export const SDF_ABI_VERSION = 1;
export const SDF_PLAN_MAGIC = 0x50464453; // "SDFP"
export const SDF_PLAN_VERSION = 1;
export const SDF_MAX_DIMS = 6;
export const SDF_MAX_OP_TENSORS = 8;
export const SDF_MAX_OP_PARAMS = 16;

/** Status codes returned by the C functions. */
export const SDF_STATUS = {
  OK: 0,
  E_INVALID: -1,
  E_UNSUPPORTED: -2,
  E_NOMEM: -3,
  E_IO: -4,
  E_STATE: -5,
  E_INTERNAL: -6,
} as const;

/** Status code -> name, for messages. */
export const SDF_STATUS_NAME: Readonly<Record<number, string>> = {
  0: "OK",
  [-1]: "INVALID",
  [-2]: "UNSUPPORTED",
  [-3]: "NOMEM",
  [-4]: "IO",
  [-5]: "STATE",
  [-6]: "INTERNAL",
};

/** Element types, keyed by the engine's dtype names (q*: ggml's block-quantized weights). */
export const SDF_DTYPE = {
  f32: 0,
  f16: 1,
  bf16: 2,
  i32: 3,
  q4_0: 4,
  q4_1: 5,
  q5_0: 6,
  q5_1: 7,
  q8_0: 8,
  q2_k: 9,
  q3_k: 10,
  q4_k: 11,
  q5_k: 12,
  q6_k: 13,
} as const;
export type SdfDType = keyof typeof SDF_DTYPE;

/** Bytes per element of each element-sized SDF_DTYPE code. */
export const SDF_DTYPE_BYTES: Readonly<Record<number, number>> = { 0: 4, 1: 2, 2: 2, 3: 4 };

/** Elements and bytes per block of each block-quantized SDF_DTYPE code. */
export const SDF_DTYPE_BLOCK: Readonly<Record<number, readonly [number, number]>> = {
  4: [32, 18],
  5: [32, 20],
  6: [32, 22],
  7: [32, 24],
  8: [32, 34],
  9: [256, 84],
  10: [256, 110],
  11: [256, 144],
  12: [256, 176],
  13: [256, 210],
};

/** Op codes (see the header for each op's inputs, outputs and params). */
export const SDF_OP = {
  CONV2D: 1,
  WINO_FILTER: 2,
  WINO_INPUT: 3,
  WINO_GEMM: 4,
  WINO_OUTPUT: 5,
  MATMUL: 6,
  BMM: 7,
  ATTENTION: 8,
  GROUP_NORM: 9,
  LAYER_NORM: 10,
  UNARY: 11,
  GEGLU: 12,
  SOFTMAX: 13,
  BINARY: 14,
  SCALE: 15,
  CONCAT: 16,
  UPSAMPLE_NEAREST: 17,
  TIMESTEP_EMBEDDING: 18,
  PERMUTE: 19,
  GATHER_ROWS: 20,
  COPY: 21,
  SLICE: 22,
  MERGE_LOW_RANK: 23,
} as const;
export type SdfOpName = keyof typeof SDF_OP;

/** UNARY kinds (p[0]), keyed by the engine's UnaryKind names. */
export const SDF_UNARY = {
  silu: 0,
  gelu: 1,
  gelu_tanh: 2,
  quick_gelu: 3,
  relu: 4,
  leaky_relu: 5,
  sigmoid: 6,
  tanh: 7,
} as const;

/** BINARY kinds (p[0]), keyed by the engine's BinaryKind names. */
export const SDF_BINARY = { add: 0, sub: 1, mul: 2, div: 3 } as const;
