// The UI's only way to the server: sdflow's public HTTP API (the same endpoints any client uses).

const KEY_STORE = "sdflow-api-key";

/** An API call that failed: the server's one-line error, its status and any graph diagnostics. */
export class ApiError extends Error {
  constructor(message, status = 0, diagnostics = []) {
    super(message);
    this.status = status;
    this.diagnostics = diagnostics;
  }
}

let keyListener = () => {};
/** Called when the server asks for an API key (401), so the page can show the key field. */
export function onKeyNeeded(fn) {
  keyListener = fn;
}

export function apiKey() {
  return localStorage.getItem(KEY_STORE) ?? "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORE, key);
  else localStorage.removeItem(KEY_STORE);
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { authorization: `Bearer ${key}`, ...extra } : extra;
}

/** fetch with the key; a network failure becomes an ApiError saying the server does not answer. */
async function send(method, path, body, contentType) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: headers(contentType ? { "content-type": contentType } : {}),
      body,
    });
  } catch (e) {
    throw new ApiError(`the sdflow server does not answer (${e.message}); is it still running?`);
  }
  if (res.status === 401) keyListener();
  return res;
}

async function answer(res) {
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    const message = data?.error ?? (text.slice(0, 200) || res.statusText);
    throw new ApiError(`${message} (HTTP ${res.status})`, res.status, data?.diagnostics ?? []);
  }
  if (data === undefined) throw new ApiError(`the server sent something that is not JSON (HTTP ${res.status})`);
  return data;
}

export async function getJson(path) {
  return answer(await send("GET", path));
}

export async function postJson(path, body) {
  return answer(await send("POST", path, JSON.stringify(body), "application/json"));
}

export async function del(path) {
  return answer(await send("DELETE", path));
}

/** Uploads a PNG blob; returns the name a graph's load_image node takes. */
export async function uploadPng(blob) {
  return (await answer(await send("POST", "/v1/uploads", blob, "image/png"))).name;
}

/** An output file's bytes as a Blob (fetched with the key, so it also works when the server needs one). */
export async function outputBlob(name) {
  const res = await send("GET", `/v1/outputs/${encodeURIComponent(name)}`);
  if (!res.ok) await answer(res);
  return await res.blob();
}

/** Shows output `name` in `img`: by URL, or with a key as an object URL (<img src> cannot carry the key). */
export async function showOutput(img, name) {
  if (!apiKey()) {
    img.src = `/v1/outputs/${encodeURIComponent(name)}`;
    return;
  }
  const blob = await outputBlob(name);
  if (img.dataset.objectUrl) URL.revokeObjectURL(img.dataset.objectUrl);
  img.src = img.dataset.objectUrl = URL.createObjectURL(blob);
}

/** Reads a job's Server-Sent-Events stream, calling onEvent(name, data) for each event, until it ends. */
export async function streamEvents(id, onEvent) {
  const res = await send("GET", `/v1/jobs/${encodeURIComponent(id)}/events`);
  if (!res.ok) await answer(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += value;
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      try {
        onEvent(name, JSON.parse(data));
      } catch (e) {
        if (!(e instanceof SyntaxError)) throw e;
      }
    }
  }
}

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

/**
 * Runs a graph: POST /v1/graphs, then follows its event stream. Calls handlers.onStart(id),
 * onProgress(data), onPreview(data), onNode(data). Resolves with the finished job (GET /v1/jobs/:id).
 */
export async function runGraph(graph, handlers = {}) {
  const { id } = await postJson("/v1/graphs", graph);
  handlers.onStart?.(id);
  try {
    await streamEvents(id, (name, data) => {
      if (name === "progress") handlers.onProgress?.(data);
      else if (name === "preview") handlers.onPreview?.(data);
      else if (name === "node") handlers.onNode?.(data);
    });
  } catch (e) {
    // The stream broke (server restarted, network): the job's state says what happened.
    if (!(e instanceof ApiError)) throw new ApiError(`lost the job's progress stream: ${e.message}`);
  }
  const job = await getJson(`/v1/jobs/${encodeURIComponent(id)}`);
  if (!FINISHED.has(job.status)) throw new ApiError(`the job's stream ended while it was ${job.status}`);
  return job;
}

/** Cancels a job (DELETE /v1/jobs/:id); a job that already finished is not an error. */
export async function cancelJob(id) {
  try {
    await del(`/v1/jobs/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status !== 409) throw e;
  }
}

// --- messages on the page --------------------------------------------------------------------

/** Shows a message at the top of the page; errors stay until closed, others fade after a while. */
export function showMessage(text, kind = "error") {
  const box = document.getElementById("messages");
  const el = document.createElement("div");
  el.className = `message ${kind}`;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
  const span = document.createElement("span");
  span.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "✕";
  close.title = "Close";
  close.onclick = () => el.remove();
  el.append(span, close);
  box.append(el);
  while (box.children.length > 4) box.firstElementChild.remove();
  if (kind !== "error") setTimeout(() => el.remove(), 6000);
  return el;
}

export function clearMessages() {
  document.getElementById("messages").replaceChildren();
}

/** A one-line description of an error for the page (graph diagnostics name the node and input). */
export function describeError(e) {
  if (e instanceof ApiError) return e.message;
  return `unexpected error: ${e?.message ?? e}`;
}

// --- progress -----------------------------------------------------------------------------------

/** Draws a job's progress into `box`: the latest preview, the node, "step i/n", a bar and the ETA. */
export class ProgressView {
  constructor(box) {
    this.box = box;
  }

  start(label = "queued") {
    this.box.innerHTML = `<img class="preview" alt="live preview" hidden>
      <div class="meta"><div class="status"></div><div class="bar"><div></div></div><div class="eta hint"></div></div>`;
    this.preview = this.box.querySelector(".preview");
    this.status = this.box.querySelector(".status");
    this.bar = this.box.querySelector(".bar div");
    this.eta = this.box.querySelector(".eta");
    this.status.textContent = label;
    this.previews = 0;
    this.timing = undefined;
  }

  node(data) {
    if (this.status) this.status.textContent = `running ${data.node} (${data.type})`;
  }

  progress(data) {
    if (!this.status || !(data.total > 0)) return;
    const unit = data.unit === "step" ? "Step" : data.unit ?? "";
    this.status.textContent = `${data.node}: ${unit} ${data.done}/${data.total}`.replace(":  ", ": ");
    this.status.dataset.step = String(data.done);
    this.bar.style.width = `${Math.round(100 * Math.min(1, data.done / data.total))}%`;
    // ETA from the pace since the first report of this node (the first step includes warm-up).
    const now = performance.now();
    if (!this.timing || this.timing.node !== data.node || data.done < this.timing.done) {
      this.timing = { node: data.node, done: data.done, t: now };
      this.eta.textContent = "";
    } else if (data.done > this.timing.done) {
      const per = (now - this.timing.t) / (data.done - this.timing.done);
      const left = Math.max(0, (data.total - data.done) * per / 1000);
      this.eta.textContent = `ETA ${
        left < 60 ? `${left.toFixed(1)} s` : `${Math.floor(left / 60)} min ${Math.round(left % 60)} s`
      }`;
    }
  }

  showPreview(data) {
    if (!this.preview) return;
    this.preview.hidden = false;
    this.preview.src = data.image;
    this.previews++;
    this.preview.dataset.count = String(this.previews);
    this.preview.dataset.step = String(data.step);
    this.preview.title = `step ${data.step}/${data.steps} (${data.method}, ${data.width}x${data.height})`;
  }

  /** The end of a run: `done` fills the bar, anything else empties it. */
  finish(text, done = false) {
    if (!this.status) return;
    this.status.textContent = text;
    this.eta.textContent = "";
    this.bar.style.width = done ? "100%" : "0";
  }

  clear() {
    this.box.replaceChildren();
    this.status = undefined;
  }
}
