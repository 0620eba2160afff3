/** ComfyUI API-format workflows → sdflow graphs (comfy.ts), and `deno task import-comfy`. */

import assert from "node:assert/strict";
import { SAMPLE_METHODS } from "../models/sampling/samplers.ts";
import { SCHEDULERS } from "../plugins/nodes/sampler.ts";
import { validateGraph } from "../dsl/validate.ts";
import type { GraphFile } from "../dsl/format.ts";
import { defaultWorkflow } from "./comfy_fixtures.ts";
import { COMFY_SAMPLERS, COMFY_SCHEDULERS, ComfyError, comfyToGraph, filesOfSave } from "./comfy.ts";

function throwsComfy(fn: () => unknown, re: RegExp, node?: string, classType?: string, input?: string): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ComfyError, String(e));
    assert.match(e.message, re);
    if (node !== undefined) assert.equal(e.node, node);
    if (classType !== undefined) assert.equal(e.classType, classType);
    if (input !== undefined) assert.equal(e.input, input);
    return;
  }
  assert.fail(`no error (expected ${re})`);
}

Deno.test("comfy: the default workflow becomes the equivalent sdflow graph, which validates", async () => {
  const t = comfyToGraph(defaultWorkflow("v1-5-pruned-emaonly.safetensors"));
  assert.deepEqual(t.graph, {
    version: 1,
    nodes: {
      n4: { type: "checkpoint", inputs: { path: "v1-5-pruned-emaonly.safetensors" } },
      n6: { type: "clip_encode", inputs: { clip: { from: "n4.clip" }, text: "beautiful scenery" } },
      n7: { type: "clip_encode", inputs: { clip: { from: "n4.clip" }, text: "text, watermark" } },
      n5: { type: "empty_latent", inputs: { width: 512, height: 512, batch: 1 } },
      n3: {
        type: "sampler",
        inputs: {
          model: { from: "n4.model" },
          positive: { from: "n6.conditioning" },
          negative: { from: "n7.conditioning" },
          latent: { from: "n5.latent" },
          seed: 156680208700286,
          steps: 20,
          cfg: 8,
          sampler: "euler",
          scheduler: "discrete",
          denoise: 1,
        },
      },
      n8: { type: "vae_decode", inputs: { vae: { from: "n4.vae" }, latent: { from: "n3.latent" } } },
      n9: { type: "save_image", inputs: { images: { from: "n8.image" }, path: "ComfyUI_9.png" } },
    },
  });
  assert.deepEqual(t.saves, [{ node: "9", classType: "SaveImage", path: "ComfyUI_9.png" }]);
  assert.equal(t.origin.n3, "3");
  // The same wrapped as POST /prompt sends it; "tiny" is the demo model; the result is a valid sdflow graph.
  const tiny = comfyToGraph({ prompt: defaultWorkflow(), client_id: "abc" });
  assert.deepEqual(tiny.graph.nodes.n4, { type: "tiny_checkpoint", inputs: {} });
  const p = await validateGraph(tiny.graph as unknown as GraphFile, { source: "test" });
  assert.ok(p);
});

Deno.test("comfy: every mapped sampler and scheduler is one of sdflow's; unknown names are named with their node", () => {
  for (const [comfy, ours] of Object.entries(COMFY_SAMPLERS)) {
    assert.ok((SAMPLE_METHODS as readonly string[]).includes(ours), `${comfy} → ${ours}`);
  }
  for (const [comfy, ours] of Object.entries(COMFY_SCHEDULERS)) {
    assert.ok((SCHEDULERS as readonly string[]).includes(ours), `${comfy} → ${ours}`);
  }
  // Each pair, through a real translation.
  const cases: [string, string, string, string][] = [
    ["euler_ancestral", "karras", "euler_a", "karras"],
    ["dpmpp_2m", "exponential", "dpm++2m", "exponential"],
    ["dpmpp_2s_ancestral", "sgm_uniform", "dpm++2s_a", "sgm_uniform"],
    ["dpm_2", "simple", "dpm2", "simple"],
    ["heun", "kl_optimal", "heun", "kl_optimal"],
    ["lcm", "normal", "lcm", "discrete"],
    ["ddim", "normal", "euler", "discrete"],
    ["ipndm_v", "karras", "ipndm_v", "karras"],
  ];
  for (const [sampler_name, scheduler, s, sch] of cases) {
    const w = defaultWorkflow();
    Object.assign(w["3"].inputs, { sampler_name, scheduler });
    const inputs = comfyToGraph(w).graph.nodes.n3.inputs;
    assert.deepEqual([inputs.sampler, inputs.scheduler], [s, sch], `${sampler_name}/${scheduler}`);
  }
  const w = defaultWorkflow();
  w["3"].inputs.sampler_name = "dpmpp_sde";
  throwsComfy(() => comfyToGraph(w), /node 3 \(KSampler\), input "sampler_name": sampler "dpmpp_sde"/, "3");
  const w2 = defaultWorkflow();
  w2["3"].inputs.scheduler = "beta";
  throwsComfy(() => comfyToGraph(w2), /scheduler "beta" is not available/, "3", "KSampler", "scheduler");
});

Deno.test("comfy: unsupported node types and malformed workflows are named", () => {
  const w = defaultWorkflow() as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
  w["10"] = { class_type: "FreeU_V2", inputs: { model: ["4", 0], b1: 1.3 } };
  w["3"].inputs.model = ["10", 0];
  throwsComfy(() => comfyToGraph(w), /node 10 \(FreeU_V2\): node type "FreeU_V2" is not supported/, "10", "FreeU_V2");
  // Nodes no output depends on are not run by ComfyUI, so not translated either.
  const unused = defaultWorkflow() as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
  unused["11"] = { class_type: "FreeU_V2", inputs: { model: ["4", 0] } };
  assert.ok(comfyToGraph(unused).graph.nodes.n3);

  const dangling = defaultWorkflow();
  dangling["8"].inputs.samples = ["99", 0];
  throwsComfy(
    () => comfyToGraph(dangling),
    /links to node 99, which is not in the workflow/,
    "8",
    "VAEDecode",
    "samples",
  );
  const badLink = defaultWorkflow();
  badLink["8"].inputs.samples = "3";
  throwsComfy(() => comfyToGraph(badLink), /expected a link/, "8");
  const widgetLinked = defaultWorkflow();
  widgetLinked["3"].inputs.seed = ["12", 0];
  throwsComfy(() => comfyToGraph(widgetLinked), /needs a value/, "3", "KSampler", "seed");
  const noSave = defaultWorkflow() as Record<string, unknown>;
  delete noSave["9"];
  throwsComfy(() => comfyToGraph(noSave), /no SaveImage or PreviewImage/);
  throwsComfy(() => comfyToGraph({ nodes: [], links: [] }), /UI-format workflow; save it with "Export \(API\)"/);
  throwsComfy(() => comfyToGraph([1, 2]), /JSON object of nodes/);
  throwsComfy(() => comfyToGraph({ "1": { inputs: {} } }), /node 1 \(\?\): missing "class_type"/);
  const mask = defaultWorkflow() as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
  mask["20"] = { class_type: "LoadImage", inputs: { image: "in.png" } };
  mask["21"] = { class_type: "VAEEncode", inputs: { pixels: ["20", 1], vae: ["4", 2] } };
  mask["3"].inputs.latent_image = ["21", 0];
  throwsComfy(() => comfyToGraph(mask), /MASK output is not supported/, "21", "VAEEncode", "pixels");
  const adv = defaultWorkflow() as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
  adv["3"] = {
    class_type: "KSamplerAdvanced",
    inputs: {
      ...adv["3"].inputs,
      noise_seed: 1,
      add_noise: "enable",
      start_at_step: 5,
      end_at_step: 10000,
      return_with_leftover_noise: "disable",
    },
  };
  throwsComfy(() => comfyToGraph(adv), /only 0 is supported/, "3", "KSamplerAdvanced", "start_at_step");
  adv["3"].inputs.start_at_step = 0;
  const s = comfyToGraph(adv).graph.nodes.n3.inputs;
  assert.equal(s.seed, 1);
  assert.equal(s.denoise, undefined);
});

Deno.test("comfy: LoRA, CLIPSetLastLayer, img2img, ControlNet and upscaler workflows", () => {
  const w = defaultWorkflow("model.safetensors") as Record<
    string,
    { class_type: string; inputs: Record<string, unknown> }
  >;
  w["10"] = { class_type: "CLIPSetLastLayer", inputs: { stop_at_clip_layer: -2, clip: ["4", 1] } };
  w["11"] = {
    class_type: "LoraLoader",
    inputs: {
      lora_name: "style.safetensors",
      strength_model: 0.8,
      strength_clip: 0.5,
      model: ["4", 0],
      clip: ["10", 0],
    },
  };
  w["6"].inputs.clip = ["11", 1];
  w["7"].inputs.clip = ["11", 1];
  w["3"].inputs.model = ["11", 0];
  // img2img: a loaded picture, encoded.
  w["20"] = { class_type: "LoadImage", inputs: { image: "in.png" } };
  w["21"] = { class_type: "VAEEncode", inputs: { pixels: ["20", 0], vae: ["22", 0] } };
  w["22"] = { class_type: "VAELoader", inputs: { vae_name: "vae-ft-mse.safetensors" } };
  w["3"].inputs.latent_image = ["21", 0];
  w["3"].inputs.denoise = 0.6;
  // Two ControlNets: one on the positive prompt, an advanced one on both.
  w["30"] = { class_type: "ControlNetLoader", inputs: { control_net_name: "canny.safetensors" } };
  w["31"] = {
    class_type: "ControlNetApply",
    inputs: { conditioning: ["6", 0], control_net: ["30", 0], image: ["20", 0], strength: 0.7 },
  };
  w["32"] = { class_type: "ControlNetLoader", inputs: { control_net_name: "depth.safetensors" } };
  w["33"] = {
    class_type: "ControlNetApplyAdvanced",
    inputs: {
      positive: ["31", 0],
      negative: ["7", 0],
      control_net: ["32", 0],
      image: ["20", 0],
      strength: 0.5,
      start_percent: 0,
      end_percent: 1,
    },
  };
  w["3"].inputs.positive = ["33", 0];
  w["3"].inputs.negative = ["33", 1];
  // Upscaled after decoding.
  w["40"] = { class_type: "UpscaleModelLoader", inputs: { model_name: "4x.pth" } };
  w["41"] = { class_type: "ImageUpscaleWithModel", inputs: { upscale_model: ["40", 0], image: ["8", 0] } };
  w["9"].inputs.images = ["41", 0];
  w["9"].inputs.filename_prefix = "up/scaled";

  const t = comfyToGraph(w);
  const n = t.graph.nodes;
  assert.deepEqual(n.n11, {
    type: "lora",
    inputs: {
      model: { from: "n4.model" },
      clip: { from: "n4.clip" },
      path: "style.safetensors",
      strength_model: 0.8,
      strength_clip: 0.5,
    },
  });
  assert.deepEqual(n.n6.inputs, { clip: { from: "n11.clip" }, text: "beautiful scenery", clip_skip: 2 });
  assert.deepEqual(n.n21, { type: "vae_encode", inputs: { vae: { from: "n22.vae" }, image: { from: "n20.image" } } });
  assert.deepEqual(n.n22, { type: "vae_loader", inputs: { path: "vae-ft-mse.safetensors" } });
  // The model goes through the farthest ControlNet first (as ComfyUI stacks them), then the nearer one.
  assert.deepEqual(n.n3_cnn31, {
    type: "controlnet",
    inputs: { model: { from: "n11.model" }, path: "canny.safetensors", image: { from: "n20.image" }, strength: 0.7 },
  });
  assert.deepEqual(n.n3_cnn33, {
    type: "controlnet",
    inputs: {
      model: { from: "n3_cnn31.model" },
      path: "depth.safetensors",
      image: { from: "n20.image" },
      strength: 0.5,
    },
  });
  assert.deepEqual(n.n3.inputs.model, { from: "n3_cnn33.model" });
  assert.deepEqual(n.n3.inputs.positive, { from: "n6.conditioning" });
  assert.deepEqual(n.n3.inputs.negative, { from: "n7.conditioning" });
  assert.equal(n.n3.inputs.denoise, 0.6);
  assert.deepEqual(n.n41, {
    type: "upscale",
    inputs: { upscale_model: { from: "n40.upscale_model" }, image: { from: "n8.image" } },
  });
  assert.deepEqual(n.n40, { type: "upscale_model_loader", inputs: { path: "4x.pth" } });
  assert.equal(n.n9.inputs.path, "up/scaled_9.png");
  assert.equal(t.origin.n3_cnn31, "3");
  assert.equal(n.n31, undefined);
  // A ControlNet window sdflow cannot do.
  w["33"].inputs.end_percent = 0.5;
  throwsComfy(() => comfyToGraph(w), /only 1 is supported/, "33", "ControlNetApplyAdvanced", "end_percent");
});

Deno.test("comfy: a save node's files are found by job id, batches included", () => {
  const save = { node: "9", classType: "SaveImage", path: "up/scaled_9.png" };
  const files = [
    "j1_up_scaled_9.png",
    "j1_up_scaled_9_1.png",
    "j1_up_scaled_9_2.png",
    "j1_up_scaled_90.png",
    "j2_x.png",
  ];
  assert.deepEqual(filesOfSave("j1", save, files), [
    "j1_up_scaled_9.png",
    "j1_up_scaled_9_1.png",
    "j1_up_scaled_9_2.png",
  ]);
});

Deno.test("comfy: deno task import-comfy prints the graph; a bad workflow is one line naming the node", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sdflow-comfy-" });
  try {
    const cli = new URL("../cli/import_comfy.ts", import.meta.url).pathname;
    await Deno.writeTextFile(`${dir}/w.json`, JSON.stringify(defaultWorkflow()));
    const ok = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", cli, `${dir}/w.json`] }).output();
    assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
    const graph = JSON.parse(new TextDecoder().decode(ok.stdout));
    assert.deepEqual(graph, comfyToGraph(defaultWorkflow()).graph);
    const bad = defaultWorkflow() as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
    bad["8"].class_type = "VAEDecodeHunyuan3D";
    await Deno.writeTextFile(`${dir}/bad.json`, JSON.stringify(bad));
    const err = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", cli, `${dir}/bad.json`] }).output();
    assert.equal(err.code, 1);
    const lines = new TextDecoder().decode(err.stderr).trim().split("\n");
    assert.equal(lines.length, 1);
    assert.match(lines[0], /node 8 \(VAEDecodeHunyuan3D\): node type "VAEDecodeHunyuan3D" is not supported/);
    const missing = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", cli, `${dir}/nope.json`] }).output();
    assert.equal(missing.code, 1);
    assert.match(new TextDecoder().decode(missing.stderr), /nope\.json: no such file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
