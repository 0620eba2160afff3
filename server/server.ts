/**
 * The HTTP server (Deno.serve): sdflow's native graph API, the sd-webui API and the OpenAI images API
 * over one in-process {@link JobQueue} and one {@link Engine}. Every error is JSON
 * (`{"error": "...", "diagnostics"?: [...]}`) with a 4xx status for bad requests; the server keeps serving.
 */

import { timingSafeEqual } from "node:crypto";
import { join } from "node:path";
import { formatDiagnostic } from "../dsl/errors.ts";
import type { Image } from "../models/types.ts";
import { decodePngImage, encodePngImage } from "../plugins/image/png.ts";
import { Engine, RequestError } from "./engine.ts";
import {
  type GraphJobResult,
  type GraphJobSpec,
  type GraphQueue,
  type Job,
  MAX_PRIORITY,
  MemoryGraphQueue,
  QueueFullError,
  type SubmitOptions,
} from "./jobs.ts";
import { QueueUnavailableError, RedisGraphQueue } from "./redis_queue.ts";
import { comfyRoutes } from "./comfy_api.ts";
import { isUiPath, OutputLister, PreviewRenderer, schemaJson, storeUpload, uiFile } from "./ui_api.ts";
import {
  hasTransparency,
  img2imgFields,
  type Img2ImgInit,
  maskImage,
  modelList,
  openaiParams,
  rgbOf,
  samplerList,
  schedulerList,
  txt2imgGraph,
  type Txt2ImgParams,
  txt2imgParams,
} from "./sdapi.ts";

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
  /** "memory" (default: in this process) or `redis://HOST:PORT` (BullMQ; run `deno task worker` processes). */
  queue?: string;
  /** Redis key prefix (default "bull"). */
  redisPrefix?: string;
  /** How long a request waits for an unanswering Redis before a 503 (ms, default 10000). */
  redisAnswerMs?: number;
  /** Time limit of a running job unless the request's `timeout` query parameter says otherwise. */
  jobTimeoutMs?: number;
  /** More routes (e.g. a web UI's), tried after the built-in ones. */
  routes?: readonly Route[];
  /** Bytes of model weights kept loaded between requests (default: half the physical memory). */
  modelMemoryBytes?: number;
}

/** A running server. */
export interface SdflowServer {
  readonly addr: Deno.NetAddr;
  readonly engine: Engine;
  readonly queue: GraphQueue;
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

/** Reads the body, refusing more than `max` bytes (413). */
async function readBytes(req: Request, max: number): Promise<Uint8Array<ArrayBuffer>> {
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

/** The content type of an output file by its extension. */
function contentType(file: string): string {
  return /\.png$/i.test(file)
    ? "image/png"
    : /\.jpe?g$/i.test(file)
    ? "image/jpeg"
    : /\.webp$/i.test(file)
    ? "image/webp"
    : "application/octet-stream";
}

/** Waits for a job; its files, or the error (409 when cancelled). */
async function finished(job: Job<GraphJobResult>): Promise<string[]> {
  await job.done;
  if (job.status === "cancelled") throw new RequestError(409, `job ${job.id} was cancelled`);
  if (job.status !== "succeeded") throw new Error(job.error ?? `job ${job.status}`);
  return job.result!.files;
}

/** Base64 of bytes (btoa over 32 KiB slices: a spread of megabytes would overflow the stack). */
export function encodeBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

/** Bytes of base64 text, or a 400 naming the field. */
function decodeBase64(b64: string, field = "init_images"): Uint8Array {
  try {
    return Uint8Array.from(atob(b64.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch {
    throw new RequestError(400, `field "${field}": not valid base64`);
  }
}

/** Decodes a PNG from a client, or a 400 naming the field. */
function decodeClientPng(bytes: Uint8Array, field: string): Image {
  try {
    return decodePngImage(bytes).image;
  } catch (e) {
    throw new RequestError(400, `field "${field}": not a PNG image: ${(e as Error).message.slice(0, 200)}`);
  }
}

/** Checks that an init image is a PNG whose size agrees with the request's width/height (when given). */
function decodeInitImage(b64: string, body: Record<string, unknown>): Image {
  const image = decodeClientPng(decodeBase64(b64), "init_images");
  for (const [field, v] of [["width", image.width], ["height", image.height]] as const) {
    if (body[field] !== undefined && body[field] !== v) {
      throw new RequestError(
        400,
        `field "${field}": the init image is ${image.width}x${image.height}; sdflow does not resize init images ` +
          `yet, so send it at the size wanted (or leave width and height out)`,
      );
    }
  }
  return image;
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

/** What a route handler gets. */
export interface RouteContext {
  readonly req: Request;
  readonly url: URL;
  /** Named parts of the route's pattern (`/v1/jobs/:id` → `params.id`), URL-decoded. */
  readonly params: Record<string, string>;
  readonly engine: Engine;
  readonly queue: GraphQueue;
  /** The body as a JSON object, or a 400/413. */
  json(): Promise<Record<string, unknown>>;
  /** The raw body, at most the server's body limit (413 beyond). */
  bytes(): Promise<Uint8Array<ArrayBuffer>>;
  /** Queues graphs as one job, with the request's `priority`/`timeout` query parameters (400 if bad, 429 if full). */
  submit(spec: GraphJobSpec, id?: string): Promise<Job<GraphJobResult>>;
}

/** One route: a method, a path pattern (`/v1/jobs/:id`), and what answers it. */
export interface Route {
  readonly method: string;
  readonly path: string;
  readonly handler: (ctx: RouteContext) => Promise<Response> | Response;
}

/** Reads the `priority` (-100..100) and `timeout` (seconds) query parameters of a job-creating request. */
function submitOptions(url: URL, defaultTimeoutMs?: number): SubmitOptions {
  const opts: SubmitOptions = { timeoutMs: defaultTimeoutMs };
  const p = url.searchParams.get("priority");
  if (p !== null) {
    if (!/^-?\d+$/.test(p) || Math.abs(Number(p)) > MAX_PRIORITY) {
      throw new RequestError(400, `query "priority": expected an integer from -${MAX_PRIORITY} to ${MAX_PRIORITY}`);
    }
    opts.priority = Number(p);
  }
  const t = url.searchParams.get("timeout");
  if (t !== null) {
    if (!/^\d+(\.\d+)?$/.test(t) || Number(t) <= 0 || Number(t) > 86400) {
      throw new RequestError(400, `query "timeout": expected seconds, more than 0 and at most 86400`);
    }
    opts.timeoutMs = Number(t) * 1000;
  }
  return opts;
}

/** Validates each graph as the runner will (on a copy: the engine rewrites file names in place). */
async function validateGraphs(engine: Engine, graphs: readonly unknown[], id: string): Promise<void> {
  for (const g of graphs) await engine.pipelineFromNetwork(structuredClone(g), id);
}

/** Starts the server; resolves once it listens. */
export async function startServer(opts: ServerOptions = {}): Promise<SdflowServer> {
  const engine = new Engine({
    modelsDir: opts.modelsDir,
    outputDir: opts.outputDir ?? "outputs",
    modelMemoryBytes: opts.modelMemoryBytes,
  });
  const maxQueued = opts.maxQueued ?? 16;
  const outputs = new OutputLister(engine.outputDir);
  const previews = new PreviewRenderer(engine.modelsDir, encodeBase64);
  const queue: GraphQueue = opts.queue === undefined || opts.queue === "memory"
    ? new MemoryGraphQueue(engine, maxQueued, (latent, family) => previews.render(latent, family))
    : await RedisGraphQueue.open({
      url: opts.queue,
      engine,
      maxQueued,
      prefix: opts.redisPrefix,
      answerMs: opts.redisAnswerMs,
    });
  const maxBody = opts.maxBodyBytes ?? 32 * 1024 * 1024;

  /** Runs a txt2img request to the end (n_iter graphs, one job): the pictures' file names and the job. */
  async function txt2img(
    ctx: RouteContext,
    p: Txt2ImgParams,
    init?: Img2ImgInit,
    id: string = crypto.randomUUID(),
  ): Promise<{ files: string[]; job: Job<GraphJobResult> }> {
    const model = await engine.modelOrDefault(p.model);
    const graphs = Array.from({ length: p.n_iter }, (_, i) => txt2imgGraph(p, model, i, init));
    // Validated before queueing: a bad request is a 400, not a failed job.
    await validateGraphs(engine, graphs, id);
    const job = await ctx.submit({ kind: init ? "img2img" : "txt2img", graphs }, id);
    return { files: await finished(job), job };
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

  /** Writes a job's init picture (and mask) into the output folder; returns the names and a cleanup. */
  async function writeInit(id: string, image: Image, mask?: Image) {
    await Deno.mkdir(engine.outputDir, { recursive: true });
    const names = { image: `init-${id}.png`, mask: mask ? `init-${id}-mask.png` : undefined };
    await Deno.writeFile(join(engine.outputDir, names.image), encodePngImage(rgbOf(image)));
    if (mask) await Deno.writeFile(join(engine.outputDir, names.mask!), encodePngImage(mask));
    return {
      ...names,
      remove: async () => {
        for (const n of [names.image, names.mask]) {
          if (n) await Deno.remove(join(engine.outputDir, n)).catch(() => {});
        }
      },
    };
  }

  const sdapiImages = async (ctx: RouteContext): Promise<Response> => {
    const body = await ctx.json();
    const id = crypto.randomUUID();
    let init: Img2ImgInit | undefined;
    let remove = async () => {};
    if (ctx.url.pathname === "/sdapi/v1/img2img") {
      const fields = img2imgFields(body);
      const image = decodeInitImage(fields.png, body);
      let mask: Image | undefined;
      if (fields.mask !== undefined) {
        const m = decodeClientPng(decodeBase64(fields.mask, "mask"), "mask");
        if (m.width !== image.width || m.height !== image.height) {
          throw new RequestError(
            400,
            `field "mask": it is ${m.width}x${m.height}, the init image ${image.width}x${image.height}`,
          );
        }
        mask = maskImage(m, "grey", fields.invertMask);
      }
      // The picture's own size unless the request names one (sd-webui sends its defaults: they must agree).
      Object.assign(body, { width: image.width, height: image.height });
      const written = await writeInit(id, image, mask);
      remove = written.remove;
      init = { image: written.image, mask: written.mask, denoise: fields.denoise };
    }
    try {
      const p = txt2imgParams(body);
      const { files, job } = await txt2img(ctx, p, init, id);
      const { b64, infotexts } = await pngs(files);
      return json({
        images: b64,
        parameters: body,
        info: JSON.stringify(await info(p, files, infotexts, job, body)),
      });
    } finally {
      await remove();
    }
  };

  /** OpenAI's `images/edits`: a picture, an optional mask (transparent = repaint), a prompt; multipart. */
  const openaiEdits = async (ctx: RouteContext): Promise<Response> => {
    const bytes = await ctx.bytes();
    let form: FormData;
    try {
      form = await new Response(bytes, { headers: { "content-type": ctx.req.headers.get("content-type") ?? "" } })
        .formData();
    } catch {
      throw new RequestError(400, 'expected a multipart/form-data body with "image" and "prompt"');
    }
    const files = [...form.getAll("image"), ...form.getAll("image[]")];
    if (files.length !== 1 || !(files[0] instanceof File)) {
      throw new RequestError(400, `field "image": expected one PNG file, got ${files.length}`);
    }
    const image = decodeClientPng(new Uint8Array(await (files[0] as File).arrayBuffer()), "image");
    if (image.width % 8 || image.height % 8) {
      throw new RequestError(400, `field "image": it is ${image.width}x${image.height}; sides must be multiples of 8`);
    }
    const maskFile = form.get("mask");
    let mask: Image;
    if (maskFile instanceof File) {
      const m = decodeClientPng(new Uint8Array(await maskFile.arrayBuffer()), "mask");
      if (m.width !== image.width || m.height !== image.height) {
        throw new RequestError(
          400,
          `field "mask": it is ${m.width}x${m.height}, the image ${image.width}x${image.height}`,
        );
      }
      // A mask with an alpha channel: its transparent part is repainted (OpenAI); without one: its white part.
      mask = maskImage(m, m.channels === 4 ? "alpha" : "grey");
    } else if (maskFile !== null) {
      throw new RequestError(400, 'field "mask": expected a PNG file');
    } else if (hasTransparency(image)) mask = maskImage(image, "alpha");
    else {
      throw new RequestError(
        400,
        'field "image": without a "mask" the image must have transparent pixels (the part to repaint)',
      );
    }
    // The text fields as JSON values (numbers where OpenAI's are numbers), then the generations parser.
    const body: Record<string, unknown> = {};
    for (const [k, v] of form.entries()) {
      if (typeof v !== "string" || k === "image" || k === "image[]" || k === "mask") continue;
      body[k] = ["n", "steps", "seed"].includes(k) && /^-?\d+$/.test(v) ? Number(v) : v;
    }
    const size = `${image.width}x${image.height}`;
    if (body.size !== undefined && body.size !== size) {
      throw new RequestError(400, `field "size": sdflow edits at the image's own size (${size}), got ${body.size}`);
    }
    const { params, format } = openaiParams({ ...body, size });
    const id = crypto.randomUUID();
    const written = await writeInit(id, image, mask);
    try {
      const { files: out } = await txt2img(ctx, params, { image: written.image, mask: written.mask, denoise: 1 }, id);
      return json({ created: Math.floor(Date.now() / 1000), data: await openaiData(out, format, ctx.url) });
    } finally {
      await written.remove();
    }
  };

  /** The job of a `/v1/jobs/:id` route, or a 404. */
  const jobOf = (ctx: RouteContext): Job => {
    const job = queue.get(ctx.params.id);
    if (!job) throw new RequestError(404, `no job ${JSON.stringify(ctx.params.id.slice(0, 80))}`);
    return job;
  };

  const routes: Route[] = [
    { method: "GET", path: "/health", handler: () => json({ ok: true, name: "sdflow", queue: queue.description }) },
    {
      method: "GET",
      path: "/v1/stats",
      handler: () => {
        // This process's model cache (with --queue redis://…, the workers hold their own).
        const s = engine.stats();
        return json({
          queue: { kind: queue.description, running: queue.running?.id ?? null, waiting: queue.waiting },
          models: {
            loaded: s.models,
            bytes: s.bytes,
            budget_bytes: Number.isFinite(s.budgetBytes) ? s.budgetBytes : null,
            evictions: s.evictions,
          },
          cached_outputs: s.entries,
        });
      },
    },
    {
      method: "GET",
      path: "/v1/schema",
      handler: () =>
        new Response(schemaJson(), { headers: { "content-type": "application/schema+json; charset=utf-8" } }),
    },
    {
      method: "GET",
      path: "/v1/outputs",
      handler: async (ctx) => {
        const limit = Number(ctx.url.searchParams.get("limit") ?? 100);
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
          throw new RequestError(400, 'query "limit": expected an integer from 1 to 1000');
        }
        return json({ outputs: await outputs.list(limit) });
      },
    },
    {
      method: "POST",
      path: "/v1/uploads",
      handler: async (ctx) => json(await storeUpload(engine.outputDir, await ctx.bytes()), 201),
    },

    // Native API.
    {
      method: "POST",
      path: "/v1/graphs",
      handler: async (ctx) => {
        const body = await ctx.json();
        const id = crypto.randomUUID();
        await validateGraphs(engine, [body], id);
        const job = await ctx.submit({ kind: "graph", graphs: [body] }, id);
        return json({ id: job.id, status: job.status, url: `/v1/jobs/${job.id}` }, 202);
      },
    },
    { method: "GET", path: "/v1/jobs/:id", handler: (ctx) => json(jobOf(ctx).toJSON()) },
    {
      method: "DELETE",
      path: "/v1/jobs/:id",
      handler: async (ctx) => {
        const job = jobOf(ctx);
        const r = await queue.cancel(job.id);
        if (r === "cancelled") return json(job.toJSON());
        if (r === "cancelling") return json({ ...job.toJSON(), cancelling: true }, 202);
        return errorResponse(409, `the job has finished (${job.status})`);
      },
    },
    { method: "GET", path: "/v1/jobs/:id/events", handler: (ctx) => events(jobOf(ctx)) },
    {
      method: "GET",
      path: "/v1/outputs/:file",
      handler: async (ctx) => {
        const name = ctx.params.file;
        const file = await engine.outputPath(name);
        if (!file) return errorResponse(404, `no output ${JSON.stringify(name.slice(0, 80))}`);
        return new Response(await Deno.readFile(file), { headers: { "content-type": contentType(file) } });
      },
    },

    // sd-webui API.
    { method: "GET", path: "/sdapi/v1/sd-models", handler: async () => json(modelList(await engine.models())) },
    { method: "GET", path: "/sdapi/v1/samplers", handler: () => json(samplerList()) },
    { method: "GET", path: "/sdapi/v1/schedulers", handler: () => json(schedulerList()) },
    // As sd-webui's ControlNet extension lists them.
    {
      method: "GET",
      path: "/controlnet/model_list",
      handler: async () =>
        json({ model_list: (await engine.controlnets()).map((c) => c.name.replace(/\.[^.]+$/, "")) }),
    },
    {
      method: "GET",
      path: "/sdapi/v1/loras",
      handler: async () =>
        json((await engine.loras()).map((l) => ({
          name: l.name.replace(/\.[^.]+$/, ""),
          alias: l.name.replace(/\.[^.]+$/, ""),
          path: l.path,
          metadata: {},
        }))),
    },
    {
      method: "POST",
      path: "/sdapi/v1/interrupt",
      handler: async () => {
        const running = queue.running;
        if (running) await queue.cancel(running.id);
        return json(null);
      },
    },
    {
      method: "GET",
      path: "/sdapi/v1/options",
      handler: async () => json({ sd_model_checkpoint: (await engine.modelOrDefault(undefined)).name }),
    },
    {
      method: "POST",
      path: "/sdapi/v1/options",
      handler: async (ctx) => {
        const body = await ctx.json();
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
      },
    },
    {
      method: "GET",
      path: "/sdapi/v1/progress",
      handler: (ctx) => {
        const job = queue.running;
        // A client that asks for the picture is watching: previews are drawn (in-process or by the worker).
        const skipImage = ctx.url.searchParams.get("skip_current_image") === "true";
        if (!skipImage) job?.polled();
        const image = skipImage ? undefined : job?.preview?.image;
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
          // sd-webui's: the PNG as bare base64.
          current_image: typeof image === "string" ? image.replace(/^data:image\/png;base64,/, "") : null,
          textinfo: job ? `${job.progress.node ?? ""}` : null,
        });
      },
    },
    { method: "POST", path: "/sdapi/v1/txt2img", handler: sdapiImages },
    { method: "POST", path: "/sdapi/v1/img2img", handler: sdapiImages },

    // OpenAI images API.
    {
      method: "POST",
      path: "/v1/images/generations",
      handler: async (ctx) => {
        const { params, format } = openaiParams(await ctx.json());
        const { files } = await txt2img(ctx, params);
        return json({ created: Math.floor(Date.now() / 1000), data: await openaiData(files, format, ctx.url) });
      },
    },
    { method: "POST", path: "/v1/images/edits", handler: openaiEdits },
    {
      method: "GET",
      path: "/v1/models",
      handler: async () =>
        json({ object: "list", data: (await engine.models()).map((mm) => ({ id: mm.name, object: "model" })) }),
    },
    ...comfyRoutes(),
    ...(opts.routes ?? []),
  ];

  async function openaiData(files: readonly string[], format: "b64_json" | "url", url: URL) {
    return format === "url"
      ? files.map((f) => ({ url: new URL(`/v1/outputs/${encodeURIComponent(f)}`, url).href }))
      : (await pngs(files)).b64.map((b64_json) => ({ b64_json }));
  }

  const table = routes.map((r) => ({ ...r, pattern: new URLPattern({ pathname: r.path }) }));

  async function route(req: Request, url: URL): Promise<Response> {
    let allowed = false;
    for (const r of table) {
      const m = r.pattern.exec({ pathname: url.pathname });
      if (!m) continue;
      if (r.method !== req.method) {
        allowed = true;
        continue;
      }
      const params: Record<string, string> = {};
      for (const [k, v] of Object.entries(m.pathname.groups)) {
        try {
          params[k] = decodeURIComponent(v ?? "");
        } catch {
          throw new RequestError(400, `bad URL part ${JSON.stringify(String(v).slice(0, 80))}`);
        }
      }
      const ctx: RouteContext = {
        req,
        url,
        params,
        engine,
        queue,
        json: async () => parseObject(await readBody(req, maxBody)),
        bytes: () => readBytes(req, maxBody),
        submit: (spec, id = crypto.randomUUID()) => queue.submitGraphs(spec, id, submitOptions(url, opts.jobTimeoutMs)),
      };
      return await r.handler(ctx);
    }
    return errorResponse(
      allowed ? 405 : 404,
      `${allowed ? "method not allowed:" : "no route"} ${req.method} ${url.pathname.slice(0, 200)}`,
    );
  }

  async function handler(req: Request): Promise<Response> {
    const res = await answer(req);
    // A websocket upgrade's answer cannot be changed.
    if (opts.corsOrigin === undefined || res.status === 101) return res;
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
      if (e instanceof QueueUnavailableError) return errorResponse(503, e.message);
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
  return {
    addr,
    engine,
    queue,
    finished: server.finished,
    async shutdown() {
      abort.abort();
      await server.finished;
      await queue.close();
      engine.close();
      await previews.close();
    },
  };
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
