/**
 * `deno task bench readme [--sdcpp PATH/sd-cli] [--vs onnxruntime] [--sizes 256,512] [--steps 4]
 *   [--threads N] [--runs 5] [--arch sd15] [--model PATH] [--write]`
 *
 * The README's "Speed and memory" figures, produced rather than typed: runs `bench gen` (bench/gen.ts;
 * with `--sdcpp`, stable-diffusion.cpp in the same run), then the 3x3 convolutions of
 * {@link README_CONVS} (f16 weights; with `--vs onnxruntime`, onnxruntime's in the same run), prints
 * the tables, then the Markdown section (the machine it ran on, the command, the tables), and with
 * `--write` puts that section into README.md between {@link BEGIN} and {@link END}.
 *
 * @module
 */

import type { Backend } from "../backends/mod.ts";
import {
  ARCHS,
  BenchUsageError,
  formatGenTable,
  genNotes,
  type GenOptions,
  type GenRow,
  genTitle,
  parseGenArgs,
  runGenBench,
} from "./gen.ts";
import { describeMachine, type MachineInfo, thisMachine } from "./machine.ts";
import { sdcppVersion } from "./sdcpp.ts";
import { fmt, markdownTable, times } from "./table.ts";
import { type ConvRow, measureConv } from "./conv.ts";
import { loadOnnxruntime, onnxNote } from "./onnxruntime.ts";
import { type ConvShape, UNET_CONVS, VAE_DECODER_CONVS } from "./shapes.ts";

/** The convolutions the README shows: the largest of the UNet (batch 2) and of the VAE decoder at 512x512. */
export const README_CONVS: readonly string[] = [
  "unet 320->320@64",
  "unet 640->640@32",
  "unet 1280->1280@16",
  "unet 1280->1280@8",
  "vae 512->512@64",
  "vae 512->512@128",
  "vae 256->256@256",
  "vae 128->128@512",
];

export const BEGIN = "<!-- speed table: begin (written by `deno task bench readme --write`; do not edit) -->";
export const END = "<!-- speed table: end -->";

const README = new URL("../README.md", import.meta.url);

/** What the section says about the run besides the rows. */
export interface ReadmeContext {
  readonly machine: MachineInfo;
  readonly threads: number;
  readonly isa: string;
  readonly steps: number;
  readonly arch: GenOptions["arch"];
  /** The command that made it, as a user would type it. */
  readonly command: string;
  /** sd-cli's `--version`, when sd.cpp ran. */
  readonly sdcppVersion: string | null;
  /** The checkpoint given with `--model` (null: the benchmark's random-weight one). */
  readonly model?: string | null;
  /** When it was measured (ISO date). */
  readonly date: string;
  /** onnxruntime-node's version, when it ran. */
  readonly onnxruntimeVersion?: string | null;
  /** Runs per convolution (the median is shown). */
  readonly convRuns?: number;
}

const gb = (b: number | null | undefined) => (b == null ? null : b / 1e9);

/** The Markdown table of the convolutions (and onnxruntime's, when it ran). */
export function convTable(rows: readonly ConvRow[]): string {
  const ort = rows.some((r) => r.onnxruntime_ms !== undefined);
  const header = ["3x3 conv, f16 weights", "batch", "sdflow ms", "GFLOP/s"];
  if (ort) header.push("onnxruntime ms", "onnxruntime GFLOP/s", "onnxruntime ÷ sdflow");
  const body = rows.map((r) => {
    const cells = [r.name, String(r.batch), fmt(r.winograd_ms, 1), fmt(r.gflops, 0)];
    if (ort) cells.push(fmt(r.onnxruntime_ms, 1), fmt(r.onnxruntime_gflops, 0), times(r.onnxruntime_ratio, 1));
    return cells;
  });
  return markdownTable(header, body);
}

/** The Markdown section between the markers (markers included). */
export function readmeSection(rows: readonly GenRow[], ctx: ReadmeContext, convs: readonly ConvRow[] = []): string {
  const peer = rows.some((r) => r.sdcpp);
  const header = peer
    ? [
      "size",
      "sdflow s/step",
      "sd.cpp s/step",
      "step speed-up",
      "VAE decode sdflow / sd.cpp",
      "peak RSS sdflow / sd.cpp",
      "whole run sdflow / sd.cpp",
      "sdflow 1st step",
    ]
    : ["size", "sdflow s/step", "sdflow 1st step", "VAE decode", "peak RSS", "whole run"];
  const body = rows.map((r) => {
    const o = r.sdflow, p = r.sdcpp;
    const size = `${r.size}x${r.size}`;
    const step = (x: { step_median_rest_s: number | null; first_step_s: number | null }) =>
      fmt(x.step_median_rest_s ?? x.first_step_s);
    if (!peer) {
      return [
        size,
        step(o),
        `${fmt(o.first_step_s)} s`,
        `${fmt(o.decode_s)} s`,
        `${fmt(gb(o.peak_rss_bytes))} GB`,
        `${fmt(o.total_s, 1)} s`,
      ];
    }
    return [
      size,
      step(o),
      p ? step(p) : "-",
      times(r.ratios?.step, 1),
      `${fmt(o.decode_s)} s / ${fmt(p?.decode_s)} s`,
      `${fmt(gb(o.peak_rss_bytes))} GB / ${fmt(gb(p?.peak_rss_bytes))} GB`,
      `${fmt(o.total_s, 1)} s / ${fmt(p?.total_s, 1)} s`,
      `${fmt(o.first_step_s)} s`,
    ];
  });
  const text = [
    `Measured with \`${ctx.command}\` on ${ctx.date}: ${describeMachine(ctx.machine)}; ${ctx.threads} threads, ` +
    `backend ISA ${ctx.isa}. ` +
    (ctx.model
      ? `The checkpoint \`${ctx.model.split("/").at(-1)}\``
      : `${ARCHS[ctx.arch].title} (random-weight f16 checkpoint from \`make_random_sd.py\`)`) +
    `, "a lovely cat", ${ctx.steps} euler steps, cfg 7, seed 42` +
    (peer
      ? ", each engine through its own command line with the same flags, in the same run (`sd-cli --version`: " +
        `${ctx.sdcppVersion ?? "unknown"}).`
      : "."),
    "s/step is the median of the steps after the first; the first step, which also compiles the UNet program, is " +
    "shown apart. Whole run: process start to exit (loading, text encoding, sampling, decoding, PNG writing). " +
    "Peak RSS: the kernel's high-water mark (VmHWM" + (peer ? "; sd.cpp's from `/usr/bin/time -v`" : "") + ").",
  ];
  const psnr = rows.filter((r) => r.psnr_db !== null);
  if (psnr.length) {
    text.push(
      `The two engines' pictures agree to ${psnr.map((r) => `${fmt(r.psnr_db, 1)} dB`).join(" / ")} PSNR.`,
    );
  }
  const parts = [BEGIN, "", wrap(text.join(" "), 120), "", markdownTable(header, body), ""];
  if (convs.length) {
    const ort = ctx.onnxruntimeVersion;
    parts.push(
      wrap(
        `Single 3x3 convolutions of SD 1.5 at 512x512 in the same run (median of ${ctx.convRuns ?? "?"}, ` +
          "`program.run()` including thread wake-up and copies; GFLOP/s counts direct-convolution FLOPs)" +
          (ort
            ? `, next to onnxruntime-node ${ort} (one Conv node, NCHWc, same threads, the same weight values in ` +
              "f32 since its CPU convolution has no f16 kernel)."
            : "."),
        120,
      ),
      "",
      convTable(convs),
      "",
    );
  }
  parts.push(END);
  return parts.join("\n");
}

/** Wraps prose at `width` columns on spaces (as `deno fmt` leaves Markdown prose). */
export function wrap(text: string, width: number): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.join("\n");
}

/** Markdown as `deno fmt` writes it (run on the Deno running this), so the README stays formatted. */
export async function formatMarkdown(text: string): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--line-width", "120", "--ext", "md", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  if (out.code !== 0) throw new Error(`deno fmt failed on the section: ${new TextDecoder().decode(out.stderr).trim()}`);
  return new TextDecoder().decode(out.stdout);
}

/** `readme` with the section between the markers replaced; throws when the markers are not there once each. */
export function replaceSection(readme: string, section: string): string {
  const a = readme.indexOf(BEGIN), b = readme.indexOf(END);
  if (a < 0 || b < a || readme.indexOf(BEGIN, a + 1) >= 0 || readme.indexOf(END, b + 1) >= 0) {
    throw new Error(`README.md must hold the markers "${BEGIN}" and "${END}" once each, in that order`);
  }
  return readme.slice(0, a) + section + readme.slice(b + END.length);
}

/** The command line a user would type to make the same table (for the section's first line). */
export function commandLine(argv: readonly string[]): string {
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`);
  return ["deno task bench", ...argv.filter((a) => a !== "--write").map(quote)].join(" ");
}

/** Takes `--write`, `--vs onnxruntime` and `--runs N` (readme's own) out of argv; the rest is `bench gen`'s. */
export function readmeArgs(argv: readonly string[]): { write: boolean; onnx: boolean; runs: number; gen: string[] } {
  const gen: string[] = [];
  let write = false, onnx = false, runs = 5;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.startsWith("--") && a.includes("=")
      ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
      : [a, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new BenchUsageError(`${flag} expects a value`);
      return v;
    };
    if (flag === "--write" && inline === undefined) write = true;
    else if (flag === "--vs") {
      const v = value();
      if (v !== "onnxruntime") throw new BenchUsageError(`--vs takes "onnxruntime", got "${v}"`);
      onnx = true;
    } else if (flag === "--runs") {
      const v = value();
      if (!/^\d+$/.test(v) || Number(v) < 1) throw new BenchUsageError(`--runs expects a positive integer, got "${v}"`);
      runs = Number(v);
    } else gen.push(a);
  }
  return { write, onnx, runs, gen };
}

/** The `readme` suite of bench/main.ts. */
export async function benchReadme(backend: Backend, argv: readonly string[]): Promise<number> {
  let opts: GenOptions;
  let extra: ReturnType<typeof readmeArgs>;
  try {
    extra = readmeArgs(argv);
    opts = parseGenArgs(extra.gen);
    if (opts.json) throw new BenchUsageError("--json is for `bench gen`; `bench readme` prints Markdown");
    if (opts.lora) throw new BenchUsageError("--lora is for `bench gen`; the README shows the checkpoint alone");
    if (opts.repeat > 1) throw new BenchUsageError("--repeat is for `bench gen`; the README shows one run per size");
  } catch (e) {
    console.error(`bench readme: ${(e as Error).message}`);
    return 2;
  }
  try {
    if (extra.write) replaceSection(await Deno.readTextFile(README), ""); // the markers must be there before a long run
    const onnx = extra.onnx ? await loadOnnxruntime() : null;
    const threads = opts.threads ?? backend.info.threads;
    console.log(genTitle(opts, threads, backend.info.isa));
    const rows = await runGenBench(opts, backend);
    console.log([formatGenTable(rows), ...genNotes(rows)].join("\n"));
    const shapes = README_CONVS.map((name) => [...UNET_CONVS, ...VAE_DECODER_CONVS].find((s) => s.name === name)!)
      .filter((s): s is ConvShape => s !== undefined);
    const convs: ConvRow[] = [];
    if (onnx) console.log(onnxNote(onnx.version, backend.info.threads));
    for (const s of shapes) {
      console.error(`conv ${s.name}…`);
      convs.push(
        await measureConv(backend, s, {
          dtype: "f16",
          runs: extra.runs,
          onnx: onnx?.ort,
          hoisted: false,
          im2col: false,
        }),
      );
    }
    console.log(convTable(convs));
    const section = (await formatMarkdown(
      readmeSection(rows, {
        machine: thisMachine(),
        threads,
        isa: backend.info.isa,
        steps: opts.steps,
        arch: opts.arch,
        command: commandLine(argv),
        sdcppVersion: opts.sdcpp ? await sdcppVersion(opts.sdcpp) : null,
        model: opts.model ?? null,
        date: new Date().toISOString().slice(0, 10),
        onnxruntimeVersion: onnx?.version ?? null,
        convRuns: extra.runs,
      }, convs) + "\n",
    )).trimEnd();
    console.log(`\n${section}`);
    if (extra.write) {
      const old = await Deno.readTextFile(README);
      await Deno.writeTextFile(README, replaceSection(old, section));
      console.error(`wrote the section into ${README.pathname}`);
    }
    return 0;
  } catch (e) {
    console.error(`bench readme: ${e instanceof Error ? e.message : e}`);
    return 1;
  }
}
