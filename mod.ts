/**
 * sdflow: Stable Diffusion pipelines for Deno.
 *
 * The front door re-exports each layer's public API:
 * - pipeline graphs: `graph()` (typed builder), `loadGraph`, `validateGraph`, `runPipeline` (from dsl/);
 * - nodes and plugins: `defineNode`, `loadPlugin` (from plugins/);
 * - models: `loadCheckpoint`, `sample`, `makeTinyCheckpoint` (from models/);
 * - the engine: `Graph`, `compile`, `plan` (from engine/);
 * - backends: `loadBackend`, `loadBackendFromManifest` (from backends/).
 *
 * @example
 * ```ts
 * import { graph } from "./mod.ts";
 * const g = graph();
 * const ckpt = g.checkpoint({ path: "models/v1-5-pruned-emaonly.safetensors" });
 * const positive = g.clip_encode({ clip: ckpt.clip, text: "a lovely cat" });
 * const negative = g.clip_encode({ clip: ckpt.clip, text: "" });
 * const latent = g.empty_latent({ width: 512, height: 512 });
 * const sampled = g.sampler({
 *   model: ckpt.model,
 *   positive: positive.conditioning,
 *   negative: negative.conditioning,
 *   latent: latent.latent,
 *   seed: 42,
 *   steps: 20,
 * });
 * const decoded = g.vae_decode({ vae: ckpt.vae, latent: sampled.latent });
 * g.save_image({ images: decoded.image, path: "out/cat.png" });
 * export default g;
 * ```
 */

export * from "./dsl/mod.ts";
export { type AnyNodeDef, defineNode, type NodeContext, type NodeDef, type PluginModule } from "./plugins/mod.ts";
export {
  type Checkpoint,
  type Conditioning,
  type Image,
  type Latent,
  loadCheckpoint,
  type LoadOptions,
  makeTinyCheckpoint,
  sample,
  type SampleOptions,
} from "./models/mod.ts";
export { compile, Graph as TensorGraph, plan, type PlanOptions, Program } from "./engine/mod.ts";
export { type Backend, loadBackend, loadBackendFromManifest } from "./backends/mod.ts";
