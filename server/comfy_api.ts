/**
 * ComfyUI's HTTP and websocket API as ComfyUI clients use it: `POST /prompt` (an API-format workflow,
 * translated by comfy.ts and queued like any graph), `GET /history[/:id]`, `GET /view?filename=…`,
 * `POST /upload/image`, `POST /interrupt`, `GET /queue`, `GET /object_info[/:class]`, `GET /system_stats`
 * (comfy_info.ts), and `/ws?clientId=…` with the messages clients
 * follow (status, execution_start, execution_cached, executing, progress, executed, execution_success,
 * execution_error, execution_interrupted). Also sdflow's own `POST /v1/graphs/from-comfy`.
 */

import { join } from "node:path";
import { decodePngImage } from "../plugins/image/png.ts";
import { ComfyError, comfyToGraph, type ComfyTranslation, filesOfSave } from "./comfy.ts";
import { comfyFileLists, comfyObjectInfo, comfySystemStats } from "./comfy_info.ts";
import { isPlainName, RequestError } from "./engine.ts";
import type { GraphJobResult, Job } from "./jobs.ts";
import type { Route, RouteContext } from "./server.ts";

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" };
const json = (data: unknown, status = 200) => new Response(JSON.stringify(data), { status, headers: JSON_HEADERS });

/** What /history shows of a prompt. */
interface PromptRecord {
  readonly id: string;
  readonly number: number;
  readonly prompt: Record<string, unknown>;
  readonly extra: Record<string, unknown>;
  readonly clientId?: string;
  readonly translation: ComfyTranslation;
  readonly job: Job<GraphJobResult>;
  readonly messages: [string, Record<string, unknown>][];
}

/** ComfyUI's 400 for a workflow it cannot run: `error` plus `node_errors` keyed by node id. */
function comfyError(
  e: ComfyError | RequestError,
  prompt: Record<string, unknown>,
  translation?: ComfyTranslation,
): Response {
  const d = e instanceof RequestError ? e.diagnostics[0] : undefined;
  const node = e instanceof ComfyError ? e.node : d?.node !== undefined ? translation?.origin[d.node] : undefined;
  const classType = e instanceof ComfyError
    ? e.classType
    : node !== undefined
    ? String((prompt[node] as { class_type?: unknown } | undefined)?.class_type ?? "")
    : undefined;
  // sdflow's diagnostic, said of the ComfyUI node (its input names are sdflow's, mostly the same).
  const message = d
    ? `${node !== undefined ? `node ${node} (${classType})` : e.message}${
      d.input !== undefined ? `, input "${d.input}"` : ""
    }: ${d.message}`
    : e.message;
  const detail = { type: "invalid_prompt", message, details: "", extra_info: {} };
  return json({
    error: { ...detail, ...(node !== undefined ? { node_id: node, class_type: classType } : {}) },
    node_errors: node !== undefined
      ? { [node]: { errors: [detail], dependent_outputs: [], class_type: classType } }
      : {},
  }, 400);
}

/** The routes; one instance per server (it keeps the prompts' history and the open websockets). */
export function comfyRoutes(): Route[] {
  const prompts = new Map<string, PromptRecord>();
  const order: string[] = [];
  const sockets = new Map<WebSocket, string>();
  let number = 0;

  const send = (ws: WebSocket, type: string, data: Record<string, unknown>) => {
    try {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type, data }));
    } catch {
      // a client that went away
    }
  };
  /** To the prompt's client (ComfyUI sends execution messages to the client that queued), else to all. */
  const tell = (rec: PromptRecord, type: string, data: Record<string, unknown>) => {
    rec.messages.push([type, { ...data, timestamp: Date.now() }]);
    for (const [ws, cid] of sockets) if (rec.clientId === undefined || cid === rec.clientId) send(ws, type, data);
  };
  const queueRemaining = () => [...prompts.values()].filter((r) => !r.job.finishedState).length;
  const broadcastStatus = () => {
    for (const [ws, sid] of sockets) {
      send(ws, "status", { status: { exec_info: { queue_remaining: queueRemaining() } }, sid });
    }
  };

  const images = (rec: PromptRecord, files: readonly string[]) => {
    const out: Record<string, { images: { filename: string; subfolder: string; type: string }[] }> = {};
    for (const save of rec.translation.saves) {
      out[save.node] = {
        images: filesOfSave(rec.id, save, files).map((filename) => ({ filename, subfolder: "", type: "output" })),
      };
    }
    return out;
  };

  /** Follows a job and speaks ComfyUI's websocket protocol about it. */
  const follow = (rec: PromptRecord) => {
    const pid = rec.id;
    let current: string | undefined;
    let started = false;
    const start = () => {
      if (started) return;
      started = true;
      tell(rec, "execution_start", { prompt_id: pid });
    };
    rec.job.listen((e) => {
      if (e.type === "node") {
        start();
        const comfy = rec.translation.origin[String(e.data.node)];
        if (comfy !== undefined && comfy !== current) {
          current = comfy;
          tell(rec, "executing", { node: comfy, display_node: comfy, prompt_id: pid });
        }
      } else if (e.type === "progress") {
        start();
        const comfy = rec.translation.origin[String(e.data.node)];
        tell(rec, "progress", { value: e.data.done, max: e.data.total, prompt_id: pid, node: comfy ?? null });
      } else if (e.type === "status") {
        if (rec.job.status === "running") start();
        if (!rec.job.finishedState) return;
        start();
        const job = rec.job;
        if (job.status === "succeeded") {
          const r = job.result!;
          // Nodes served from the output cache (ComfyUI reports them before running the rest).
          const cached = [...new Set(r.cached.map((n) => rec.translation.origin[n]).filter((n) => n !== undefined))];
          if (cached.length) tell(rec, "execution_cached", { nodes: cached, prompt_id: pid });
          const out = images(rec, r.files);
          for (const [node, output] of Object.entries(out)) {
            tell(rec, "executed", { node, display_node: node, output, prompt_id: pid });
          }
          tell(rec, "execution_success", { prompt_id: pid });
        } else if (job.status === "cancelled") {
          tell(rec, "execution_interrupted", { prompt_id: pid, node_id: current ?? null, executed: [] });
        } else {
          tell(rec, "execution_error", {
            prompt_id: pid,
            node_id: current ?? null,
            node_type: current !== undefined ? (rec.prompt[current] as { class_type?: string })?.class_type : null,
            exception_message: job.error ?? "failed",
            exception_type: "Error",
            traceback: [],
            executed: [],
          });
        }
        tell(rec, "executing", { node: null, prompt_id: pid });
        broadcastStatus();
      }
    });
  };

  const historyEntry = (rec: PromptRecord) => {
    const job = rec.job;
    const ok = job.status === "succeeded";
    return {
      prompt: [rec.number, rec.id, rec.prompt, rec.extra, rec.translation.saves.map((s) => s.node)],
      outputs: ok ? images(rec, job.result!.files) : {},
      status: {
        status_str: ok ? "success" : "error",
        completed: ok,
        messages: rec.messages.map(([t, d]) => [t, d]),
      },
      meta: {},
    };
  };

  const prompt = async (ctx: RouteContext): Promise<Response> => {
    const body = await ctx.json();
    const p = body.prompt;
    if (!p || typeof p !== "object" || Array.isArray(p)) {
      throw new RequestError(
        400,
        'field "prompt": expected the workflow in ComfyUI\'s API format (an object of nodes)',
      );
    }
    const workflow = p as Record<string, unknown>;
    const id = crypto.randomUUID();
    let translation: ComfyTranslation | undefined;
    try {
      translation = comfyToGraph(workflow);
      await ctx.engine.pipelineFromNetwork(structuredClone(translation.graph), id);
    } catch (e) {
      if (e instanceof ComfyError || (e instanceof RequestError && e.status < 500)) {
        return comfyError(e, workflow, translation);
      }
      throw e;
    }
    const clientId = typeof body.client_id === "string" ? body.client_id : undefined;
    const job = await ctx.submit({ kind: "comfy", graphs: [translation.graph] }, id);
    const extra = body.extra_data && typeof body.extra_data === "object"
      ? body.extra_data as Record<string, unknown>
      : {};
    const rec: PromptRecord = {
      id,
      number: number++,
      prompt: workflow,
      extra,
      clientId,
      translation,
      job,
      messages: [],
    };
    prompts.set(id, rec);
    order.push(id);
    while (order.length > 256) prompts.delete(order.shift()!);
    follow(rec);
    broadcastStatus();
    return json({ prompt_id: id, number: rec.number, node_errors: {} });
  };

  return [
    {
      method: "POST",
      path: "/v1/graphs/from-comfy",
      handler: async (ctx) => {
        const body = await ctx.json();
        try {
          const t = comfyToGraph(body);
          return json({ graph: t.graph, saves: t.saves });
        } catch (e) {
          if (!(e instanceof ComfyError)) throw e;
          return json({
            error: e.message,
            ...(e.node !== undefined ? { node: e.node, class_type: e.classType } : {}),
            ...(e.input !== undefined ? { input: e.input } : {}),
          }, 400);
        }
      },
    },
    { method: "POST", path: "/prompt", handler: prompt },
    {
      method: "GET",
      path: "/prompt",
      handler: () => json({ exec_info: { queue_remaining: queueRemaining() } }),
    },
    {
      method: "GET",
      path: "/history",
      handler: () => {
        const out: Record<string, unknown> = {};
        for (const id of order) {
          const rec = prompts.get(id);
          if (rec?.job.finishedState) out[id] = historyEntry(rec);
        }
        return json(out);
      },
    },
    {
      method: "GET",
      path: "/history/:id",
      handler: (ctx) => {
        const rec = prompts.get(ctx.params.id);
        // ComfyUI answers {} for a prompt that is unknown or not finished yet.
        return json(rec?.job.finishedState ? { [rec.id]: historyEntry(rec) } : {});
      },
    },
    {
      method: "GET",
      path: "/queue",
      handler: () => {
        const entries = (running: boolean) =>
          order.map((id) => prompts.get(id)!).filter((r) =>
            running ? r.job.status === "running" : r.job.status === "queued"
          ).map((r) => [r.number, r.id, r.prompt, r.extra, r.translation.saves.map((s) => s.node)]);
        return json({ queue_running: entries(true), queue_pending: entries(false) });
      },
    },
    {
      method: "POST",
      path: "/interrupt",
      handler: async (ctx) => {
        const running = ctx.queue.running;
        if (running) await ctx.queue.cancel(running.id);
        return new Response(null, { status: 200 });
      },
    },
    {
      method: "GET",
      path: "/view",
      handler: async (ctx) => {
        const name = ctx.url.searchParams.get("filename") ?? "";
        const type = ctx.url.searchParams.get("type") ?? "output";
        const sub = ctx.url.searchParams.get("subfolder") ?? "";
        if (!["output", "input", "temp"].includes(type)) {
          throw new RequestError(400, `query "type": expected output, input or temp`);
        }
        if (sub !== "") throw new RequestError(404, "no subfolders: sdflow's files are flat in its output folder");
        const file = await ctx.engine.outputPath(name);
        if (!file) throw new RequestError(404, `no file ${JSON.stringify(name.slice(0, 80))}`);
        return new Response(await Deno.readFile(file), { headers: { "content-type": "image/png" } });
      },
    },
    {
      method: "GET",
      path: "/object_info",
      handler: async (ctx) => json(comfyObjectInfo(await comfyFileLists(ctx.engine))),
    },
    {
      method: "GET",
      path: "/object_info/:node_class",
      handler: async (ctx) => {
        const all = comfyObjectInfo(await comfyFileLists(ctx.engine));
        const info = all[ctx.params.node_class];
        // ComfyUI answers {} for a class it lacks.
        return json(info ? { [ctx.params.node_class]: info } : {});
      },
    },
    {
      method: "GET",
      path: "/system_stats",
      handler: async (ctx) => json(await comfySystemStats(ctx.queue.description)),
    },
    {
      method: "POST",
      path: "/upload/image",
      handler: async (ctx) => {
        // The body limit is checked first (Content-Length / while reading), then the form is parsed.
        const bytes = await ctx.bytes();
        let form: FormData;
        try {
          form = await new Response(bytes, { headers: { "content-type": ctx.req.headers.get("content-type") ?? "" } })
            .formData();
        } catch {
          throw new RequestError(400, 'expected a multipart/form-data body with an "image" file');
        }
        const file = form.get("image");
        if (!(file instanceof File)) throw new RequestError(400, 'field "image": expected a file');
        const data = new Uint8Array(await file.arrayBuffer());
        try {
          decodePngImage(data);
        } catch (e) {
          throw new RequestError(400, `field "image": not a PNG image: ${(e as Error).message.slice(0, 200)}`);
        }
        const name = file.name.replace(/^.*[\\/]/, "");
        if (!isPlainName(name) || !/\.png$/i.test(name)) {
          throw new RequestError(400, `field "image": the file name must be a plain name ending in .png`);
        }
        // Jobs' outputs are named <job id>_…: an upload may not replace one.
        if (/^[0-9a-f]{8}-[0-9a-f]{4}-/i.test(name) || /^(init|preview)-/.test(name)) {
          throw new RequestError(
            400,
            `field "image": names starting with a job id, init- or preview- are the server's`,
          );
        }
        await Deno.mkdir(ctx.engine.outputDir, { recursive: true });
        await Deno.writeFile(join(ctx.engine.outputDir, name), data);
        return json({ name, subfolder: "", type: "input" });
      },
    },
    {
      method: "GET",
      path: "/ws",
      handler: (ctx) => {
        if (ctx.req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
          throw new RequestError(400, "expected a websocket upgrade");
        }
        const { socket, response } = Deno.upgradeWebSocket(ctx.req);
        const sid = ctx.url.searchParams.get("clientId") ?? crypto.randomUUID().replace(/-/g, "");
        socket.onopen = () => {
          sockets.set(socket, sid);
          send(socket, "status", { status: { exec_info: { queue_remaining: queueRemaining() } }, sid });
        };
        socket.onclose = () => sockets.delete(socket);
        socket.onerror = () => sockets.delete(socket);
        return response;
      },
    },
  ];
}
