import assert from "node:assert/strict";
import { loadBackend } from "../backends/mod.ts";
import { compile, Graph, plan } from "./mod.ts";

const LAYERS = 4;
const WIDTH = 1024;
/** One layer's f32 weight [WIDTH, WIDTH]: 4 MiB. */
const LAYER_BYTES = WIDTH * WIDTH * 4;

/** Small deterministic values, so that the stacked layers stay finite. */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 4294967296 - 0.5) / 16;
  }
  return out;
}

/** A file of LAYERS weights, one after the other, and a graph of LAYERS linear layers reading them. */
async function layerStack(): Promise<{ path: string; graph: () => Graph }> {
  const path = await Deno.makeTempFile({ suffix: ".bin" });
  const data = new Float32Array(LAYERS * WIDTH * WIDTH);
  for (let l = 0; l < LAYERS; l++) data.set(values(WIDTH * WIDTH, l + 1), l * WIDTH * WIDTH);
  await Deno.writeFile(path, new Uint8Array(data.buffer));
  const graph = () => {
    const g = new Graph();
    let x = g.input("x", [8, WIDTH]);
    for (let l = 0; l < LAYERS; l++) {
      const w = g.constant(`w${l}`, [WIDTH, WIDTH], "f32", {
        kind: "file",
        path,
        offset: l * LAYER_BYTES,
        bytes: LAYER_BYTES,
      });
      x = g.linear(x, w);
    }
    g.output("y", x);
    return g;
  };
  return { path, graph };
}

/** The process's resident file-mapped bytes (Linux), or null where /proc is missing. */
function rssFile(): number | null {
  try {
    const m = /^RssFile:\s+(\d+) kB/m.exec(Deno.readTextFileSync("/proc/self/status"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

Deno.test("planner: weights past residentWeightBytes are bound through stream file buffers, first reads kept", async () => {
  const { path, graph } = await layerStack();
  try {
    const files = (resident?: number) =>
      plan(graph(), { residentWeightBytes: resident }).bindings.filter((b) => b.kind === "file");
    assert.deepEqual(files().map((b) => [b.offset, b.bytes, b.stream ?? false]), [[0, LAYERS * LAYER_BYTES, false]]);
    // Room for one and a half layers: the first layer stays, the other three stream.
    assert.deepEqual(files(1.5 * LAYER_BYTES).map((b) => [b.offset, b.bytes, b.stream ?? false]), [
      [0, LAYER_BYTES, false],
      [LAYER_BYTES, (LAYERS - 1) * LAYER_BYTES, true],
    ]);
    assert.deepEqual(files(0).map((b) => b.stream), [true]);
    assert.deepEqual(files(Infinity).map((b) => b.stream), [undefined]);
    assert.throws(() => files(-1), /residentWeightBytes must be >= 0/);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("cpu backend: streamed weights give the same output and leave the process without their pages", async () => {
  const backend = await loadBackend("cpu", { threads: 2 });
  const { path, graph } = await layerStack();
  const x = values(8 * WIDTH, 99);
  try {
    const run = async (resident?: number) => {
      const program = compile(graph(), backend, { residentWeightBytes: resident });
      try {
        const before = rssFile();
        const { y } = await program.run({ x });
        const after = rssFile();
        const grew = before === null || after === null ? null : after - before;
        // A second run reads the released pages again: same result.
        assert.deepEqual((await program.run({ x })).y, y);
        return { y, grew };
      } finally {
        program.dispose();
      }
    };
    const whole = await run();
    const streamed = await run(0);
    assert.deepEqual(streamed.y, whole.y);
    if (whole.grew !== null && streamed.grew !== null) {
      const weights = LAYERS * LAYER_BYTES;
      assert.ok(whole.grew >= 0.9 * weights, `resident weights: RssFile grew ${whole.grew} bytes`);
      assert.ok(streamed.grew < 0.25 * weights, `streamed weights: RssFile grew ${streamed.grew} bytes`);
    }
  } finally {
    await Deno.remove(path);
  }
});
