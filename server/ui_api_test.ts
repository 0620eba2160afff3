/**
 * The endpoints the web UI uses, over real HTTP with the tiny model: its static files (served without the API
 * key, nothing else is), the schema, uploads, the outputs listing, ControlNet listing and confinement, and the
 * SSE stream's live previews — the latent projection by default, TAESD at full size when the models folder has one.
 */

import assert from "node:assert/strict";
import { parseSafetensors } from "../models/testdata/helpers.ts";
import { encodeSafetensors } from "../models/weights/mod.ts";
import { tinyControlNetBytes } from "../models/controlnet/testdata/tiny_controlnet.ts";
import { loadTinyReference } from "../models/testdata/reference.ts";
import { decodePngImage, encodePngImage } from "../plugins/image/png.ts";
import { runPipeline } from "../dsl/run.ts";
import { validateGraph } from "../dsl/validate.ts";
import type { GraphFile } from "../dsl/format.ts";
import type { MemoryGraphQueue } from "./jobs.ts";
import { type SdflowServer, startServer } from "./server.ts";
import * as uiGraphs from "./ui/graphs.js";
import { tinyGraph } from "./test_graphs.ts";

type GraphDoc = { nodes: Record<string, { type: string; inputs: Record<string, unknown> }> };
/** The UI's graph builders (plain JS, typed here). */
const promptGraph = uiGraphs.promptGraph as unknown as (p: unknown) => GraphDoc;
const clientGraph = uiGraphs.clientGraph as unknown as (g: GraphDoc) => GraphDoc;

const KEY = "ui-key-51c";
const auth = { authorization: `Bearer ${KEY}` };

const GRAPH = tinyGraph({ prompt: "a kite", seed: 3, steps: 3, path: "kite.png" });

/** The TAESD of the add-on fixtures (4 latent channels, as the tiny model's), as a safetensors file. */
function taesdFile(): Uint8Array {
  const ref = parseSafetensors(
    Deno.readFileSync(new URL("../models/testdata/addons_reference.safetensors", import.meta.url)),
  );
  return encodeSafetensors(
    ref.tensors.filter((t) => t.name.startsWith("taesd/") && !/\/(in|out)/.test(t.name)).map((t) => ({
      name: t.name.slice("taesd/".length),
      dtype: "F32",
      shape: t.shape,
      data: new Uint8Array(ref.f32(t.name).buffer),
    })),
  );
}

async function withServer(
  modelsDir: string | undefined,
  fn: (base: string, outputDir: string, server: SdflowServer) => Promise<void>,
): Promise<void> {
  const outputDir = await Deno.makeTempDir({ prefix: "sdflow-ui-api-" });
  const server = await startServer({ port: 0, outputDir, modelsDir, apiKey: KEY });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, outputDir, server);
  } finally {
    await server.shutdown();
    await Deno.remove(outputDir, { recursive: true });
  }
}

/** Runs a graph and reads its event stream to the end: the preview events' data. */
async function previewsOf(base: string, server: SdflowServer, graph: unknown): Promise<Record<string, unknown>[]> {
  // The engine is held until the stream is open, so that no step passes unwatched.
  let release!: () => void;
  (server.queue as MemoryGraphQueue).submit("hold", () => new Promise<void>((r) => release = r));
  const r = await fetch(`${base}/v1/graphs`, {
    method: "POST",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify(graph),
  });
  const { id } = await r.json();
  const stream = await fetch(`${base}/v1/jobs/${id}/events`, { headers: auth });
  release();
  const text = await stream.text();
  const events = text.split("\n\n").filter((b) => b.trim()).map((b) => ({
    name: /^event: (.*)$/m.exec(b)![1],
    data: JSON.parse(/^data: (.*)$/m.exec(b)![1]),
  }));
  assert.equal(events.at(-1)!.data.status, "succeeded", JSON.stringify(events.at(-1)));
  return events.filter((e) => e.name === "preview").map((e) => e.data);
}

function pngOfDataUrl(url: unknown): ReturnType<typeof decodePngImage> {
  const m = /^data:image\/png;base64,(.+)$/.exec(String(url));
  assert.ok(m, "a PNG data URL");
  return decodePngImage(Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0)));
}

Deno.test("ui api: static files without the key, schema, uploads, outputs listing, projection previews", async () => {
  await withServer(undefined, async (base, outputDir, server) => {
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type")!, /text\/html/);
    assert.match(await page.text(), /<script type="module" src="\/ui\/app\.js">/);
    for (const [path, type] of [["/ui/app.js", /javascript/], ["/ui/style.css", /text\/css/]] as const) {
      const r = await fetch(`${base}${path}`);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get("content-type")!, type);
      await r.body?.cancel();
    }
    // ("/ui/../server.ts" is "/server.ts" once the URL is parsed: an API path, 401 without the key.)
    for (
      const path of ["/ui/%2e%2e%2fserver.ts", "/ui/..%2fui_api.ts", "/ui/nope.js", "/ui/ui_api.ts", "/ui/sub/x.js"]
    ) {
      const r = await fetch(`${base}${path}`);
      assert.equal(r.status, 404, path);
      await r.body?.cancel();
    }
    // The API itself still wants the key.
    const noKey = await fetch(`${base}/v1/outputs`);
    assert.equal(noKey.status, 401);
    await noKey.body?.cancel();

    const schema = await (await fetch(`${base}/v1/schema`, { headers: auth })).json();
    assert.deepEqual(
      schema.definitions.node_sampler.properties.inputs.properties.scheduler.else.enum.includes("karras"),
      true,
    );

    // Uploads: a PNG is stored under a fresh name a load_image node takes; anything else is a 400.
    const png = encodePngImage({ width: 8, height: 8, channels: 3, data: new Uint8Array(192).fill(90) });
    const up = await fetch(`${base}/v1/uploads`, {
      method: "POST",
      headers: auth,
      body: png as Uint8Array<ArrayBuffer>,
    });
    assert.equal(up.status, 201);
    const stored = await up.json();
    assert.match(stored.name, /^upload-[0-9a-f-]{36}\.png$/);
    assert.deepEqual([stored.width, stored.height], [8, 8]);
    assert.deepEqual(await Deno.readFile(`${outputDir}/${stored.name}`), png);
    for (const body of [new TextEncoder().encode("GIF89a"), new Uint8Array()]) {
      const r = await fetch(`${base}/v1/uploads`, { method: "POST", headers: auth, body });
      assert.equal(r.status, 400);
      assert.match((await r.json()).error, /PNG|empty upload/);
    }

    // Previews: one per step, the projection at latent size (64 / 8 = 8 pixels).
    const previews = await previewsOf(base, server, GRAPH);
    assert.deepEqual(previews.map((p) => p.step), [1, 2, 3]);
    assert.deepEqual([previews[0].method, previews[0].width, previews[0].node], ["proj", 8, "sampler"]);
    assert.equal(pngOfDataUrl(previews[2].image).image.width, 8);

    // The listing: the job's picture with its parameters; uploads and previews are not outputs.
    const list = (await (await fetch(`${base}/v1/outputs`, { headers: auth })).json()).outputs;
    assert.equal(list.length, 1, JSON.stringify(list));
    assert.match(list[0].name, /_kite\.png$/);
    assert.equal(list[0].graph, true);
    assert.deepEqual([list[0].width, list[0].height], [64, 64]);
    assert.match(list[0].parameters, /^a kite\nSteps: 3, Sampler: Euler, .*Seed: 3/);
    const bad = await fetch(`${base}/v1/outputs?limit=0`, { headers: auth });
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
  });
});

Deno.test("ui api: a TAESD in the models folder's VAE-approx/ makes full-size previews; ControlNets by name only", async () => {
  const modelsDir = await Deno.makeTempDir({ prefix: "sdflow-ui-models-" });
  try {
    await Deno.mkdir(`${modelsDir}/VAE-approx`);
    await Deno.writeFile(`${modelsDir}/VAE-approx/taesd.safetensors`, taesdFile());
    await Deno.mkdir(`${modelsDir}/ControlNet`);
    await Deno.writeTextFile(`${modelsDir}/ControlNet/edges.safetensors`, "not really a ControlNet");
    await withServer(modelsDir, async (base, _outputDir, server) => {
      const previews = await previewsOf(base, server, GRAPH);
      assert.equal(previews.length, 3);
      assert.deepEqual([previews[0].method, previews[0].width, previews[0].height], ["taesd", 64, 64]);
      const last = pngOfDataUrl(previews[2].image).image;
      assert.equal(last.height, 64);
      // Independent of the server: the same graph run here, its sampler's final latent decoded by a taesd node.
      // Euler's last step lands on the model's denoised estimate, which the last preview shows: the same picture
      // up to float rounding (at most 2/255 per channel).
      const local = structuredClone(GRAPH) as { nodes: Record<string, { type: string; inputs: unknown }> };
      local.nodes.taesd = { type: "taesd", inputs: { path: `${modelsDir}/VAE-approx/taesd.safetensors` } };
      local.nodes.decode = {
        type: "vae_decode",
        inputs: { vae: { from: "taesd.vae" }, latent: { from: "sampler.latent" } },
      };
      local.nodes.save = {
        type: "save_image",
        inputs: { images: { from: "decode.image" }, path: `${modelsDir}/t.png` },
      };
      await runPipeline(await validateGraph(local as unknown as GraphFile, { source: "test" }));
      const direct = decodePngImage(await Deno.readFile(`${modelsDir}/t.png`)).image;
      let worst = 0;
      for (let i = 0; i < direct.data.length; i++) worst = Math.max(worst, Math.abs(direct.data[i] - last.data[i]));
      assert.ok(worst <= 2, `the last TAESD preview differs from the TAESD decode by ${worst}/255`);

      const list = await (await fetch(`${base}/controlnet/model_list`, { headers: auth })).json();
      assert.deepEqual(list, { model_list: ["edges"] });
      const withControl = (path: string) => {
        const g = structuredClone(GRAPH) as { nodes: Record<string, { type: string; inputs: unknown }> };
        g.nodes.hint = { type: "load_image", inputs: { path: "nope.png" } };
        g.nodes.control = {
          type: "controlnet",
          inputs: { model: { from: "checkpoint.model" }, path, image: { from: "hint.image" } },
        };
        (g.nodes.sampler.inputs as Record<string, unknown>).model = { from: "control.model" };
        return fetch(`${base}/v1/graphs`, {
          method: "POST",
          headers: { ...auth, "content-type": "application/json" },
          body: JSON.stringify(g),
        });
      };
      const unknown = await withControl("nope");
      assert.equal(unknown.status, 404);
      assert.match((await unknown.json()).error, /unknown model "nope" \(ControlNet\); available: edges\.safetensors/);
      const escape = await withControl(`${modelsDir}/ControlNet/edges.safetensors`);
      assert.equal(escape.status, 400);
      assert.match((await escape.json()).error, /file name without folders/);
      // Found by name inside the models folder (the run then fails on the junk file or the missing picture).
      const named = await withControl("edges");
      assert.equal(named.status, 202);
      const { id } = await named.json();
      await (await fetch(`${base}/v1/jobs/${id}/events`, { headers: auth })).text();
      const job = await (await fetch(`${base}/v1/jobs/${id}`, { headers: auth })).json();
      assert.equal(job.status, "failed");
    });
  } finally {
    await Deno.remove(modelsDir, { recursive: true });
  }
});

Deno.test("ui api: every prompt-page graph (LoRAs, ControlNet, img2img, inpaint) validates; ControlNet and LoRA ones run", async () => {
  const modelsDir = await Deno.makeTempDir({ prefix: "sdflow-ui-models-" });
  const outputDir = await Deno.makeTempDir({ prefix: "sdflow-ui-api-" });
  try {
    for (const [dir, file] of [["Lora", "style.safetensors"], ["ControlNet", "edges.safetensors"]]) {
      await Deno.mkdir(`${modelsDir}/${dir}`);
      await Deno.writeTextFile(`${modelsDir}/${dir}/${file}`, "junk: only its name is checked here");
    }
    const server = await startServer({ port: 0, outputDir, modelsDir });
    try {
      const base = {
        model: "tiny",
        prompt: "a fox",
        negative: "",
        sampler: "euler_a",
        scheduler: "karras",
        steps: 2,
        cfg: 7,
        batch: 2,
        width: 64,
        height: 64,
        seed: 9,
        loras: [] as { name: string; weight: number }[],
      };
      const cases: Record<string, unknown>[] = [
        base,
        { ...base, loras: [{ name: "style", weight: 0.8 }, { name: "style.safetensors", weight: -0.5 }] },
        { ...base, control: { model: "edges", image: "upload-a.png", strength: 0.7, canny: true } },
        { ...base, init: { image: "upload-b.png", denoise: 0.6 } },
        { ...base, init: { image: "upload-b.png", mask: "upload-c.png", denoise: 1 } },
      ];
      for (const p of cases) {
        const graph = promptGraph(p);
        const pipeline = await server.engine.pipelineFromNetwork(structuredClone(graph), "job");
        assert.ok(pipeline.nodes.has("sampler"), JSON.stringify(p));
        // A picture's stored graph names files as the server wrote them; the UI turns them back into names.
        const stored = structuredClone(graph) as {
          nodes: Record<string, { type: string; inputs: Record<string, unknown> }>;
        };
        await server.engine.pipelineFromNetwork(stored, "0c0ffee0-0000-4000-8000-000000000000");
        const back = clientGraph(stored);
        assert.equal(back.nodes.save.inputs.path, "sdflow.png");
        await server.engine.pipelineFromNetwork(back, "again");
      }
      const seeds = promptGraph(cases[4]).nodes;
      assert.equal(seeds.latent.inputs.seed, 9, "the VAE posterior is sampled with the sampler's seed");

      // The ControlNet graph runs for real: the tiny reference checkpoint and its tiny ControlNet, canny edges of
      // an uploaded picture of another size. The control changes the picture.
      await Deno.writeFile(`${modelsDir}/ref.safetensors`, loadTinyReference().ckptBytes);
      await Deno.writeFile(`${modelsDir}/ControlNet/cn.safetensors`, tinyControlNetBytes());
      const data = new Uint8Array(96 * 80 * 3).map((_, i) => ((i / 3 / 96) | 0) > 40 ? 255 : 0);
      const up = await fetch(`http://127.0.0.1:${server.addr.port}/v1/uploads`, {
        method: "POST",
        body: encodePngImage({ width: 96, height: 80, channels: 3, data }) as Uint8Array<ArrayBuffer>,
      });
      const hint = (await up.json()).name;
      const run = async (p: Record<string, unknown>) => {
        const r = await fetch(`http://127.0.0.1:${server.addr.port}/v1/graphs`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(promptGraph(p)),
        });
        assert.equal(r.status, 202, await r.clone().text());
        const job = server.queue.get((await r.json()).id)!;
        await job.done;
        assert.equal(job.status, "succeeded", job.error);
        const files = (job.result as { files: string[] }).files;
        return decodePngImage(await Deno.readFile(`${outputDir}/${files[0]}`)).image;
      };
      const plain = { ...base, model: "ref", batch: 1 };
      const controlled = await run({ ...plain, control: { model: "cn", image: hint, strength: 1, canny: true } });
      const without = await run(plain);
      assert.deepEqual([controlled.width, controlled.height], [64, 64]);
      assert.notDeepEqual(controlled.data, without.data);

      // The LoRA graph runs for real: a rank-2 kohya LoRA on the tiny model's first text-encoder q_proj and its
      // middle attention's to_q. At weight 0 the picture is the plain one, bit for bit; at weight 1 it changes.
      const f32 = (n: number, k: number) =>
        new Uint8Array(Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7 + k) * 0.5).buffer);
      const loraTensors = [
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q",
      ]
        .flatMap((layer, k) => [
          { name: `${layer}.lora_down.weight`, dtype: "F32", shape: [2, 64], data: f32(128, k) },
          { name: `${layer}.lora_up.weight`, dtype: "F32", shape: [64, 2], data: f32(128, k + 5) },
          { name: `${layer}.alpha`, dtype: "F32", shape: [], data: new Uint8Array(Float32Array.of(2).buffer) },
        ]);
      await Deno.writeFile(`${modelsDir}/Lora/real.safetensors`, encodeSafetensors(loraTensors));
      const tinyPlain = { ...base, batch: 1 };
      const none = await run(tinyPlain);
      const zero = await run({ ...tinyPlain, loras: [{ name: "real", weight: 0 }] });
      const one = await run({ ...tinyPlain, loras: [{ name: "real", weight: 1 }] });
      assert.deepEqual(zero.data, none.data);
      assert.notDeepEqual(one.data, none.data);

      // img2img from an uploaded picture: the picture's size (96x80), not the form's.
      const i2i = await run({ ...tinyPlain, init: { image: hint, denoise: 0.5 } });
      assert.deepEqual([i2i.width, i2i.height], [96, 80]);
    } finally {
      await server.shutdown();
    }
  } finally {
    await Deno.remove(modelsDir, { recursive: true });
    await Deno.remove(outputDir, { recursive: true });
  }
});

Deno.test("ui api: sd-webui's progress carries the running job's latest preview as current_image while polled", async () => {
  await withServer(undefined, async (base) => {
    const r = await fetch(`${base}/v1/graphs`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify(tinyGraph({ seed: 9, steps: 1000 })),
    });
    assert.equal(r.status, 202);
    const { id } = await r.json();
    const progress = async (query = "") =>
      await (await fetch(`${base}/sdapi/v1/progress${query}`, { headers: auth })).json();
    // Polling is watching: previews are drawn from the next step on, and the latest is current_image.
    let p = await progress();
    for (const until = Date.now() + 60_000; p.current_image === null && Date.now() < until;) {
      await new Promise((res) => setTimeout(res, 100));
      p = await progress();
    }
    assert.equal(p.state.job, id);
    assert.equal(typeof p.current_image, "string", JSON.stringify(p));
    const png = decodePngImage(Uint8Array.from(atob(p.current_image), (c) => c.charCodeAt(0)));
    assert.deepEqual([png.image.width, png.image.height], [8, 8]);
    assert.ok(p.state.sampling_step >= 1 && p.state.sampling_steps === 1000, JSON.stringify(p.state));
    // A client that does not want the picture gets none.
    assert.equal((await progress("?skip_current_image=true")).current_image, null);
    const stop = await fetch(`${base}/sdapi/v1/interrupt`, { method: "POST", headers: auth });
    assert.equal(stop.status, 200);
    await stop.body?.cancel();
    const job = await (await fetch(`${base}/v1/jobs/${id}`, { headers: auth })).json();
    for (let i = 0; i < 100 && job.status !== "cancelled"; i++) {
      await new Promise((res) => setTimeout(res, 100));
      Object.assign(job, await (await fetch(`${base}/v1/jobs/${id}`, { headers: auth })).json());
    }
    assert.equal(job.status, "cancelled");
  });
});
