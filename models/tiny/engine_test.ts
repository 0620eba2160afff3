/**
 * The tiny model's networks through the real engine (planner, Winograd
 * lowering, CPU backend) against the PyTorch reference.
 */

import { type Backend, loadBackend } from "../../backends/mod.ts";
import { compile, Graph, type InputData } from "../../engine/mod.ts";
import { detectArch } from "../arch.ts";
import { buildTextEncoder } from "../clip/text_encoder.ts";
import { createWeightLookup } from "../nn.ts";
import { parseSafetensors } from "../testdata/helpers.ts";
import { naiveEval } from "../testdata/naive_eval.ts";
import { loadTinyReference } from "../testdata/reference.ts";
import { assertMaxAbsError } from "../../tests/assert.ts";
import { tinyCheckpointBytes } from "./mod.ts";
import { buildUnet } from "../unet/unet.ts";
import { buildVaeDecoder, buildVaeEncoder } from "../vae/vae.ts";
import { openWeights } from "../weights/mod.ts";

// The backend must load: a build failure fails these tests rather than skipping them.
const backend: Backend = await loadBackend("cpu");

const { ref, ckpt } = loadTinyReference();
const arch = detectArch(ckpt.tensors, ckpt.metadata);

async function check(
  build: (g: Graph) => void,
  inputs: Record<string, InputData>,
  output: string,
  reference: string,
): Promise<void> {
  const g = new Graph();
  build(g);
  const program = compile(g, backend);
  try {
    const out = await program.run(inputs);
    // f32 kernels (Winograd transforms, blocked GEMMs) against a float64 reference: bound 1e-5 + 1e-4 * max|ref|
    // (measured: ~4e-6 relative).
    assertMaxAbsError(`${reference} (engine)`, out[output], ref.f32(reference), 1e-5, 1e-4);
  } finally {
    program.dispose();
  }
}

Deno.test({
  name: "engine: tiny UNet, batched cond/uncond, matches PyTorch",
  fn: () =>
    check(
      (g) => {
        const w = createWeightLookup(g, ckpt.source);
        buildUnet(g, w, arch.unet!, { batch: 2, height: 8, width: 8, contextTokens: 77 });
      },
      { x: ref.f32("unet.x"), timesteps: ref.f32("unet.timesteps"), context: ref.f32("unet.context") },
      "out",
      "unet.out",
    ),
});

Deno.test({
  name: "engine: tiny CLIP (clip skip 1 and 2) matches PyTorch",
  async fn() {
    for (const clipSkip of [1, 2]) {
      await check(
        (g) => buildTextEncoder(g, createWeightLookup(g, ckpt.source), arch.textEncoders[0], { batch: 2, clipSkip }),
        { tokens: ref.i32("clip.tokens") },
        "hidden",
        `clip.hidden_skip${clipSkip}`,
      );
    }
  },
});

Deno.test({
  name: "engine: tiny VAE decoder and encoder match PyTorch",
  async fn() {
    await check(
      (g) => buildVaeDecoder(g, createWeightLookup(g, ckpt.source), arch.vae!, { batch: 1, height: 8, width: 8 }),
      { latent: ref.f32("vae.latent") },
      "image",
      "vae.image",
    );
    await check(
      (g) => buildVaeEncoder(g, createWeightLookup(g, ckpt.source), arch.vae!, { batch: 1, height: 64, width: 64 }),
      { image: ref.f32("vae.enc_image") },
      "moments",
      "vae.moments",
    );
  },
});

Deno.test({
  name: "engine: f16 checkpoint (f16 weights, norm params and biases) runs and agrees with the naive evaluator",
  async fn() {
    const f16 = parseSafetensors(tinyCheckpointBytes({ seed: 1, dtype: "f16" }));
    const a16 = detectArch(f16.tensors, f16.metadata);
    const cases: [(g: Graph) => void, Record<string, InputData>, string][] = [
      [
        (g) =>
          buildUnet(g, createWeightLookup(g, f16.source), a16.unet!, {
            batch: 2,
            height: 8,
            width: 8,
            contextTokens: 77,
          }),
        { x: ref.f32("unet.x"), timesteps: ref.f32("unet.timesteps"), context: ref.f32("unet.context") },
        "out",
      ],
      [
        (g) => buildTextEncoder(g, createWeightLookup(g, f16.source), a16.textEncoders[0], { batch: 2 }),
        { tokens: ref.i32("clip.tokens") },
        "hidden",
      ],
    ];
    for (const [build, inputs, output] of cases) {
      const g = new Graph();
      build(g);
      const expected = naiveEval(g, inputs)[output];
      const program = compile(g, backend);
      try {
        assertMaxAbsError(`f16 ${output}`, (await program.run(inputs))[output], expected, 1e-5, 1e-4);
      } finally {
        program.dispose();
      }
    }
  },
});

Deno.test("weights loader contract: openWeights -> detectArch -> createWeightLookup builds the same UNet", async () => {
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    await Deno.writeFile(path, tinyCheckpointBytes({ seed: 1, dtype: "f32" }));
    const wf = await openWeights(path);
    try {
      const a = detectArch(wf.tensors.values(), wf.metadata);
      const g = new Graph();
      buildUnet(g, createWeightLookup(g, wf), a.unet!, { batch: 2, height: 8, width: 8, contextTokens: 77 });
      const inputs = { x: ref.f32("unet.x"), timesteps: ref.f32("unet.timesteps"), context: ref.f32("unet.context") };
      assertMaxAbsError("unet via openWeights", naiveEval(g, inputs).out, ref.f32("unet.out"), 1e-5, 1e-5);
    } finally {
      wf.close();
    }
  } finally {
    await Deno.remove(path);
  }
});
