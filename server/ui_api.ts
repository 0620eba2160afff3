/**
 * What the web UI (server/ui/) needs beyond the graph, job and sd-webui endpoints — all public API:
 * its static files, the graph JSON Schema, a listing of the outputs with their parameters, image uploads
 * (img2img pictures, masks, ControlNet images) and live previews rendered from the sampler's latents
 * (TAESD when the models folder has one, else the latent-to-RGB projection).
 */

import { extname, join } from "node:path";
import { graphSchema } from "../dsl/schema.ts";
import { builtinRegistry } from "../dsl/validate.ts";
import { projectLatent } from "../models/preview.ts";
import { loadTaesd, type Taesd } from "../models/taesd/load.ts";
import type { Image, Latent } from "../models/types.ts";
import { decodePngImage, encodePngImage } from "../plugins/image/png.ts";
import { RequestError } from "./engine.ts";

const UI_DIR = new URL("./ui/", import.meta.url);
const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

/** Whether `path` is one of the UI's pages or files (served without the API key: they hold no data). */
export function isUiPath(path: string): boolean {
  return path === "/" || path.startsWith("/ui/");
}

/** A file of server/ui/ (flat folder, known extensions only), or undefined for a 404. */
export async function uiFile(path: string): Promise<Response | undefined> {
  const name = path === "/" || path === "/ui/" ? "index.html" : path.slice("/ui/".length);
  if (!/^[A-Za-z0-9_-]+\.[a-z]+$/.test(name) || !(extname(name) in CONTENT_TYPES)) return undefined;
  try {
    const body = await Deno.readFile(new URL(name, UI_DIR));
    return new Response(body, {
      headers: { "content-type": CONTENT_TYPES[extname(name)], "cache-control": "no-cache" },
    });
  } catch {
    return undefined;
  }
}

let schemaText: string | undefined;
/** The graph JSON Schema of the built-in nodes (what `deno task schema` writes), generated once. */
export function schemaJson(): string {
  return schemaText ??= JSON.stringify(graphSchema(builtinRegistry()));
}

/** Files in the output folder that are the server's own, not pictures a job made. */
const NOT_AN_OUTPUT = /^(preview-|init-|upload-)|\.tmp$/;
const PICTURE = /\.(png|jpe?g|webp)$/i;

/** One picture of `GET /v1/outputs`. */
export interface OutputEntry {
  name: string;
  url: string;
  modified: string;
  size: number;
  width?: number;
  height?: number;
  /** sd-webui infotext of a PNG (prompt, steps, seed, …). */
  parameters?: string;
  /** Whether the PNG holds the graph that made it (`sdflow-graph`). */
  graph: boolean;
}

/** Lists the outputs, newest first; PNG facts are read once per file version. */
export class OutputLister {
  readonly #facts = new Map<string, { mtime: number; facts: Partial<OutputEntry> }>();

  constructor(readonly outputDir: string) {}

  async list(limit: number): Promise<OutputEntry[]> {
    const found: { name: string; mtime: number; size: number }[] = [];
    try {
      for await (const e of Deno.readDir(this.outputDir)) {
        if (!e.isFile || NOT_AN_OUTPUT.test(e.name) || !PICTURE.test(e.name)) continue;
        try {
          const st = await Deno.stat(join(this.outputDir, e.name));
          found.push({ name: e.name, mtime: st.mtime?.getTime() ?? 0, size: st.size });
        } catch {
          // Removed while listing.
        }
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    found.sort((a, b) => b.mtime - a.mtime || a.name.localeCompare(b.name));
    const out: OutputEntry[] = [];
    for (const f of found.slice(0, limit)) {
      out.push({
        name: f.name,
        url: `/v1/outputs/${encodeURIComponent(f.name)}`,
        modified: new Date(f.mtime).toISOString(),
        size: f.size,
        graph: false,
        ...await this.#pngFacts(f.name, f.mtime),
      });
    }
    return out;
  }

  async #pngFacts(name: string, mtime: number): Promise<Partial<OutputEntry>> {
    if (!/\.png$/i.test(name)) return {};
    const known = this.#facts.get(name);
    if (known?.mtime === mtime) return known.facts;
    let facts: Partial<OutputEntry> = {};
    try {
      const png = decodePngImage(await Deno.readFile(join(this.outputDir, name)));
      facts = {
        width: png.image.width,
        height: png.image.height,
        ...(png.parameters !== undefined ? { parameters: png.parameters } : {}),
        graph: png.graph !== undefined,
      };
    } catch {
      // Not a readable PNG: listed without facts.
    }
    this.#facts.set(name, { mtime, facts });
    return facts;
  }
}

/**
 * Stores an uploaded PNG (the body's bytes) in the output folder as `upload-<uuid>.png`, the name a graph's
 * `load_image` node takes. Anything but a decodable PNG is a 400.
 */
export async function storeUpload(outputDir: string, bytes: Uint8Array): Promise<Record<string, unknown>> {
  if (bytes.length === 0) throw new RequestError(400, "empty upload: send the PNG file as the request body");
  let image: Image;
  try {
    image = decodePngImage(bytes).image;
  } catch (e) {
    throw new RequestError(400, `the upload is not a PNG image: ${(e as Error).message.slice(0, 200)}`);
  }
  const name = `upload-${crypto.randomUUID()}.png`;
  await Deno.mkdir(outputDir, { recursive: true });
  await Deno.writeFile(join(outputDir, name), bytes);
  return { name, width: image.width, height: image.height };
}

/** Conventional folders of TAESD files (sd-webui's `VAE-approx`, ComfyUI's `vae_approx`, and plain names). */
const TAESD_SUBDIRS = ["VAE-approx", "vae_approx", "VAE-taesd", "taesd"];
const TAESD_FILE = /^taesd(xl)?[\w.-]*\.(safetensors|pth|pt|ckpt)$/i;

/** A live preview as the SSE stream's `preview` event carries it. */
export interface RenderedPreview {
  width: number;
  height: number;
  method: "taesd" | "proj";
  /** `data:image/png;base64,…` */
  image: string;
}

/**
 * Renders sampler latents as small PNGs: with a TAESD of the latent's family from the models folder
 * (`VAE-approx/taesd*.safetensors`, or in `vae_approx/`, `VAE-taesd/`, `taesd/`; `taesdxl*` for SDXL) at full size, else with the projection at latent size.
 */
export class PreviewRenderer {
  readonly #taesd = new Map<string, Promise<Taesd | undefined>>();

  constructor(readonly modelsDir: string | undefined, readonly encodeBase64: (b: Uint8Array) => string) {}

  async render(latent: Latent, family: "sd1" | "sd2" | "sdxl"): Promise<RenderedPreview> {
    const taesd = latent.shape[1] === 4 ? await this.#taesdFor(family) : undefined;
    let image: Image | undefined;
    if (taesd) {
      try {
        [image] = await taesd.decode(latent);
      } catch (e) {
        console.error(`live preview: ${taesd.path}: ${(e as Error).message.split("\n")[0]}; using the projection`);
        this.#taesd.set(family === "sdxl" ? "xl" : "sd", Promise.resolve(undefined));
      }
    }
    const method = image ? "taesd" : "proj";
    image ??= projectLatent(latent, family);
    return {
      width: image.width,
      height: image.height,
      method,
      image: `data:image/png;base64,${this.encodeBase64(encodePngImage(image))}`,
    };
  }

  #taesdFor(family: string): Promise<Taesd | undefined> {
    const key = family === "sdxl" ? "xl" : "sd";
    let p = this.#taesd.get(key);
    if (!p) {
      p = this.#load(key === "xl");
      this.#taesd.set(key, p);
    }
    return p;
  }

  async #load(xl: boolean): Promise<Taesd | undefined> {
    if (!this.modelsDir) return undefined;
    for (const sub of TAESD_SUBDIRS) {
      let names: string[];
      try {
        names = (await Array.fromAsync(Deno.readDir(join(this.modelsDir, sub))))
          .filter((e) => e.isFile && TAESD_FILE.test(e.name)).map((e) => e.name).sort();
      } catch {
        continue;
      }
      const name = names.find((n) => /^taesdxl/i.test(n) === xl);
      if (!name) continue;
      try {
        return await loadTaesd(join(this.modelsDir, sub, name));
      } catch (e) {
        console.error(`live preview: ${sub}/${name}: ${(e as Error).message.split("\n")[0]}; using the projection`);
        return undefined;
      }
    }
    return undefined;
  }

  /** Releases loaded TAESDs. */
  async close(): Promise<void> {
    for (const p of this.#taesd.values()) (await p.catch(() => undefined))?.dispose();
    this.#taesd.clear();
  }
}
