/**
 * WGSL building blocks shared by the WebGPU kernels: how a kernel sees its
 * tensors and parameters.
 *
 * Every tensor is bound as `array<u32>` over a 256-byte aligned range of its
 * buffer, with its first element's index (in elements of its dtype) passed as
 * a parameter, so weights stay in their file's dtype and position (f16/bf16
 * are widened in the kernel, exactly, in integer arithmetic). `ld<i>(e)`
 * reads element e of tensor i as f32, `st<i>(e, v)` writes it.
 *
 * Parameters are one uniform array of u32 (`p(k)`, floats via `pf(k)`):
 * slots 0..nTensors-1 hold the tensors' element offsets, the op's own from
 * slot `PARAM_BASE` on.
 */

import { SDF_DTYPE } from "../abi.ts";

/** First op parameter slot (after the 8 tensor offsets). */
export const PARAM_BASE = 8;
/** Parameter slots per op (uniform array of vec4<u32>). */
export const PARAM_SLOTS = 64;

/** How a kernel binds one tensor. */
export interface TensorUse {
  dtype: number;
  write: boolean;
}

const F16_TO_F32 = /* wgsl */ `
fn h2f(h: u32) -> f32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) {
    if (m == 0u) { return bitcast<f32>(s); }
    return bitcast<f32>(s | bitcast<u32>(ldexp(f32(m), -24)));
  }
  if (e == 31u) { return bitcast<f32>(s | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>(s | ((e + 112u) << 23u) | (m << 13u));
}
`;

/** The bindings, parameter accessors and per-tensor loaders/stores of a kernel. */
export function prelude(uses: readonly TensorUse[]): string {
  const lines: string[] = [
    `struct Params { v: array<vec4<u32>, ${PARAM_SLOTS / 4}> }`,
    `@group(0) @binding(0) var<uniform> P: Params;`,
    `fn p(k: u32) -> u32 { return P.v[k / 4u][k % 4u]; }`,
    `fn pf(k: u32) -> f32 { return bitcast<f32>(p(k)); }`,
  ];
  if (uses.some((u) => u.dtype === SDF_DTYPE.f16)) lines.push(F16_TO_F32);
  uses.forEach((u, i) => {
    // All read_write: WebGPU forbids one buffer (the arena) bound read-only and writable in one dispatch.
    lines.push(`@group(0) @binding(${i + 1}) var<storage, read_write> t${i}: array<u32>;`);
    switch (u.dtype) {
      case SDF_DTYPE.f32:
        lines.push(`fn ld${i}(e: u32) -> f32 { return bitcast<f32>(t${i}[p(${i}u) + e]); }`);
        break;
      case SDF_DTYPE.i32:
        lines.push(`fn ld${i}(e: u32) -> f32 { return f32(bitcast<i32>(t${i}[p(${i}u) + e])); }`);
        lines.push(`fn ldi${i}(e: u32) -> i32 { return bitcast<i32>(t${i}[p(${i}u) + e]); }`);
        break;
      case SDF_DTYPE.f16:
        lines.push(
          `fn ld${i}(e: u32) -> f32 { let h = p(${i}u) + e; return h2f((t${i}[h >> 1u] >> ((h & 1u) * 16u)) & 0xffffu); }`,
        );
        break;
      case SDF_DTYPE.bf16:
        lines.push(
          `fn ld${i}(e: u32) -> f32 { let h = p(${i}u) + e; return bitcast<f32>(((t${i}[h >> 1u] >> ((h & 1u) * 16u)) & 0xffffu) << 16u); }`,
        );
        break;
    }
    if (u.write) lines.push(`fn st${i}(e: u32, v: f32) { t${i}[p(${i}u) + e] = bitcast<u32>(v); }`);
  });
  return lines.join("\n");
}

/**
 * Most loop iterations one invocation may run, all its loops together. Mesa's llvmpipe (lavapipe, the
 * Vulkan driver CI runs WebGPU on) ends every loop of a shader invocation once 65535 iterations have
 * run in total (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS, one counter shared by all loops), silently, so
 * a longer kernel computes garbage; on hardware GPUs long invocations risk the driver's watchdog.
 * Kernels whose loops grow with the problem (attention over the keys) split it into dispatches that
 * each stay within this, with a margin.
 */
export const LOOP_BUDGET = 60000;

/** Workgroup size of the one-thread-per-element kernels. */
export const ELEMENTWISE_WG = 256;

/**
 * A kernel with one thread per element of `count` (slot `PARAM_BASE`):
 * `body` sees `i`, the element index. Dispatched 2-D for counts past 65535 groups.
 */
export function elementwise(uses: readonly TensorUse[], body: string, extra = ""): string {
  return `${prelude(uses)}
${extra}
@compute @workgroup_size(${ELEMENTWISE_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * ${ELEMENTWISE_WG}u;
  if (i >= p(${PARAM_BASE}u)) { return; }
  ${body}
}`;
}

/** Numerically careful activations (exact GELU via erfc; no overflow for large |x|). */
export const ACTIVATIONS = /* wgsl */ `
fn erfc_(z: f32) -> f32 {
  // Numerical Recipes' Chebyshev fit: fractional error < 1.2e-7 everywhere.
  let a = abs(z);
  let t = 1.0 / (1.0 + 0.5 * a);
  let r = t * exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return select(2.0 - r, r, z >= 0.0);
}
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn tanh_(x: f32) -> f32 {
  let a = abs(x);
  var r: f32;
  if (a < 0.55) {
    // Odd series for small |x| avoids the cancellation of exp-based forms.
    let x2 = x * x;
    r = a * (1.0 + x2 * (-0.33333333 + x2 * (0.13333333 + x2 * (-0.053968254 + x2 * (0.021869488 + x2 * -0.0088632355)))));
  } else {
    let e = exp(-2.0 * min(a, 20.0));
    r = (1.0 - e) / (1.0 + e);
  }
  return select(-r, r, x >= 0.0);
}
fn gelu_(x: f32) -> f32 { return 0.5 * x * erfc_(-x * 0.70710678118654752); }
fn gelu_tanh_(x: f32) -> f32 { return 0.5 * x * (1.0 + tanh_(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
fn unary_(kind: u32, x: f32) -> f32 {
  switch kind {
    case 0u: { return x * sigmoid_(x); }
    case 1u: { return gelu_(x); }
    case 2u: { return gelu_tanh_(x); }
    case 3u: { return x * sigmoid_(1.702 * x); }
    case 4u: { return max(x, 0.0); }
    case 5u: { return select(x, 0.2 * x, x < 0.0); }
    case 6u: { return sigmoid_(x); }
    default: { return tanh_(x); }
  }
}
`;
