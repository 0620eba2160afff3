/**
 * An example third-party plugin that patches a model: `rank1_delta`, a LoRA-like node written from
 * scratch with sdflow's model-patching API (models/patch.ts). It adds strength·u·vᵀ (u, v seeded
 * random unit vectors) to every UNet weight whose name matches a pattern — a rank-1 "LoRA" whose
 * factors the node computes itself rather than reading from a file (a perturbation probe: how
 * sensitive is the picture to those layers?).
 *
 * What it shows: a plugin never touches the checkpoint loader or the network code. It asks the
 * MODEL for its patchable weights (`patchableWeights()`), builds {@link WeightPatch} deltas (factors
 * held in JavaScript with `hostWeight`, or byte ranges of a file), and returns
 * `applyPatches(model, [patch])` — a patched copy; the input MODEL stays as it was. The same
 * patch can be merged into the weights or applied at run time.
 *
 * @module
 */

import { applyPatches, hostWeight, type WeightDelta, type WeightPatch } from "../../../models/mod.ts";
import { defineNode, NodeInputError } from "../../../plugins/node.ts";

/** A seeded unit vector (xorshift32 → uniform in [-1, 1), normalised). */
export function unitVector(n: number, seed: number): Float32Array {
  let s = (seed >>> 0) || 0x9e3779b9;
  const v = new Float32Array(n);
  let norm = 0;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    v[i] = (s >>> 0) / 2 ** 31 - 1;
    norm += v[i] * v[i];
  }
  const k = 1 / Math.sqrt(norm);
  for (let i = 0; i < n; i++) v[i] *= k;
  return v;
}

/** The rank-1 deltas for every weight in `weights` whose name matches `pattern`. */
export function rank1Deltas(
  weights: ReadonlyMap<string, readonly number[]>,
  pattern: RegExp,
  strength: number,
  seed: number,
): WeightDelta[] {
  const deltas: WeightDelta[] = [];
  let i = 0;
  for (const [target, shape] of weights) {
    if (!pattern.test(target) || shape.length < 2) continue;
    const out = shape[0];
    const inner = shape.slice(1).reduce((a, b) => a * b, 1);
    const downShape = shape.length === 2 ? [1, inner] : [1, ...shape.slice(1)];
    deltas.push({
      kind: "low_rank",
      target,
      up: hostWeight([out, 1], unitVector(out, seed + 2 * i), `${target}.u`),
      down: hostWeight(downShape, unitVector(inner, seed + 2 * i + 1), `${target}.v`),
      scale: strength,
    });
    i++;
  }
  return deltas;
}

export const rank1Delta = defineNode({
  type: "rank1_delta",
  category: "loaders",
  description: "Adds strength·u·vᵀ (seeded random unit vectors) to every UNet weight whose ldm name matches " +
    "`pattern`: a rank-1 LoRA computed by the node (example plugin of the model-patching API).",
  inputs: {
    model: { type: "MODEL", description: "The UNet to patch." },
    pattern: {
      schema: {
        type: "string",
        minLength: 1,
        default: "attn2\\.to_k\\.weight$",
        description: "Regular expression over the UNet's ldm weight names.",
      },
    },
    strength: {
      schema: { type: "number", minimum: -100, maximum: 100, default: 1, description: "The delta's scale." },
    },
    seed: { schema: { type: "integer", minimum: 0, maximum: 4294967295, default: 0, description: "Seed of u and v." } },
    apply_mode: {
      schema: {
        enum: ["merge", "runtime"],
        default: "merge",
        description: "merge: W + ΔW once; runtime: y = W·x + strength·u(vᵀx) in every patched layer.",
      },
    },
  },
  outputs: { model: "MODEL" },
  run({ model, pattern, strength, seed, apply_mode }, ctx) {
    if (!model.patchableWeights) throw new NodeInputError("model", "this MODEL cannot be patched");
    let re: RegExp;
    try {
      re = new RegExp(pattern);
    } catch (e) {
      throw new NodeInputError("pattern", `not a regular expression: ${(e as Error).message}`);
    }
    const deltas = rank1Deltas(model.patchableWeights(), re, strength, seed);
    if (deltas.length === 0) throw new NodeInputError("pattern", `no UNet weight matches /${pattern}/`);
    ctx.log(`${ctx.nodeId}: rank-1 deltas on ${deltas.length} weights`);
    const patch: WeightPatch = { kind: "weights", label: `rank1_delta ${ctx.nodeId}`, deltas, mode: apply_mode };
    const patched = strength === 0 ? model : applyPatches(model, [patch], "MODEL");
    if (patched !== model) ctx.onDispose(() => patched.release?.());
    return Promise.resolve({ model: patched });
  },
});

export default { nodes: [rank1Delta] };
