/**
 * A deliberately plain float64-accumulating interpreter of the graph IR, for
 * model tests: it checks that a network's graph computes what the PyTorch
 * reference computes, independently of the planner and the native backends.
 * Slow (scalar loops); use it on the tiny models only.
 */

import { bf16BitsToF32, f16BitsToF32 } from "../../backends/float16.ts";
import type { Graph, Op, Tensor } from "../../engine/graph.ts";

type Value = Float32Array | Int32Array;

/** erf with |error| < 1.2e-7 (Numerical Recipes erfc, Chebyshev fit). */
function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(
    -z * z - 1.26551223 +
      t * (1.00002368 +
          t * (0.37409196 +
              t * (0.09678418 +
                  t * (-0.18628806 +
                      t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
  );
  return x >= 0 ? 1 - r : r - 1;
}

const UNARY: Record<string, (x: number) => number> = {
  silu: (x) => x / (1 + Math.exp(-x)),
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))),
  quick_gelu: (x) => x / (1 + Math.exp(-1.702 * x)),
  relu: (x) => Math.max(0, x),
  // The IR's leaky_relu has ESRGAN's slope 0.2 (backends/sdflow_backend.h SDF_UNARY_LEAKY_RELU).
  leaky_relu: (x) => (x > 0 ? x : 0.2 * x),
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  tanh: Math.tanh,
};

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

function strides(s: readonly number[]): number[] {
  const st = new Array<number>(s.length);
  let acc = 1;
  for (let i = s.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

function constantValue(t: Tensor): Value {
  const src = t.source!;
  if (src.kind === "file") {
    const f = Deno.openSync(src.path);
    try {
      const buf = new Uint8Array(src.bytes);
      f.seekSync(src.offset, Deno.SeekMode.Start);
      let done = 0;
      while (done < buf.length) {
        const n = f.readSync(buf.subarray(done));
        if (n === null) throw new Error(`${src.path}: short read for ${t.name}`);
        done += n;
      }
      return decode(t, buf.buffer);
    } finally {
      f.close();
    }
  }
  if (src.kind === "buffer") return decode(t, src.buffer.read!(src.offset, src.bytes).buffer);
  const d = src.data;
  return decode(t, d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength) as ArrayBuffer);
}

function decode(t: Tensor, buf: ArrayBuffer): Value {
  if (t.dtype === "f32") return new Float32Array(buf);
  if (t.dtype === "i32") return new Int32Array(buf);
  const u = new Uint16Array(buf);
  return Float32Array.from(u, t.dtype === "f16" ? f16BitsToF32 : bf16BitsToF32);
}

/** Runs `g` on `inputs` and returns its named outputs. */
export function naiveEval(g: Graph, inputs: Record<string, Value>): Record<string, Float32Array> {
  const vals = new Map<number, Value>();
  for (const [name, id] of g.inputs) {
    const v = inputs[name];
    if (!v || v.length !== numel(g.tensor(id).shape)) throw new Error(`input ${name} missing or mis-sized`);
    vals.set(id, v);
  }
  const get = (id: number): Value => {
    let v = vals.get(id);
    if (!v) {
      const t = g.tensor(id);
      if (t.kind !== "constant") throw new Error(`tensor ${id} has no value`);
      v = constantValue(t);
      vals.set(id, v);
    }
    return v;
  };
  for (const op of g.ops) vals.set(op.outputs[0], run(g, op, op.inputs.map(get)));
  const out: Record<string, Float32Array> = {};
  for (const [name, id] of g.outputs) out[name] = get(id) as Float32Array;
  return out;
}

function run(g: Graph, op: Op, ins: Value[]): Value {
  const sh = (i: number) => g.tensor(op.inputs[i]).shape;
  const outShape = g.tensor(op.outputs[0]).shape;
  const out = new Float32Array(numel(outShape));
  const a = op.attrs;
  const x = ins[0];
  switch (op.kind) {
    case "conv2d": {
      const [n, ci, h, w] = sh(0);
      const [co, , kh, kw] = sh(1);
      const [, , oh, ow] = outShape;
      const [sy, sx, py, px] = [a.stride_h, a.stride_w, a.pad_h, a.pad_w] as number[];
      const wt = ins[1];
      const b = ins[2];
      for (let b0 = 0; b0 < n; b0++) {
        for (let o = 0; o < co; o++) {
          for (let y = 0; y < oh; y++) {
            for (let xx = 0; xx < ow; xx++) {
              let s = b ? b[o] : 0;
              for (let c = 0; c < ci; c++) {
                for (let ky = 0; ky < kh; ky++) {
                  const iy = y * sy - py + ky;
                  if (iy < 0 || iy >= h) continue;
                  for (let kx = 0; kx < kw; kx++) {
                    const ix = xx * sx - px + kx;
                    if (ix < 0 || ix >= w) continue;
                    s += x[((b0 * ci + c) * h + iy) * w + ix] * wt[((o * ci + c) * kh + ky) * kw + kx];
                  }
                }
              }
              out[((b0 * co + o) * oh + y) * ow + xx] = s;
            }
          }
        }
      }
      return out;
    }
    case "matmul": {
      const s = sh(0);
      const k = s[s.length - 1];
      const [nOut] = sh(1);
      const rows = numel(s) / k;
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < nOut; j++) {
          let acc = ins[2] ? ins[2][j] : 0;
          for (let i = 0; i < k; i++) acc += x[r * k + i] * ins[1][j * k + i];
          out[r * nOut + j] = acc;
        }
      }
      return out;
    }
    case "bmm": {
      const [bt, m, k] = sh(0);
      const n = outShape[2];
      const tb = a.trans_b === 1;
      for (let b0 = 0; b0 < bt; b0++) {
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            let acc = 0;
            for (let p = 0; p < k; p++) {
              acc += x[(b0 * m + i) * k + p] * (tb ? ins[1][(b0 * n + j) * k + p] : ins[1][(b0 * k + p) * n + j]);
            }
            out[(b0 * m + i) * n + j] = acc * (a.alpha as number);
          }
        }
      }
      return out;
    }
    case "attention": {
      const [b, nq, c] = sh(0);
      const nk = sh(1)[1];
      const heads = a.heads as number;
      const d = c / heads;
      const scale = a.scale as number;
      const sc = new Float64Array(nk);
      for (let b0 = 0; b0 < b; b0++) {
        for (let hh = 0; hh < heads; hh++) {
          for (let i = 0; i < nq; i++) {
            let mx = -Infinity;
            const lim = a.causal === 1 ? Math.min(nk, i + 1) : nk;
            for (let j = 0; j < lim; j++) {
              let s = 0;
              for (let p = 0; p < d; p++) {
                s += x[(b0 * nq + i) * c + hh * d + p] * ins[1][(b0 * nk + j) * c + hh * d + p];
              }
              sc[j] = s * scale;
              mx = Math.max(mx, sc[j]);
            }
            let z = 0;
            for (let j = 0; j < lim; j++) z += sc[j] = Math.exp(sc[j] - mx);
            for (let p = 0; p < d; p++) {
              let s = 0;
              for (let j = 0; j < lim; j++) s += sc[j] * ins[2][(b0 * nk + j) * c + hh * d + p];
              out[(b0 * nq + i) * c + hh * d + p] = s / z;
            }
          }
        }
      }
      return out;
    }
    case "group_norm": {
      const s = sh(0);
      const [n, c] = s;
      const groups = a.groups as number;
      const plane = numel(s.slice(2));
      const len = (c / groups) * plane;
      for (let b0 = 0; b0 < n; b0++) {
        for (let gi = 0; gi < groups; gi++) {
          const base = (b0 * c + gi * (c / groups)) * plane;
          let m = 0;
          for (let i = 0; i < len; i++) m += x[base + i];
          m /= len;
          let v = 0;
          for (let i = 0; i < len; i++) v += (x[base + i] - m) ** 2;
          const inv = 1 / Math.sqrt(v / len + (a.eps as number));
          for (let i = 0; i < len; i++) {
            const ch = gi * (c / groups) + Math.floor(i / plane);
            let y = (x[base + i] - m) * inv * ins[1][ch] + ins[2][ch];
            if (a.silu === 1) y = y / (1 + Math.exp(-y));
            out[base + i] = y;
          }
        }
      }
      return out;
    }
    case "layer_norm": {
      const s = sh(0);
      const c = s[s.length - 1];
      for (let r = 0; r < x.length / c; r++) {
        let m = 0;
        for (let i = 0; i < c; i++) m += x[r * c + i];
        m /= c;
        let v = 0;
        for (let i = 0; i < c; i++) v += (x[r * c + i] - m) ** 2;
        const inv = 1 / Math.sqrt(v / c + (a.eps as number));
        for (let i = 0; i < c; i++) out[r * c + i] = (x[r * c + i] - m) * inv * ins[1][i] + ins[2][i];
      }
      return out;
    }
    case "unary": {
      const f = UNARY[a.kind as string];
      for (let i = 0; i < x.length; i++) out[i] = f(x[i]);
      return out;
    }
    case "geglu": {
      const c = outShape[outShape.length - 1];
      for (let r = 0; r < out.length / c; r++) {
        for (let i = 0; i < c; i++) out[r * c + i] = x[r * 2 * c + i] * UNARY.gelu(x[r * 2 * c + c + i]);
      }
      return out;
    }
    case "softmax": {
      const s = sh(0);
      const c = s[s.length - 1];
      for (let r = 0; r < x.length / c; r++) {
        let mx = -Infinity;
        for (let i = 0; i < c; i++) mx = Math.max(mx, x[r * c + i] * (a.scale as number));
        let z = 0;
        for (let i = 0; i < c; i++) z += Math.exp(x[r * c + i] * (a.scale as number) - mx);
        for (let i = 0; i < c; i++) out[r * c + i] = Math.exp(x[r * c + i] * (a.scale as number) - mx) / z;
      }
      return out;
    }
    case "binary": {
      const sa = sh(0), sb = sh(1);
      const r = outShape.length;
      const pa = [...new Array(r - sa.length).fill(1), ...sa];
      const pb = [...new Array(r - sb.length).fill(1), ...sb];
      const sta = strides(pa).map((st, i) => (pa[i] === 1 ? 0 : st));
      const stb = strides(pb).map((st, i) => (pb[i] === 1 ? 0 : st));
      const sto = strides(outShape);
      const f = {
        add: (p: number, q: number) => p + q,
        sub: (p: number, q: number) => p - q,
        mul: (p: number, q: number) => p * q,
        div: (p: number, q: number) => p / q,
      }[a.kind as "add"];
      for (let i = 0; i < out.length; i++) {
        let ia = 0, ib = 0, rem = i;
        for (let d = 0; d < r; d++) {
          const idx = Math.floor(rem / sto[d]);
          rem -= idx * sto[d];
          ia += idx * sta[d];
          ib += idx * stb[d];
        }
        out[i] = f(x[ia], ins[1][ib]);
      }
      return out;
    }
    case "scale":
      for (let i = 0; i < x.length; i++) out[i] = x[i] * (a.mul as number) + (a.add as number);
      return out;
    case "concat": {
      const ax = a.axis as number;
      const s0 = sh(0), s1 = sh(1);
      const outer = numel(s0.slice(0, ax));
      const i0 = numel(s0.slice(ax)), i1 = numel(s1.slice(ax));
      for (let o = 0; o < outer; o++) {
        out.set(x.subarray(o * i0, (o + 1) * i0), o * (i0 + i1));
        out.set(ins[1].subarray(o * i1, (o + 1) * i1), o * (i0 + i1) + i0);
      }
      return out;
    }
    case "upsample_nearest": {
      const [n, c, h, w] = sh(0);
      const f = a.factor as number;
      for (let p = 0; p < n * c; p++) {
        for (let y = 0; y < h * f; y++) {
          for (let xx = 0; xx < w * f; xx++) {
            out[(p * h * f + y) * w * f + xx] = x[(p * h + Math.floor(y / f)) * w + Math.floor(xx / f)];
          }
        }
      }
      return out;
    }
    case "timestep_embedding": {
      const dim = a.dim as number;
      const half = dim / 2;
      for (let b0 = 0; b0 < x.length; b0++) {
        for (let i = 0; i < half; i++) {
          const arg = x[b0] * Math.exp((-Math.log(a.max_period as number) * i) / half);
          const [first, second] = a.flip === 1 ? [Math.sin(arg), Math.cos(arg)] : [Math.cos(arg), Math.sin(arg)];
          out[b0 * dim + i] = first;
          out[b0 * dim + half + i] = second;
        }
      }
      return out;
    }
    case "permute": {
      const s = sh(0);
      const perm = a.perm as readonly number[];
      const sti = strides(s);
      const sto = strides(outShape);
      for (let i = 0; i < out.length; i++) {
        let src = 0, rem = i;
        for (let d = 0; d < outShape.length; d++) {
          const idx = Math.floor(rem / sto[d]);
          rem -= idx * sto[d];
          src += idx * sti[perm[d]];
        }
        out[i] = x[src];
      }
      return out;
    }
    case "gather_rows": {
      const d = sh(0)[1];
      const idx = ins[1];
      for (let r = 0; r < idx.length; r++) out.set(x.subarray(idx[r] * d, (idx[r] + 1) * d), r * d);
      return out;
    }
    case "copy":
      out.set(x);
      return out;
    case "reshape":
      return x instanceof Int32Array ? x : Float32Array.from(x);
    case "slice": {
      const s = sh(0);
      const ax = a.axis as number;
      const outer = numel(s.slice(0, ax));
      const inner = numel(s.slice(ax + 1));
      const len = outShape[ax];
      for (let o = 0; o < outer; o++) {
        const from = (o * s[ax] + (a.start as number)) * inner;
        out.set(x.subarray(from, from + len * inner), o * len * inner);
      }
      return out;
    }
    default:
      throw new Error(`naiveEval: op ${op.kind} not supported`);
  }
}
