/** The arithmetic and formatting of `deno task bench gen` (no timing: the benchmark itself is not run here). */

import { assert, assertEquals } from "../tests/assert.ts";
import { BENCH_ARCHS, formatTable, makeRow, type WorkerResult } from "./gen.ts";
import { cpuSeconds, peakRssBytes, statusBytes } from "./gen_worker.ts";

const worker = (size: number, over: Partial<WorkerResult> = {}): WorkerResult => ({
  size,
  steps: 4,
  threads: 2,
  load_s: 1.5,
  text_encode_s: 0.2,
  step_s: [12, 9, 10, 11],
  step_median_s: 10.5,
  sample_s: 42,
  decode_s: 12.75,
  run_s: 60,
  peak_rss_bytes: 3e9,
  ...over,
});

Deno.test("bench gen: VmHWM and CPU time parsing", () => {
  assertEquals(peakRssBytes("Name:\tdeno\nVmPeak:\t 9000 kB\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\n"), 2048 * 1024);
  assertEquals(peakRssBytes("Name:\tdeno\n"), null);
  assertEquals(statusBytes("RssFile", "RssAnon:\t 10 kB\nRssFile:\t 3 kB\n"), 3072);
  // /proc/<pid>/stat: a command name with spaces and parentheses; utime 250 and stime 50 ticks = 3 s.
  const stat = "123 (deno (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 100 200 300";
  assertEquals(cpuSeconds(stat), 3);
  assert((cpuSeconds() ?? 0) >= 0);
});

Deno.test("bench gen: ratios against sd.cpp's figures and the 512 targets", () => {
  const extra = { isa: "avx512", model: "m", busyBefore: 0.02, othersCpuS: 0.4 };
  const r512 = makeRow(worker(512), 70, extra);
  // sd.cpp 512: 31 s/step, 51 s decode, 3.69 GB; targets 31/3, 51/4, < 3.69 GB.
  assertEquals(r512.sdcpp?.step_speedup, 2.95);
  assertEquals(r512.sdcpp?.decode_speedup, 4);
  assertEquals(r512.sdcpp?.total_speedup, null);
  assertEquals(r512.sdcpp?.rss_ratio, 0.81);
  assertEquals(r512.targets, { step_s: 10.33, decode_s: 12.75, peak_rss_gb: 3.69, met: false });
  assertEquals(makeRow(worker(512, { step_median_s: 10 }), 70, extra).targets?.met, true);
  assertEquals(makeRow(worker(512, { step_median_s: 10, peak_rss_bytes: 3.7e9 }), 70, extra).targets?.met, false);

  const r256 = makeRow(worker(256, { step_median_s: 2.45, decode_s: 5.8 }), 20, extra);
  assertEquals([r256.sdcpp?.step_speedup, r256.sdcpp?.decode_speedup, r256.sdcpp?.total_speedup], [2, 2, 2]);
  assertEquals(r256.targets, null);
  assertEquals(makeRow(worker(320), 20, extra).sdcpp, null);

  const table = formatTable([r256, r512]);
  assert(table.includes("256x256") && table.includes("512x512"), table);
  assert(table.includes("2.95x"), table);
  assertEquals(r512.cpu_busy_before, 0.02);
  assertEquals(r512.others_cpu_s, 0.4);
  const lines = table.split("\n");
  assertEquals(lines.length, 4, table);
  assert(lines.every((l) => l.length === lines[1].length), `columns do not line up:\n${table}`);
});

Deno.test("bench gen --arch sdxl: sd.cpp's SDXL figures and issue 7's 512 targets (1/8 step, 1/10 decode, 0.6x RSS)", () => {
  const extra = { isa: "avx512", model: "m", busyBefore: 0, othersCpuS: 0 };
  const xl = BENCH_ARCHS.sdxl;
  const r = makeRow(worker(512, { step_median_s: 5, decode_s: 5, peak_rss_bytes: 5e9 }), 60, extra, xl);
  assertEquals(r.sdcpp?.step_speedup, 8.89);
  assertEquals(r.targets, { step_s: 5.56, decode_s: 5.26, peak_rss_gb: 5.24, met: true });
  assertEquals(
    makeRow(worker(512, { step_median_s: 5, decode_s: 5, peak_rss_bytes: 5.3e9 }), 60, extra, xl).targets?.met,
    false,
  );
  // 1024x1024: no sd.cpp figures, no targets, but the row is still reported.
  const big = makeRow(worker(1024), 600, extra, xl);
  assertEquals([big.sdcpp, big.targets, big.size], [null, null, 1024]);
  assert(formatTable([r, big]).includes("1024x1024"));
});
