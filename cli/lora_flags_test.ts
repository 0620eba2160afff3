/**
 * sd.cpp's LoRA flags: `<lora:name:multiplier>` prompt tags with `--lora-model-dir` (removed from the
 * prompt, files found as sd.cpp finds them, repeated tags summed), `--lora-apply-mode`, and a bad LoRA
 * file through the whole CLI (one line on stderr, exit code 1, no stack trace).
 */

import assert from "node:assert/strict";
import { extractLoraTags, graphFromSdcppFlags, UsageError } from "./sdcpp.ts";
import { tinyCheckpointPath } from "../plugins/nodes/checkpoint.ts";
import { encodeSafetensors } from "../models/weights/mod.ts";

const root = new URL("../", import.meta.url).pathname;

async function loraDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-lora-dir-" });
  await Deno.writeFile(`${dir}/style.safetensors`, new Uint8Array(16));
  await Deno.writeFile(`${dir}/exact.ckpt`, new Uint8Array(16));
  return dir;
}

Deno.test("extractLoraTags: tags leave the prompt, names resolve as in sd.cpp, repeats add up", async () => {
  const dir = await loraDir();
  try {
    const r = extractLoraTags("a cat<lora:style:0.5>, <lora:exact.ckpt:1> sitting<lora:style:0.25>", dir);
    assert.equal(r.prompt, "a cat,  sitting");
    assert.deepEqual(r.loras, [
      { path: `${dir}/style.safetensors`, multiplier: 0.75 },
      { path: `${dir}/exact.ckpt`, multiplier: 1 },
    ]);
    const bad = extractLoraTags("x<lora:style:abc>", dir);
    assert.equal(bad.prompt, "x");
    assert.deepEqual(bad.loras, []);
    assert.match(bad.notes[0], /not a number/);
    assert.throws(() => extractLoraTags("<lora:missing:1>", dir), UsageError);
    assert.deepEqual(extractLoraTags(`<lora:${dir}/exact.ckpt:2>`, "/elsewhere").loras, [
      { path: `${dir}/exact.ckpt`, multiplier: 2 },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("graphFromSdcppFlags: one lora node per file, chained; without --lora-model-dir tags stay", async () => {
  const dir = await loraDir();
  try {
    const { file } = graphFromSdcppFlags({
      model: "m.safetensors",
      prompt: "a cat<lora:style:0.5><lora:exact.ckpt:1>",
      "lora-model-dir": dir,
      "lora-apply-mode": "at_runtime",
    });
    const n = file.nodes as Record<string, { type: string; inputs: Record<string, unknown> }>;
    assert.equal(n.lora.type, "lora");
    assert.deepEqual(n.lora.inputs.model, { from: "checkpoint.model" });
    assert.deepEqual(n.lora_2.inputs.model, { from: "lora.model" });
    assert.equal(n.lora_2.inputs.strength_clip, 1);
    assert.equal(n.lora.inputs.apply_mode, "at_runtime");
    assert.deepEqual(n.sampler.inputs.model, { from: "lora_2.model" });
    assert.deepEqual(n.negative.inputs.clip, { from: "lora_2.clip" }, "the LoRA changes the uncond too");
    assert.equal(n.positive.inputs.text, "a cat");
    const plain = graphFromSdcppFlags({ model: "m.safetensors", prompt: "a cat<lora:style:1>" });
    assert.equal((plain.file.nodes.positive.inputs as { text: string }).text, "a cat<lora:style:1>");
    assert.match(plain.notes.join("\n"), /no --lora-model-dir/);
    assert.throws(
      () => graphFromSdcppFlags({ model: "m", prompt: "x", "lora-apply-mode": "later" }),
      /--lora-apply-mode must be one of auto, immediately, at_runtime/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a corrupt LoRA file or one for another model is one line on stderr and exit code 1", async () => {
  const tiny = await tinyCheckpointPath(0);
  const model = tiny.startsWith("/") ? tiny : `${root}${tiny}`;
  const dir = await Deno.makeTempDir({ prefix: "sdflow-lora-bad-" });
  try {
    await Deno.writeFile(`${dir}/corrupt.safetensors`, new TextEncoder().encode("definitely not tensors"));
    // An SDXL LoRA (second text encoder, 1280 wide): nothing in it names a weight of an SD 1.x model.
    const l = "lora_te2_text_model_encoder_layers_0_self_attn_q_proj";
    await Deno.writeFile(
      `${dir}/sdxl.safetensors`,
      encodeSafetensors([
        { name: `${l}.lora_down.weight`, dtype: "F16", shape: [1, 1280], data: new Uint8Array(2560) },
        { name: `${l}.lora_up.weight`, dtype: "F16", shape: [1280, 1], data: new Uint8Array(2560) },
      ]),
    );
    const cases = [
      ["corrupt", /cannot be read/],
      ["nothere", /no LoRA file/],
      ["sdxl", /does not fit this SD 1\.x model \(a LoRA for another model family\?\)/],
    ] as const;
    for (const [tag, why] of cases) {
      const r = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "cli/gen.ts",
          "-m",
          model,
          "-p",
          `a cat<lora:${tag}:1>`,
          "--lora-model-dir",
          dir,
          "-W",
          "64",
          "-H",
          "64",
          "--steps",
          "1",
          "-o",
          `${dir}/o.png`,
        ],
        cwd: root,
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
      const err = new TextDecoder().decode(r.stderr).trim();
      assert.notEqual(r.code, 0, tag);
      // Progress lines of the nodes that ran go to stderr too; the error is one line, without a stack.
      const errors = err.split("\n").filter((l) => l.startsWith("error"));
      assert.equal(errors.length, 1, `${tag}: one error line, got:\n${err}`);
      assert.match(errors[0], why);
      assert.doesNotMatch(err, /^\s+at .+:\d+:\d+/m, `${tag}: no stack trace`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
