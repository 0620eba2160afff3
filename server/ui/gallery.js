// The gallery: the server's outputs (GET /v1/outputs) with their parameters; re-run a picture's graph with one
// click, open its graph, or send it to img2img.

import { describeError, getJson, outputBlob, ProgressView, runGraph, showMessage, showOutput } from "./api.js";
import { clientGraph } from "./graphs.js";
import { pngGraph } from "./png.js";
import { sendToImg2img } from "./prompt.js";

const $ = (id) => document.getElementById(id);
let progress;
let busy = false;

function button(text, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.onclick = onclick;
  return b;
}

export async function refreshGallery() {
  const grid = $("gallery-grid");
  let list;
  try {
    list = (await getJson("/v1/outputs?limit=200")).outputs;
  } catch (e) {
    showMessage(`could not list the outputs: ${describeError(e)}`);
    return;
  }
  $("gallery-count").textContent = list.length ? `${list.length} picture(s), newest first` : "no pictures yet";
  grid.replaceChildren();
  for (const o of list) {
    const fig = document.createElement("figure");
    fig.dataset.file = o.name;
    const img = document.createElement("img");
    img.alt = o.name;
    img.loading = "lazy";
    const cap = document.createElement("figcaption");
    const title = document.createElement("div");
    title.textContent = `${o.name}${o.width ? ` · ${o.width}x${o.height}` : ""}`;
    const params = document.createElement("div");
    params.className = "params";
    params.textContent = o.parameters ?? "";
    cap.append(title, params);
    const buttons = document.createElement("div");
    buttons.className = "buttons";
    if (o.graph) {
      buttons.append(
        button("Re-run", () => rerun(o.name)),
        button("Graph", () => location.hash = `#graph?file=${encodeURIComponent(o.name)}`),
      );
    }
    buttons.append(button("Send to img2img", () => sendToImg2img(o.name)));
    fig.append(img, cap, buttons);
    grid.append(fig);
    showOutput(img, o.name).catch((e) => params.textContent = describeError(e));
  }
}

/** Runs the graph stored in an output picture again, as it was; the new picture joins the gallery. */
async function rerun(name) {
  if (busy) return showMessage("a re-run is already going; wait for it or interrupt it on its page", "ok");
  busy = true;
  progress.start(`re-running ${name}`);
  try {
    const { graph } = await pngGraph(await (await outputBlob(name)).arrayBuffer());
    const job = await runGraph(clientGraph(graph), {
      onNode: (d) => progress.node(d),
      onProgress: (d) => progress.progress(d),
      onPreview: (d) => progress.showPreview(d),
    });
    if (job.status === "succeeded") {
      progress.finish(`re-ran ${name}: ${job.result.files.join(", ")}`, true);
      await refreshGallery();
    } else {
      progress.finish(job.status);
      showMessage(`re-running ${name} ${job.status}: ${job.error ?? ""}`);
    }
  } catch (e) {
    progress.finish("failed");
    showMessage(`re-running ${name}: ${describeError(e)}`);
  } finally {
    busy = false;
  }
}

export function setupGallery() {
  progress = new ProgressView($("gallery-progress"));
  $("gallery-refresh").onclick = () => refreshGallery();
}
