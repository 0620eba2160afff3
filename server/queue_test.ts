/** The in-process queue over HTTP: priorities, per-job timeouts, and their bad values. */

import assert from "node:assert/strict";
import type { MemoryGraphQueue } from "./jobs.ts";
import { startServer } from "./server.ts";
import { tinyGraph } from "./test_graphs.ts";

function graph(seed: number, steps: number) {
  return tinyGraph({ seed, steps });
}

Deno.test("queue: higher priorities run first, equal ones in order; a job past its timeout fails", async () => {
  const outputDir = await Deno.makeTempDir({ prefix: "sdflow-queue-" });
  const server = await startServer({ port: 0, outputDir, maxQueued: 8 });
  const base = `http://127.0.0.1:${server.addr.port}`;
  const post = async (query: string, body: unknown) => {
    const r = await fetch(`${base}/v1/graphs${query}`, { method: "POST", body: JSON.stringify(body) });
    return { status: r.status, json: await r.json() };
  };
  try {
    // Hold the engine so that every job below waits, then let them run.
    const gate = Promise.withResolvers<void>();
    (server.queue as MemoryGraphQueue).submit("hold", () => gate.promise);
    const sent = [
      await post("?priority=-5", graph(1, 1)),
      await post("?priority=50", graph(2, 1)),
      await post("", graph(3, 1)),
      await post("?priority=50", graph(4, 1)),
    ];
    for (const s of sent) assert.equal(s.status, 202, JSON.stringify(s.json));
    const jobs = sent.map((s) => server.queue.get(s.json.id)!);
    gate.resolve();
    for (const j of jobs) await j.done;
    for (const j of jobs) assert.equal(j.status, "succeeded", j.error);
    const order = [...jobs].sort((a, b) => a.started! - b.started!).map((j) => jobs.indexOf(j));
    assert.deepEqual(order, [1, 3, 2, 0]);

    const slow = await post("?timeout=0.5", graph(5, 1000));
    assert.equal(slow.status, 202);
    const job = server.queue.get(slow.json.id)!;
    await job.done;
    assert.equal(job.status, "failed");
    assert.equal(job.error, "timed out after 0.5 s");
    assert.ok(job.progress.done < 1000);

    for (const [query, re] of [["?priority=101", /priority/], ["?priority=x", /priority/], ["?timeout=0", /timeout/]]) {
      const r = await post(query as string, graph(6, 1));
      assert.equal(r.status, 400, query as string);
      assert.match(r.json.error, re as RegExp);
    }
  } finally {
    await server.shutdown();
    await Deno.remove(outputDir, { recursive: true });
  }
});

Deno.test("queue: worker and serve command lines: help, missing or bad --queue, an unreachable Redis", async () => {
  const run = async (script: string, args: string[]) => {
    const o = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(script, import.meta.url).pathname, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: o.code, out: new TextDecoder().decode(o.stdout), err: new TextDecoder().decode(o.stderr).trim() };
  };
  const help = await run("./worker.ts", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.out, /--stall-ms/);
  assert.match(help.out, /--model-memory MB/);
  const cases: [string, string[], number, RegExp][] = [
    ["./worker.ts", [], 2, /--queue redis:\/\/HOST:PORT is required/],
    ["./worker.ts", ["--queue", "redis://127.0.0.1:1", "--stall-ms", "10"], 2, /--stall-ms expects/],
    ["./worker.ts", ["--queue", "redis://127.0.0.1:1", "--model-memory", "-5"], 2, /--model-memory expects/],
    ["./worker.ts", ["--queue", "redis://127.0.0.1:1"], 1, /cannot reach Redis at redis:\/\/127\.0\.0\.1:1/],
    ["./main.ts", ["--queue", "rabbitmq://x"], 2, /--queue expects "memory" or redis:\/\/HOST:PORT/],
    ["./main.ts", ["--port", "0", "--queue", "redis://127.0.0.1:1"], 1, /cannot reach Redis/],
  ];
  for (const [script, args, code, re] of cases) {
    const r = await run(script, args);
    assert.equal(r.code, code, `${script} ${args.join(" ")}: ${r.err}`);
    assert.equal(r.err.split("\n").length, 1, r.err);
    assert.match(r.err, re);
  }
});
