/** `upscale_model_loader` and `upscale`: ESRGAN image upscaling (stable-diffusion.cpp's --upscale-model). */

import { defineNode, NodeInputError, type NodeValues } from "../node.ts";
import { BACKEND_INPUT, fileFingerprint, loadOptions } from "./checkpoint.ts";
import { loadUpscaler } from "./model_layer.ts";

/** Loads an ESRGAN model. */
export const upscaleModelLoader = defineNode({
  type: "upscale_model_loader",
  category: "loaders",
  description: "Loads an ESRGAN upscaler (RRDBNet: Real-ESRGAN x4plus, x4plus_anime_6B, x2plus, or the old " +
    "ESRGAN `model.N` layout; .safetensors, .pth or .gguf). Its factor, blocks and widths are read from the weights.",
  inputs: {
    path: {
      schema: {
        type: "string",
        minLength: 1,
        description: "Path of the upscaler file.",
        examples: ["models/RealESRGAN_x4plus_anime_6B.pth"],
      },
    },
    backend: BACKEND_INPUT,
  },
  outputs: { upscale_model: "UPSCALE_MODEL" },
  fingerprint: (values: NodeValues) => fileFingerprint(values.path),
  async run({ path, backend }, ctx) {
    try {
      await Deno.stat(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new NodeInputError("path", `upscaler file not found: ${path}`);
      throw e;
    }
    let model;
    try {
      model = await loadUpscaler(path, await loadOptions(ctx.settings, backend));
    } catch (e) {
      throw new NodeInputError("path", (e as Error).message);
    }
    const c = model.config;
    ctx.log(`${ctx.nodeId}: ESRGAN x${model.scale}, ${c.numBlock} blocks, ${c.numFeat} features, grow ${c.numGrow}`);
    ctx.onDispose(() => model.dispose());
    return { upscale_model: model };
  },
  async estimate({ path }) {
    let bytes = 0;
    try {
      bytes = (await Deno.stat(path)).size;
    } catch {
      return { ops: [], note: `${path} is not present: load size unknown` };
    }
    return { ops: [{ op: "load_weights", flops: 0, bytes }] };
  },
});

/** Upscales images with a loaded model. */
export const upscale = defineNode({
  type: "upscale",
  category: "image",
  description: "Upscales images with an ESRGAN model, in overlapping tiles blended as stable-diffusion.cpp " +
    "blends them (its --upscale-model, --upscale-repeats and --upscale-tile-size). Works after any image node.",
  inputs: {
    upscale_model: { type: "UPSCALE_MODEL", description: "The upscaler (an upscale_model_loader's output)." },
    image: { type: "IMAGE", description: "The images to upscale." },
    repeats: {
      schema: {
        type: "integer",
        minimum: 1,
        maximum: 8,
        default: 1,
        description: "How many times to run the upscaler (each pass multiplies the size by its factor).",
      },
    },
    tile_size: {
      schema: {
        type: "integer",
        minimum: 0,
        maximum: 4096,
        default: 128,
        description: "Tile size in input pixels (sd.cpp's default 128; the overlap is 0.25, recomputed so tiles " +
          "fit). Images no larger than a tile go through in one pass; 0 never tiles (memory grows with the image).",
      },
    },
  },
  outputs: { image: "IMAGE" },
  async run({ upscale_model, image, repeats, tile_size }, ctx) {
    let images = image;
    for (let r = 0; r < repeats; r++) {
      images = await upscale_model.upscale(images, {
        tileSize: tile_size,
        onProgress: (d, n) => ctx.progress(r * n + d, repeats * n, "tile"),
      });
    }
    return { image: images };
  },
  estimate({ image }) {
    const shape = image?.shape;
    return { ops: [], note: shape ? "cost depends on the model's blocks" : "input size unknown" };
  },
});
