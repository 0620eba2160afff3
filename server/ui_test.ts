/**
 * The web UI in Debian's Chromium (Playwright) against a server on a free loopback port with the tiny model:
 * generate from the form and see the picture (a live preview first), interrupt a run, open a picture's graph,
 * change the seed on its sampler node and re-run, drop a graph file, a bad graph's error on the page, the
 * gallery (re-run, send to img2img, inpaint with a painted mask), phone width, the server gone.
 * Screenshots of each page go to out/ui/. Without Chromium the test is ignored.
 */

import assert from "node:assert/strict";
import { chromium, type Page } from "playwright-core";
import { decodePngImage } from "../plugins/image/png.ts";
import { type SdflowServer, startServer } from "./server.ts";
import { tinyGraph } from "./test_graphs.ts";

const CHROMIUM = Deno.env.get("SDFLOW_CHROMIUM") ?? "/usr/bin/chromium";
const haveChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
const SHOTS = new URL("../out/ui/", import.meta.url);
const KEY = "ui-test-key-7d2";

const GRAPH = tinyGraph({ prompt: "a dropped graph", seed: 5, path: "dropped.png" });

/** ComfyUI's default workflow in its API format, small. */
const COMFY = {
  "3": {
    class_type: "KSampler",
    inputs: {
      seed: 1,
      steps: 2,
      cfg: 7,
      sampler_name: "euler",
      scheduler: "normal",
      denoise: 1,
      model: ["4", 0],
      positive: ["6", 0],
      negative: ["7", 0],
      latent_image: ["5", 0],
    },
  },
  "4": { class_type: "CheckpointLoaderSimple", inputs: { ckpt_name: "tiny" } },
  "5": { class_type: "EmptyLatentImage", inputs: { width: 64, height: 64, batch_size: 1 } },
  "6": { class_type: "CLIPTextEncode", inputs: { text: "a cat", clip: ["4", 1] } },
  "7": { class_type: "CLIPTextEncode", inputs: { text: "", clip: ["4", 1] } },
  "8": { class_type: "VAEDecode", inputs: { samples: ["3", 0], vae: ["4", 2] } },
  "9": { class_type: "SaveImage", inputs: { filename_prefix: "ComfyUI", images: ["8", 0] } },
};

/** Drops a file with `text` on the graph page (as a user dragging it from the desktop). */
async function dropFile(page: Page, name: string, text: string): Promise<void> {
  // Page code is given as text: it runs in the browser, not under Deno's types.
  await page.evaluate(`(() => {
    const dt = new DataTransfer();
    dt.items.add(new File([${JSON.stringify(text)}], ${JSON.stringify(name)}, { type: "application/json" }));
    document.getElementById("graph-drop").dispatchEvent(
      new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }),
    );
  })()`);
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: new URL(`${name}.png`, SHOTS).pathname, fullPage: true });
}

/** Waits until the generate page's progress line matches. */
async function statusIs(page: Page, pattern: RegExp): Promise<void> {
  await page.locator("#gen-progress .status", { hasText: pattern }).waitFor();
}

/** The texts of the messages on the page now. */
function messages(page: Page): Promise<string[]> {
  return page.locator("#messages .message span").allTextContents();
}

Deno.test({
  name: "ui: the web UI in Chromium: generate, previews, interrupt, graph edit and re-run, drop, gallery, errors",
  ignore: !haveChromium,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await Deno.mkdir(SHOTS, { recursive: true });
    const outputDir = await Deno.makeTempDir({ prefix: "sdflow-ui-" });
    let server: SdflowServer | undefined = await startServer({
      port: 0,
      hostname: "127.0.0.1",
      outputDir,
      apiKey: KEY,
    });
    const base = `http://127.0.0.1:${server.addr.port}`;
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"], headless: true });
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
      const page = await context.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (e) => pageErrors.push(e.message));
      // Offline: every request goes to sdflow itself.
      const foreign: string[] = [];
      page.on("request", (r) => {
        if (!r.url().startsWith("http://127.0.0.1:") && !/^(data|blob):/.test(r.url())) foreign.push(r.url());
      });
      // Generous: CI machines may be busy (on an idle one the whole test takes well under a minute).
      page.setDefaultTimeout(90_000);

      // --- generate from the form: a preview is seen before the picture -----------------------------------
      // The server wants a key: the page says so and shows the key field; once given, the lists load.
      await page.goto(`${base}/`);
      await page.waitForSelector("body[data-ready=true]");
      await page.locator("#messages .message", { hasText: /needs an API key/ }).waitFor();
      await page.fill("#api-key", KEY);
      await page.press("#api-key", "Tab");
      await page.waitForSelector("#model option[value=tiny]", { state: "attached" });
      await page.click("#messages .message button");
      await page.waitForSelector("#sampler option[value=euler]", { state: "attached" });
      await page.fill("#prompt", "a lighthouse at dusk");
      await page.fill("#negative", "blurry");
      await page.selectOption("#sampler", "euler");
      await page.fill("#steps", "4");
      await page.fill("#width", "64");
      await page.fill("#height", "64");
      await page.fill("#seed", "1234");
      // Records the order in which a preview and the final picture appear.
      await page.evaluate(`(() => {
        const seen = globalThis.seen = [];
        new MutationObserver((records) => {
          for (const r of records) {
            if (r.target.classList.contains("preview")) seen.push("preview");
            if (r.target.classList.contains("result") && r.target.src) seen.push("result");
          }
        }).observe(document.getElementById("page-generate"), { subtree: true, attributes: true, attributeFilter: ["src"] });
      })()`);
      await page.focus("#prompt");
      await page.keyboard.press("Control+Enter");
      const result = page.locator("#gen-results img.result");
      await result.first().waitFor();
      await page.waitForFunction(`document.querySelector("#gen-results img.result")?.naturalWidth > 0`);
      const seen = await page.evaluate("globalThis.seen") as string[];
      assert.ok(seen.indexOf("preview") >= 0 && seen.indexOf("preview") < seen.indexOf("result"), seen.join(","));
      const previewCount = Number(await page.getAttribute("#gen-progress .preview", "data-count"));
      assert.equal(previewCount, 4, "one preview per step");
      assert.equal(await page.evaluate('document.querySelector("#gen-results img.result").naturalWidth'), 64);
      assert.match(await page.textContent("#gen-progress .status") ?? "", /done: 1 picture/);
      const firstFile = (await result.getAttribute("data-file"))!;
      const png = decodePngImage(await Deno.readFile(`${outputDir}/${firstFile}`));
      assert.match(png.parameters ?? "", /^a lighthouse at dusk\nNegative prompt: blurry\nSteps: 4, .*Seed: 1234/);
      await shot(page, "generate");

      // --- interrupt a long run ----------------------------------------------------------------------------
      await page.fill("#steps", "1000");
      await page.click("#generate");
      await page.waitForFunction(`Number(document.querySelector("#gen-progress .status")?.dataset.step) >= 2`);
      await page.locator("#gen-progress .eta", { hasText: /^ETA \d/ }).waitFor();
      await shot(page, "generate_progress");
      await page.click("#interrupt");
      await statusIs(page, /^interrupted$/);
      assert.ok(await page.isEnabled("#generate"));
      const running = await (await fetch(`${base}/sdapi/v1/progress`, { headers: { authorization: `Bearer ${KEY}` } }))
        .json();
      assert.equal(running.state.job, "", "nothing runs after the interrupt");
      await page.fill("#steps", "2");

      // --- open the picture's graph, change the seed on the sampler node, re-run ------------------------------
      await page.click("#gen-results a:text('Graph')");
      await page.waitForSelector(".gnode[data-node=sampler]");
      assert.equal(await page.locator(".gnode").count(), 7);
      assert.ok(await page.locator("svg.wires path").count() >= 9, "wires drawn");
      assert.equal(await page.inputValue("[name='sampler.seed']"), "1234");
      assert.equal(await page.inputValue("[name='positive.text']"), "a lighthouse at dusk");
      await shot(page, "graph");
      await page.fill("[name='sampler.seed']", "777");
      await page.press("[name='sampler.seed']", "Tab");
      await page.click("#graph-run");
      await page.waitForSelector("#graph-results img.result");
      const rerunFile = (await page.getAttribute("#graph-results img.result", "data-file"))!;
      assert.notEqual(rerunFile, firstFile);
      const rerun = decodePngImage(await Deno.readFile(`${outputDir}/${rerunFile}`));
      assert.match(rerun.parameters ?? "", /Seed: 777/);
      assert.equal((rerun.graph as typeof GRAPH).nodes.sampler.inputs.seed, 777);
      assert.notDeepEqual(rerun.image.data, png.image.data);

      // Save as JSON: the edited graph, with names (not the server's paths).
      const [download] = await Promise.all([page.waitForEvent("download"), page.click("#graph-save")]);
      const saved = JSON.parse(await Deno.readTextFile((await download.path())!));
      assert.equal(saved.nodes.sampler.inputs.seed, 777);
      assert.equal(saved.nodes.save.inputs.path, "sdflow.png");

      // An invalid value is refused on the node before anything is sent.
      await page.fill("[name='sampler.steps']", "0");
      await page.press("[name='sampler.steps']", "Tab");
      await page.waitForSelector(".gnode.has-error[data-node=sampler] .node-error");
      assert.match(await page.textContent(".gnode[data-node=sampler] .node-error") ?? "", /steps: must be >= 1/);

      // --- drop a graph file; a bad graph's error from the server shows on its node ---------------------------
      await dropFile(page, "dropped.json", JSON.stringify(GRAPH));
      await page.waitForSelector("#graph-name:text-is('dropped.json')");
      assert.equal(await page.inputValue("[name='positive.text']"), "a dropped graph");
      // An input left at its default is added on the node and set: the scheduler.
      await page.selectOption("[name='sampler.+']", "scheduler");
      await page.selectOption("[name='sampler.scheduler']", JSON.stringify("karras"));
      await page.click("#graph-run");
      await page.waitForSelector("#graph-results img.result[data-file$='_dropped.png']");
      const droppedFile = (await page.getAttribute("#graph-results img.result", "data-file"))!;
      const dropped = decodePngImage(await Deno.readFile(`${outputDir}/${droppedFile}`));
      assert.match(
        dropped.parameters ?? "",
        /^a dropped graph\nSteps: 2, Sampler: Euler, Schedule type: Karras, .*Seed: 5/,
      );
      const bad = structuredClone(GRAPH) as {
        nodes: Record<string, { type: string; inputs: Record<string, unknown> }>;
      };
      bad.nodes.latent.inputs.width = 60;
      await dropFile(page, "bad.json", JSON.stringify(bad));
      await page.waitForSelector("#graph-name:text-is('bad.json')");
      await page.click("#graph-run");
      await page.waitForSelector(".gnode.has-error[data-node=latent]");
      assert.match(await page.textContent(".gnode[data-node=latent] .node-error") ?? "", /width/);
      assert.ok((await messages(page)).some((m) => /invalid graph/.test(m) && /HTTP 400/.test(m)));
      await shot(page, "graph_error");
      // A graph that validates but fails while running: the error is on the failing node and in a message.
      const failing = structuredClone(GRAPH) as { nodes: Record<string, { type: string; inputs: unknown }> };
      failing.nodes.picture = { type: "load_image", inputs: { path: "missing.png" } };
      failing.nodes.latent = {
        type: "vae_encode",
        inputs: { vae: { from: "checkpoint.vae" }, image: { from: "picture.image" } },
      };
      await dropFile(page, "failing.json", JSON.stringify(failing));
      await page.waitForSelector("#graph-name:text-is('failing.json')");
      await page.click("#graph-run");
      await page.locator("#messages .message", { hasText: /the run failed: node "picture"/ }).waitFor();
      await page.waitForSelector(".gnode.has-error[data-node=picture]");
      // A ComfyUI API-format workflow: translated by POST /v1/graphs/from-comfy where the server has it, else
      // the page says the server cannot.
      const probe = await fetch(`${base}/v1/graphs/from-comfy`, {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
        body: JSON.stringify(COMFY),
      });
      const translates = probe.status !== 404;
      await probe.body?.cancel();
      await dropFile(page, "workflow_api.json", JSON.stringify(COMFY));
      if (translates) {
        await page.waitForSelector("#graph-name:text-is('workflow_api.json')");
        assert.ok(await page.locator(".gnode header span", { hasText: /^sampler$/ }).count() >= 1);
        await shot(page, "graph_comfy");
      } else {
        await page.locator("#messages .message", { hasText: /cannot translate ComfyUI workflows/ }).waitFor();
      }
      await dropFile(page, "junk.json", "{not json");
      await page.locator("#messages .message", { hasText: /junk\.json: not valid JSON/ }).waitFor();
      await dropFile(page, "other.json", JSON.stringify({ hello: 1 }));
      await page.locator("#messages .message", { hasText: /not an sdflow graph/ }).waitFor();

      // --- gallery: parameters, re-run with one click, send to img2img -----------------------------------------
      await page.goto(`${base}/#gallery`);
      await page.waitForSelector(`#gallery-grid figure[data-file='${rerunFile}']`);
      const before = await page.locator("#gallery-grid figure").count();
      assert.equal(before, 3);
      assert.match(
        await page.textContent(`#gallery-grid figure[data-file='${firstFile}'] .params`) ?? "",
        /Seed: 1234/,
      );
      await shot(page, "gallery");
      await page.click(`#gallery-grid figure[data-file='${firstFile}'] button:text('Re-run')`);
      await page.waitForFunction(`document.querySelectorAll("#gallery-grid figure").length === ${before + 1}`);
      await page.click(`#gallery-grid figure[data-file='${firstFile}'] button:text('Send to img2img')`);
      await page.waitForSelector("#init-editor:not([hidden])");
      assert.equal(await page.inputValue("#width"), "64");
      // Paint a mask stroke across the picture: inpainting.
      // (Messages closed first: one fading out would move the canvas under the pointer.)
      await page.evaluate(`document.getElementById("messages").replaceChildren()`);
      await page.locator("#mask-canvas").scrollIntoViewIfNeeded();
      const box = (await page.locator("#mask-canvas").boundingBox())!;
      await page.mouse.move(box.x + box.width * 0.2, box.y + box.height * 0.5);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width * 0.8, box.y + box.height * 0.5, { steps: 5 });
      await page.mouse.up();
      await page.fill("#denoise", "0.6");
      await page.fill("#seed", "99");
      await shot(page, "inpaint");
      await page.click("#generate");
      await statusIs(page, /done: 1 picture/);
      const inpaintFile = (await page.getAttribute("#gen-results img.result", "data-file"))!;
      const inpainted = decodePngImage(await Deno.readFile(`${outputDir}/${inpaintFile}`));
      assert.equal(
        (inpainted.graph as { nodes: Record<string, { type: string }> }).nodes.latent.type,
        "inpaint_encode",
      );
      assert.match(inpainted.parameters ?? "", /Denoising strength: 0\.6/);

      // --- phone width ------------------------------------------------------------------------------------------
      await page.setViewportSize({ width: 390, height: 844 });
      for (const p of ["generate", "graph", "gallery"]) {
        await page.goto(`${base}/#${p}`);
        await page.waitForSelector(`#page-${p}:not([hidden])`);
        // Nothing wider than the screen but the graph canvas (which scrolls in its box).
        const overflow = await page.evaluate("document.documentElement.scrollWidth") as number;
        assert.ok(overflow <= 390, `${p} is ${overflow}px wide at phone width`);
        // Every field shown is wide enough to use.
        const narrow = await page.evaluate(`[...document.querySelectorAll("input, select, textarea")]
          .filter((el) => el.offsetParent !== null && el.type !== "checkbox" && el.type !== "range")
          .filter((el) => el.getBoundingClientRect().width < 56).map((el) => el.id || el.name)`) as string[];
        assert.deepEqual(narrow, [], `${p}: fields too narrow at phone width`);
        // Graph nodes laid out (also after a resize while the page was hidden): none overlaps another.
        const overlaps = await page.evaluate(`(() => {
          const r = [...document.querySelectorAll(".gnode")].map((n) => [n.dataset.node, n.getBoundingClientRect()]);
          return r.flatMap(([a, x], i) => r.slice(i + 1).filter(([, y]) =>
            x.left < y.right && y.left < x.right && x.top < y.bottom && y.top < x.bottom).map(([b]) => a + "/" + b));
        })()`) as string[];
        assert.deepEqual(overlaps, [], `${p}: nodes overlap`);
        await shot(page, `${p}_phone`);
      }
      await page.setViewportSize({ width: 1280, height: 800 });

      // --- a server without a key: pictures load by URL ----------------------------------------------------------
      const open = await startServer({ port: 0, hostname: "127.0.0.1", outputDir });
      try {
        await page.goto(`http://127.0.0.1:${open.addr.port}/#gallery`);
        await page.waitForSelector(`#gallery-grid figure[data-file='${inpaintFile}']`);
        await page.waitForFunction(
          `[...document.querySelectorAll("#gallery-grid img")].every((i) => i.complete && i.naturalWidth === 64)`,
        );
        assert.match(await page.getAttribute("#gallery-grid img", "src") ?? "", /^\/v1\/outputs\//);
        assert.equal(await page.isHidden(".key"), true, "no key field when none is needed");
      } finally {
        await open.shutdown();
      }

      // --- the server gone: a message, not a blank page -------------------------------------------------------
      await page.goto(`${base}/#generate`);
      await page.waitForSelector("#model option[value=tiny]", { state: "attached" });
      await server.shutdown();
      server = undefined;
      await page.click("#generate");
      await page.locator("#messages .message", { hasText: /server does not answer/ }).waitFor();
      await shot(page, "server_down");

      assert.deepEqual(pageErrors, []);
      assert.deepEqual(foreign, [], "the pages load nothing from elsewhere");
    } catch (e) {
      // What the page showed when it failed.
      for (const page of browser.contexts().flatMap((c) => c.pages())) {
        await shot(page, "failure").catch(() => {});
        console.error("page messages:", await messages(page).catch(() => []));
      }
      throw e;
    } finally {
      await browser.close();
      await server?.shutdown();
      await Deno.remove(outputDir, { recursive: true });
    }
  },
});
