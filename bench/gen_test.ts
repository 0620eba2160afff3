/**
 * `deno task bench gen` and `bench readme` without timing anything: argument parsing, ratios, the
 * tables, the README section, and one whole run on the tiny checkpoint next to a stand-in sd-cli
 * (a script that replays a captured sd-cli log), checking every reported field.
 */

import { assert, assertEquals, assertThrows } from "../tests/assert.ts";
import { makeTinyCheckpoint } from "../models/tiny/mod.ts";
import { encodePngImage } from "../plugins/image/png.ts";
import {
  BenchUsageError,
  formatGenTable,
  genNotes,
  type GenRow,
  makeRatios,
  parseGenArgs,
  type SdflowRun,
} from "./gen.ts";
import { parseMachine } from "./machine.ts";
import {
  BEGIN,
  commandLine,
  convTable,
  END,
  formatMarkdown,
  readmeArgs,
  readmeSection,
  replaceSection,
  wrap,
} from "./readme.ts";
import type { ConvRow } from "./conv.ts";
import type { SdcppRun } from "./sdcpp.ts";
import { markdownTable, textTable } from "./table.ts";

const ours = (over: Partial<SdflowRun> = {}): SdflowRun => ({
  load_s: 0.5,
  text_encode_s: 0.2,
  step_s: [2.5, 1, 1.2, 0.8],
  first_step_s: 2.5,
  step_median_rest_s: 1,
  sample_s: 5.6,
  decode_s: 1.25,
  save_s: 0.05,
  run_s: 7.5,
  process_s: 8,
  peak_rss_bytes: 2e9,
  rss_anon_bytes: 1e9,
  rss_file_bytes: 0.5e9,
  cpu_s: 15,
  threads: 2,
  total_s: 8.4,
  ...over,
});

const peer = (over: Partial<SdcppRun> = {}): SdcppRun => ({
  load_s: 1,
  text_encode_s: 0.3,
  step_s: [5.5, 5, 4.9, 5.1],
  first_step_s: 5.5,
  step_median_rest_s: 5,
  sample_s: 20.5,
  decode_s: 12.5,
  generate_s: 33.4,
  total_s: 42,
  peak_rss_bytes: 2.5e9,
  peak_rss_source: "time -v",
  cpu_s: 80,
  ...over,
});

const row = (size: number, withPeer: boolean): GenRow => ({
  arch: "sd15",
  size,
  run: 1,
  steps: 4,
  threads: 2,
  isa: "avx512",
  model: "m.safetensors",
  sdflow: ours(),
  sdcpp: withPeer ? peer() : null,
  ratios: withPeer ? makeRatios(ours(), peer()) : null,
  psnr_db: withPeer ? 57.25 : null,
  cpu_busy_before: 0.02,
  others_cpu_s: 0.4,
  quantized: [],
});

const conv = (ort: boolean): ConvRow => ({
  name: "unet 320->320@64",
  cin: 320,
  cout: 320,
  h: 64,
  w: 64,
  batch: 2,
  threads: 2,
  dtype: "f16",
  path: "F(4,3)",
  winograd_ms: 31.04,
  winograd_op_ms: 30,
  hoisted_ms: NaN,
  im2col_ms: NaN,
  speedup: NaN,
  gflops: 486.6,
  im2col_gflops: NaN,
  ...(ort
    ? { onnxruntime_ms: 76.6, onnxruntime_gflops: 197.2, onnxruntime_ratio: 2.47, onnxruntime_rel_err: 1e-6 }
    : {}),
});

Deno.test("bench gen: arguments", () => {
  const d = parseGenArgs(["gen"]);
  assertEquals(d, {
    arch: "sd15",
    sizes: [256, 512],
    steps: 4,
    threads: undefined,
    model: undefined,
    sdcpp: undefined,
    json: false,
    isa: "auto",
    repeat: 1,
    quantized: [],
    addons: [],
  });
  const o = parseGenArgs(["gen", "--arch", "sdxl", "--sizes", "512, 1024", "--steps", "2", "--sdcpp", "/x/sd-cli"]);
  assertEquals([o.arch, o.sizes, o.steps, o.sdcpp], ["sdxl", [512, 1024], 2, "/x/sd-cli"]);
  assertEquals(parseGenArgs(["--arch", "sdxl"]).sizes, [512, 1024]);
  assertEquals(parseGenArgs(["--arch", "sd21"]).sizes, [256, 512]);
  assertEquals(parseGenArgs(["readme", "--threads=1", "--json"]).threads, 1);
  assertEquals(parseGenArgs(["--lora", "x.safetensors"]).lora, { path: "x.safetensors", mode: "merge" });
  assertEquals(parseGenArgs(["--lora", "x", "--lora-mode", "runtime"]).lora, { path: "x", mode: "runtime" });
  assertEquals(parseGenArgs(["--type", "q4_0"]).weightType, "q4_0");
  assertEquals(parseGenArgs(["--quantized", "q8_0, q4_0"]).quantized, ["q8_0", "q4_0"]);
  assertEquals(parseGenArgs(["--precision", "bf16"]).precision, "bf16");
  assertEquals(
    parseGenArgs(["--control-net", "/m/cn.safetensors", "--control-image", "/e.png", "--vae-tiling"]).addons,
    ["--control-net", "/m/cn.safetensors", "--control-image", "/e.png", "--vae-tiling"],
  );
  assertEquals(parseGenArgs(["--taesd=/t.safetensors", "--control-strength", "0.9"]).addons, [
    "--taesd",
    "/t.safetensors",
    "--control-strength",
    "0.9",
  ]);
  const bad: [string[], RegExp][] = [
    [["--arch", "sd3"], /--arch must be one of sd15, sd21, sdxl, got "sd3"/],
    [["--sizes", "256,500"], /multiples of 64/],
    [["--sizes", "256,"], /--sizes expects a positive integer, got ""/],
    [["--steps", "0"], /--steps expects a positive integer/],
    [["--repeat", "0"], /--repeat expects a positive integer/],
    [["--lora", "x", "--lora-mode", "fast"], /--lora-mode must be merge or runtime, got "fast"/],
    [["--type", "q3_k"], /--type must be one of f32, f16, q8_0, q5_1, q5_0, q4_1, q4_0, got "q3_k"/],
    [["--steps", "2.5"], /--steps expects a positive integer/],
    [["--control-net", "cn.safetensors"], /--control-net needs --control-image/],
    [["--precision", "f16"], /--precision must be f32 or bf16, got "f16"/],
    [["--control-strength", "much"], /--control-strength expects a number, got "much"/],
    [["--taesd="], /--taesd expects a file/],
    [["--quantized", "q8_0,q3"], /--quantized takes types from .*, got "q3"/],
    [["--quantized", "q8_0,q8_0"], /--quantized names a type twice/],
    [["--quantized", "q8_0", "--type", "q4_0"], /drop --type/],
    [["--threads", "x"], /--threads expects a positive integer/],
    [["--sdcpp="], /--sdcpp expects the path/],
    [["--frobnicate"], /frobnicate/],
    [["gen", "extra"], /unexpected argument "extra"/],
  ];
  for (const [args, re] of bad) {
    const e = assertThrows(() => parseGenArgs(args), BenchUsageError);
    assert(re.test(e.message), `${args.join(" ")}: ${e.message}`);
  }
});

Deno.test("bench gen: ratios (sd.cpp ÷ sdflow; RSS sdflow ÷ sd.cpp)", () => {
  assertEquals(makeRatios(ours(), peer()), { first_step: 2.2, step: 5, decode: 10, total: 5, rss: 0.8 });
  // One step each: the first steps are compared; a missing figure gives no ratio rather than a wrong one.
  const one = makeRatios(
    ours({ step_s: [2], first_step_s: 2, step_median_rest_s: null, peak_rss_bytes: null }),
    peer({ step_s: [6], first_step_s: 6, step_median_rest_s: null, decode_s: null }),
  );
  assertEquals(one, { first_step: 3, step: 3, decode: null, total: 5, rss: null });
});

Deno.test("bench gen: the terminal table lines up and says what it measured", () => {
  const table = formatGenTable([row(256, true), row(512, false)]);
  const lines = table.split("\n");
  assertEquals(lines.length, 1 + 3 + 1, table);
  assert(lines[1].startsWith("256x256  sdflow") && lines[2].includes("sd.cpp") && lines[3].includes("5.00x"), table);
  assert(lines[3].includes("10.00x") && lines[3].includes("2.20x"), table);
  assert(lines.slice(0, 3).every((l) => l.length === lines[0].length), `columns do not line up:\n${table}`);
  const notes = genNotes([row(256, true)]).join("\n");
  assert(/PSNR .*256x256 57\.25 dB/.test(notes), notes);
  assert(/peak RSS sdflow ÷ sd\.cpp: 256x256 0\.80 \(sd\.cpp's peak by time -v\)/.test(notes), notes);
  assert(!notes.includes("note: other processes"), notes);
  // Repeated runs: each row numbered, and the spread per size.
  const again = { ...row(256, true), run: 2, sdflow: ours({ step_median_rest_s: 1.4, decode_s: 1.5 }) };
  const repeated = formatGenTable([row(256, true), again]);
  assert(repeated.includes("256x256 #1  sdflow") && repeated.includes("256x256 #2  sd.cpp"), repeated);
  const spread = genNotes([row(256, true), again]).join("\n");
  assert(
    spread.includes(
      "spread at 256x256 over 2 runs: sdflow: step s 1.00–1.40 (median 1.20), decode s 1.25–1.50 (median 1.38); " +
        "sd.cpp: step s 5.00–5.00 (median 5.00), decode s 12.50–12.50 (median 12.50)",
    ),
    spread,
  );
  const busy = genNotes([{ ...row(256, false), others_cpu_s: 500 }]).join("\n");
  assert(busy.includes("note: other processes were busy during 256x256"), busy);
});

Deno.test("bench readme: machine line, Markdown table and the README section", async () => {
  const cpuinfo = [0, 1].map((i) =>
    `processor\t: ${i}\nmodel name\t: AMD EPYC 9R45\nphysical id\t: 0\ncore id\t\t: ${i}\n` +
    "flags\t\t: fpu sse avx2 fma f16c avx512f avx512bw avx512vl avx512_bf16\n"
  ).join("\n");
  const machine = parseMachine(cpuinfo, "MemTotal:       25165824 kB\n");
  assertEquals(machine, {
    cpu: "AMD EPYC 9R45",
    logicalCpus: 2,
    physicalCores: 2,
    isaFlags: ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16"],
    memoryBytes: 25165824 * 1024,
  });
  assertEquals(parseMachine("", "").cpu, "unknown CPU");

  const md = markdownTable(["size", "a|b"], [["256x256", "1.00"], ["1024x1024", "12.50"]]);
  assertEquals(md.split("\n"), [
    "| size      |  a\\|b |",
    "| --------- | ----: |",
    "| 256x256   |  1.00 |",
    "| 1024x1024 | 12.50 |",
  ]);
  assertEquals(textTable(["x", "value"], [["a", "1"]]), "x  value\na      1");
  assertEquals(wrap("aa bb cc dd", 5), "aa bb\ncc dd");
  assertEquals(
    commandLine(["readme", "--sdcpp", "/p/sd cli", "--write"]),
    "deno task bench readme --sdcpp '/p/sd cli'",
  );

  const ctx = {
    machine,
    threads: 2,
    isa: "avx512",
    steps: 4,
    arch: "sd15" as const,
    command: "deno task bench readme --sdcpp /p/sd-cli",
    sdcppVersion: "stable-diffusion.cpp version master-827",
    date: "2026-12-02",
  };
  const section = readmeSection(
    [row(256, true), row(512, true)],
    { ...ctx, onnxruntimeVersion: "1.30.0", convRuns: 5 },
    [
      conv(true),
    ],
  );
  assert(section.startsWith(BEGIN) && section.endsWith(END), section);
  for (
    const want of [
      "AMD EPYC 9R45 (2 logical CPUs, 2 cores), AVX-512 (f, bw, vl, bf16), 24.0 GiB",
      "`deno task bench readme --sdcpp /p/sd-cli`",
      "master-827",
      "| 256x256 |          1.00 |          5.00 |          5.0x |",
      "1.25 s / 12.50 s",
      "2.00 GB / 2.50 GB",
      "57.3 dB / 57.3 dB PSNR",
      "median of 5",
      "onnxruntime-node 1.30.0",
      "|                 2.5x |",
    ]
  ) assert(section.replaceAll("\n", " ").includes(want), `missing ${JSON.stringify(want)} in\n${section}`);
  assert(section.split("\n").every((l) => l.length <= 120 || l.startsWith("|")), section);
  // Prose wrapped at 120 columns; `deno fmt` (which --write runs on it) keeps every word.
  assert(section.split("\n").every((l) => l.length <= 120 || l.startsWith("|")), section);
  const long = readmeSection([row(256, true)], {
    ...ctx,
    command: `deno task bench readme --sdcpp /${"x".repeat(150)}`,
  });
  const formatted = await formatMarkdown(long + "\n");
  assertEquals(formatted.split(/\s+/).join(" "), (long + "\n").split(/\s+/).join(" "));
  assertEquals(await formatMarkdown(formatted), formatted);
  const alone = readmeSection([row(256, false)], { ...ctx, sdcppVersion: null });
  assert(!alone.includes("sd.cpp") && alone.includes("| 256x256 |          1.00 |          2.50 s |"), alone);
  assert(alone.includes("SD 1.5 (random-weight f16 checkpoint"), alone);
  const given = readmeSection([row(256, false)], { ...ctx, model: "/m/v1-5-pruned-emaonly.safetensors" });
  assert(given.includes("The checkpoint `v1-5-pruned-emaonly.safetensors`,"), given);

  const readme = `# x\n\n## Speed and memory\n\n${BEGIN}\nold\n${END}\n\nafter\n`;
  assertEquals(replaceSection(readme, "NEW"), "# x\n\n## Speed and memory\n\nNEW\n\nafter\n");
  assertThrows(() => replaceSection("# x\n", "NEW"), Error, "markers");
  assertThrows(() => replaceSection(`${END}\n${BEGIN}\n`, "NEW"), Error, "markers");
});

Deno.test("bench readme: its own flags, and the convolution table", () => {
  assertEquals(readmeArgs(["readme", "--sdcpp", "/x", "--vs", "onnxruntime", "--write", "--runs=3", "--steps", "2"]), {
    write: true,
    onnx: true,
    runs: 3,
    gen: ["readme", "--sdcpp", "/x", "--steps", "2"],
  });
  assertThrows(() => readmeArgs(["--vs", "torch"]), BenchUsageError, `--vs takes "onnxruntime", got "torch"`);
  assertThrows(() => readmeArgs(["--runs", "0"]), BenchUsageError, "--runs expects a positive integer");
  assertThrows(() => readmeArgs(["--vs"]), BenchUsageError, "--vs expects a value");
  assertEquals(
    convTable([conv(true)]).split("\n")[2],
    "| unet 320->320@64      |     2 |      31.0 |     487 |           76.6 |                 197 |                 2.5x |",
  );
  assert(!convTable([conv(false)]).includes("onnxruntime"));
});

Deno.test("bench gen: a whole run on the tiny checkpoint next to a stand-in sd-cli", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = await makeTinyCheckpoint(`${dir}/tiny.safetensors`);
    // The stand-in replays a captured sd-cli log (4 steps) and writes a grey 64x64 PNG where -o says.
    const log = new URL("./testdata/sdcpp_sd15_256_euler_4.log", import.meta.url).pathname;
    const grey = { width: 64, height: 64, channels: 3 as const, data: new Uint8Array(64 * 64 * 3).fill(128) };
    await Deno.writeFile(`${dir}/grey.png`, encodePngImage(grey));
    const fake = `${dir}/sd-cli`;
    await Deno.writeTextFile(
      fake,
      `#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && out="$2"; shift; done\n` +
        `cat '${log}'\ncp '${dir}/grey.png' "$out"\n`,
    );
    await Deno.chmod(fake, 0o755);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./main.ts", import.meta.url).pathname,
        "gen",
        "--model",
        model,
        "--sizes",
        "64",
        "--steps",
        "4",
        "--threads",
        "1",
        "--sdcpp",
        fake,
        "--json",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr) + text);
    const rows = text.trim().split("\n").map((l) => JSON.parse(l) as GenRow);
    assertEquals(rows.length, 1, text);
    const r = rows[0];
    assertEquals([r.size, r.steps, r.threads, r.sdflow.step_s.length], [64, 4, 1, 4]);
    const finite = (o: object, keys: readonly string[]) => {
      for (const k of keys) {
        const v = (o as Record<string, unknown>)[k];
        assert(typeof v === "number" && Number.isFinite(v) && v >= 0, `${k} = ${v}`);
      }
    };
    finite(r.sdflow, [
      "load_s",
      "text_encode_s",
      "first_step_s",
      "step_median_rest_s",
      "decode_s",
      "save_s",
      "total_s",
      "peak_rss_bytes",
      "cpu_s",
    ]);
    finite(r.sdcpp!, ["first_step_s", "step_median_rest_s", "decode_s", "total_s", "peak_rss_bytes"]);
    finite(r.ratios!, ["first_step", "step", "decode", "total", "rss"]);
    assert(Number.isFinite(r.psnr_db), `psnr ${r.psnr_db}`);
    // The stand-in's figures are the captured log's, read back exactly.
    assertEquals(r.sdcpp!.step_s.length, 4);
    assertEquals(r.sdcpp!.decode_s, SAMPLE_DECODE_S);

    // A peer that fails is one clear line and exit 1.
    await Deno.writeTextFile(fake, "#!/bin/sh\necho '[ERROR] main.cpp:1 - load model failed' >&2\nexit 3\n");
    const failed = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./main.ts", import.meta.url).pathname,
        "gen",
        "--model",
        model,
        "--sizes",
        "64",
        "--steps",
        "1",
        "--sdcpp",
        fake,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(failed.stderr);
    assertEquals(failed.code, 1, err);
    assert(/bench gen: sd-cli exited with 3:\n.*load model failed/.test(err), err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The decode time in bench/testdata/sdcpp_sd15_256_euler_4.log. */
const SAMPLE_DECODE_S = 63.29;

Deno.test("bench gen: --quantized converts the model and runs each file beside the as-stored weights", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = await makeTinyCheckpoint(`${dir}/tiny.safetensors`);
    const args = ["gen", "--model", model, "--sizes", "64", "--steps", "2", "--threads", "1", "--quantized", "q8_0"];
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./main.ts", import.meta.url).pathname, ...args, "--json"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr) + text);
    const [r] = text.trim().split("\n").map((l) => JSON.parse(l) as GenRow);
    assertEquals(r.quantized.map((q) => q.type), ["q8_0"]);
    const q = r.quantized[0];
    assert(q.bytes > 0 && q.bytes < q.source_bytes, `q8_0 file ${q.bytes} B, model ${q.source_bytes} B`);
    assert(q.convert_s > 0 && (q.convert_peak_rss_bytes ?? 0) > 0, JSON.stringify(q));
    assertEquals(q.sdflow.step_s.length, 2);
    assert(q.psnr_vs_stored_db > 20, `q8_0 picture ${q.psnr_vs_stored_db} dB from the f16 one`);
    const table = formatGenTable([r]);
    assert(/sdflow q8_0/.test(table), table);
    const notes = genNotes([r]).join("\n");
    assert(/q8_0: converted by sdflow's -M convert in [\d.]+ s/.test(notes), notes);
    assert(/q8_0 at 64x64 against the as-stored weights: step [\d.]+x/.test(notes), notes);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
