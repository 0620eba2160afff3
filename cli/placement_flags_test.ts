/**
 * stable-diffusion.cpp's per-network placement flags: `--clip-on-cpu`, `--vae-on-cpu` and `--control-net-cpu`
 * set the `backend` inputs of the networks' nodes to "cpu" (the checkpoint's `clip_backend` / `vae_backend`, the
 * taesd and controlnet nodes' `backend`) when `--backend` names another backend; on the CPU they change nothing.
 * One tiny-model run with `--backend webgpu --vae-on-cpu` (ignored, saying why, where WebGPU is not available)
 * shows in its profile that the VAE ran on the CPU and the other networks on WebGPU.
 */

import assert from "node:assert/strict";
import { validateGraph } from "../dsl/validate.ts";
import { graphFromSdcppFlags, parseArgs } from "./sdcpp.ts";
import { loadBackend } from "../backends/mod.ts";
import { tinyCheckpointPath } from "../plugins/nodes/checkpoint.ts";
import { decodePngImage } from "../plugins/image/png.ts";

const root = new URL("../", import.meta.url).pathname;

/** The validated inputs of each node of the graph the flags make. */
async function inputsOf(...argv: string[]): Promise<Map<string, Record<string, unknown>>> {
  const a = parseArgs(argv, true);
  const { file, origins } = graphFromSdcppFlags(a.flags, a.spelled);
  const p = await validateGraph(file, { origins });
  return new Map([...p.nodes].map(([id, n]) => [id, n.values as Record<string, unknown>]));
}

const CONTROL = ["--control-net", "c.safetensors", "--control-image", "e.png"];
const ALL = ["--clip-on-cpu", "--vae-on-cpu", "--control-net-cpu"];

Deno.test("sd.cpp flags: --clip-on-cpu, --vae-on-cpu, --control-net-cpu put those networks on the CPU", async () => {
  const n = await inputsOf("-m", "m.safetensors", "--backend", "webgpu", ...CONTROL, ...ALL);
  assert.equal(n.get("checkpoint")!.clip_backend, "cpu");
  assert.equal(n.get("checkpoint")!.vae_backend, "cpu");
  assert.equal(n.get("checkpoint")!.backend, undefined, "the UNet stays on --backend");
  assert.equal(n.get("controlnet")!.backend, "cpu");
  // TAESD replaces the VAE: --vae-on-cpu places it too.
  const t = await inputsOf("-m", "m.safetensors", "--backend", "opencl", "--taesd", "t.safetensors", "--vae-on-cpu");
  assert.equal(t.get("taesd")!.backend, "cpu");
  assert.equal(t.get("checkpoint")!.clip_backend, undefined, "only the flags given");
  // Each flag alone sets its own input only.
  const v = await inputsOf("-m", "m.safetensors", "--backend", "webgpu", ...CONTROL, "--control-net-cpu");
  assert.deepEqual([v.get("checkpoint")!.clip_backend, v.get("checkpoint")!.vae_backend], [undefined, undefined]);
  assert.equal(v.get("controlnet")!.backend, "cpu");
});

Deno.test("sd.cpp flags: the placement flags change nothing when the run is on the CPU anyway", async () => {
  for (const backend of [[], ["--backend", "cpu"]]) {
    const n = await inputsOf("-m", "m.safetensors", ...backend, ...CONTROL, ...ALL);
    assert.deepEqual(
      [n.get("checkpoint")!.clip_backend, n.get("checkpoint")!.vae_backend, n.get("controlnet")!.backend],
      [undefined, undefined, undefined],
      backend.join(" ") || "no --backend",
    );
  }
});

const webgpu = await loadBackend("webgpu").then(() => undefined, (e: Error) => e.message);

Deno.test({
  name: `gen --backend webgpu --vae-on-cpu: the VAE runs on the CPU, the rest on WebGPU${
    webgpu ? ` (ignored: ${webgpu})` : ""
  }`,
  ignore: webgpu !== undefined,
  async fn() {
    const tiny = await tinyCheckpointPath(0);
    const dir = await Deno.makeTempDir({ prefix: "sdflow-placement-" });
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "cli/gen.ts",
          ...["-m", tiny, "-p", "a cat", "-W", "64", "-H", "64", "--steps", "2", "-o", `${dir}/out.png`],
          ...["--backend", "webgpu", "--vae-on-cpu", "--profile"],
        ],
        cwd: root,
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, text);
      assert.equal(decodePngImage(await Deno.readFile(`${dir}/out.png`)).image.width, 64);
      // The profile names a network placed apart with its backend; the others ran on --backend.
      assert.match(text, /^\s*vae decoder on cpu\s/m, text);
      assert.match(text, /^\s*unet\s/m, text);
      assert.match(text, /^\s*text encoder\s/m, text);
      assert.doesNotMatch(text, /(unet|text encoder) on /, text);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
