/**
 * The one-Conv ONNX model `bench conv --vs onnxruntime` writes: its protobuf structure (read back by a
 * small reader here), and, where onnxruntime-node is installed (`.cache/onnxruntime-node-*`, made by the
 * first `bench conv --vs onnxruntime`), onnxruntime's output against a direct convolution.
 */

import { assert, assertEquals } from "../tests/assert.ts";
import { convModel, loadOnnxruntime, ONNXRUNTIME, relativeMaxError, timeOnnxConv } from "./onnxruntime.ts";

/** Reads protobuf fields: field number → values (numbers for varints, bytes for length-delimited). */
function fields(buf: Uint8Array): Map<number, (number | Uint8Array)[]> {
  const out = new Map<number, (number | Uint8Array)[]>();
  let i = 0;
  const varint = () => {
    let v = 0, mul = 1;
    for (;;) {
      const b = buf[i++];
      v += (b & 0x7f) * mul;
      mul *= 128;
      if (!(b & 0x80)) return v;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const field = key >>> 3, wire = key & 7;
    let value: number | Uint8Array;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const n = varint();
      value = buf.subarray(i, i + n);
      i += n;
    } else throw new Error(`unexpected wire type ${wire}`);
    out.set(field, [...(out.get(field) ?? []), value]);
  }
  return out;
}

const text = (v: number | Uint8Array) => new TextDecoder().decode(v as Uint8Array);

/** A direct 3x3, pad 1 convolution in float64. */
function directConv(
  s: { batch: number; cin: number; cout: number; h: number; w: number },
  w: Float32Array,
  b: Float32Array,
  x: Float32Array,
): Float32Array {
  const y = new Float32Array(s.batch * s.cout * s.h * s.w);
  for (let n = 0; n < s.batch; n++) {
    for (let o = 0; o < s.cout; o++) {
      for (let r = 0; r < s.h; r++) {
        for (let c = 0; c < s.w; c++) {
          let acc = b[o];
          for (let i = 0; i < s.cin; i++) {
            for (let ky = 0; ky < 3; ky++) {
              for (let kx = 0; kx < 3; kx++) {
                const yy = r + ky - 1, xx = c + kx - 1;
                if (yy < 0 || yy >= s.h || xx < 0 || xx >= s.w) continue;
                acc += w[((o * s.cin + i) * 3 + ky) * 3 + kx] * x[((n * s.cin + i) * s.h + yy) * s.w + xx];
              }
            }
          }
          y[((n * s.cout + o) * s.h + r) * s.w + c] = acc;
        }
      }
    }
  }
  return y;
}

const S = { batch: 2, cin: 3, cout: 5, h: 6, w: 7 };
const W = Float32Array.from({ length: S.cout * S.cin * 9 }, (_, i) => Math.sin(i * 1.3));
const B = Float32Array.from({ length: S.cout }, (_, i) => 0.1 * i - 0.2);
const X = Float32Array.from({ length: S.batch * S.cin * S.h * S.w }, (_, i) => Math.cos(i * 0.7));

Deno.test("onnxruntime: the one-Conv model's protobuf", () => {
  const model = fields(convModel(S, W, B));
  assertEquals(model.get(1), [8]); // ir_version
  const opset = fields(model.get(8)![0] as Uint8Array);
  assertEquals(opset.get(2), [17]);
  const graph = fields(model.get(7)![0] as Uint8Array);
  const node = fields(graph.get(1)![0] as Uint8Array);
  assertEquals(node.get(1)!.map(text), ["x", "w", "b"]);
  assertEquals(node.get(4)!.map(text), ["Conv"]);
  const attrs = node.get(5)!.map((a) => fields(a as Uint8Array));
  assertEquals(attrs.map((a) => [text(a.get(1)![0]), a.get(8)]), [
    ["kernel_shape", [3, 3]],
    ["pads", [1, 1, 1, 1]],
    ["strides", [1, 1]],
  ]);
  const [w, b] = graph.get(5)!.map((t) => fields(t as Uint8Array));
  assertEquals(w.get(1), [5, 3, 3, 3]);
  assertEquals(text(w.get(8)![0]), "w");
  const raw = w.get(9)![0] as Uint8Array;
  assertEquals(new Float32Array(raw.slice().buffer), W);
  assertEquals(b.get(1), [5]);
  const input = fields(graph.get(11)![0] as Uint8Array);
  assertEquals(text(input.get(1)![0]), "x");
});

const installed = (() => {
  try {
    Deno.statSync(new URL(`../.cache/onnxruntime-node-${ONNXRUNTIME.version}/node_modules/`, import.meta.url));
    return true;
  } catch {
    return false;
  }
})();
if (!installed) {
  console.log(
    "bench/onnxruntime_test.ts: onnxruntime's run skipped: onnxruntime-node is not installed " +
      "(the first `deno task bench conv --vs onnxruntime` installs it)",
  );
}

Deno.test({
  name: "onnxruntime: runs the model and matches a direct convolution" +
    (installed ? "" : " (needs onnxruntime-node: the first `deno task bench conv --vs onnxruntime` installs it)"),
  ignore: !installed,
  fn: async () => {
    const { ort } = await loadOnnxruntime();
    const { ms, output } = await timeOnnxConv(ort, S, W, B, X, { threads: 1, runs: 1 });
    assert(ms >= 0);
    const err = relativeMaxError(output, directConv(S, W, B, X));
    assert(err < 1e-5, `relative error ${err}`);
  },
});
