// The prompt page: the form, img2img/inpaint with a mask painted in the page, ControlNet, Generate/Interrupt.

import {
  cancelJob,
  clearMessages,
  describeError,
  getJson,
  outputBlob,
  ProgressView,
  runGraph,
  showMessage,
  showOutput,
  uploadPng,
} from "./api.js";
import { promptGraph } from "./graphs.js";

const $ = (id) => document.getElementById(id);

const state = {
  jobId: undefined,
  running: false,
  loras: [],
  /** The init picture (an <img> or ImageBitmap) and whether a mask was painted. */
  init: undefined,
  masked: false,
  control: undefined,
  lastSeed: undefined,
};

let progress;

function option(select, value, label = value) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label;
  select.append(o);
}

/** Fills the selects from the server's listings; a failure is a message, and the form stays usable. */
export async function loadChoices() {
  const results = await Promise.allSettled([
    getJson("/sdapi/v1/sd-models"),
    getJson("/sdapi/v1/samplers"),
    getJson("/sdapi/v1/schedulers"),
    getJson("/sdapi/v1/loras"),
    getJson("/controlnet/model_list"),
    getJson("/sdapi/v1/options"),
  ]);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) showMessage(`could not read the server's model lists: ${describeError(failed.reason)}`);
  const [models, samplers, schedulers, loras, controlnets, options] = results.map((r) =>
    r.status === "fulfilled" ? r.value : undefined
  );
  if (models) {
    const select = $("model");
    const keep = select.value;
    select.replaceChildren();
    for (const m of models) option(select, m.title, m.model_name === m.title ? m.title : m.model_name);
    select.value = keep || options?.sd_model_checkpoint || models[0]?.title;
    if (!select.value && models.length) select.value = models[0].title;
  }
  if (samplers) {
    const select = $("sampler");
    select.replaceChildren();
    for (const s of samplers) option(select, s.aliases[0], s.name);
    select.value = "euler_a";
  }
  if (schedulers) {
    const select = $("scheduler");
    select.replaceChildren();
    option(select, "default", "Automatic");
    for (const s of schedulers) option(select, s.name, s.label);
  }
  if (loras) {
    const select = $("lora-select");
    select.replaceChildren();
    for (const l of loras) option(select, l.name);
    $("lora-add").disabled = loras.length === 0;
    if (!loras.length) option(select, "", "(no LoRAs in the models folder's Lora/ or loras/)");
  }
  if (controlnets) {
    const list = controlnets.model_list ?? [];
    $("control-none").hidden = list.length > 0;
    $("control-fields").hidden = list.length === 0;
    const select = $("control-model");
    select.replaceChildren();
    option(select, "", "(none)");
    for (const c of list) option(select, c);
  }
}

function renderLoras() {
  const ul = $("lora-list");
  ul.replaceChildren();
  state.loras.forEach((l, i) => {
    const li = document.createElement("li");
    li.textContent = `${l.name} × ${l.weight}`;
    const x = document.createElement("button");
    x.type = "button";
    x.textContent = "✕";
    x.title = `Remove ${l.name}`;
    x.onclick = () => {
      state.loras.splice(i, 1);
      renderLoras();
    };
    li.append(x);
    ul.append(li);
  });
  $("lora-count").textContent = state.loras.length ? `(${state.loras.length})` : "";
}

// --- img2img / inpaint picture and mask ------------------------------------------------------------

function size() {
  return { width: Number($("width").value), height: Number($("height").value) };
}

/** Draws the init picture at the form's size, and sizes the mask canvas to match (keeping strokes if it can). */
function drawInit() {
  const { width, height } = size();
  const c = $("init-canvas");
  const m = $("mask-canvas");
  if (!state.init || !(width > 0 && height > 0)) return;
  c.width = width;
  c.height = height;
  c.getContext("2d").drawImage(state.init, 0, 0, width, height);
  if (m.width !== width || m.height !== height) {
    m.width = width;
    m.height = height;
    state.masked = false;
  }
}

/** Sets the init picture (a Blob); the size fields take its size rounded down to multiples of 8. */
export async function setInitImage(blob) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob);
  } catch {
    showMessage("that file is not a picture the browser can read");
    return;
  }
  state.init = bitmap;
  $("width").value = String(Math.max(8, Math.floor(bitmap.width / 8) * 8));
  $("height").value = String(Math.max(8, Math.floor(bitmap.height / 8) * 8));
  $("init-editor").hidden = false;
  $("init-box").open = true;
  const m = $("mask-canvas");
  m.width = m.height = 0;
  drawInit();
}

function clearMask() {
  const m = $("mask-canvas");
  m.getContext("2d").clearRect(0, 0, m.width, m.height);
  state.masked = false;
}

function setupMaskPainting() {
  const m = $("mask-canvas");
  let last;
  const at = (e) => {
    const r = m.getBoundingClientRect();
    return { x: (e.clientX - r.left) * m.width / r.width, y: (e.clientY - r.top) * m.height / r.height };
  };
  const stroke = (from, to) => {
    const ctx = m.getContext("2d");
    const r = m.getBoundingClientRect();
    ctx.strokeStyle = ctx.fillStyle = "#fff";
    ctx.lineCap = "round";
    ctx.lineWidth = Number($("brush").value) * m.width / Math.max(1, r.width);
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
    state.masked = true;
  };
  m.addEventListener("pointerdown", (e) => {
    m.setPointerCapture(e.pointerId);
    last = at(e);
    stroke(last, last);
  });
  m.addEventListener("pointermove", (e) => {
    if (!last) return;
    const p = at(e);
    stroke(last, p);
    last = p;
  });
  const end = () => last = undefined;
  m.addEventListener("pointerup", end);
  m.addEventListener("pointercancel", end);
}

function canvasPng(canvas) {
  return new Promise((resolve, reject) =>
    canvas.toBlob((b) => b ? resolve(b) : reject(new Error("could not encode the canvas")), "image/png")
  );
}

/** Any picture the browser reads, as PNG (the server takes PNG uploads). */
async function toPng(blob) {
  if (blob.type === "image/png") return blob;
  const bitmap = await createImageBitmap(blob);
  const c = document.createElement("canvas");
  c.width = bitmap.width;
  c.height = bitmap.height;
  c.getContext("2d").drawImage(bitmap, 0, 0);
  return await canvasPng(c);
}

/** The mask as the server wants it: white (repaint) strokes on black, at the picture's size. */
async function maskPng() {
  const m = $("mask-canvas");
  const out = document.createElement("canvas");
  out.width = m.width;
  out.height = m.height;
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(m, 0, 0);
  return await canvasPng(out);
}

// --- generate --------------------------------------------------------------------------------------

function readForm() {
  const f = $("prompt-form");
  if (!f.reportValidity()) return undefined;
  let seed = Number($("seed").value);
  if (seed < 0) seed = crypto.getRandomValues(new Uint32Array(1))[0];
  const { width, height } = size();
  if (width % 8 || height % 8) {
    showMessage(`width and height must be multiples of 8 (got ${width}x${height})`);
    return undefined;
  }
  return {
    model: $("model").value,
    prompt: $("prompt").value,
    negative: $("negative").value,
    sampler: $("sampler").value,
    scheduler: $("scheduler").value,
    steps: Number($("steps").value),
    cfg: Number($("cfg").value),
    batch: Number($("batch").value),
    width,
    height,
    seed,
    loras: [...state.loras],
  };
}

function setRunning(running) {
  state.running = running;
  $("generate").disabled = running;
  $("interrupt").disabled = !running;
}

export async function generate() {
  if (state.running) return;
  const p = readForm();
  if (!p) return;
  clearMessages();
  setRunning(true);
  progress.start("uploading pictures…");
  try {
    if (state.init) {
      drawInit();
      p.init = {
        image: await uploadPng(await canvasPng($("init-canvas"))),
        mask: state.masked ? await uploadPng(await maskPng()) : undefined,
        denoise: Number($("denoise").value),
      };
    }
    const controlModel = $("control-model").value;
    if (controlModel) {
      if (!state.control) throw new Error("choose a control image for the ControlNet (or set its model to none)");
      p.control = {
        model: controlModel,
        image: await uploadPng(await toPng(state.control)),
        strength: Number($("control-strength").value),
        canny: $("control-canny").checked,
      };
    }
    progress.start("queued");
    const job = await runGraph(promptGraph(p), {
      onStart: (id) => state.jobId = id,
      onNode: (d) => progress.node(d),
      onProgress: (d) => progress.progress(d),
      onPreview: (d) => progress.showPreview(d),
    });
    state.lastSeed = p.seed;
    if (job.status === "succeeded") {
      progress.finish(`done: ${job.result.files.length} picture(s), seed ${p.seed}`, true);
      await showResults(job.result.files, p);
    } else if (job.status === "cancelled") {
      progress.finish("interrupted");
      showMessage("generation interrupted", "ok");
    } else {
      progress.finish("failed");
      showMessage(`generation failed: ${job.error ?? job.status}`);
    }
  } catch (e) {
    progress.finish("not started");
    showMessage(describeError(e));
  } finally {
    state.jobId = undefined;
    setRunning(false);
  }
}

async function showResults(files, p) {
  const box = $("gen-results");
  box.replaceChildren();
  for (const name of files) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.alt = `result ${name}`;
    img.className = "result";
    img.dataset.file = name;
    const cap = document.createElement("figcaption");
    cap.textContent = name;
    const buttons = document.createElement("div");
    buttons.className = "buttons";
    const toInit = document.createElement("button");
    toInit.type = "button";
    toInit.textContent = "Send to img2img";
    toInit.onclick = () => sendToImg2img(name);
    const graph = document.createElement("a");
    graph.href = `#graph?file=${encodeURIComponent(name)}`;
    graph.textContent = "Graph";
    buttons.append(toInit, graph);
    fig.append(img, cap, buttons);
    box.append(fig);
    await showOutput(img, name);
  }
  $("gen-info").textContent =
    `${p.prompt}\nSteps: ${p.steps}, Sampler: ${p.sampler}, CFG: ${p.cfg}, Seed: ${p.seed}, ` +
    `Size: ${p.width}x${p.height}, Model: ${p.model}`;
}

/** Puts an output picture into the img2img box of the prompt page (and shows that page). */
export async function sendToImg2img(name) {
  try {
    await setInitImage(await outputBlob(name));
    location.hash = "#generate";
    showMessage(`${name} is the img2img picture now`, "ok");
  } catch (e) {
    showMessage(describeError(e));
  }
}

export async function interrupt() {
  if (!state.jobId) return;
  try {
    await cancelJob(state.jobId);
    progress.finish("interrupting…");
  } catch (e) {
    showMessage(describeError(e));
  }
}

export function isRunning() {
  return state.running;
}

export function setupPromptPage() {
  progress = new ProgressView($("gen-progress"));
  $("prompt-form").addEventListener("submit", (e) => {
    e.preventDefault();
    generate();
  });
  $("interrupt").onclick = () => interrupt();
  $("seed-random").onclick = () => $("seed").value = "-1";
  $("seed-reuse").onclick = () => {
    if (state.lastSeed !== undefined) $("seed").value = String(state.lastSeed);
  };
  $("lora-add").onclick = () => {
    const name = $("lora-select").value;
    const weight = Number($("lora-weight").value);
    if (!name || !Number.isFinite(weight)) return;
    state.loras.push({ name, weight });
    renderLoras();
  };
  $("init-file").onchange = async (e) => {
    const f = e.target.files[0];
    if (f) await setInitImage(f);
  };
  $("init-clear").onclick = () => {
    state.init = undefined;
    state.masked = false;
    $("init-editor").hidden = true;
    $("init-file").value = "";
  };
  $("mask-clear").onclick = () => clearMask();
  for (const id of ["width", "height"]) $(id).addEventListener("change", () => drawInit());
  $("control-file").onchange = (e) => {
    const f = e.target.files[0];
    if (!f) return;
    state.control = f;
    const img = $("control-thumb");
    img.src = URL.createObjectURL(f);
    img.hidden = false;
  };
  setupMaskPainting();
}
