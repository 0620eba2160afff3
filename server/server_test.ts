/**
 * The server over real HTTP on a free loopback port, with the tiny model: sd-webui txt2img, the OpenAI SDK,
 * native graphs with SSE progress and the output cache, and bad input (each a 4xx JSON error, the server
 * still serving after it).
 */

import assert from "node:assert/strict";
import OpenAI, { toFile } from "openai";
import { decodePngImage, encodePngImage } from "../plugins/image/png.ts";
import { tinyCheckpointPath } from "../plugins/nodes/checkpoint.ts";
import { encodeBase64, type SdflowServer, startServer } from "./server.ts";
import type { MemoryGraphQueue } from "./jobs.ts";
import { tinyGraph } from "./test_graphs.ts";

const API_KEY = "test-key-3f9a";
const auth = { authorization: `Bearer ${API_KEY}` };

async function withServer(
  fn: (base: string, server: SdflowServer) => Promise<void>,
  opts: { apiKey?: string; maxQueued?: number } = {},
): Promise<void> {
  const outputDir = await Deno.makeTempDir({ prefix: "sdflow-serve-" });
  const server = await startServer({ port: 0, hostname: "127.0.0.1", outputDir, ...opts });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, server);
  } finally {
    await server.shutdown();
    await Deno.remove(outputDir, { recursive: true });
  }
}

async function post(base: string, path: string, body: unknown, headers: Record<string, string> = auth) {
  const r = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() as Record<string, unknown> };
}

function decodeB64(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

const DEMO_GRAPH = tinyGraph({ path: "out/demo.png" });

/** Reads a job's SSE stream to its end; returns the events as [name, data]. */
async function readEvents(
  base: string,
  id: string,
  onOpen = () => {},
): Promise<[string, Record<string, unknown>][]> {
  const r = await fetch(`${base}/v1/jobs/${id}/events`, { headers: auth });
  onOpen();
  assert.deepEqual(r.headers.get("content-type"), "text/event-stream");
  const text = await r.text();
  return text.split("\n\n").filter((b) => b.trim()).map((block) => {
    const event = /^event: (.*)$/m.exec(block)![1];
    const data = JSON.parse(/^data: (.*)$/m.exec(block)![1]);
    return [event, data];
  });
}

Deno.test("serve: sd-webui txt2img returns decodable PNGs of the requested size, with info", async () => {
  await withServer(async (base) => {
    const { status, json } = await post(base, "/sdapi/v1/txt2img", {
      prompt: "a red fox",
      negative_prompt: "blurry",
      steps: 2,
      cfg_scale: 5,
      sampler_name: "Euler",
      scheduler: "Karras",
      seed: 7,
      width: 128,
      height: 64,
      batch_size: 2,
      n_iter: 2,
      override_settings: { sd_model_checkpoint: "tiny" },
    });
    assert.deepEqual(status, 200, JSON.stringify(json));
    const images = json.images as string[];
    assert.deepEqual(images.length, 4);
    for (const b64 of images) {
      const png = decodePngImage(decodeB64(b64));
      assert.deepEqual([png.image.width, png.image.height], [128, 64]);
    }
    const info = JSON.parse(json.info as string);
    // Picture i of a batch has seed + i; each iteration starts batch_size seeds further (as sd-webui).
    assert.deepEqual(info.all_seeds, [7, 8, 9, 10]);
    assert.deepEqual(info.infotexts.length, 4);
    assert.match(
      info.infotexts[0],
      /^a red fox\nNegative prompt: blurry\nSteps: 2, Sampler: Euler, Schedule type: Karras, CFG scale: 5, Seed: 7, Size: 128x64/,
    );
    assert.match(info.infotexts[1], /Seed: 8/);
    assert.match(info.infotexts[3], /Seed: 10/);
    assert.deepEqual((json.parameters as Record<string, unknown>).prompt, "a red fox");

    // The listings an sd-webui client reads first.
    const models = await (await fetch(`${base}/sdapi/v1/sd-models`, { headers: auth })).json();
    assert.deepEqual(models[0].title, "tiny");
    const samplers = await (await fetch(`${base}/sdapi/v1/samplers`, { headers: auth })).json();
    assert(samplers.some((s: { name: string }) => s.name === "Euler a"));
    const schedulers = await (await fetch(`${base}/sdapi/v1/schedulers`, { headers: auth })).json();
    assert(schedulers.some((s: { label: string }) => s.label === "Karras"));
    const progress = await (await fetch(`${base}/sdapi/v1/progress`, { headers: auth })).json();
    assert.deepEqual(progress.state.job_count, 0);
  }, { apiKey: API_KEY });
});

Deno.test("serve: the OpenAI SDK gets b64_json and url pictures back", async () => {
  await withServer(async (base) => {
    const client = new OpenAI({ apiKey: API_KEY, baseURL: `${base}/v1`, maxRetries: 0 });
    // `steps` is sdflow's extension (few steps for the tiny model); the SDK passes unknown fields through.
    const request: OpenAI.ImageGenerateParamsNonStreaming & { steps: number } = {
      prompt: "a lighthouse",
      n: 1,
      size: "64x64" as "256x256",
      response_format: "b64_json",
      steps: 2,
    };
    const res = await client.images.generate(request);
    assert.deepEqual(res.data?.length, 1);
    const png = decodePngImage(decodeB64(res.data![0].b64_json!));
    assert.deepEqual([png.image.width, png.image.height], [64, 64]);

    const byUrl = await post(base, "/v1/images/generations", {
      prompt: "a lighthouse",
      size: "64x64",
      response_format: "url",
      steps: 2,
    });
    assert.deepEqual(byUrl.status, 200, JSON.stringify(byUrl.json));
    const url = (byUrl.json.data as { url: string }[])[0].url;
    const img = await fetch(url, { headers: auth });
    assert.deepEqual(img.headers.get("content-type"), "image/png");
    assert.deepEqual(decodePngImage(new Uint8Array(await img.arrayBuffer())).image.width, 64);

    // A wrong key through the SDK: 401, not a picture.
    const wrong = new OpenAI({ apiKey: "nope", baseURL: `${base}/v1`, maxRetries: 0 });
    let status = 0;
    try {
      await wrong.images.generate({ prompt: "x", size: "64x64" as "256x256" });
    } catch (e) {
      status = (e as { status: number }).status;
    }
    assert.deepEqual(status, 401);
  }, { apiKey: API_KEY });
});

Deno.test("serve: /v1/graphs runs a graph with SSE progress; a seed change re-runs only the sampler onwards", async () => {
  await withServer(async (base, server) => {
    // The engine is held until the stream is open, so that no event can pass before it.
    let release!: () => void;
    (server.queue as MemoryGraphQueue).submit("hold", () => new Promise<void>((r) => release = r));
    const first = await post(base, "/v1/graphs", DEMO_GRAPH);
    assert.deepEqual(first.status, 202, JSON.stringify(first.json));
    const id = first.json.id as string;
    const events = await readEvents(base, id, () => release());
    assert.deepEqual([events[0][0], events[0][1].status], ["status", "queued"]);
    const names = events.map(([e]) => e);
    assert(names.includes("progress"), names.join(","));
    const steps = events.filter(([e, d]) => e === "progress" && d.node === "sampler").map(([, d]) => d.done);
    assert.deepEqual(steps.at(-1), 2, JSON.stringify(events));
    const [lastName, last] = events.at(-1)!;
    assert.deepEqual([lastName, last.status], ["status", "succeeded"]);

    const job = await (await fetch(`${base}/v1/jobs/${id}`, { headers: auth })).json();
    assert.deepEqual(job.status, "succeeded");
    assert.deepEqual(job.result.files, [`${id}_out_demo.png`]);
    const png = await fetch(`${base}/v1/outputs/${job.result.files[0]}`, { headers: auth });
    assert.deepEqual(decodePngImage(new Uint8Array(await png.arrayBuffer())).image.height, 64);

    // Same graph, another seed: the loaded model and encoded prompts come from the server's cache.
    const again = structuredClone(DEMO_GRAPH);
    again.nodes.sampler.inputs.seed = 43;
    const second = await post(base, "/v1/graphs", again);
    await readEvents(base, second.json.id as string);
    const job2 = await (await fetch(`${base}/v1/jobs/${second.json.id}`, { headers: auth })).json();
    assert.deepEqual(job2.status, "succeeded");
    assert.deepEqual([...job2.result.cached].sort(), ["checkpoint", "latent", "negative", "positive"]);
    assert.deepEqual(job2.result.executed, ["sampler", "decode", "save"]);

    // A live preview is written inside the output folder, apart from the job's pictures.
    const withPreview = structuredClone(DEMO_GRAPH) as typeof DEMO_GRAPH & { nodes: { sampler: { inputs: object } } };
    Object.assign(withPreview.nodes.sampler.inputs, { preview: "proj", preview_path: "live.png", seed: 44 });
    const third = await post(base, "/v1/graphs", withPreview);
    assert.equal(third.status, 202, JSON.stringify(third.json));
    await server.queue.get(third.json.id as string)!.done;
    const job3 = await (await fetch(`${base}/v1/jobs/${third.json.id}`, { headers: auth })).json();
    assert.equal(job3.status, "succeeded", job3.error);
    assert.deepEqual(job3.result.files, [`${third.json.id}_out_demo.png`]);
    const preview = await fetch(`${base}/v1/outputs/preview-${third.json.id}_live.png`, { headers: auth });
    assert.equal(preview.status, 200);
    await preview.body?.cancel();
    Object.assign(withPreview.nodes.sampler.inputs, { preview_path: "/tmp/evil.png" });
    const evil = await post(base, "/v1/graphs", withPreview);
    assert.equal(evil.status, 400);
    assert.match(String(evil.json.error), /preview_path/);

    // Cancelling: a finished job is a 409; an unknown one a 404.
    const del = await fetch(`${base}/v1/jobs/${id}`, { method: "DELETE", headers: auth });
    assert.deepEqual(del.status, 409);
    await del.body?.cancel();
    const unknown = await fetch(`${base}/v1/jobs/nope`, { method: "DELETE", headers: auth });
    assert.deepEqual(unknown.status, 404);
    await unknown.body?.cancel();
  }, { apiKey: API_KEY });
});

Deno.test("serve: a queued job can be cancelled; a full queue answers 429", async () => {
  await withServer(async (base, server) => {
    // Hold the engine with a job that waits on a promise we control.
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    (server.queue as MemoryGraphQueue).submit("hold", () => gate);
    const queued = await post(base, "/v1/graphs", DEMO_GRAPH);
    assert.deepEqual(queued.status, 202);
    const full = await post(base, "/v1/graphs", DEMO_GRAPH);
    assert.deepEqual(full.status, 429);
    assert.match(String(full.json.error), /queue is full/);
    const del = await fetch(`${base}/v1/jobs/${queued.json.id}`, { method: "DELETE" });
    assert.deepEqual(del.status, 200);
    assert.deepEqual((await del.json()).status, "cancelled");
    release();
  }, { maxQueued: 1 });
});

Deno.test("serve: bad input gets a 4xx JSON error and the server keeps serving", async () => {
  await withServer(async (base) => {
    const cases: [string, () => Promise<{ status: number; json: Record<string, unknown> }>, number, RegExp][] = [
      ["malformed JSON", () => post(base, "/sdapi/v1/txt2img", "{not json"), 400, /malformed JSON/],
      ["not an object", () => post(base, "/v1/graphs", "[1,2]"), 400, /JSON object/],
      [
        "invalid graph",
        () => {
          const g = structuredClone(DEMO_GRAPH);
          (g.nodes.sampler.inputs as Record<string, unknown>).steps = 0;
          return post(base, "/v1/graphs", g);
        },
        400,
        /must be >= 1/,
      ],
      [
        "plugins in a network graph",
        () => post(base, "/v1/graphs", { ...DEMO_GRAPH, plugins: ["./evil.ts"] }),
        400,
        /plugins/,
      ],
      [
        "traversal model name",
        () =>
          post(base, "/sdapi/v1/txt2img", {
            prompt: "x",
            steps: 1,
            width: 64,
            height: 64,
            override_settings: { sd_model_checkpoint: "../../etc/passwd" },
          }),
        400,
        /model name must be a file name/,
      ],
      [
        "a backend library from the network",
        () => {
          const g = structuredClone(DEMO_GRAPH) as { nodes: Record<string, { type: string; inputs: unknown }> };
          g.nodes.checkpoint.inputs = { backend: "/tmp/evil.so" };
          return post(base, "/v1/graphs", g);
        },
        400,
        /only "cpu" is allowed/,
      ],
      [
        "an embeddings folder from the network",
        () => {
          const g = structuredClone(DEMO_GRAPH) as { nodes: Record<string, { type: string; inputs: unknown }> };
          g.nodes.checkpoint = { type: "checkpoint", inputs: { path: "tiny", embeddings_dir: "/etc" } };
          return post(base, "/v1/graphs", g);
        },
        400,
        /embeddings_dir/,
      ],
      [
        "an upscaler named by a path outside --models",
        () => {
          const g = structuredClone(DEMO_GRAPH) as { nodes: Record<string, unknown> };
          g.nodes.up = { type: "upscale_model_loader", inputs: { path: "/etc/passwd" } };
          return post(base, "/v1/graphs", g);
        },
        400,
        /nodes\/up\/inputs\/path|must be a file name without folders/,
      ],
      [
        "traversal save path",
        () => {
          const g = structuredClone(DEMO_GRAPH);
          g.nodes.save.inputs.path = "../../tmp/x.png";
          return post(base, "/v1/graphs", g);
        },
        400,
        /without "\.\."/,
      ],
      [
        "unknown model",
        () => post(base, "/sdapi/v1/txt2img", { prompt: "x", override_settings: { sd_model_checkpoint: "nope" } }),
        404,
        /unknown model/,
      ],
      [
        "unknown sampler",
        () => post(base, "/sdapi/v1/txt2img", { prompt: "x", sampler_name: "Eulr a" }),
        400,
        /did you mean "Euler a"/,
      ],
      [
        "width not a multiple of 8",
        () => post(base, "/sdapi/v1/txt2img", { prompt: "x", width: 60, height: 64 }),
        400,
        /width/,
      ],
      ["bad size", () => post(base, "/v1/images/generations", { prompt: "x", size: "big" }), 400, /WIDTHxHEIGHT/],
      [
        "wrong API key",
        () => post(base, "/sdapi/v1/txt2img", { prompt: "x" }, { authorization: "Bearer wrong" }),
        401,
        /API key/,
      ],
      ["no API key", () => post(base, "/sdapi/v1/txt2img", { prompt: "x" }, {}), 401, /API key/],
    ];
    for (const [name, send, status, error] of cases) {
      const r = await send();
      assert.deepEqual(r.status, status, `${name}: ${JSON.stringify(r.json)}`);
      assert.match(String(r.json.error), error, name);
    }
    const invalid = await post(base, "/v1/graphs", {
      ...DEMO_GRAPH,
      nodes: { ...DEMO_GRAPH.nodes, latent: { type: "empty_latent", inputs: { width: "wide" } } },
    });
    const d = (invalid.json.diagnostics as Record<string, string>[])[0];
    assert.deepEqual([d.node, d.input, d.pointer], ["latent", "width", "/nodes/latent/inputs/width"]);

    // sd-webui's HTTP Basic auth carries the key as the password.
    const basic = await fetch(`${base}/sdapi/v1/samplers`, {
      headers: { authorization: `Basic ${btoa(`u:${API_KEY}`)}` },
    });
    assert.deepEqual(basic.status, 200);
    await basic.body?.cancel();

    // Outputs only from the output folder.
    for (const name of ["..%2F..%2Fetc%2Fpasswd", "..", "nope.png"]) {
      const r = await fetch(`${base}/v1/outputs/${name}`, { headers: auth });
      assert.deepEqual(r.status, 404, name);
      await r.body?.cancel();
    }

    // A 100 MB body: 413 before it is read.
    const big = new Uint8Array(100 * 1024 * 1024).fill(32);
    const r = await fetch(`${base}/sdapi/v1/txt2img`, { method: "POST", headers: auth, body: big }).catch((e) => e);
    if (r instanceof Response) {
      assert.deepEqual(r.status, 413);
      assert.match((await r.json()).error, /larger than/);
    } else throw new Error(`the 100 MB request failed instead of getting 413: ${r}`);

    // The same without a Content-Length (chunked): counted while read, refused past the limit.
    const chunk = new Uint8Array(1024 * 1024).fill(32);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent++ < 40) c.enqueue(chunk);
        else c.close();
      },
    });
    const chunked = await fetch(`${base}/sdapi/v1/txt2img`, { method: "POST", headers: auth, body: stream })
      .catch((e) => e);
    if (!(chunked instanceof Response)) {
      throw new Error(`the chunked request failed instead of getting 413: ${chunked}`);
    }
    assert.equal(chunked.status, 413);
    await chunked.body?.cancel();

    // Still serving.
    const ok = await post(base, "/sdapi/v1/txt2img", { prompt: "ok", steps: 1, width: 64, height: 64, seed: 1 });
    assert.deepEqual(ok.status, 200, JSON.stringify(ok.json));
  }, { apiKey: API_KEY });
});

Deno.test("serve: a model from --models by file name without extension stays resident across seeds", async () => {
  const modelsDir = await Deno.makeTempDir({ prefix: "sdflow-models-" });
  const outputDir = await Deno.makeTempDir({ prefix: "sdflow-serve-" });
  await Deno.copyFile(await tinyCheckpointPath(0), `${modelsDir}/mini.safetensors`);
  await Deno.writeTextFile(`${modelsDir}/notes.txt`, "not a model");
  const server = await startServer({ port: 0, outputDir, modelsDir });
  const base = `http://127.0.0.1:${server.addr.port}`;
  try {
    const models = await (await fetch(`${base}/sdapi/v1/sd-models`)).json();
    assert.deepEqual(models.map((m: { title: string }) => m.title), ["tiny", "mini.safetensors"]);
    const ask = (seed: number) =>
      post(base, "/sdapi/v1/txt2img", {
        prompt: "a boat",
        steps: 1,
        width: 64,
        height: 64,
        seed,
        override_settings: { sd_model_checkpoint: "mini" },
      }, {});
    // Without a name: the first checkpoint of the folder.
    const first = await post(
      base,
      "/sdapi/v1/txt2img",
      { prompt: "a boat", steps: 1, width: 64, height: 64, seed: 1 },
      {},
    );
    assert.equal(JSON.parse(first.json.info as string).sd_model_name, "mini");
    assert.deepEqual(first.status, 200, JSON.stringify(first.json));
    const second = await ask(2);
    assert.deepEqual(second.status, 200, JSON.stringify(second.json));
    const job = await (await fetch(`${base}/v1/jobs/${JSON.parse(second.json.info as string).sdflow_job}`)).json();
    assert.deepEqual(job.result.runs.map((r: { executed: string[] }) => r.executed), [["sampler", "decode", "save"]]);
    assert.ok(job.result.runs[0].cached.includes("checkpoint"));
    // sd-webui clients switch the model through the options.
    const opts0 = await (await fetch(`${base}/sdapi/v1/options`)).json();
    assert.equal(opts0.sd_model_checkpoint, "mini.safetensors");
    assert.equal((await post(base, "/sdapi/v1/options", { sd_model_checkpoint: "tiny" }, {})).status, 200);
    assert.equal((await (await fetch(`${base}/sdapi/v1/options`)).json()).sd_model_checkpoint, "tiny");
    const unknownOption = await post(base, "/sdapi/v1/options", { CLIP_stop_at_last_layers: 2 }, {});
    assert.equal(unknownOption.status, 400);
    assert.match(String(unknownOption.json.error), /not supported/);
    const badModel = await post(base, "/sdapi/v1/options", { sd_model_checkpoint: "../mini" }, {});
    assert.equal(badModel.status, 400);
    // LoRAs: listed from Lora/, named by file name in a graph's lora node, never by path.
    await Deno.mkdir(`${modelsDir}/Lora`);
    await Deno.writeTextFile(`${modelsDir}/Lora/style.safetensors`, "not really a LoRA");
    const loras = await (await fetch(`${base}/sdapi/v1/loras`)).json();
    assert.deepEqual(loras.map((l: { name: string }) => l.name), ["style"]);
    const withLora = (path: string) => {
      const lg = structuredClone(DEMO_GRAPH) as { nodes: Record<string, { type: string; inputs: unknown }> };
      lg.nodes.styled = {
        type: "lora",
        inputs: { model: { from: "checkpoint.model" }, clip: { from: "checkpoint.clip" }, path },
      };
      (lg.nodes.sampler.inputs as Record<string, unknown>).model = { from: "styled.model" };
      return post(base, "/v1/graphs", lg, {});
    };
    const loraUnknown = await withLora("nope");
    assert.equal(loraUnknown.status, 404, JSON.stringify(loraUnknown.json));
    const loraEscape = await withLora("../Lora/style.safetensors");
    assert.equal(loraEscape.status, 400, JSON.stringify(loraEscape.json));
    const loraJob = await withLora("style");
    assert.equal(loraJob.status, 202, JSON.stringify(loraJob.json));
    const lj = server.queue.get(loraJob.json.id as string)!;
    await lj.done;
    // The junk file was found inside the models folder and read: the run fails on its content.
    assert.equal(lj.status, "failed");
    assert.match(lj.error ?? "", /styled/);
    // A graph may name the model by file name; a path is refused.
    const g = structuredClone(DEMO_GRAPH) as { nodes: Record<string, unknown> };
    g.nodes.checkpoint = { type: "checkpoint", inputs: { path: "mini" } };
    const ok = await post(base, "/v1/graphs", g, {});
    assert.deepEqual(ok.status, 202, JSON.stringify(ok.json));
    g.nodes.checkpoint = { type: "checkpoint", inputs: { path: `${modelsDir}/mini.safetensors` } };
    const abs = await post(base, "/v1/graphs", g, {});
    assert.deepEqual(abs.status, 400);
    assert.match(String(abs.json.error), /file name without folders/);
    await server.queue.get(ok.json.id as string)!.done;
  } finally {
    await server.shutdown();
    await Deno.remove(modelsDir, { recursive: true });
    await Deno.remove(outputDir, { recursive: true });
  }
});

Deno.test("serve: command line: --help, a bad flag and a missing models folder exit 0/2 with one line", async () => {
  const run = async (...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../cli/main.ts", import.meta.url).pathname, "serve", ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: out.code, text: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr) };
  };
  const help = await run("--help");
  assert.deepEqual(help.code, 0);
  assert.match(help.text, /usage: sdflow serve/);
  const bad = await run("--prot", "1");
  assert.deepEqual(bad.code, 2);
  assert.match(bad.text, /unknown argument "--prot"/);
  const port = await run("--port", "http");
  assert.deepEqual(port.code, 2);
  assert.match(port.text, /--port expects an integer/);
  const models = await run("--models", "/nonexistent/models");
  assert.deepEqual(models.code, 2);
  assert.match(models.text, /no such folder/);
});

function rgb(width: number, height: number, value: number, channels: 3 | 4 = 3, alpha = 255) {
  const data = new Uint8Array(width * height * channels).fill(value);
  if (channels === 4) { for (let i = 3; i < data.length; i += 4) data[i] = alpha; }
  return { width, height, channels, data };
}

Deno.test("serve: sd-webui img2img starts from the init image; bad init images are 400s", async () => {
  await withServer(async (base, server) => {
    const flat = encodeBase64(
      encodePngImage({ width: 64, height: 64, channels: 3, data: new Uint8Array(64 * 64 * 3).fill(200) }),
    );
    const made = await post(base, "/sdapi/v1/txt2img", { prompt: "a tree", steps: 1, width: 64, height: 64, seed: 3 });
    assert.deepEqual(made.status, 200, JSON.stringify(made.json));
    const ask = (init: string, extra: Record<string, unknown> = {}) =>
      post(base, "/sdapi/v1/img2img", {
        prompt: "a tree",
        steps: 2,
        seed: 5,
        denoising_strength: 0.5,
        init_images: [init],
        ...extra,
      });
    const fromMade = await ask((made.json.images as string[])[0], { width: 64, height: 64 });
    assert.deepEqual(fromMade.status, 200, JSON.stringify(fromMade.json));
    const fromFlat = await ask(`data:image/png;base64,${flat}`);
    assert.deepEqual(fromFlat.status, 200, JSON.stringify(fromFlat.json));
    const a = decodePngImage(decodeB64((fromMade.json.images as string[])[0]));
    const b = decodePngImage(decodeB64((fromFlat.json.images as string[])[0]));
    assert.deepEqual([a.image.width, a.image.height], [64, 64]);
    // Same seed and prompt, different init images: different pictures (the init image is used).
    assert.notDeepEqual(a.image.data, b.image.data);
    assert.match(a.parameters ?? "", /Denoising strength: 0\.5/);
    // An inpainting mask: all black keeps the whole picture (whatever the seed); inverted, all is repainted.
    const black = encodeBase64(encodePngImage(rgb(64, 64, 0)));
    const kept = await Promise.all([5, 6].map((seed) => ask(flat, { mask: black, seed, denoising_strength: 1 })));
    for (const k of kept) assert.equal(k.status, 200, JSON.stringify(k.json));
    const keptPictures = kept.map((k) => decodePngImage(decodeB64((k.json.images as string[])[0])).image.data);
    assert.deepEqual(keptPictures[0], keptPictures[1]);
    const repainted = await Promise.all(
      [5, 6].map((seed) => ask(flat, { mask: black, inpainting_mask_invert: 1, seed, denoising_strength: 1 })),
    );
    const repaintedPictures = repainted.map((k) =>
      decodePngImage(decodeB64((k.json.images as string[])[0])).image.data
    );
    assert.notDeepEqual(repaintedPictures[0], repaintedPictures[1]);

    const cases: [Record<string, unknown>, RegExp][] = [
      [{ init_images: [btoa("GIF89a not a png")] }, /not a PNG image/],
      [{ init_images: ["%%%"] }, /not valid base64/],
      [{ init_images: [flat], width: 128 }, /does not resize/],
      [{ init_images: [flat], mask: "%%%" }, /field "mask": not valid base64/],
      [{ init_images: [flat], mask: encodeBase64(encodePngImage(rgb(32, 32, 0))) }, /field "mask": it is 32x32/],
      [{ init_images: [] }, /init_images/],
    ];
    for (const [extra, error] of cases) {
      const r = await post(base, "/sdapi/v1/img2img", { prompt: "x", steps: 1, ...extra });
      assert.deepEqual(r.status, 400, JSON.stringify(r.json));
      assert.match(String(r.json.error), error);
    }
    // No init file is left behind in the output folder.
    const left = await Array.fromAsync(Deno.readDir(server.engine.outputDir));
    assert.deepEqual(left.filter((e) => e.name.startsWith("init-")), []);
  });
});

Deno.test("serve: --cors answers preflights and marks answers (errors too) for the browser", async () => {
  const outputDir = await Deno.makeTempDir({ prefix: "sdflow-serve-" });
  const server = await startServer({ port: 0, outputDir, apiKey: API_KEY, corsOrigin: "https://app.example" });
  const base = `http://127.0.0.1:${server.addr.port}`;
  try {
    const pre = await fetch(`${base}/sdapi/v1/txt2img`, {
      method: "OPTIONS",
      headers: { origin: "https://app.example", "access-control-request-method": "POST" },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get("access-control-allow-origin"), "https://app.example");
    assert.match(pre.headers.get("access-control-allow-headers") ?? "", /authorization/);
    await pre.body?.cancel();
    const ok = await fetch(`${base}/sdapi/v1/samplers`, { headers: auth });
    assert.equal(ok.headers.get("access-control-allow-origin"), "https://app.example");
    await ok.body?.cancel();
    const denied = await fetch(`${base}/sdapi/v1/samplers`);
    assert.equal(denied.status, 401);
    assert.equal(denied.headers.get("access-control-allow-origin"), "https://app.example");
    await denied.body?.cancel();
  } finally {
    await server.shutdown();
    await Deno.remove(outputDir, { recursive: true });
  }
});

Deno.test("serve: DELETE stops a running job at its next sampler step", async () => {
  await withServer(async (base, server) => {
    const g = structuredClone(DEMO_GRAPH);
    g.nodes.sampler.inputs.steps = 1000;
    const sent = await post(base, "/v1/graphs", g, {});
    assert.equal(sent.status, 202, JSON.stringify(sent.json));
    const id = sent.json.id as string;
    const job = server.queue.get(id)!;
    const deadline = Date.now() + 30_000;
    while (!(job.progress.node === "sampler" && job.progress.done >= 1) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(job.status, "running");
    // The server answers while the engine works: sd-webui's progress shows the running job.
    const progress = await (await fetch(`${base}/sdapi/v1/progress`)).json();
    assert.equal(progress.state.job, id);
    assert.equal(progress.state.sampling_steps, 1000);
    assert.ok(progress.progress > 0 && progress.progress < 1, JSON.stringify(progress));
    const del = await fetch(`${base}/v1/jobs/${id}`, { method: "DELETE" });
    assert.equal(del.status, 202);
    assert.equal((await del.json()).cancelling, true);
    await job.done;
    const seen = await (await fetch(`${base}/v1/jobs/${id}`)).json();
    assert.equal(seen.status, "cancelled");
    assert.ok(seen.progress.done < 1000, `stopped at step ${seen.progress.done}`);
    // sd-webui's interrupt with nothing running is a no-op; the engine takes the next job.
    const interrupt = await post(base, "/sdapi/v1/interrupt", {}, {});
    assert.equal(interrupt.status, 200);
    const next = await post(base, "/sdapi/v1/txt2img", { prompt: "x", steps: 1, width: 64, height: 64, seed: 1 }, {});
    assert.equal(next.status, 200, JSON.stringify(next.json));
  });
});

Deno.test("serve: OpenAI SDK images.edit repaints the mask's transparent part; bad edits are 400s", async () => {
  await withServer(async (base) => {
    const client = new OpenAI({ apiKey: "unused", baseURL: `${base}/v1`, maxRetries: 0 });
    const picture = encodePngImage(rgb(64, 64, 120));
    const edit = async (mask: Uint8Array | undefined, seed: number, image = picture) => {
      const params = {
        image: await toFile(image, "picture.png", { type: "image/png" }),
        ...(mask ? { mask: await toFile(mask, "mask.png", { type: "image/png" }) } : {}),
        prompt: "a red door",
        n: 1,
        size: "64x64" as "256x256",
        response_format: "b64_json" as const,
        // sdflow's extensions, passed through by the SDK.
        steps: 2,
        seed,
      };
      const r = await client.images.edit(params as OpenAI.ImageEditParamsNonStreaming);
      return decodePngImage(decodeB64(r.data![0].b64_json!)).image;
    };
    // All transparent: everything is repainted, so the seed matters.
    const clear = encodePngImage(rgb(64, 64, 0, 4, 0));
    const a = await edit(clear, 1);
    const b = await edit(clear, 2);
    assert.deepEqual([a.width, a.height], [64, 64]);
    assert.notDeepEqual(a.data, b.data);
    // All opaque: nothing is repainted; the picture is kept whatever the seed.
    const opaque = encodePngImage(rgb(64, 64, 0, 4, 255));
    assert.deepEqual((await edit(opaque, 1)).data, (await edit(opaque, 2)).data);
    // Without a mask, the picture's own transparent pixels are the mask.
    const own = await edit(undefined, 1, encodePngImage(rgb(64, 64, 120, 4, 0)));
    assert.deepEqual(own.data, a.data);

    const bad = async (form: FormData, re: RegExp) => {
      const r = await fetch(`${base}/v1/images/edits`, { method: "POST", body: form });
      const body = await r.json();
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(body.error, re);
    };
    const form = (fields: Record<string, string | Uint8Array>) => {
      const f = new FormData();
      for (const [k, v] of Object.entries(fields)) {
        f.append(k, typeof v === "string" ? v : new File([new Uint8Array(v)], `${k}.png`, { type: "image/png" }));
      }
      return f;
    };
    await bad(form({ image: picture, prompt: "x" }), /must have transparent pixels/);
    await bad(form({ image: new TextEncoder().encode("GIF89a"), prompt: "x" }), /field "image": not a PNG/);
    await bad(form({ image: picture, mask: encodePngImage(rgb(32, 32, 0, 4, 0)), prompt: "x" }), /field "mask"/);
    await bad(form({ image: encodePngImage(rgb(60, 64, 0, 4, 0)), prompt: "x" }), /multiples of 8/);
    await bad(form({ image: clear, prompt: "x", size: "128x128" }), /field "size"/);
    await bad(form({ prompt: "x" }), /field "image"/);
    const notForm = await fetch(`${base}/v1/images/edits`, { method: "POST", body: "{}" });
    assert.equal(notForm.status, 400);
    await notForm.body?.cancel();
  });
});
