/** The CLI's progress display: bars only on a terminal, plain lines elsewhere, the `-v` summary, peak memory. */

import assert from "node:assert/strict";
import { bytes, median, peakRss, ProgressDisplay } from "./progress.ts";

class FakeStream {
  text = "";
  constructor(readonly tty: boolean) {}
  writeSync(p: Uint8Array): number {
    this.text += new TextDecoder().decode(p);
    return p.length;
  }
  isTerminal(): boolean {
    return this.tty;
  }
}

function run(display: ProgressDisplay): void {
  display.nodeStart("checkpoint", "checkpoint", { category: "loaders" });
  display.nodeEnd("checkpoint", { cached: false, ms: 1500 });
  display.nodeStart("sampler", "sampler", { category: "sampling" });
  display.progress("sampler", 0, 3, "step");
  for (let i = 1; i <= 3; i++) display.progress("sampler", i, 3, "step");
  display.nodeEnd("sampler", { cached: false, ms: 30 });
  display.nodeStart("decode", "vae_decode", { category: "latent" });
  for (let op = 0; op <= 200; op += 50) display.progress("decode", op, 200);
  display.nodeEnd("decode", { cached: false, ms: 20 });
  display.close();
}

const ESC = String.fromCharCode(27);

Deno.test("progress: no bars and no escape codes when stderr is not a terminal; -v adds a line per step", () => {
  const quiet = new FakeStream(false);
  run(new ProgressDisplay({ stream: quiet }));
  assert.doesNotMatch(quiet.text, new RegExp(`${ESC}|\\[#|\\.\\.\\.\\]`));
  assert.equal(quiet.text, "✓ checkpoint (checkpoint) 1.5 s\n✓ sampler (sampler) 0.0 s\n✓ decode (vae_decode) 0.0 s\n");

  const verbose = new FakeStream(false);
  run(new ProgressDisplay({ stream: verbose, verbose: true }));
  assert.ok(!verbose.text.includes(ESC));
  const steps = verbose.text.split("\n").filter((l) => l.startsWith("sampler: step"));
  assert.deepEqual(steps.map((l) => l.replace(/ \d+ ms$/, "")), [
    "sampler: step 1/3",
    "sampler: step 2/3",
    "sampler: step 3/3",
  ]);
});

Deno.test("progress: on a terminal, bars for steps and for decoding, redrawn in place, never wider than the terminal", () => {
  const tty = new FakeStream(true);
  run(new ProgressDisplay({ stream: tty, columns: () => 40 }));
  assert.match(tty.text, /sampler \[[#.]+\] 0\/3 steps/);
  assert.match(tty.text, /decode \[[#.]+\]\s+\d+%/);
  assert.ok(tty.text.includes(`${ESC}[1A${ESC}[0J`)); // the previous bar is erased before a redraw
  const lines = tty.text.replace(new RegExp(`${ESC}\\[\\d+A${ESC}\\[0J`, "g"), "").split("\n");
  for (const l of lines) assert.ok(l.length <= 39, `${JSON.stringify(l)} is wider than the terminal`);
  // Only finished nodes remain as text once bars are cleared.
  assert.match(tty.text, /✓ sampler \(sampler\)/);
});

Deno.test("progress: the -v summary has load time, steps (median, total), decode time and peak memory", () => {
  const d = new ProgressDisplay({ stream: new FakeStream(false), verbose: true });
  run(d);
  const lines = d.summary({ bytes: 3 * 1024 ** 3, source: "VmHWM" });
  assert.equal(lines.length, 4);
  assert.equal(lines[0], "load: 1.50 s");
  assert.match(
    lines[1],
    /^sampling \(sampler\): 3 steps, \d+ ms\/step median, \d+ ms total \(min \d+ ms, max \d+ ms\)$/,
  );
  assert.equal(lines[2], "decode (decode): 20 ms");
  assert.equal(lines[3], "peak memory: 3.00 GiB (peak RSS, VmHWM)");
});

Deno.test("progress: cached nodes are left out of the summary", () => {
  const d = new ProgressDisplay({ stream: new FakeStream(false) });
  d.nodeStart("checkpoint", "checkpoint", { category: "loaders" });
  d.nodeEnd("checkpoint", { cached: true, ms: 0 });
  assert.deepEqual(d.summary({ bytes: 1024, source: "current RSS" }), ["peak memory: 1.00 KiB (current RSS)"]);
});

Deno.test("peakRss reads VmHWM from /proc/self/status, and falls back to the current RSS", () => {
  const status = "Name:\tdeno\nVmPeak:\t 9999 kB\nVmHWM:\t  123456 kB\nVmRSS:\t 1000 kB\n";
  assert.deepEqual(peakRss(() => status), { bytes: 123456 * 1024, source: "VmHWM" });
  const fallback = peakRss(() => {
    throw new Deno.errors.NotFound("no /proc");
  });
  assert.equal(fallback.source, "current RSS");
  assert.ok(fallback.bytes > 0);
  if (Deno.build.os === "linux") assert.equal(peakRss().source, "VmHWM");
});

Deno.test("median and bytes", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
  assert.equal(bytes(512), "512 B");
  assert.equal(bytes(1536), "1.50 KiB");
});
