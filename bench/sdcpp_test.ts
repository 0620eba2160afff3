/**
 * Reading stable-diffusion.cpp's log and GNU time's report, on a captured run (bench/testdata:
 * `sd-cli -m sd15-random-f16.safetensors -p "a lovely cat" -s 42 --cfg-scale 7 --rng cuda -t 2 -W 256 -H 256
 * --sampling-method euler --steps 4`, under `/usr/bin/time -v`, on a heavily loaded machine).
 */

import { assertEquals } from "../tests/assert.ts";
import { parseSdcppLog, parseTimeV, txt2imgArgs } from "./sdcpp.ts";
import { graphFromSdcppFlags, parseArgs } from "../cli/sdcpp.ts";

const LOG = new URL("./testdata/sdcpp_sd15_256_euler_4.log", import.meta.url);
const TIME = new URL("./testdata/sdcpp_sd15_256_euler_4.time.txt", import.meta.url);

Deno.test("sd.cpp log: steps, decode, load and the rest from a captured run", () => {
  const t = parseSdcppLog(Deno.readTextFileSync(LOG));
  assertEquals(t, {
    load_s: 34.58, // 3.01 (text encoder) + 29.64 (UNet, inside step 1) + 1.93 (VAE, inside the decode)
    text_encode_s: 15.31,
    step_s: [117.18, 81.93, 74.23, 76.05],
    first_step_s: 117.18,
    step_median_rest_s: 76.05,
    sample_s: 349.43,
    decode_s: 63.29,
    generate_s: 428.03,
  });
});

Deno.test("sd.cpp log: fast steps (it/s), redraws, loading bars and missing lines", () => {
  const log = [
    "[INFO ] stable-diffusion.cpp:4380 - sampling using Euler method",
    "\r  |#####      | 20/196 - 30.53MB/s\x1b[K\r  |######| 196/196 - 77.98MB/s\x1b[K",
    "\r  |==>   | 1/3 - 1.50s/it\x1b[K\r  |===>  | 2/3 - 2.50it/s\x1b[K\r  |=====| 3/3 - 4.00it/s\x1b[K",
    "[INFO ] stable-diffusion.cpp:5711 - sampling completed, taking 2.15s",
    // A tiled VAE decode draws bars in the same format after sampling: not steps.
    "\r  |==>   | 1/4 - 9.00s/it\x1b[K",
    "[INFO ] stable-diffusion.cpp:5391 - decode_first_stage completed, taking 0.70s",
  ].join("\n");
  const t = parseSdcppLog(log);
  assertEquals(t.step_s, [1.5, 0.4, 0.25]);
  assertEquals([t.first_step_s, t.step_median_rest_s, t.sample_s, t.decode_s], [1.5, 0.325, 2.15, 0.7]);
  assertEquals([t.load_s, t.text_encode_s, t.generate_s], [null, null, null]);
  assertEquals(parseSdcppLog("").step_s, []);
  assertEquals(parseSdcppLog("").step_median_rest_s, null);
});

Deno.test("GNU time -v: peak RSS, wall and CPU seconds", () => {
  assertEquals(parseTimeV(Deno.readTextFileSync(TIME)), {
    peak_rss_bytes: 2492872 * 1024,
    wall_s: 430.16,
    cpu_s: 132.98,
  });
  assertEquals(parseTimeV("\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03.5\n").wall_s, 3723.5);
  assertEquals(parseTimeV("nothing"), { peak_rss_bytes: null, wall_s: null, cpu_s: null });
});

Deno.test("sd.cpp flags: the txt2img command line both engines get", () => {
  const args = txt2imgArgs({
    model: "m.safetensors",
    prompt: "a lovely cat",
    seed: 42,
    cfg: 7,
    size: 256,
    steps: 4,
    sampler: "euler",
    threads: 2,
    output: "o.png",
  });
  // The reference command of ../shared/reference/README.md, flag for flag.
  assertEquals(
    args.join(" "),
    "-m m.safetensors -p a lovely cat -s 42 --cfg-scale 7 --rng cuda -t 2 -W 256 -H 256 --sampling-method euler " +
      "--steps 4 -o o.png",
  );
});

Deno.test("sd.cpp flags: a LoRA as sd.cpp takes it, and sdflow's gen reads the same flags into a lora node", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/style.v2.safetensors`, new Uint8Array(16));
    const args = txt2imgArgs({
      model: "m.safetensors",
      prompt: "a lovely cat",
      seed: 42,
      cfg: 7,
      size: 256,
      steps: 4,
      sampler: "euler",
      threads: 2,
      output: "o.png",
      lora: { path: `${dir}/style.v2.safetensors`, mode: "at_runtime" },
    });
    assertEquals(args.slice(0, 8), [
      "-m",
      "m.safetensors",
      "-p",
      "a lovely cat<lora:style.v2:1>",
      "--lora-model-dir",
      dir,
      "--lora-apply-mode",
      "at_runtime",
    ]);
    const { file } = graphFromSdcppFlags(parseArgs(args, true).flags);
    const nodes = file.nodes as Record<string, { type: string; inputs: Record<string, unknown> }>;
    assertEquals(nodes.lora.type, "lora");
    assertEquals(nodes.lora.inputs.apply_mode, "at_runtime");
    assertEquals(nodes.positive.inputs.text, "a lovely cat");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
