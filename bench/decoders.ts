/**
 * `deno task bench decoders [--sizes 256,512] [--big 2048] [--threads N] [--model PATH] [--taesd PATH]
 * [--esrgan PATH] [--only TEXT] [--json]`: the add-on decoders, one process per case (peak RSS is the case's own):
 * full VAE vs TAESD decode, whole vs tiled VAE decode (and a tiled decode of a `--big` picture, whose whole decode
 * would not fit), ESRGAN x4 of a SIZE x SIZE picture. Models default to the random SD 1.5 checkpoint and the random add-ons in .cache/
 * (see ../shared/reference/addons/README.md for how they are made).
 * sd.cpp's figures for the same machine type are in that README (not measured in this run).
 */

import { parseArgs } from "node:util";

/**
 * stable-diffusion.cpp's times on this machine type for the same work (../shared/reference/addons/README.md,
 * 2026-12-02, 2 threads, "a slow day"): the decode column of its plain and TAESD 256x256 runs, and its upscale
 * alone for ESRGAN x4 256 -> 1024 (9 tiles). Not measured in this run: compare ratios with care.
 */
const SDCPP_S: Readonly<Record<string, number>> = {
  "vae 256 whole": 14.0,
  "taesd 256 whole": 2.0,
  "upscale 256 whole": 73.7,
};

interface Row {
  case: string;
  size: number;
  tiled: boolean;
  load_s: number;
  run_s: number;
  warm_s: number | null;
  peak_rss_bytes: number | null;
}

async function worker(args: string[]): Promise<Row> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./decoders_worker.ts", import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  if (r.code !== 0) throw new Error(dec.decode(r.stderr).trim() || `worker exited with ${r.code}`);
  return JSON.parse(dec.decode(r.stdout).trim().split("\n").pop()!) as Row;
}

export async function benchDecoders(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    strict: false,
    allowPositionals: true,
    options: {
      sizes: { type: "string", default: "256,512" },
      big: { type: "string", default: "2048" },
      threads: { type: "string" },
      model: { type: "string", default: ".cache/sd15-random-f16.safetensors" },
      taesd: { type: "string", default: ".cache/addons/random-taesd-f16.safetensors" },
      esrgan: { type: "string", default: ".cache/addons/random-esrgan-f16.safetensors" },
      only: { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  const sizes = String(values.sizes).split(",").map(Number);
  const common = [
    "--model",
    String(values.model),
    "--taesd",
    String(values.taesd),
    "--esrgan",
    String(values.esrgan),
    ...(values.threads ? ["--threads", String(values.threads)] : []),
  ];
  const cases: string[][] = [];
  for (const s of sizes) {
    cases.push(["--case", "vae", "--size", String(s)]);
    cases.push(["--case", "vae", "--size", String(s), "--tiled"]);
    cases.push(["--case", "taesd", "--size", String(s)]);
    cases.push(["--case", "upscale", "--size", String(s)]);
  }
  // The big tiled decode runs once (a second pass would double a long run for nothing new).
  for (const c of cases) c.push("--warm");
  if (Number(values.big) > 0) cases.push(["--case", "vae", "--size", String(values.big), "--tiled"]);
  const rows: Row[] = [];
  for (const c of cases) {
    const label = c.filter((a) => a !== "--warm").join(" ");
    if (values.only && !label.includes(String(values.only))) continue;
    console.error(`running ${label}…`);
    const row = await worker([...c, ...common]);
    rows.push(row);
    if (values.json) console.log(JSON.stringify(row));
  }
  if (values.json) return;
  const name = (r: Row) =>
    r.case === "upscale"
      ? `ESRGAN x4 ${r.size}→${r.size * 4}`
      : `${r.case === "vae" ? "VAE" : "TAESD"} decode ${r.size}x${r.size}${r.tiled ? " tiled" : ""}`;
  console.log(
    "| case | load s | run s | warm run s | peak RSS GB | sd.cpp s | sd.cpp ÷ run |\n" +
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const r of rows) {
    const rss = r.peak_rss_bytes === null ? "?" : (r.peak_rss_bytes / 1e9).toFixed(2);
    const warm = r.warm_s === null ? "" : r.warm_s.toFixed(2);
    const ref = SDCPP_S[`${r.case} ${r.size} ${r.tiled ? "tiled" : "whole"}`];
    const sd = ref === undefined ? "" : ref.toFixed(1);
    const ratio = ref === undefined ? "" : (ref / r.run_s).toFixed(1);
    console.log(
      `| ${name(r)} | ${r.load_s.toFixed(2)} | ${r.run_s.toFixed(2)} | ${warm} | ${rss} | ${sd} | ${ratio} |`,
    );
  }
  console.log(
    "run s includes compiling the network's program (a one-off decode pays it too); warm: a second run with the " +
      "program kept. VAE tiles: 32 latent px, " +
      "overlap 0.5 (sd.cpp's defaults); ESRGAN tiles: 128 px. sd.cpp's times: ../shared/reference/addons/README.md.",
  );
}
