// The graph page: a graph drawn as nodes and wires (SVG), its literal inputs editable with the schema's types and
// enums, errors shown on the node they name; run it, save it as JSON. Graphs come from a PNG's `sdflow-graph`
// chunk, a graph file, or a ComfyUI API-format workflow (translated by POST /v1/graphs/from-comfy).

import {
  ApiError,
  cancelJob,
  describeError,
  getJson,
  outputBlob,
  postJson,
  ProgressView,
  runGraph,
  showMessage,
  showOutput,
} from "./api.js";
import { clientGraph, isComfyWorkflow } from "./graphs.js";
import { pngGraph } from "./png.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const COLUMN = 290;
const GAP = 18;

const state = {
  graph: undefined,
  name: "graph",
  /** node id → { general: string[], inputs: { [input]: string } } */
  errors: new Map(),
  defs: undefined,
  jobId: undefined,
};
let progress;

/** Node definitions from the server's JSON Schema: inputs (socket type or value schema) and output names. */
async function nodeDefs() {
  if (state.defs) return state.defs;
  const schema = await getJson("/v1/schema");
  const defs = {};
  for (const [key, def] of Object.entries(schema.definitions ?? {})) {
    if (!key.startsWith("node_")) continue;
    const inputs = {};
    for (const [name, s] of Object.entries(def.properties?.inputs?.properties ?? {})) {
      const socket = s.allOf ? /^([A-Z_]+)/.exec(s.description ?? "")?.[1] ?? "REF" : undefined;
      inputs[name] = { socket, value: s.else, default: s.default, description: s.description ?? "" };
    }
    const outs = /Outputs: (.*)\.$/.exec(def.description ?? "")?.[1] ?? "";
    defs[key.slice(5)] = {
      inputs,
      required: def.properties?.inputs?.required ?? [],
      outputs: outs ? outs.split(", ").map((o) => o.split(":")[0]) : [],
      description: def.description ?? "",
    };
  }
  return state.defs = defs;
}

const isRef = (v) => v && typeof v === "object" && !Array.isArray(v) && typeof v.from === "string";

function nodeError(id) {
  let e = state.errors.get(id);
  // inputs: values refused here (block a run); server: what the server said about inputs; general: the rest.
  if (!e) state.errors.set(id, e = { general: [], inputs: {}, server: {} });
  return e;
}

/** Checks a literal against its input's value schema; returns a message or undefined. */
function checkValue(schema, v) {
  if (!schema) return undefined;
  if (schema.enum && !schema.enum.includes(v)) return `must be one of ${schema.enum.join(", ")}`;
  const t = schema.type;
  if ((t === "integer" || t === "number") && (typeof v !== "number" || !Number.isFinite(v))) return "must be a number";
  if (t === "integer" && !Number.isInteger(v)) return "must be an integer";
  if (typeof v === "number") {
    if (schema.minimum !== undefined && v < schema.minimum) return `must be >= ${schema.minimum}`;
    if (schema.maximum !== undefined && v > schema.maximum) return `must be <= ${schema.maximum}`;
    if (schema.multipleOf && Math.abs(v / schema.multipleOf - Math.round(v / schema.multipleOf)) > 1e-9) {
      return `must be a multiple of ${schema.multipleOf}`;
    }
  }
  if (t === "boolean" && typeof v !== "boolean") return "must be true or false";
  if (t === "string") {
    if (typeof v !== "string") return "must be text";
    if (schema.minLength && v.length < schema.minLength) return "must not be empty";
    if (schema.pattern && !new RegExp(schema.pattern).test(v)) return `must match ${schema.pattern}`;
  }
  return undefined;
}

/** The value an added input starts from: its default, else the first allowed value. */
function initialValue(spec) {
  if (spec.default !== undefined) return structuredClone(spec.default);
  const v = spec.value ?? {};
  if (v.enum) return v.enum[0];
  if (v.type === "boolean") return false;
  if (v.type === "integer" || v.type === "number") return v.minimum !== undefined && v.minimum > 0 ? v.minimum : 0;
  return "";
}

/** An editor for a literal input, by its value schema. */
function editor(nodeId, name, schema, value) {
  let el;
  const t = schema?.type;
  if (schema?.enum) {
    el = document.createElement("select");
    for (const v of schema.enum) {
      const o = document.createElement("option");
      o.value = JSON.stringify(v);
      o.textContent = String(v);
      el.append(o);
    }
    el.value = JSON.stringify(value);
  } else if (t === "boolean") {
    el = document.createElement("input");
    el.type = "checkbox";
    el.checked = value === true;
  } else if (t === "integer" || t === "number") {
    el = document.createElement("input");
    el.type = "number";
    el.step = t === "integer" ? "1" : "any";
    if (schema.minimum !== undefined) el.min = String(schema.minimum);
    if (schema.maximum !== undefined) el.max = String(schema.maximum);
    el.value = String(value);
  } else if (t === "string" && (name === "text" || String(value).length > 40)) {
    el = document.createElement("textarea");
    el.rows = 2;
    el.value = String(value);
  } else {
    el = document.createElement("input");
    el.type = "text";
    el.value = t === "string" ? String(value) : JSON.stringify(value);
  }
  el.name = `${nodeId}.${name}`;
  el.dataset.node = nodeId;
  el.dataset.input = name;
  el.addEventListener("change", () => {
    let v;
    if (schema?.enum) v = JSON.parse(el.value);
    else if (t === "boolean") v = el.checked;
    else if (t === "integer" || t === "number") v = el.value.trim() === "" ? NaN : Number(el.value);
    else if (t === "string") v = el.value;
    else {
      try {
        v = JSON.parse(el.value);
      } catch {
        v = el.value;
      }
    }
    const problem = checkValue(schema, v);
    const errs = nodeError(nodeId);
    if (problem) errs.inputs[name] = `${name}: ${problem}`;
    else {
      delete errs.inputs[name];
      state.graph.nodes[nodeId].inputs[name] = v;
    }
    // Server errors about this node are stale once it changes.
    errs.general = [];
    errs.server = {};
    render();
  });
  return el;
}

function nodeBox(id, node, defs) {
  const def = defs[node.type];
  const box = document.createElement("div");
  box.className = "gnode";
  box.dataset.node = id;
  const head = document.createElement("header");
  head.innerHTML = "<b></b><span></span>";
  head.querySelector("b").textContent = id;
  head.querySelector("span").textContent = node.type;
  head.title = def?.description ?? "";
  box.append(head);
  const errs = state.errors.get(id);
  const inputs = node.inputs ?? {};
  const names = def
    ? [
      ...Object.keys(def.inputs).filter((k) => k in inputs || def.required.includes(k)),
      ...Object.keys(inputs).filter((k) => !(k in def.inputs)),
    ]
    : Object.keys(inputs);
  for (const name of names) {
    const row = document.createElement("div");
    row.className = "ginput";
    row.dataset.input = name;
    const label = document.createElement("span");
    label.textContent = name;
    label.title = def?.inputs[name]?.description ?? "";
    row.append(label);
    const v = inputs[name];
    if (isRef(v)) {
      const link = document.createElement("span");
      link.className = "link";
      link.textContent = `← ${v.from}`;
      const port = document.createElement("i");
      port.className = "port";
      port.dataset.in = `${id}.${name}`;
      row.append(link, port);
    } else if (v === undefined) {
      const missing = document.createElement("span");
      missing.className = "link";
      missing.textContent = "(not connected)";
      row.append(missing);
    } else {
      row.append(editor(id, name, def?.inputs[name]?.value, v));
    }
    if (errs?.inputs[name] || errs?.server[name]) row.classList.add("invalid");
    box.append(row);
  }
  // Value inputs the graph leaves at their defaults can be added, to be edited.
  const absent = def ? Object.entries(def.inputs).filter(([k, i]) => !i.socket && !(k in inputs)) : [];
  if (absent.length) {
    const row = document.createElement("div");
    row.className = "ginput";
    const label = document.createElement("span");
    label.textContent = "+ input";
    const add = document.createElement("select");
    add.name = `${id}.+`;
    add.title = "Set an input that is at its default";
    add.append(new Option("(default inputs)", ""));
    for (const [k] of absent) add.append(new Option(k, k));
    add.addEventListener("change", () => {
      const spec = def.inputs[add.value];
      if (!spec) return;
      node.inputs[add.value] = initialValue(spec);
      render();
    });
    row.append(label, add);
    box.append(row);
  }
  const outs = new Set(def?.outputs ?? []);
  for (const n of Object.values(state.graph.nodes)) {
    for (const v of Object.values(n?.inputs ?? {})) {
      if (isRef(v) && v.from.startsWith(`${id}.`)) outs.add(v.from.slice(id.length + 1));
    }
  }
  if (outs.size) {
    const o = document.createElement("div");
    o.className = "goutputs";
    for (const name of outs) {
      const d = document.createElement("div");
      d.textContent = `${name} →`;
      const port = document.createElement("i");
      port.className = "port";
      port.dataset.out = `${id}.${name}`;
      d.append(port);
      o.append(d);
    }
    box.append(o);
  }
  const messages = [
    ...(def ? [] : [`unknown node type "${node.type}"`]),
    ...Object.values(errs?.inputs ?? {}),
    ...Object.values(errs?.server ?? {}),
    ...(errs?.general ?? []),
  ];
  if (messages.length) {
    box.classList.add("has-error");
    const e = document.createElement("div");
    e.className = "node-error";
    e.textContent = messages.join("\n");
    box.append(e);
  }
  return box;
}

/** Column of each node: 0 for nodes without wired inputs, else one right of its deepest source. */
function depths(nodes) {
  const depth = {};
  const visit = (id, seen) => {
    if (depth[id] !== undefined) return depth[id];
    if (seen.has(id)) return 0; // a cycle: the server names it when run
    seen.add(id);
    let d = 0;
    for (const v of Object.values(nodes[id]?.inputs ?? {})) {
      if (!isRef(v)) continue;
      const src = v.from.split(".")[0];
      if (src in nodes) d = Math.max(d, visit(src, seen) + 1);
    }
    return depth[id] = d;
  };
  for (const id of Object.keys(nodes)) visit(id, new Set());
  return depth;
}

async function render() {
  const canvas = $("graph-canvas");
  if (!state.graph) {
    canvas.replaceChildren();
    return;
  }
  // A hidden page has no layout to measure: drawn when shown (see redraw).
  if ($("page-graph").hidden) {
    state.stale = true;
    return;
  }
  state.stale = false;
  let defs;
  try {
    defs = await nodeDefs();
  } catch (e) {
    showMessage(`could not read the node schema: ${describeError(e)}`);
    defs = {};
  }
  const nodes = state.graph.nodes;
  const depth = depths(nodes);
  canvas.replaceChildren();
  const svg = document.createElementNS(SVG, "svg");
  svg.classList.add("wires");
  canvas.append(svg);
  const columns = [];
  for (const id of Object.keys(nodes)) {
    const box = nodeBox(id, nodes[id], defs);
    box.style.left = `${10 + depth[id] * COLUMN}px`;
    canvas.append(box);
    (columns[depth[id]] ??= []).push(box);
  }
  let height = 0;
  for (const col of columns) {
    let y = 10;
    for (const box of col ?? []) {
      box.style.top = `${y}px`;
      y += box.offsetHeight + GAP;
    }
    height = Math.max(height, y);
  }
  canvas.style.height = `${height}px`;
  canvas.style.width = `${columns.length * COLUMN + 20}px`;
  const origin = canvas.getBoundingClientRect();
  const center = (el) => {
    const r = el.getBoundingClientRect();
    return { x: r.left + r.width / 2 - origin.left, y: r.top + r.height / 2 - origin.top };
  };
  for (const port of canvas.querySelectorAll("[data-in]")) {
    const [nodeId, input] = port.dataset.in.split(".");
    const from = nodes[nodeId].inputs[input].from;
    const out = canvas.querySelector(`[data-out="${CSS.escape(from)}"]`);
    if (!out) continue;
    const a = center(out), b = center(port);
    const dx = Math.max(40, (b.x - a.x) / 2);
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", `M${a.x},${a.y} C${a.x + dx},${a.y} ${b.x - dx},${b.y} ${b.x},${b.y}`);
    path.dataset.wire = `${from}->${nodeId}.${input}`;
    svg.append(path);
  }
  svg.setAttribute("width", String(canvas.scrollWidth));
  svg.setAttribute("height", String(height));
}

/** Shows a graph document (sdflow graph or ComfyUI workflow); a bad one is a message, the page stays. */
export async function loadDocument(doc, name) {
  let graph = doc;
  if (isComfyWorkflow(doc)) {
    try {
      const r = await postJson("/v1/graphs/from-comfy", doc);
      graph = r?.nodes ? r : r?.graph;
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && /no route/.test(e.message)) {
        showMessage("this server cannot translate ComfyUI workflows (it has no POST /v1/graphs/from-comfy)");
      } else showMessage(`the ComfyUI workflow could not be translated: ${describeError(e)}`);
      return false;
    }
  }
  if (!graph || typeof graph !== "object" || Array.isArray(graph) || !graph.nodes || typeof graph.nodes !== "object") {
    showMessage(`${name}: not an sdflow graph (no "nodes" object) nor a ComfyUI API-format workflow`);
    return false;
  }
  const bad = Object.entries(graph.nodes).find(([, n]) => !n || typeof n !== "object" || typeof n.type !== "string");
  if (bad) {
    showMessage(`${name}: node "${bad[0]}" has no "type"`);
    return false;
  }
  for (const n of Object.values(graph.nodes)) n.inputs ??= {};
  state.graph = clientGraph(graph);
  state.name = name.replace(/\.(png|json)$/i, "") || "graph";
  state.errors.clear();
  // The last run's pictures belong to the graph before.
  $("graph-results").replaceChildren();
  progress.clear();
  $("graph-name").textContent = name;
  for (const id of ["graph-run", "graph-save"]) $(id).disabled = false;
  await render();
  return true;
}

/** Opens a dropped or chosen file: a PNG's stored graph, or JSON. */
export async function openFile(file) {
  try {
    if (/\.png$/i.test(file.name) || file.type === "image/png") {
      const { graph } = await pngGraph(await file.arrayBuffer());
      return await loadDocument(graph, file.name);
    }
    let doc;
    try {
      doc = JSON.parse(await file.text());
    } catch (e) {
      showMessage(`${file.name}: not valid JSON (${e.message})`);
      return false;
    }
    return await loadDocument(doc, file.name);
  } catch (e) {
    showMessage(`${file.name}: ${e.message}`);
    return false;
  }
}

/** Opens the graph stored in output picture `name` (from the gallery or a result). */
export async function openOutput(name) {
  try {
    const blob = await outputBlob(name);
    const { graph } = await pngGraph(await blob.arrayBuffer());
    return await loadDocument(graph, name);
  } catch (e) {
    showMessage(`${name}: ${describeError(e)}`);
    return false;
  }
}

function markDiagnostics(diagnostics) {
  for (const d of diagnostics) {
    const node = d.node ?? /^\/nodes\/([^/]+)/.exec(d.pointer ?? "")?.[1];
    if (node && state.graph.nodes[node]) {
      const errs = nodeError(node);
      if (d.input) {
        const before = errs.server[d.input];
        errs.server[d.input] = before ? `${before}; ${d.message}` : `${d.input}: ${d.message}`;
      } else errs.general.push(d.message);
    }
  }
}

async function run() {
  if (!state.graph) return;
  const pending = [...state.errors.values()].flatMap((e) => Object.values(e.inputs));
  if (pending.length) {
    showMessage(`fix the inputs marked on the nodes first: ${pending[0]}`);
    return;
  }
  for (const e of state.errors.values()) {
    e.general = [];
    e.server = {};
  }
  $("graph-run").disabled = true;
  $("graph-interrupt").disabled = false;
  progress.start("queued");
  const box = $("graph-results");
  try {
    const job = await runGraph(state.graph, {
      onStart: (id) => state.jobId = id,
      onNode: (d) => {
        progress.node(d);
        for (const el of document.querySelectorAll(".gnode.running")) el.classList.remove("running");
        document.querySelector(`.gnode[data-node="${CSS.escape(d.node)}"]`)?.classList.add("running");
      },
      onProgress: (d) => progress.progress(d),
      onPreview: (d) => progress.showPreview(d),
    });
    if (job.status === "succeeded") {
      progress.finish(`done: ${job.result.files.length} file(s)`, true);
      box.replaceChildren();
      for (const name of job.result.files) {
        const fig = document.createElement("figure");
        const img = document.createElement("img");
        img.className = "result";
        img.alt = name;
        img.dataset.file = name;
        const cap = document.createElement("figcaption");
        cap.textContent = name;
        fig.append(img, cap);
        box.append(fig);
        await showOutput(img, name);
      }
    } else if (job.status === "cancelled") {
      progress.finish("interrupted");
    } else {
      progress.finish("failed");
      const node = /node "([^"]+)"/.exec(job.error ?? "")?.[1];
      if (node && state.graph.nodes[node]) nodeError(node).general.push(job.error);
      showMessage(`the run failed: ${job.error}`);
    }
  } catch (e) {
    progress.finish("not started");
    if (e instanceof ApiError && e.diagnostics.length) markDiagnostics(e.diagnostics);
    showMessage(describeError(e));
  } finally {
    state.jobId = undefined;
    $("graph-run").disabled = false;
    $("graph-interrupt").disabled = true;
    for (const el of document.querySelectorAll(".gnode.running")) el.classList.remove("running");
    await render();
  }
}

function save() {
  if (!state.graph) return;
  const blob = new Blob([JSON.stringify(state.graph, null, 2) + "\n"], { type: "application/json" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `${state.name}.json`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

export function setupGraphPage() {
  progress = new ProgressView($("graph-progress"));
  $("graph-file").onchange = (e) => {
    const f = e.target.files[0];
    if (f) openFile(f);
    e.target.value = "";
  };
  $("graph-run").onclick = () => run();
  $("graph-save").onclick = () => save();
  $("graph-interrupt").onclick = async () => {
    if (!state.jobId) return;
    try {
      await cancelJob(state.jobId);
    } catch (e) {
      showMessage(describeError(e));
    }
  };
  const page = $("page-graph");
  const zone = $("graph-drop");
  page.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  page.addEventListener("dragleave", () => zone.classList.remove("over"));
  page.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const f = e.dataTransfer?.files?.[0];
    if (f) openFile(f);
    else showMessage("drop a file (a PNG made by sdflow, or a graph .json)");
  });
  // Redraw the wires when the layout width changes (phone rotation, window resize).
  let t;
  addEventListener("resize", () => {
    clearTimeout(t);
    t = setTimeout(() => state.graph && render(), 150);
  });
}

/** Draws the graph again if it changed (or the window did) while the page was hidden. */
export function redraw() {
  if (state.stale) render();
}
