/** `gen --timings-json`: the report's arithmetic (a scripted clock) and the flag through the real CLI. */

import { assert, assertEquals } from "../tests/assert.ts";
import { makeTinyCheckpoint } from "../models/tiny/mod.ts";
import { allReporters, cpuSeconds, RunTimings, statusBytes, type TimingsReport } from "./timings.ts";

const STATUS =
  "Name:\tdeno\nVmPeak:\t 9000 kB\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\nRssAnon:\t 10 kB\nRssFile:\t 3 kB\n";
// A command name with spaces and parentheses; utime 250 and stime 50 ticks = 3 s.
const STAT = "123 (deno (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 100 200 300";

Deno.test("timings: /proc fields", () => {
  assertEquals(statusBytes("VmHWM", STATUS), 2048 * 1024);
  assertEquals(statusBytes("RssFile", STATUS), 3072);
  assertEquals(statusBytes("VmHWM", "Name:\tdeno\n"), null);
  assertEquals(statusBytes("VmHWM", null), null);
  assertEquals(cpuSeconds(STAT), 3);
  assertEquals(cpuSeconds(null), null);
});

Deno.test("timings: groups nodes into load, text, steps (first apart), decode, PNG write", () => {
  let now = 0;
  const t = new RunTimings(() => now);
  const seen: string[] = [];
  const rep = allReporters(t, { nodeStart: (id) => seen.push(id) });
  rep.nodeStart!("checkpoint", "checkpoint", { category: "loaders" });
  now = 1500;
  rep.nodeEnd!("checkpoint", { cached: false, ms: 1500 });
  rep.nodeStart!("positive", "clip_encode", { category: "conditioning" });
  now = 1700;
  rep.nodeEnd!("positive", { cached: false, ms: 200 });
  rep.nodeStart!("negative", "clip_encode", { category: "conditioning" });
  rep.nodeEnd!("negative", { cached: true, ms: 0 });
  rep.nodeStart!("sampler", "sampler", { category: "sampling" });
  rep.progress!("sampler", 0, 4, "step");
  for (const [done, at] of [[1, 6700], [2, 8700], [4, 12700]]) {
    now = at; // step 1 (compiles): 5 s; step 2: 2 s; steps 3 and 4 reported together: 2 s each
    rep.progress!("sampler", done, 4, "step");
  }
  rep.progress!("sampler", 50, 100); // progress in another unit is not a step
  now = 12800;
  rep.nodeEnd!("sampler", { cached: false, ms: 11100 });
  rep.nodeStart!("decode", "vae_decode", { category: "latent" });
  now = 15800;
  rep.nodeEnd!("decode", { cached: false, ms: 3000 });
  rep.nodeStart!("save", "save_image", { category: "image" });
  now = 15900;
  rep.nodeEnd!("save", { cached: false, ms: 100 });
  now = 17000;
  const r = t.report({ threads: 2, proc: (name) => (name === "status" ? STATUS : STAT) });
  assertEquals(seen, ["checkpoint", "positive", "negative", "sampler", "decode", "save"]);
  assertEquals(r.load_s, 1.5);
  assertEquals(r.text_encode_s, 0.2);
  assertEquals(r.step_s, [5, 2, 2, 2]);
  assertEquals(r.first_step_s, 5);
  assertEquals(r.step_median_rest_s, 2);
  assertEquals(r.sample_s, 11.1);
  assertEquals(r.decode_s, 3);
  assertEquals(r.save_s, 0.1);
  assertEquals(r.run_s, 15.9);
  assertEquals(r.process_s, 17);
  assertEquals([r.peak_rss_bytes, r.rss_anon_bytes, r.rss_file_bytes, r.cpu_s], [2048 * 1024, 10240, 3072, 3]);
  assertEquals(r.threads, 2);
  assertEquals(r.nodes.find((n) => n.id === "negative"), {
    id: "negative",
    type: "clip_encode",
    category: "conditioning",
    s: 0,
    cached: true,
    step_s: [],
  });

  const one = new RunTimings(() => now);
  one.nodeStart("sampler", "sampler");
  now += 700;
  one.progress("sampler", 1, 1, "step");
  one.nodeEnd("sampler", { cached: false, ms: 700 });
  const r1 = one.report({ proc: () => null });
  assertEquals([r1.first_step_s, r1.step_median_rest_s, r1.peak_rss_bytes, r1.cpu_s], [0.7, null, null, null]);
});

Deno.test("timings: gen --timings-json through the real CLI on the tiny checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = await makeTinyCheckpoint(`${dir}/tiny.safetensors`);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./gen.ts", import.meta.url).pathname,
        "-m",
        model,
        "-p",
        "a cat",
        "-W",
        "64",
        "-H",
        "64",
        "--steps",
        "3",
        "--sampling-method",
        "euler",
        "-t",
        "1",
        "-o",
        `${dir}/a.png`,
        "--timings-json",
        `${dir}/t.json`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, err);
    const r = JSON.parse(await Deno.readTextFile(`${dir}/t.json`)) as TimingsReport;
    assertEquals(r.version, 1);
    assertEquals(r.step_s.length, 3);
    assertEquals(r.threads, 1);
    for (
      const k of [
        "load_s",
        "text_encode_s",
        "first_step_s",
        "step_median_rest_s",
        "sample_s",
        "decode_s",
        "save_s",
        "run_s",
        "process_s",
        "peak_rss_bytes",
        "cpu_s",
      ] as const
    ) {
      assert(Number.isFinite(r[k]) && (r[k] as number) >= 0, `${k} = ${r[k]}`);
    }
    assert(r.decode_s > 0 && r.save_s > 0 && r.peak_rss_bytes! > 1e6, JSON.stringify(r));
    assertEquals(r.nodes.map((n) => n.type).sort(), [
      "checkpoint",
      "clip_encode",
      "clip_encode",
      "empty_latent",
      "sampler",
      "save_image",
      "vae_decode",
    ]);
    // A missing path is a usage error (exit 2), before anything runs.
    const bad = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./gen.ts", import.meta.url).pathname, "-m", model, "--timings-json="],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(bad.code, 2, new TextDecoder().decode(bad.stderr));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
