/**
 * The ComfyUI API over real HTTP and a real websocket, as a ComfyUI client drives it: POST /prompt with
 * a client id, the /ws messages, /history, /view, /upload/image; and POST /v1/graphs/from-comfy.
 */

import assert from "node:assert/strict";
import { decodePngImage, encodePngImage } from "../plugins/image/png.ts";
import { comfyToGraph } from "./comfy.ts";
import { defaultWorkflow } from "./comfy_fixtures.ts";
import { startServer } from "./server.ts";

type Message = { type: string; data: Record<string, unknown> };

/** The default workflow on the tiny model, small and quick. */
function tinyWorkflow(seed: number) {
  const w = defaultWorkflow("tiny");
  Object.assign(w["3"].inputs, { seed, steps: 2 });
  Object.assign(w["5"].inputs, { width: 64, height: 64 });
  return w;
}

async function post(base: string, path: string, body: unknown) {
  const r = await fetch(`${base}${path}`, { method: "POST", body: JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
}

Deno.test("comfy api: /prompt runs a workflow, with /ws messages, /history and /view as ComfyUI clients read them", async () => {
  const outputDir = await Deno.makeTempDir({ prefix: "sdflow-comfy-api-" });
  const server = await startServer({ port: 0, outputDir });
  const base = `http://127.0.0.1:${server.addr.port}`;
  const ws = new WebSocket(`ws://127.0.0.1:${server.addr.port}/ws?clientId=client-1`);
  const messages: Message[] = [];
  const waiters: (() => void)[] = [];
  ws.onmessage = (e) => {
    messages.push(JSON.parse(e.data));
    for (const w of waiters.splice(0)) w();
  };
  const waitFor = async (pred: (m: Message) => boolean): Promise<Message> => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const hit = messages.find(pred);
      if (hit) return hit;
      assert.ok(Date.now() < deadline, `no such message; got ${messages.map((m) => m.type).join(",")}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 500);
      });
    }
  };
  try {
    const hello = await waitFor((m) => m.type === "status");
    assert.equal(hello.data.sid, "client-1");

    const sent = await post(base, "/prompt", { prompt: tinyWorkflow(5), client_id: "client-1" });
    assert.equal(sent.status, 200, JSON.stringify(sent.json));
    assert.deepEqual(sent.json.node_errors, {});
    const pid = sent.json.prompt_id as string;
    await waitFor((m) => m.type === "executing" && m.data.node === null && m.data.prompt_id === pid);
    const mine = messages.filter((m) => m.data.prompt_id === pid);
    const types = mine.map((m) => m.type);
    assert.equal(types[0], "execution_start");
    assert.ok(types.indexOf("execution_success") < types.lastIndexOf("executing"), types.join(","));
    // The sampler (ComfyUI node 3) runs with progress over its 2 steps.
    assert.ok(mine.some((m) => m.type === "executing" && m.data.node === "3"));
    const progress = mine.filter((m) => m.type === "progress" && m.data.node === "3");
    assert.deepEqual(progress.map((m) => [m.data.value, m.data.max]).at(-1), [2, 2]);
    const executed = mine.find((m) => m.type === "executed")!;
    assert.equal(executed.data.node, "9");
    const images = (executed.data.output as { images: { filename: string; subfolder: string; type: string }[] }).images;
    assert.equal(images.length, 1);
    assert.deepEqual([images[0].subfolder, images[0].type], ["", "output"]);

    const history = await (await fetch(`${base}/history/${pid}`)).json();
    assert.equal(history[pid].status.completed, true);
    assert.equal(history[pid].status.status_str, "success");
    assert.deepEqual(history[pid].outputs["9"].images, images);
    const view = await fetch(`${base}/view?filename=${encodeURIComponent(images[0].filename)}&type=output&subfolder=`);
    assert.equal(view.status, 200);
    assert.equal(decodePngImage(new Uint8Array(await view.arrayBuffer())).image.width, 64);
    assert.deepEqual(await (await fetch(`${base}/history/nope`)).json(), {});

    // Another seed: the loader, prompts and empty latent come from the cache (execution_cached).
    const again = await post(base, "/prompt", { prompt: tinyWorkflow(6), client_id: "client-1" });
    const pid2 = again.json.prompt_id as string;
    await waitFor((m) => m.type === "execution_success" && m.data.prompt_id === pid2);
    const cached = messages.find((m) => m.type === "execution_cached" && m.data.prompt_id === pid2)!;
    assert.deepEqual((cached.data.nodes as string[]).sort(), ["4", "5", "6", "7"]);
    // A client with another id hears no execution messages of this one.
    assert.ok(messages.every((m) => m.type === "status" || m.data.prompt_id === pid || m.data.prompt_id === pid2));

    // Errors: an unsupported node, and a value sdflow refuses, both as ComfyUI's node_errors.
    const freeu = tinyWorkflow(7) as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
    freeu["10"] = { class_type: "FreeU_V2", inputs: { model: ["4", 0] } };
    freeu["3"].inputs.model = ["10", 0];
    const bad = await post(base, "/prompt", { prompt: freeu });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.node_errors["10"].class_type, "FreeU_V2");
    assert.match(bad.json.error.message, /FreeU_V2/);
    const zero = tinyWorkflow(7);
    zero["3"].inputs.steps = 0;
    const badSteps = await post(base, "/prompt", { prompt: zero });
    assert.equal(badSteps.status, 400);
    assert.equal(badSteps.json.node_errors["3"].class_type, "KSampler");
    assert.match(badSteps.json.error.message, /steps/);
    assert.equal((await post(base, "/prompt", { prompt: "x" })).status, 400);
    const traversal = await fetch(`${base}/view?filename=${encodeURIComponent("../../etc/passwd")}&type=output`);
    assert.equal(traversal.status, 404);
    await traversal.body?.cancel();
    const badType = await fetch(`${base}/view?filename=x.png&type=bogus`);
    assert.equal(badType.status, 400);
    await badType.body?.cancel();
  } finally {
    ws.close();
    await server.shutdown();
    await Deno.remove(outputDir, { recursive: true });
  }
});

Deno.test("comfy api: /upload/image then a LoadImage → VAEEncode img2img workflow; /v1/graphs/from-comfy", async () => {
  const outputDir = await Deno.makeTempDir({ prefix: "sdflow-comfy-api-" });
  const server = await startServer({ port: 0, outputDir });
  const base = `http://127.0.0.1:${server.addr.port}`;
  try {
    const png = encodePngImage({ width: 64, height: 64, channels: 3, data: new Uint8Array(64 * 64 * 3).fill(90) });
    const form = new FormData();
    form.append("image", new File([new Uint8Array(png)], "start.png", { type: "image/png" }));
    const up = await fetch(`${base}/upload/image`, { method: "POST", body: form });
    assert.equal(up.status, 200);
    assert.deepEqual(await up.json(), { name: "start.png", subfolder: "", type: "input" });
    const junk = new FormData();
    junk.append("image", new File([new TextEncoder().encode("not a png")], "x.png"));
    const refused = await fetch(`${base}/upload/image`, { method: "POST", body: junk });
    assert.equal(refused.status, 400);
    assert.match((await refused.json()).error, /not a PNG/);

    const w = tinyWorkflow(3) as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
    w["20"] = { class_type: "LoadImage", inputs: { image: "start.png" } };
    w["21"] = { class_type: "VAEEncode", inputs: { pixels: ["20", 0], vae: ["4", 2] } };
    w["3"].inputs.latent_image = ["21", 0];
    w["3"].inputs.denoise = 0.5;
    const sent = await post(base, "/prompt", { prompt: w });
    assert.equal(sent.status, 200, JSON.stringify(sent.json));
    await server.queue.get(sent.json.prompt_id)!.done;
    const history = await (await fetch(`${base}/history/${sent.json.prompt_id}`)).json();
    const entry = history[sent.json.prompt_id];
    assert.equal(entry.status.status_str, "success", JSON.stringify(entry.status.messages));
    assert.equal(entry.outputs["9"].images.length, 1);

    // The translation alone, for the web UI.
    const t = await post(base, "/v1/graphs/from-comfy", w);
    assert.equal(t.status, 200);
    assert.deepEqual(t.json.graph, comfyToGraph(w).graph);
    w["3"].class_type = "SamplerCustomAdvanced";
    const bad = await post(base, "/v1/graphs/from-comfy", w);
    assert.equal(bad.status, 400);
    assert.deepEqual([bad.json.node, bad.json.class_type], ["3", "SamplerCustomAdvanced"]);
    assert.match(bad.json.error, /node 3 \(SamplerCustomAdvanced\)/);
    const notJson = await fetch(`${base}/v1/graphs/from-comfy`, { method: "POST", body: "{" });
    assert.equal(notJson.status, 400);
    await notJson.body?.cancel();
  } finally {
    await server.shutdown();
    await Deno.remove(outputDir, { recursive: true });
  }
});
