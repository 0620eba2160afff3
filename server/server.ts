/**
 * The HTTP server (Deno.serve): sdflow's native graph API, the sd-webui API and the OpenAI images API
 * over one in-process {@link JobQueue} and one {@link Engine}. Every error is JSON
 * (`{"error": "...", "diagnostics"?: [...]}`) with a 4xx status for bad requests; the server keeps serving.
 */

import { timingSafeEqual } from "node:crypto";
import { join } from "node:path";
import { formatDiagnostic } from "../dsl/errors.ts";
import type { Pipeline } from "../dsl/validate.ts";
import type { Latent } from "../models/types.ts";
import type { LivePreviewInfo } from "../plugins/node.ts";
import { decodePngImage } from "../plugins/image/png.ts";
import { Engine, RequestError } from "./engine.ts";
import { type Job, JobQueue, QueueFullError } from "./jobs.ts";
import {
  img2imgFields,
  type Img2ImgInit,
  modelList,
  openaiParams,
  samplerList,
  schedulerList,
  txt2imgGraph,
  type Txt2ImgParams,
  txt2imgParams,
} from "./sdapi.ts";
import { isUiPath, OutputLister, PreviewRenderer, schemaJson, storeUpload, uiFile } from "./ui_api.ts";

/** Options of {@link startServer}. */
export interface ServerOptions {
  port?: number;
  hostname?: string;
  modelsDir?: string;
  /** Where pictures are written; default `./outputs`. */
  outputDir?: string;
  /** Required in `Authorization: Bearer …` (or as the password of HTTP Basic auth) when set. */
  apiKey?: string;
  /** Largest request body in bytes (default 32 MiB); more is refused with 413. */
  maxBodyBytes?: number;
  /** Most jobs that may wait (default 16); more is refused with 429. */
  maxQueued?: number;
  /** `Access-Control-Allow-Origin` for browser clients (e.g. `*` or `https://app.example`); none: no CORS headers. */
  corsOrigin?: string;
  /** Called with the bound address once listening. */
  onListen?: (addr: Deno.NetAddr) => void;
}

/** A running server. */
export interface SdflowServer {
  readonly addr: Deno.NetAddr;
  readonly engine: Engine;
  readonly queue: JobQueue;
  readonly finished: Promise<void>;
  /** Stops listening and releases the loaded models. */
  shutdown(): Promise<void>;
}

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" };

function json(data: unknown, status = 200): Response {
  return new Response(JSON.stringify(data), { status, headers: JSON_HEADERS });
}

function errorResponse(status: number, message: string, extra: Record<string, unknown> = {}): Response {
  return json({ error: message, ...extra }, status);
}

class BodyTooLarge extends Error {}

/** Reads the body as text, refusing more than `max` bytes before reading them (Content-Length) or while reading. */
async function readBody(req: Request, max: number): Promise<string> {
  return new TextDecoder().decode(await readBytes(req, max));
}

/** Reads the body's bytes, refusing more than `max` (see {@link readBody}). */
async function readBytes(req: Request, max: number): Promise<Uint8Array> {
  const declared = Number(req.headers.get("content-length") ?? NaN);
  if (Number.isFinite(declared) && declared > max) throw new BodyTooLarge();
  if (!req.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = req.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      throw new BodyTooLarge();
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) all.set(c, at), at += c.byteLength;
  return all;
}

/** Base64 of bytes (btoa over 32 KiB slices: a spread of megabytes would overflow the stack). */
export function encodeBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

/** Bytes of base64 text, or a 400 naming the field. */
function decodeBase64(b64: string): Uint8Array {
  try {
    return Uint8Array.from(atob(b64.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch {
    throw new RequestError(400, 'field "init_images": not valid base64');
  }
}

/** Checks that an init image is a PNG whose size agrees with the request's width/height (when given). */
function decodeInitImage(b64: string, body: Record<string, unknown>): { width: number; height: number } {
  let image;
  try {
    image = decodePngImage(decodeBase64(b64)).image;
  } catch (e) {
    if (e instanceof RequestError) throw e;
    throw new RequestError(400, `field "init_images": not a PNG image: ${(e as Error).message.slice(0, 200)}`);
  }
  for (const [field, v] of [["width", image.width], ["height", image.height]] as const) {
    if (body[field] !== undefined && body[field] !== v) {
      throw new RequestError(
        400,
        `field "${field}": the init image is ${image.width}x${image.height}; sdflow does not resize init images ` +
          `yet, so send it at the size wanted (or leave width and height out)`,
      );
    }
  }
  return { width: image.width, height: image.height };
}

/** Parses a JSON object body, or throws a 400 naming the problem. */
function parseObject(text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new RequestError(400, `malformed JSON: ${(e as Error).message.slice(0, 200)}`);
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new RequestError(400, "the body must be a JSON object");
  return v as Record<string, unknown>;
}

/** Constant-time comparison of two secrets (hashed first, so lengths do not leak either). */
async function sameSecret(a: string, b: string): Promise<boolean> {
  const enc = new TextEncoder();
  const [ha, hb] = await Promise.all([
    crypto.subtle.digest("SHA-256", enc.encode(a)),
    crypto.subtle.digest("SHA-256", enc.encode(b)),
  ]);
  return timingSafeEqual(new Uint8Array(ha), new Uint8Array(hb));
}

/** The key a request carries: `Authorization: Bearer KEY`, HTTP Basic (sd-webui `--api-auth`: the password), or `x-api-key`. */
function presentedKey(req: Request): string | undefined {
  const auth = req.headers.get("authorization") ?? "";
  const bearer = /^Bearer\s+(.+)$/i.exec(auth);
  if (bearer) return bearer[1].trim();
  const basic = /^Basic\s+(.+)$/i.exec(auth);
  if (basic) {
    try {
      const decoded = atob(basic[1].trim());
      return decoded.slice(decoded.indexOf(":") + 1);
    } catch {
      return undefined;
    }
  }
  return req.headers.get("x-api-key") ?? undefined;
}

/** Starts the server; resolves once it listens. */
export function startServer(opts: ServerOptions = {}): Promise<SdflowServer> {
  const engine = new Engine({ modelsDir: opts.modelsDir, outputDir: opts.outputDir ?? "outputs" });
  const queue = new JobQueue(opts.maxQueued ?? 16);
  const maxBody = opts.maxBodyBytes ?? 32 * 1024 * 1024;
  const outputs = new OutputLister(engine.outputDir);
  const previews = new PreviewRenderer(engine.modelsDir, encodeBase64);

  /** Queues a graph job; a full queue is a 429. */
  function submit<R>(kind: string, work: (job: string, report: JobReporter) => Promise<R>, id?: string): Job<R> {
    return queue.submit(kind, (ctx) =>
      work(ctx.id, {
        nodeStart: (node, type) => ctx.node(node, type),
        progress: (node, done, total, unit) => ctx.progress({ node, done, total, unit }),
        // Live previews are rendered only while someone watches the job's event stream.
        preview: async (node, latent, info) => {
          if (!ctx.watched) return;
          let shown;
          try {
            shown = await previews.render(latent, info.family);
          } catch {
            return; // A preview that cannot be drawn (an unusual latent) must not fail the job.
          }
          ctx.preview({ node, ...info, ...shown });
        },
      }), id);
  }

  /** Runs a txt2img request to the end (n_iter runs, one job): the pictures as PNG bytes with their infotexts. */
  async function txt2img(
    p: Txt2ImgParams,
    init?: Img2ImgInit,
    id: string = crypto.randomUUID(),
  ): Promise<{ files: string[]; job: Job<{ files: string[] }> }> {
    const model = await engine.modelOrDefault(p.model);
    // Validate every iteration's graph before queueing: a bad request is a 400, not a failed job.
    const pipelines: Pipeline[] = [];
    for (let i = 0; i < p.n_iter; i++) {
      pipelines.push(await engine.pipelineFromNetwork(txt2imgGraph(p, model, i, init), id));
    }
    const job = submit(init ? "img2img" : "txt2img", async (jobId, report) => {
      const files: string[] = [];
      const executed: string[][] = [];
      const cached: string[][] = [];
      for (const pl of pipelines) {
        const r = await engine.run(pl, jobId, report);
        files.push(...r.files);
        executed.push([...r.executed]);
        cached.push([...r.cached]);
      }
      // Per iteration: which nodes ran and which came from the cache.
      return { files: [...new Set(files)], executed, cached };
    }, id);
    await job.done;
    if (job.status === "cancelled") throw new RequestError(409, `job ${job.id} was cancelled`);
    if (job.status !== "succeeded") throw new Error(job.error ?? `job ${job.status}`);
    return { files: job.result!.files, job };
  }

  /** sd-webui's `info` (a JSON string in the answer): seeds, sizes, infotexts. */
  async function info(
    p: Txt2ImgParams,
    files: string[],
    infotexts: string[],
    job: Job,
    body: Record<string, unknown>,
  ) {
    const model = (await engine.modelOrDefault(p.model)).name;
    return {
      prompt: p.prompt,
      all_prompts: files.map(() => p.prompt),
      negative_prompt: p.negative_prompt,
      all_negative_prompts: files.map(() => p.negative_prompt),
      seed: p.seed,
      // Picture i of a batch has seed + i, and each iteration starts batch_size further: seed + index.
      all_seeds: files.map((_, i) => p.seed + i),
      subseed: -1,
      all_subseeds: files.map(() => -1),
      width: p.width,
      height: p.height,
      sampler_name: body.sampler_name ?? "Euler a",
      cfg_scale: p.cfg_scale,
      steps: p.steps,
      batch_size: p.batch_size,
      ...(body.denoising_strength !== undefined ? { denoising_strength: body.denoising_strength } : {}),
      sd_model_name: model.replace(/\.[^.]+$/, ""),
      index_of_first_image: 0,
      infotexts,
      job_timestamp: new Date().toISOString(),
      // sdflow's: GET /v1/jobs/<sdflow_job> tells which nodes ran and which came from the cache.
      sdflow_job: job.id,
    };
  }

  async function pngs(files: readonly string[]): Promise<{ b64: string[]; infotexts: string[] }> {
    const b64: string[] = [];
    const infotexts: string[] = [];
    for (const f of files) {
      const bytes = await Deno.readFile((await engine.outputPath(f))!);
      b64.push(encodeBase64(bytes));
      infotexts.push(decodePngImage(bytes).parameters ?? "");
    }
    return { b64, infotexts };
  }

  async function route(req: Request, url: URL): Promise<Response> {
    const path = url.pathname;
    const method = req.method;
    let m: RegExpExecArray | null;

    if (method === "GET" && path === "/health") return json({ ok: true, name: "sdflow" });
    if (method === "GET" && path === "/v1/schema") {
      return new Response(schemaJson(), { headers: { "content-type": "application/schema+json; charset=utf-8" } });
    }
    if (method === "GET" && path === "/v1/outputs") {
      const limit = Number(url.searchParams.get("limit") ?? 100);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        throw new RequestError(400, 'query "limit": expected an integer from 1 to 1000');
      }
      return json({ outputs: await outputs.list(limit) });
    }
    if (method === "POST" && path === "/v1/uploads") {
      return json(await storeUpload(engine.outputDir, await readBytes(req, maxBody)), 201);
    }

    // Native API.
    if (method === "POST" && path === "/v1/graphs") {
      const body = parseObject(await readBody(req, maxBody));
      const id = crypto.randomUUID();
      const pipeline = await engine.pipelineFromNetwork(body, id);
      const job = submit("graph", (jobId, report) => engine.run(pipeline, jobId, report), id);
      return json({ id: job.id, status: job.status, url: `/v1/jobs/${job.id}` }, 202);
    }
    if ((m = /^\/v1\/jobs\/([^/]+)$/.exec(path))) {
      const job = queue.get(decodeURIComponent(m[1]));
      if (!job) return errorResponse(404, `no job ${JSON.stringify(m[1].slice(0, 80))}`);
      if (method === "GET") return json(job.toJSON());
      if (method === "DELETE") {
        const r = queue.cancel(job.id);
        if (r === "cancelled") return json(job.toJSON());
        if (r === "cancelling") return json({ ...job.toJSON(), cancelling: true }, 202);
        return errorResponse(409, `the job has finished (${job.status})`);
      }
    }
    if (method === "GET" && (m = /^\/v1\/jobs\/([^/]+)\/events$/.exec(path))) {
      const job = queue.get(decodeURIComponent(m[1]));
      if (!job) return errorResponse(404, `no job ${JSON.stringify(m[1].slice(0, 80))}`);
      return events(job);
    }
    if (method === "GET" && (m = /^\/v1\/outputs\/([^/]+)$/.exec(path))) {
      let name: string;
      try {
        name = decodeURIComponent(m[1]);
      } catch {
        return errorResponse(400, "bad file name");
      }
      const file = await engine.outputPath(name);
      if (!file) return errorResponse(404, `no output ${JSON.stringify(name.slice(0, 80))}`);
      const type = /\.png$/i.test(file)
        ? "image/png"
        : /\.jpe?g$/i.test(file)
        ? "image/jpeg"
        : /\.webp$/i.test(file)
        ? "image/webp"
        : "application/octet-stream";
      return new Response(await Deno.readFile(file), { headers: { "content-type": type } });
    }

    // sd-webui API.
    if (method === "GET" && path === "/sdapi/v1/sd-models") return json(modelList(await engine.models()));
    if (method === "GET" && path === "/sdapi/v1/samplers") return json(samplerList());
    if (method === "GET" && path === "/sdapi/v1/loras") {
      return json((await engine.loras()).map((l) => ({
        name: l.name.replace(/\.[^.]+$/, ""),
        alias: l.name.replace(/\.[^.]+$/, ""),
        path: l.path,
        metadata: {},
      })));
    }
    // As sd-webui's ControlNet extension lists them.
    if (method === "GET" && path === "/controlnet/model_list") {
      return json({ model_list: (await engine.controlnets()).map((c) => c.name.replace(/\.[^.]+$/, "")) });
    }
    if (method === "GET" && path === "/sdapi/v1/schedulers") return json(schedulerList());
    if (path === "/sdapi/v1/interrupt" && method === "POST") {
      const running = queue.running;
      if (running) queue.cancel(running.id);
      return json(null);
    }
    if (path === "/sdapi/v1/options" && method === "GET") {
      return json({ sd_model_checkpoint: (await engine.modelOrDefault(undefined)).name });
    }
    if (path === "/sdapi/v1/options" && method === "POST") {
      const body = parseObject(await readBody(req, maxBody));
      const unknown = Object.keys(body).filter((k) => k !== "sd_model_checkpoint");
      if (unknown.length) {
        throw new RequestError(
          400,
          `option "${unknown[0].slice(0, 80)}" is not supported; only sd_model_checkpoint is`,
        );
      }
      const name = body.sd_model_checkpoint;
      if (typeof name !== "string") throw new RequestError(400, 'field "sd_model_checkpoint": expected a model name');
      engine.selectedModel = (await engine.model(name)).name;
      return json(null);
    }
    if (method === "GET" && path === "/sdapi/v1/progress") {
      const job = queue.running;
      return json({
        progress: job?.progress.fraction ?? 0,
        eta_relative: 0,
        state: {
          job: job?.id ?? "",
          job_count: (job ? 1 : 0) + queue.waiting,
          sampling_step: job?.progress.done ?? 0,
          sampling_steps: job?.progress.total ?? 0,
          interrupted: false,
          skipped: false,
        },
        current_image: null,
        textinfo: job ? `${job.progress.node ?? ""}` : null,
      });
    }
    if (method === "POST" && (path === "/sdapi/v1/txt2img" || path === "/sdapi/v1/img2img")) {
      const body = parseObject(await readBody(req, maxBody));
      const id = crypto.randomUUID();
      let init: Img2ImgInit | undefined;
      let initFile: string | undefined;
      if (path === "/sdapi/v1/img2img") {
        const fields = img2imgFields(body);
        const { width, height } = decodeInitImage(fields.png, body);
        // The picture's own size unless the request names one (sd-webui sends its defaults: they must agree).
        Object.assign(body, { width, height });
        initFile = `init-${id}.png`;
        await Deno.mkdir(engine.outputDir, { recursive: true });
        await Deno.writeFile(join(engine.outputDir, initFile), decodeBase64(fields.png));
        init = { image: initFile, denoise: fields.denoise };
      }
      try {
        const p = txt2imgParams(body);
        const { files, job } = await txt2img(p, init, id);
        const { b64, infotexts } = await pngs(files);
        return json({
          images: b64,
          parameters: body,
          info: JSON.stringify(await info(p, files, infotexts, job, body)),
        });
      } finally {
        if (initFile) await Deno.remove(join(engine.outputDir, initFile)).catch(() => {});
      }
    }

    // OpenAI images API.
    if (method === "POST" && path === "/v1/images/generations") {
      const body = parseObject(await readBody(req, maxBody));
      const { params, format } = openaiParams(body);
      const { files } = await txt2img(params);
      const data = format === "url"
        ? files.map((f) => ({ url: new URL(`/v1/outputs/${encodeURIComponent(f)}`, url).href }))
        : (await pngs(files)).b64.map((b64_json) => ({ b64_json }));
      return json({ created: Math.floor(Date.now() / 1000), data });
    }
    if (method === "GET" && path === "/v1/models") {
      return json({ object: "list", data: (await engine.models()).map((mm) => ({ id: mm.name, object: "model" })) });
    }
    return errorResponse(404, `no route ${method} ${path.slice(0, 200)}`);
  }

  async function handler(req: Request): Promise<Response> {
    const res = await answer(req);
    if (opts.corsOrigin === undefined) return res;
    res.headers.set("access-control-allow-origin", opts.corsOrigin);
    if (opts.corsOrigin !== "*") res.headers.append("vary", "origin");
    return res;
  }

  async function answer(req: Request): Promise<Response> {
    const url = new URL(req.url);
    // A browser's CORS preflight carries no credentials: answered before the key check.
    if (req.method === "OPTIONS" && opts.corsOrigin !== undefined) {
      return new Response(null, {
        status: 204,
        headers: {
          "access-control-allow-methods": "GET, POST, DELETE, OPTIONS",
          "access-control-allow-headers": "authorization, content-type, x-api-key",
          "access-control-max-age": "600",
        },
      });
    }
    // The UI's pages and scripts hold no data: served without the key (the page asks for it, for the API).
    if (req.method === "GET" && isUiPath(url.pathname)) {
      return await uiFile(url.pathname) ?? errorResponse(404, `no UI file ${url.pathname.slice(0, 200)}`);
    }
    try {
      if (opts.apiKey !== undefined) {
        const key = presentedKey(req);
        if (key === undefined || !(await sameSecret(key, opts.apiKey))) {
          return new Response(JSON.stringify({ error: "missing or wrong API key" }), {
            status: 401,
            headers: { ...JSON_HEADERS, "www-authenticate": 'Bearer realm="sdflow"' },
          });
        }
      }
      return await route(req, url);
    } catch (e) {
      if (e instanceof BodyTooLarge) return errorResponse(413, `request body larger than ${maxBody} bytes`);
      if (e instanceof QueueFullError) return errorResponse(429, e.message);
      if (e instanceof RequestError) {
        return errorResponse(
          e.status,
          e.message === "invalid graph" && e.diagnostics.length
            ? `${e.message}: ${formatDiagnostic(e.diagnostics[0])}`
            : e.message,
          {
            ...(e.diagnostics.length ? { diagnostics: e.diagnostics } : {}),
          },
        );
      }
      return errorResponse(500, e instanceof Error ? e.message.split("\n")[0] : String(e));
    }
  }

  const abort = new AbortController();
  const server = Deno.serve({
    port: opts.port ?? 7860,
    hostname: opts.hostname ?? "127.0.0.1",
    signal: abort.signal,
    onListen: () => {},
  }, handler);
  const addr = server.addr as Deno.NetAddr;
  opts.onListen?.(addr);
  return Promise.resolve({
    addr,
    engine,
    queue,
    finished: server.finished,
    async shutdown() {
      abort.abort();
      await server.finished;
      engine.close();
      await previews.close();
    },
  });
}

/** What {@link Engine.run} reports through. */
interface JobReporter {
  nodeStart(node: string, type: string): void;
  progress(node: string, done: number, total: number, unit?: string): void;
  preview(node: string, latent: Latent, info: LivePreviewInfo): Promise<void>;
}

/**
 * A job's Server-Sent-Events stream: its state now, then node/progress/status events until it ends, and a
 * `preview` event after each sampler step (a PNG data URL; see {@link PreviewRenderer}).
 */
function events(job: Job): Response {
  const enc = new TextEncoder();
  let unlisten = () => {};
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      let open = true;
      const send = (event: string, data: unknown) => {
        if (open) controller.enqueue(enc.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
      };
      const close = () => {
        if (!open) return;
        open = false;
        unlisten();
        controller.close();
      };
      send("status", job.toJSON());
      if (job.finishedState) return close();
      unlisten = job.listen((e) => {
        send(e.type, e.data);
        if (e.type === "status" && job.finishedState) close();
      });
    },
    // The client went away.
    cancel() {
      unlisten();
    },
  });
  return new Response(stream, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" },
  });
}
