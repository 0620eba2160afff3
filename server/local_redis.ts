/**
 * A redis-server started for tests and benchmarks: a free loopback port, a temporary folder, append-only
 * with every write synced (so that a SIGKILL loses nothing); never the machine's own Redis service.
 */

/** Whether `redis-server` is on the PATH. */
export async function haveRedisServer(): Promise<boolean> {
  return await new Deno.Command("redis-server", { args: ["--version"], stdout: "null", stderr: "null" })
    .output().then((o) => o.success, () => false);
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A redis-server of one's own (tests, benchmarks); `restart` kills it (SIGKILL) and starts it again on the same port and folder. */
export class LocalRedis {
  #proc?: Deno.ChildProcess;
  private constructor(readonly port: number, readonly dir: string) {}

  static async start(): Promise<LocalRedis> {
    const r = new LocalRedis(freePort(), await Deno.makeTempDir({ prefix: "sdflow-redis-" }));
    await r.#launch();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async #launch(): Promise<void> {
    this.#proc = new Deno.Command("redis-server", {
      args: [
        "--port",
        String(this.port),
        "--bind",
        "127.0.0.1",
        "--dir",
        this.dir,
        "--appendonly",
        "yes",
        // Every write on disk before it is acknowledged: a SIGKILL loses nothing.
        "--appendfsync",
        "always",
        "--save",
        "",
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        const c = await Deno.connect({ hostname: "127.0.0.1", port: this.port });
        await c.write(new TextEncoder().encode("PING\r\n"));
        const buf = new Uint8Array(64);
        const n = await c.read(buf);
        c.close();
        // "-LOADING" while it reads the append-only file back.
        if (n && new TextDecoder().decode(buf.subarray(0, n)).startsWith("+PONG")) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error("redis-server did not start");
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async restart(): Promise<void> {
    this.#proc!.kill("SIGKILL");
    await this.#proc!.status;
    await this.#launch();
  }

  /** Kills it (SIGKILL) and keeps its folder; {@link LocalRedis.restart} brings it back. */
  async kill(): Promise<void> {
    try {
      this.#proc?.kill("SIGKILL");
    } catch {
      // gone already
    }
    await this.#proc?.status;
  }

  async stop(): Promise<void> {
    try {
      this.#proc?.kill("SIGKILL");
    } catch {
      // gone already
    }
    await this.#proc?.status;
    await Deno.remove(this.dir, { recursive: true });
  }
}
