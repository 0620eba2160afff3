/**
 * ComfyUI's discovery endpoints over real HTTP, as ComfyUI clients read them: /object_info (every node type
 * the import translates, inputs in ComfyUI's shape, the loaders' file lists from --models, uploads for
 * LoadImage), /object_info/:class and /system_stats.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { encodePngImage } from "../plugins/image/png.ts";
import { COMFY_CLASS_TYPES } from "./comfy.ts";
import { defaultWorkflow } from "./comfy_fixtures.ts";
import type { ComfyNodeInfo } from "./comfy_info.ts";
import { startServer } from "./server.ts";

Deno.test("comfy api: /object_info lists the node types sdflow translates, with --models' files; /system_stats", async () => {
  const models = await Deno.makeTempDir({ prefix: "sdflow-comfy-models-" });
  const outputDir = await Deno.makeTempDir({ prefix: "sdflow-comfy-info-" });
  for (const f of ["checkpoints/a.safetensors", "loras/l.safetensors", "controlnet/c.safetensors"]) {
    await Deno.mkdir(join(models, f, ".."), { recursive: true });
    await Deno.writeFile(join(models, f), new Uint8Array(8));
  }
  for (const f of ["upscale_models/u.pth", "vae/v.safetensors", "z.ckpt"]) {
    await Deno.mkdir(join(models, f, ".."), { recursive: true });
    await Deno.writeFile(join(models, f), new Uint8Array(8));
  }
  const server = await startServer({ port: 0, outputDir, modelsDir: models, apiKey: "k" });
  const base = `http://127.0.0.1:${server.addr.port}`;
  const get = async (path: string) => {
    const r = await fetch(`${base}${path}`, { headers: { authorization: "Bearer k" } });
    return { status: r.status, json: await r.json() };
  };
  try {
    // An upload shows in LoadImage's list (as ComfyUI's input folder); job outputs do not.
    const form = new FormData();
    const png = encodePngImage({ width: 8, height: 8, channels: 3, data: new Uint8Array(8 * 8 * 3) });
    form.append("image", new File([new Uint8Array(png)], "mine.png", { type: "image/png" }));
    const up = await fetch(`${base}/upload/image`, {
      method: "POST",
      body: form,
      headers: { authorization: "Bearer k" },
    });
    assert.equal(up.status, 200, await up.text());
    await Deno.writeFile(join(outputDir, "0c6f1d2e-aaaa-4bbb-8ccc-123456789abc_out.png"), png);

    const { status, json } = await get("/object_info");
    assert.equal(status, 200);
    const info = json as Record<string, ComfyNodeInfo>;
    assert.deepEqual(Object.keys(info).sort(), [...COMFY_CLASS_TYPES].sort());
    for (const [name, n] of Object.entries(info)) {
      assert.equal(n.name, name);
      for (const k of ["display_name", "description", "category", "python_module"] as const) {
        assert.equal(typeof n[k], "string", `${name}.${k}`);
      }
      assert.equal(typeof n.output_node, "boolean");
      assert.equal(n.output_is_list.length, n.output.length);
      assert.equal(n.output_name.length, n.output.length);
      assert.deepEqual(n.input_order.required, Object.keys(n.input.required));
      for (const [input, spec] of Object.entries(n.input.required)) {
        // [TYPE], [TYPE, options] or [[choices], options?]
        assert.ok(Array.isArray(spec) && spec.length >= 1 && spec.length <= 2, `${name}.${input}`);
        assert.ok(typeof spec[0] === "string" || Array.isArray(spec[0]), `${name}.${input}`);
      }
    }
    const choices = (cls: string, input: string) => info[cls].input.required[input][0];
    assert.deepEqual(choices("CheckpointLoaderSimple", "ckpt_name"), ["tiny", "z.ckpt", "a.safetensors"]);
    assert.deepEqual(choices("LoraLoader", "lora_name"), ["l.safetensors"]);
    assert.deepEqual(choices("ControlNetLoader", "control_net_name"), ["c.safetensors"]);
    assert.deepEqual(choices("UpscaleModelLoader", "model_name"), ["u.pth"]);
    assert.deepEqual(choices("VAELoader", "vae_name"), ["v.safetensors"]);
    assert.deepEqual(choices("LoadImage", "image"), ["mine.png"]);
    assert.deepEqual(choices("KSampler", "sampler_name"), [
      "euler",
      "euler_ancestral",
      "heun",
      "dpm_2",
      "dpmpp_2s_ancestral",
      "dpmpp_2m",
      "ipndm",
      "ipndm_v",
      "lcm",
      "ddim",
    ]);
    assert.ok((choices("KSampler", "scheduler") as string[]).includes("karras"));
    // Widget ranges are sdflow's limits.
    assert.deepEqual(info.EmptyLatentImage.input.required.width[1], {
      default: 512,
      min: 64,
      max: 8192,
      step: 8,
    });
    assert.deepEqual(info.KSampler.input.required.steps[1], { default: 20, min: 1, max: 1000, step: 1 });
    assert.deepEqual(info.KSampler.output, ["LATENT"]);
    assert.deepEqual(info.CheckpointLoaderSimple.output, ["MODEL", "CLIP", "VAE"]);
    assert.deepEqual(info.ControlNetApplyAdvanced.output_name, ["positive", "negative"]);
    assert.equal(info.SaveImage.output_node, true);
    // The inputs ComfyUI's default workflow sets are exactly the required inputs listed for its nodes.
    for (const node of Object.values(defaultWorkflow())) {
      assert.deepEqual(
        Object.keys(node.inputs).sort(),
        [...info[node.class_type].input_order.required].sort(),
        node.class_type,
      );
    }

    const one = await get("/object_info/KSampler");
    assert.deepEqual(Object.keys(one.json), ["KSampler"]);
    assert.deepEqual(one.json.KSampler, info.KSampler);
    assert.deepEqual((await get("/object_info/NoSuchNode")).json, {});

    const stats = await get("/system_stats");
    assert.equal(stats.status, 200);
    const sys = stats.json.system;
    assert.ok(["posix", "nt"].includes(sys.os));
    assert.match(sys.comfyui_version, /^sdflow \d+\.\d+\.\d+/);
    assert.match(sys.python_version, /^Deno \d/);
    assert.ok(sys.ram_total > 0);
    assert.ok(!JSON.stringify(stats.json).includes('"k"'), "the API key must not show");
    assert.equal(stats.json.devices.length, 1);
    const dev = stats.json.devices[0];
    assert.equal(dev.type, "cpu");
    assert.match(dev.name, /^cpu: ./);
    assert.ok(dev.vram_total > 0 && dev.vram_free >= 0 && dev.vram_free <= dev.vram_total);
    for (const k of ["index", "torch_vram_total", "torch_vram_free"]) assert.equal(typeof dev[k], "number", k);
    // Without the key: 401, like every API route.
    const denied = await fetch(`${base}/object_info`);
    assert.equal(denied.status, 401);
    await denied.body?.cancel();
  } finally {
    await server.shutdown();
    await Deno.remove(outputDir, { recursive: true });
    await Deno.remove(models, { recursive: true });
  }
});
