// The sdflow web UI: pages by URL hash (#generate, #graph, #gallery), keyboard shortcuts, the API key field.

import { apiKey, onKeyNeeded, setApiKey, showMessage } from "./api.js";
import { refreshGallery, setupGallery } from "./gallery.js";
import { openOutput, redraw, setupGraphPage } from "./graph_view.js";
import { generate, interrupt, isRunning, loadChoices, setupPromptPage } from "./prompt.js";

const PAGES = ["generate", "graph", "gallery"];

function route() {
  const [page, query] = location.hash.slice(1).split("?");
  const name = PAGES.includes(page) ? page : "generate";
  for (const p of PAGES) document.getElementById(`page-${p}`).hidden = p !== name;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === name);
  const params = new URLSearchParams(query ?? "");
  if (name === "gallery") refreshGallery();
  if (name === "graph") params.get("file") ? openOutput(params.get("file")) : redraw();
  document.body.dataset.page = name;
}

function setupKey() {
  const label = document.querySelector(".key");
  const input = document.getElementById("api-key");
  input.value = apiKey();
  if (apiKey()) label.hidden = false;
  onKeyNeeded(() => {
    if (label.hidden) showMessage("this server needs an API key: enter it at the top right");
    label.hidden = false;
  });
  input.addEventListener("change", () => {
    setApiKey(input.value.trim());
    loadChoices();
  });
}

addEventListener("keydown", (e) => {
  // As sd-webui: Ctrl+Enter (Cmd+Enter) generates, Escape interrupts; on the graph page Ctrl+Enter runs the graph.
  if (document.body.dataset.page === "graph" && e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    // The input being edited is committed first.
    document.activeElement?.dispatchEvent?.(new Event("change"));
    setTimeout(() => document.getElementById("graph-run").click(), 0);
    return;
  }
  if (document.body.dataset.page !== "generate") return;
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    generate();
  } else if (e.key === "Escape" && isRunning()) {
    interrupt();
  }
});

// An error nobody caught still reaches the page, never a blank screen.
addEventListener("unhandledrejection", (e) => showMessage(`unexpected error: ${e.reason?.message ?? e.reason}`));
addEventListener("error", (e) => showMessage(`unexpected error: ${e.message}`));

setupKey();
setupPromptPage();
setupGraphPage();
setupGallery();
addEventListener("hashchange", route);
route();
loadChoices();
document.body.dataset.ready = "true";
