import process from "node:process";
import { openLdmWeights } from "../models/weights/mod.ts";
import { mergeWeight } from "../models/patch_weights.ts";
const file = await openLdmWeights(".cache/sd15-random-f16.safetensors");
const names = [...file.tensors.keys()].filter((n) => /transformer_blocks.0.(ff.net.0.proj|attn1.to_q|ff.net.2).weight$/.test(n) && n.startsWith("model."));
const c0 = process.cpuUsage(); const t0 = performance.now();
for (const name of names) {
  const info = file.get(name); const [out, inn] = info.shape; const r = 8;
  const up = { name: "u", dtype: "f32", shape: [out, r], source: { kind: "data" as const, data: new Float32Array(out * r).fill(0.01) } };
  const down = { name: "d", dtype: "f32", shape: [r, inn], source: { kind: "data" as const, data: new Float32Array(r * inn).fill(0.01) } };
  mergeWeight(info, [{ kind: "low_rank", target: name, up, down, scale: 1 }]);
}
const c = process.cpuUsage(c0); console.log((c.user + c.system) / 1e3, performance.now() - t0);
