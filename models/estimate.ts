/**
 * Cost of one network evaluation without running it: builds the network's
 * graph from the checkpoint's header (no weights are read), plans it, and
 * groups the planned ops by kind. Used by `deno task plan`.
 */

import { Graph, plan } from "../engine/mod.ts";
import type { BackendCapabilities } from "../backends/mod.ts";
import { detectArch, detectVaeConfig } from "./arch.ts";
import { buildTextEncoder } from "./clip/text_encoder.ts";
import { createWeightLookup } from "./nn.ts";
import { buildUnet } from "./unet/unet.ts";
import { openVaeWeights } from "./vae/file.ts";
import { buildVaeDecoder, buildVaeEncoder } from "./vae/vae.ts";
import { openLdmWeights, storedRows } from "./weights/mod.ts";

export type NetworkKind = "text_encoder" | "unet" | "vae_decoder" | "vae_encoder";

export interface NetworkEstimateOptions {
  checkpoint: string;
  /** [N, C, h, w] of the latent going in (unet: the whole batch of one evaluation, cond and uncond included). */
  latentShape?: readonly number[];
  /** [N, H, W, C] of the image going in (vae_encoder). */
  imageShape?: readonly number[];
  /** Prompt tokens (text_encoder, and the UNet's context); default 77. */
  tokens?: number;
  /** Plan for this backend (default: the CPU's); ops it lacks are shown as placed on the CPU. */
  capabilities?: BackendCapabilities;
}

/** One compute op (or group of identical ops) a network or node lowers to. */
export interface OpEstimate {
  /** What it is, e.g. `unet.wino_gemm (F(4,3))` or `load_weights`. */
  readonly op: string;
  /** How many times it runs (steps × layers…); default 1. FLOPs and bytes are per run. */
  readonly count?: number;
  readonly flops: number;
  /** Memory the op touches or holds (weights, activations), in bytes. */
  readonly bytes: number;
  readonly note?: string;
}

/** Planned ops of one evaluation, grouped by kind (FLOPs and bytes per run of each op). */
export async function estimateNetwork(kind: NetworkKind, opts: NetworkEstimateOptions): Promise<OpEstimate[]> {
  const vaeOnly = kind === "vae_decoder" || kind === "vae_encoder";
  // A VAE may come from its own file (--vae, vae_loader), in any layout a separate VAE may have.
  const file = vaeOnly ? await openVaeWeights(opts.checkpoint) : await openLdmWeights(opts.checkpoint);
  try {
    const arch = vaeOnly
      ? { family: "sd1", textEncoders: [], unet: undefined, vae: detectVaeConfig(file.tensors.values(), "sd1") }
      : detectArch(file.tensors.values(), file.metadata);
    // One graph per network; SDXL's two text encoders are two (they run one after the other).
    const graphs: Graph[] = [];
    const newGraph = () => {
      const g = new Graph();
      graphs.push(g);
      return {
        g,
        w: createWeightLookup(g, {
          get: (n) => file.get(n),
          rows: (n, start, count) => storedRows(file, n, start, count),
        }),
      };
    };
    const tokens = opts.tokens ?? 77;
    const need = <T>(v: T | undefined, what: string): T => {
      if (v === undefined) throw new Error(`${opts.checkpoint}: ${what} unknown for the ${kind} estimate`);
      return v;
    };
    if (kind === "text_encoder") {
      need(arch.textEncoders[0], "text encoder");
      for (const cfg of arch.textEncoders) {
        const { g, w } = newGraph();
        const pooled = arch.family === "sdxl" && cfg.naming === "openclip";
        buildTextEncoder(g, w, cfg, { batch: Math.ceil(tokens / 77), pooled });
      }
    } else if (kind === "unet") {
      const { g, w } = newGraph();
      const [n, , h, wd] = need(opts.latentShape, "latent shape");
      buildUnet(g, w, need(arch.unet, "UNet"), { batch: n, height: h, width: wd, contextTokens: tokens });
    } else if (kind === "vae_decoder") {
      const { g, w } = newGraph();
      const [, , h, wd] = need(opts.latentShape, "latent shape");
      buildVaeDecoder(g, w, need(arch.vae, "VAE"), { batch: 1, height: h, width: wd });
    } else {
      const { g, w } = newGraph();
      const [n, h, wd] = need(opts.imageShape, "image shape");
      buildVaeEncoder(g, w, need(arch.vae, "VAE"), { batch: n, height: h, width: wd });
    }
    const plans = graphs.map((g) =>
      plan(g, {
        hoistBudgetBytes: kind === "unet" ? undefined : 0,
        capabilities: opts.capabilities,
        fallback: opts.capabilities !== undefined,
      })
    );
    const groups = new Map<string, { count: number; flops: number; bytes: number }>();
    for (const op of plans.flatMap((p) => p.stepOps)) {
      const wino = op.note?.match(/^F\(\d,3\)/)?.[0];
      const where = op.side === "fallback" ? " on the CPU" : "";
      const key = `${kind}.${op.kind}${wino && op.kind === "wino_gemm" ? ` (${wino})` : ""}${where}`;
      const e = groups.get(key) ?? { count: 0, flops: 0, bytes: 0 };
      e.count++;
      e.flops += op.flops;
      e.bytes = Math.max(e.bytes, op.bytes);
      groups.set(key, e);
    }
    const out: OpEstimate[] = [...groups].map(([op, e]) => ({
      op,
      count: e.count,
      flops: e.flops / e.count,
      bytes: e.bytes,
      ...(op.endsWith(" on the CPU") ? { note: "the backend lacks it: runs on the CPU backend" } : {}),
    }));
    const transfers = plans.reduce((a, p) => a + p.stats.transferBytes, 0);
    if (transfers > 0) {
      out.push({
        op: `${kind}.transfers`,
        flops: 0,
        bytes: transfers,
        note: "copies between the backend and the CPU backend per evaluation",
      });
    }
    out.push({
      op: `${kind}.activation_arena`,
      flops: 0,
      bytes: Math.max(...plans.map((p) => p.stats.arenaPeakBytes)),
      note: `${plans.reduce((n, p) => n + p.stats.winogradConvs, 0)} Winograd convs, ` +
        `${plans.reduce((n, p) => n + p.stats.otherConvs, 0)} other convs`,
    });
    return out;
  } finally {
    file.close();
  }
}
