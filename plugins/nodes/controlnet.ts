/** `controlnet` and `canny`: steering the UNet with a control image (ComfyUI's ControlNetLoader + ControlNetApply). */

import { defineNode, NodeInputError, type NodeValues } from "../node.ts";
import { ControlNet, ControlNetError, withControlNet } from "../../models/controlnet/mod.ts";
import { canny as cannyEdges, SDCPP_CANNY } from "../../models/preprocess/canny.ts";
import { BACKEND_INPUT, loadOptions } from "./checkpoint.ts";

async function fileFingerprint(path: unknown): Promise<unknown> {
  try {
    const st = await Deno.stat(String(path));
    return [st.size, st.mtime?.getTime() ?? 0];
  } catch {
    return null;
  }
}

/** Applies a ControlNet to a model. */
export const controlnet = defineNode({
  type: "controlnet",
  category: "conditioning",
  description:
    "Loads a ControlNet (SD 1.x or SDXL, SD 2.x ones untested; original `control_model.*` or diffusers layout) and " +
    "applies it to a model: every UNet evaluation then adds strength times the ControlNet's residuals (13 for " +
    "SD 1.x, 10 for SDXL; as stable-diffusion.cpp's --control-net). Chain several controlnet nodes to add several " +
    "ControlNets.",
  inputs: {
    model: { type: "MODEL", description: "The model to control (a checkpoint's model, or another controlnet's)." },
    path: {
      schema: {
        type: "string",
        minLength: 1,
        description: "Path of the ControlNet file (.safetensors, .pth, .gguf).",
        examples: ["models/control_v11p_sd15_canny.safetensors"],
      },
    },
    image: {
      type: "IMAGE",
      description: "The control image (e.g. a canny node's edge map). A picture of another size than the " +
        "generated one is cropped to its aspect ratio and resized, as stable-diffusion.cpp does.",
    },
    strength: {
      schema: {
        type: "number",
        minimum: 0,
        maximum: 10,
        default: 0.9,
        description: "Multiplies the residuals (sd.cpp's --control-strength; 0.9 is its default).",
      },
    },
    backend: BACKEND_INPUT,
  },
  outputs: { model: "MODEL" },
  fingerprint: async (values: NodeValues) => [await fileFingerprint(values.path)],
  async run({ model, path, image, strength, backend }, ctx) {
    if (image.length !== 1) {
      throw new NodeInputError("image", `a ControlNet takes one control image, got a batch of ${image.length}`);
    }
    if (!model.unet) throw new NodeInputError("model", "this model does not take ControlNet residuals");
    let net: ControlNet;
    try {
      net = await ControlNet.load(path, model.unet, await loadOptions(ctx.settings, backend));
    } catch (e) {
      if (e instanceof ControlNetError) throw new NodeInputError("path", e.message);
      throw e;
    }
    ctx.onDispose(() => net.dispose());
    let told = false;
    const onNote = (m: string) => {
      if (!told) ctx.log(`${ctx.nodeId}: ${m}`);
      told = true;
    };
    return { model: withControlNet(model, { net, image: image[0], strength, onNote }) };
  },
  estimate({ model }) {
    return Promise.resolve({
      ops: [],
      note: "the ControlNet's cost (about half a UNet evaluation per UNet evaluation) is not in this estimate",
      ...(model ? { outputs: { model } } : {}),
    });
  },
});

/** Canny edge detection, as sd.cpp's --canny. */
export const canny = defineNode({
  type: "canny",
  category: "image",
  description: "Canny edge detection (white edges on black), computed as stable-diffusion.cpp's --canny " +
    "preprocessor: grey, 5x5 Gaussian (sigma 1.4), Sobel, non-maximum suppression, hysteresis.",
  inputs: {
    image: { type: "IMAGE", description: "The pictures to find edges in." },
    high_threshold: {
      schema: {
        type: "number",
        minimum: 0,
        maximum: 1,
        default: SDCPP_CANNY.high,
        description: "Edge threshold, a fraction of the largest gradient.",
      },
    },
    low_threshold: {
      schema: {
        type: "number",
        minimum: 0,
        maximum: 1,
        default: SDCPP_CANNY.low,
        description: "Weak-edge threshold, a fraction of the high threshold.",
      },
    },
    weak: {
      schema: { type: "number", minimum: 0, maximum: 1, default: SDCPP_CANNY.weak, description: "Weak-edge value." },
    },
    strong: {
      schema: {
        type: "number",
        minimum: 0,
        maximum: 1,
        default: SDCPP_CANNY.strong,
        description: "Edge value (1 = white).",
      },
    },
    inverse: { schema: { type: "boolean", default: false, description: "Black edges on white." } },
  },
  outputs: { image: "IMAGE" },
  run({ image, high_threshold, low_threshold, weak, strong, inverse }) {
    const opts = { high: high_threshold, low: low_threshold, weak, strong, inverse };
    return Promise.resolve({ image: image.map((im) => cannyEdges(im, opts)) });
  },
  estimate({ image }) {
    const shape = image?.shape;
    const px = shape ? shape[0] * shape[1] * shape[2] : 0;
    return Promise.resolve({
      ops: [{ op: "canny", flops: px * 80, bytes: px * 16 }],
      ...(image ? { outputs: { image } } : {}),
    });
  },
});
