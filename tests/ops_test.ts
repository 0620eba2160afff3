/**
 * Op-level tests: every case of tests/fixtures/ops (PyTorch references, see
 * tools/gen_fixtures.py) is built as a one-op graph, compiled and run on the
 * CPU backend under every ISA this machine has, and on the OpenCL backend when
 * this machine has an OpenCL device ("ignored" otherwise), and compared with
 * the reference under the bound stated for its op below (the same for both).
 *
 * Error measure (see compare() in conv_reference.ts), per element:
 *   |got - want| <= rel * max|want| + elem * |want|
 * "exact" means bit-for-bit (Object.is, so -0 and +0 differ).
 */

import { assert } from "./assert.ts";
import { chooseWinograd, compile, Graph, type InputData, type Tensor, type UnaryKind } from "../engine/mod.ts";
import { ALL_ISAS, backendFor, type Fixture, listFixtures, loadFixture, machineIsas, toF32 } from "./fixtures.ts";
import { bf16BitsToF32, f16BitsToF32, f32ToF16Bits } from "../backends/float16.ts";
import { type Backend, loadBackend } from "../backends/mod.ts";
import { compare, indexOf, WINOGRAD_REL_BOUND } from "./conv_reference.ts";
import { optionalBackend } from "../backends/test_helpers.ts";

// ---- bounds -------------------------------------------------------------------

/**
 * exact "bits": bit-for-bit (Object.is: -0 and +0 differ, as a copy must keep the sign);
 * exact "value": equal as numbers (-0 == +0).
 */
type Bound = { exact: "bits" | "value"; why: string } | { exact?: undefined; rel: number; elem?: number; why: string };

/** f32 epsilon (2^-23): one ulp of a value in [1, 2). */
const EPS = 2 ** -23;

/**
 * Bounds per op (and per kind for unary/binary). The references are float64
 * results from the very values the backend sees, so every error here is the
 * backend's own f32 arithmetic.
 */
const BOUNDS: Record<string, Bound> = {
  conv2d: {
    rel: 1e-5,
    why: "f32 dot products of length Ci*KH*KW <= 1152 with N(0,1/fan_in) weights: rounding grows ~sqrt(K)*eps " +
      "relative to the output scale (~4e-6 at K=1152 in the worst order); 1e-5 still catches any wrong tap (>1e-2)",
  },
  linear: { rel: 1e-5, why: "f32 dot products of length K <= 1280, same argument as conv2d" },
  bmm: { rel: 1e-5, why: "f32 dot products of length K <= 77, N(0,1) operands" },
  attention: {
    rel: 1e-5,
    why: "two f32 reductions (q.k over D <= 512, p.v over Nk <= 77) plus exp and an online-softmax rescale",
  },
  group_norm: {
    rel: 1e-5,
    why: "mean/variance reductions over up to 720 values, some with means of +-40 (cancellation if done " +
      "as E[x^2]-E[x]^2 in f32 would be ~1e-3), then an affine map and SiLU",
  },
  layer_norm: { rel: 1e-5, why: "same reductions as group_norm over rows of <= 768, one case with mean 30" },
  "unary:relu": { exact: "value", why: "max(x, 0) is exact (the sign of a zero result is not specified)" },
  "unary:leaky_relu": { rel: 0, elem: EPS, why: "one multiply by 0.2 (correctly rounded: <= 1/2 ulp; 1 ulp allowed)" },
  "unary:silu": {
    rel: 1e-7,
    elem: 4e-6,
    why: "x*sigmoid(x) with a vectorised exp (polynomial, ~1e-7..1e-6 relative); inputs up to +-100 must not overflow",
  },
  "unary:sigmoid": { rel: 1e-7, elem: 4e-6, why: "1/(1+exp(-x)), vectorised exp" },
  "unary:quick_gelu": { rel: 1e-7, elem: 4e-6, why: "x*sigmoid(1.702x), vectorised exp" },
  "unary:tanh": {
    rel: 1e-7,
    elem: 4e-6,
    why: "vectorised tanh; the rel term covers cancellation near 0 in exp-based forms; +-100 must not give NaN",
  },
  "unary:gelu": {
    rel: 1e-7,
    elem: 4e-6,
    why: "exact GELU 0.5x(1+erf(x/sqrt2)); f32 erf approximations reach ~1e-6 relative; 1+erf cancels for " +
      "x < -3, which the rel term (1e-5 absolute at max|y| = 100) covers. gelu vs gelu_tanh differ by 4.7e-4, " +
      "far outside this bound",
  },
  "unary:gelu_tanh": { rel: 1e-7, elem: 4e-6, why: "0.5x(1+tanh(...)), vectorised tanh" },
  geglu: { rel: 1e-7, elem: 4e-6, why: "one multiply on top of exact GELU (see unary:gelu)" },
  softmax: {
    rel: 1e-6,
    elem: 1e-5,
    why: "exp of (x - max)*scale and a sum of <= 1031 terms: ~1e-6 relative per probability plus the sum's " +
      "rounding; without the max subtraction the large-logit case overflows",
  },
  "binary:add": { exact: "value", why: "a correctly rounded f32 add equals the f32-rounded float64 reference" },
  "binary:sub": { exact: "value", why: "as add" },
  "binary:mul": { exact: "value", why: "as add (f32 x f32 is exact in float64)" },
  "binary:div": { rel: 0, elem: 2 * EPS, why: "IEEE division is exact-rounded; 2 ulp allows reciprocal+Newton" },
  scale: {
    rel: EPS,
    elem: 2 * EPS,
    why: "x*mul+add: with or without FMA, and mul rounded to f32, <= ~2 ulp of the result, plus 1 ulp of the " +
      "largest value for the cancellation when add != 0",
  },
  concat: { exact: "bits", why: "data movement" },
  upsample_nearest: { exact: "bits", why: "data movement" },
  permute: { exact: "bits", why: "data movement" },
  slice: { exact: "bits", why: "data movement" },
  reshape: { exact: "bits", why: "a view (and a permute in one case): data movement" },
  gather_rows: { exact: "bits", why: "row copies; f16/bf16 rows upcast exactly" },
  copy: { exact: "bits", why: "f16/bf16 -> f32 is exact (subnormals, infinities and -0 included)" },
  timestep_embedding: {
    rel: 2.5e-4,
    why: "arguments t*f reach 999 rad: rounding the argument to f32 costs ulp(999)/2 = 3.1e-5 rad and a 1-2 ulp " +
      "error in f = exp(...) another 999*1.2e-7 = 1.2e-4 rad; the outputs are in [-1, 1]. ldm itself computes " +
      "in f32 and is this far from exact",
  },
};

function boundFor(f: Fixture): Bound {
  const key = f.op === "unary" || f.op === "binary" ? `${f.op}:${f.attrs.kind}` : f.op;
  const b = BOUNDS[key];
  if (!b) throw new Error(`${f.name}: no error bound stated for ${key}`);
  return b;
}

// ---- graph building -----------------------------------------------------------------

interface Built {
  g: Graph;
  feeds: Record<string, InputData>;
}

/** Builds the one-op graph a fixture describes. */
export function buildFixtureGraph(f: Fixture): Built {
  const g = new Graph();
  const feeds: Record<string, InputData> = {};
  const t: Tensor[] = f.inputs.map((a) => {
    if (a.kind === "input") {
      feeds[a.name] = a.data as Float32Array | Int32Array;
      return g.input(a.name, a.shape, a.dtype);
    }
    return g.constant(a.name, a.shape, a.dtype, { kind: "data", data: a.data });
  });
  const at = f.attrs;
  const num = (k: string): number => {
    const v = at[k];
    if (typeof v !== "number") throw new Error(`${f.name}: attr ${k} missing`);
    return v;
  };
  let y: Tensor;
  switch (f.op) {
    case "conv2d":
      y = g.conv2d(t[0], t[1], t[2], { stride: num("stride"), padding: num("padding") });
      break;
    case "linear":
      y = g.linear(t[0], t[1], t[2]);
      break;
    case "bmm":
      y = g.bmm(t[0], t[1], { transB: at.transB as boolean, alpha: num("alpha") });
      break;
    case "attention":
      y = g.attention(t[0], t[1], t[2], {
        heads: num("heads"),
        causal: at.causal as boolean,
        scale: at.scale as number | undefined,
      });
      break;
    case "group_norm":
      y = g.groupNorm(t[0], t[1], t[2], { groups: num("groups"), eps: num("eps"), silu: at.silu as boolean });
      break;
    case "layer_norm":
      y = g.layerNorm(t[0], t[1], t[2], { eps: num("eps") });
      break;
    case "unary":
      y = g.unary(at.kind as UnaryKind, t[0]);
      break;
    case "geglu":
      y = g.geglu(t[0]);
      break;
    case "softmax":
      y = g.softmax(t[0], { scale: num("scale") });
      break;
    case "binary":
      y = g.binary(at.kind as "add" | "sub" | "mul" | "div", t[0], t[1]);
      break;
    case "scale":
      y = g.scale(t[0], num("mul"), num("add"));
      break;
    case "concat":
      y = g.concat(t, num("axis"));
      break;
    case "upsample_nearest":
      y = g.upsampleNearest(t[0], num("factor"));
      break;
    case "timestep_embedding":
      // Fixture "flip" = sin first = the graph's flipSinToCos: false (attr flip 1).
      y = g.timestepEmbedding(t[0], num("dim"), { flipSinToCos: !at.flip, maxPeriod: num("maxPeriod") });
      break;
    case "permute":
      y = g.permute(t[0], at.perm as number[]);
      break;
    case "gather_rows":
      y = g.gatherRows(t[0], t[1]);
      break;
    case "copy":
      y = g.copy(t[0]);
      break;
    case "slice":
      y = g.slice(t[0], num("axis"), num("start"), num("length"));
      break;
    case "reshape":
      y = g.reshape(t[0], at.shape as number[]);
      if (at.thenPermute) y = g.permute(y, at.thenPermute as number[]);
      break;
    default:
      throw new Error(`${f.name}: no graph builder for op ${f.op}`);
  }
  const want = f.outputs[0].shape;
  if (y.shape.length !== want.length || y.shape.some((d, i) => d !== want[i])) {
    throw new Error(`${f.name}: graph gives [${y.shape}], fixture expects [${want}]`);
  }
  g.output(f.outputs[0].name, y);
  return { g, feeds };
}

// ---- the tests ----------------------------------------------------------------------

/** Conv variants: the plan options and the bound that goes with each. */
function convVariants(
  f: Fixture,
  backend?: Backend,
): { name: string; opts: Parameters<typeof compile>[2]; bound: Bound }[] {
  const base = BOUNDS.conv2d;
  const out: { name: string; opts: Parameters<typeof compile>[2]; bound: Bound }[] = [
    { name: "direct", opts: { winograd: "off", conv: "direct" }, bound: base },
    { name: "im2col", opts: { winograd: "off", conv: "im2col" }, bound: base },
  ];
  // "auto" lowers eligible 3x3 stride-1 convs to Winograd; hold it to that tile size's bound.
  const [co, ci, kh, kw] = f.inputs[1].shape;
  const [n, , oh, ow] = f.outputs[0].shape;
  const eligible = kh === 3 && kw === 3 && f.attrs.stride === 1;
  const m = eligible ? chooseWinograd(n, ci, co, oh, ow, "auto", backend?.capabilities) : 0;
  out.push({
    name: m ? `auto=F(${m},3)` : "auto",
    opts: { winograd: "auto" },
    bound: m ? { rel: WINOGRAD_REL_BOUND[m], why: `Winograd F(${m},3), see conv_reference.ts` } : base,
  });
  return out;
}

/** A number for messages: -0 shown as such, full precision. */
function num(v: number): string {
  return Object.is(v, -0) ? "-0" : String(v);
}

function check(f: Fixture, label: string, got: Float32Array, bound: Bound): void {
  const want = f.outputs[0].data as Float32Array;
  const shape = f.outputs[0].shape;
  if (got.length !== want.length) throw new Error(`${f.name} [${label}]: ${got.length} values, want ${want.length}`);
  if (bound.exact) {
    const same = bound.exact === "bits" ? Object.is : (a: number, b: number) => a === b;
    for (let i = 0; i < want.length; i++) {
      if (!same(got[i], want[i])) {
        let n = 0;
        for (let j = 0; j < want.length; j++) if (!same(got[j], want[j])) n++;
        throw new Error(
          `${f.name} [${label}]: not exact (${bound.exact}: ${bound.why}); first mismatch at ${indexOf(shape, i)}: ` +
            `got ${num(got[i])} want ${num(want[i])}; ${n} of ${want.length} differ`,
        );
      }
    }
    return;
  }
  const r = compare(got, want, bound.rel, bound.elem ?? 0);
  if (r.failures > 0) {
    throw new Error(
      `${f.name} [${label}]: ${r.failures} of ${want.length} values out of bound ` +
        `(rel ${bound.rel}${bound.elem ? ` + elem ${bound.elem}` : ""}: ${bound.why}); ` +
        `max err / max|ref| = ${r.rel.toExponential(3)} (max|ref| ${r.maxAbsRef.toPrecision(4)}); worst at ` +
        `${indexOf(shape, r.worst)}: got ${num(r.got)} want ${num(r.want)}`,
    );
  }
}

/** Observed error per case and variant (printed with SDFLOW_TEST_VERBOSE=1). */
const observed: string[] = [];

const CASES = listFixtures();
const ISAS = await machineIsas();
for (const isa of ALL_ISAS) {
  if (!ISAS.includes(isa)) console.log(`ops_test: this CPU has no ${isa}: its kernels are not tested here`);
}

Deno.test("fixture loader: decodes f16/bf16 and the index matches the directory", () => {
  assert(CASES.length >= 100, `only ${CASES.length} fixture cases`);
  const f16 = loadFixture("copy_f16_to_f32");
  const up = toF32(f16.inputs[0].data, "f16");
  const out = f16.outputs[0].data as Float32Array;
  for (let i = 0; i < out.length; i++) assert(Object.is(up[i], out[i]), `f16 decode at ${i}: ${up[i]} vs ${out[i]}`);
  const bf = loadFixture("copy_bf16_to_f32");
  const upb = toF32(bf.inputs[0].data, "bf16");
  const outb = bf.outputs[0].data as Float32Array;
  for (let i = 0; i < outb.length; i++) assert(Object.is(upb[i], outb[i]), `bf16 decode at ${i}`);
  for (let h = 0; h < 0x10000; h++) {
    const v = f16BitsToF32(h);
    if (!Number.isNaN(v)) assert(f32ToF16Bits(v) === h, `f16 round trip of bits ${h.toString(16)}`);
  }
  assert(bf16BitsToF32(0x3f80) === 1 && f16BitsToF32(0x3c00) === 1);
  // Every op of the IR (less the lowered Winograd stages) has fixtures.
  const ops = new Set(CASES.map((n) => loadFixture(n).op).map((op) => op === "linear" ? "matmul" : op));
  for (
    const op of [
      "conv2d",
      "matmul",
      "bmm",
      "attention",
      "group_norm",
      "layer_norm",
      "unary",
      "geglu",
      "softmax",
      "binary",
      "scale",
      "concat",
      "upsample_nearest",
      "timestep_embedding",
      "permute",
      "gather_rows",
      "copy",
      "slice",
      "reshape",
    ]
  ) assert(ops.has(op), `no fixture for op ${op}`);
});

/** Every fixture on `backend`; `isa` labels the steps. */
async function runFixtures(t: Deno.TestContext, backend: Backend, isa: string): Promise<void> {
  {
    for (const name of CASES) {
      const f = loadFixture(name);
      const variants = f.op === "conv2d"
        ? convVariants(f)
        : [{ name: "", opts: {} as Parameters<typeof compile>[2], bound: boundFor(f) }];
      for (const v of variants) {
        const label = v.name ? `${isa} ${v.name}` : isa;
        await t.step(`${name} [${label}]`, async () => {
          const { g, feeds } = buildFixtureGraph(f);
          const program = compile(g, backend, v.opts);
          try {
            const out = await program.run(feeds);
            const got = out[f.outputs[0].name];
            assert(got, `${name}: no output ${f.outputs[0].name}`);
            if (!v.bound.exact) {
              const r = compare(got, f.outputs[0].data as Float32Array, v.bound.rel, v.bound.elem ?? 0);
              observed.push(`${name} [${label}] ${r.rel.toExponential(2)} (bound ${v.bound.rel})`);
            }
            check(f, label, got, v.bound);
          } finally {
            program.dispose();
          }
        });
      }
    }
    // SDFLOW_TEST_VERBOSE=1 prints every observed error (to check the bounds' margins).
    if (Deno.env.get("SDFLOW_TEST_VERBOSE")) console.log(observed.splice(0).join("\n"));
  }
}

for (const isa of ISAS) {
  Deno.test(`ops vs PyTorch fixtures [${isa}]`, async (t) => runFixtures(t, await backendFor(isa), isa));
}

Deno.test("ops vs PyTorch fixtures [opencl]", async (t) => {
  const { backend, why } = await optionalBackend("opencl");
  if (!backend) return console.log(`ignored: opencl (${why})`);
  await runFixtures(t, backend, "opencl");
});

// ---- the other backends: every fixture, the same bounds ----------------------------------

/**
 * The GPU backends available here (an absent adapter is reported, not failed). WebGPU runs twice: with the
 * kernels it picks for this adapter, and with the workgroup-memory GEMM/attention kernels of real GPUs
 * (`tiled`, the GEMM-based ops only), so both kernel families are checked on a software device.
 */
const GPU_BACKENDS: { name: string; backend?: Backend; why?: string; only?: RegExp }[] = [];
for (
  const [name, label, opts, only] of [
    ["webgpu", "webgpu", {}, undefined],
    ["webgpu", "webgpu tiled", { webgpu: { gemm: "tiled" as const } }, /^(conv2d|linear|bmm|attention)_/],
  ] as const
) {
  try {
    GPU_BACKENDS.push({ name: label, backend: await loadBackend(name, { threads: 2, ...opts }), only });
  } catch (e) {
    GPU_BACKENDS.push({ name: label, why: (e as Error).message });
  }
}

for (const { name: bname, backend, why, only } of GPU_BACKENDS) {
  Deno.test({
    name: `ops vs PyTorch fixtures [${bname}]${why ? ` (ignored: ${why})` : ""}`,
    ignore: !backend,
    async fn(t) {
      for (const name of CASES.filter((c) => !only || only.test(c))) {
        const f = loadFixture(name);
        // The backend lowers convs its own way (capabilities.conv): Winograd's bound only where it chose Winograd.
        const variants = f.op === "conv2d"
          ? convVariants(f, backend!).filter((v) => v.name !== "im2col")
          : [{ name: "", opts: {} as Parameters<typeof compile>[2], bound: boundFor(f) }];
        for (const v of variants) {
          const label = v.name ? `${bname} ${v.name}` : bname;
          await t.step(`${name} [${label}]`, async () => {
            const { g, feeds } = buildFixtureGraph(f);
            const program = compile(g, backend!, v.opts);
            try {
              const got = (await program.run(feeds))[f.outputs[0].name];
              assert(got, `${name}: no output ${f.outputs[0].name}`);
              check(f, label, got, v.bound);
            } finally {
              program.dispose();
            }
          });
        }
      }
    },
  });
}
