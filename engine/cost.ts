/**
 * FLOP and byte estimates per op, for `plan`, profiles and the
 * effective-throughput figures of the benchmarks. Convolutions count the
 * FLOPs of a direct convolution whatever algorithm runs them, so Winograd's
 * saving shows up as higher effective throughput, as is customary.
 */

import { numel } from "./graph.ts";
import { type LOp, type LTensor, tensorBytes } from "./lower.ts";

export interface OpCost {
  flops: number;
  bytes: number;
}

/** Direct-convolution FLOPs of a conv producing y[N,Co,OH,OW] from Ci channels and a kh x kw kernel. */
export function convFlops(n: number, co: number, oh: number, ow: number, ci: number, kh: number, kw: number): number {
  return 2 * n * co * oh * ow * ci * kh * kw;
}

export function opCost(op: LOp, tensors: readonly LTensor[]): OpCost {
  const ins = op.inputs.map((i) => tensors[i]);
  const outs = op.outputs.map((i) => tensors[i]);
  const bytes = [...ins, ...outs].reduce((a, t) => a + tensorBytes(t), 0);
  const outN = outs.length ? numel(outs[0].shape) : 0;
  switch (op.kind) {
    case "conv2d": {
      const [, ci, kh, kw] = ins[1].shape;
      const [n, co, oh, ow] = outs[0].shape;
      return { flops: convFlops(n, co, oh, ow, ci, kh, kw), bytes };
    }
    case "wino_gemm": {
      // Attribute the whole conv's direct FLOPs to the products (the transforms are overhead).
      const out = op.attrs.conv_out as readonly number[] | undefined;
      const ci = Number(op.attrs.conv_ci ?? ins[1].shape[1]);
      if (out) {
        const [n, co, oh, ow] = out;
        return { flops: convFlops(n, co, oh, ow, ci, 3, 3), bytes };
      }
      const [a2, , t] = ins[1].shape;
      const co = outs[0].shape[1];
      return { flops: 2 * a2 * co * ci * t, bytes };
    }
    case "matmul": {
      const [nOut, k] = ins[1].shape;
      return { flops: 2 * (outN / nOut) * nOut * k, bytes };
    }
    case "bmm": {
      const [b, m, k] = ins[0].shape;
      return { flops: 2 * b * m * k * outs[0].shape[2], bytes };
    }
    case "attention": {
      const [b, nq, c] = ins[0].shape;
      const nk = ins[1].shape[1];
      return { flops: 4 * b * nq * nk * c, bytes };
    }
    default:
      return { flops: outN, bytes };
  }
}
