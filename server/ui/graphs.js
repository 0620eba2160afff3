// Graphs the UI sends: the prompt form as an sdflow graph, and graphs read back from pictures made for it.

/** Builds the graph of a prompt-page request (the shape of the server's sd-webui txt2img graph). */
export function promptGraph(p) {
  const nodes = {};
  nodes.checkpoint = p.model === "tiny"
    ? { type: "tiny_checkpoint", inputs: {} }
    : { type: "checkpoint", inputs: { path: p.model } };
  let model = "checkpoint.model";
  let clip = "checkpoint.clip";
  p.loras.forEach((l, i) => {
    const id = `lora_${i + 1}`;
    nodes[id] = {
      type: "lora",
      inputs: {
        model: { from: model },
        clip: { from: clip },
        path: l.name,
        strength_model: l.weight,
        strength_clip: l.weight,
      },
    };
    model = `${id}.model`;
    clip = `${id}.clip`;
  });
  if (p.control) {
    nodes.control_image = { type: "load_image", inputs: { path: p.control.image } };
    let hint = "control_image.image";
    if (p.control.canny) {
      nodes.canny = { type: "canny", inputs: { image: { from: hint } } };
      hint = "canny.image";
    }
    nodes.controlnet = {
      type: "controlnet",
      inputs: { model: { from: model }, path: p.control.model, image: { from: hint }, strength: p.control.strength },
    };
    model = "controlnet.model";
  }
  nodes.positive = { type: "clip_encode", inputs: { clip: { from: clip }, text: p.prompt } };
  nodes.negative = { type: "clip_encode", inputs: { clip: { from: clip }, text: p.negative } };
  if (p.init) {
    nodes.image = { type: "load_image", inputs: { path: p.init.image } };
    if (p.init.mask) {
      nodes.mask = { type: "load_image", inputs: { path: p.init.mask } };
      nodes.latent = {
        type: "inpaint_encode",
        inputs: {
          model: { from: model },
          vae: { from: "checkpoint.vae" },
          image: { from: "image.image" },
          mask: { from: "mask.image" },
          seed: p.seed,
        },
      };
    } else {
      nodes.latent = {
        type: "vae_encode",
        inputs: { vae: { from: "checkpoint.vae" }, image: { from: "image.image" }, seed: p.seed },
      };
    }
  } else {
    nodes.latent = { type: "empty_latent", inputs: { width: p.width, height: p.height, batch: p.batch } };
  }
  nodes.sampler = {
    type: "sampler",
    inputs: {
      model: { from: model },
      positive: { from: "positive.conditioning" },
      negative: { from: "negative.conditioning" },
      latent: { from: "latent.latent" },
      seed: p.seed,
      steps: p.steps,
      cfg: p.cfg,
      sampler: p.sampler,
      scheduler: p.scheduler,
      ...(p.init ? { denoise: p.init.denoise, batch: p.batch } : {}),
    },
  };
  nodes.decode = {
    type: "vae_decode",
    inputs: { vae: { from: "checkpoint.vae" }, latent: { from: "sampler.latent" } },
  };
  nodes.save = { type: "save_image", inputs: { images: { from: "decode.image" }, path: "sdflow.png" } };
  return { version: 1, nodes };
}

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const JOB_PREFIX = new RegExp(`^${UUID}_`);
const PREVIEW_PREFIX = new RegExp(`^preview-${UUID}_`);
const basename = (p) => p.split(/[\\/]/).pop();

/**
 * A graph read from a picture the server made names its files as the server wrote them (absolute paths inside
 * the server's folders, output names prefixed with the job id). The server takes names, not paths: this turns
 * them back into the names a client sends. Returns a copy.
 */
export function clientGraph(graph) {
  const g = structuredClone(graph);
  for (const node of Object.values(g.nodes ?? {})) {
    const inputs = node?.inputs;
    if (!inputs || typeof inputs !== "object") continue;
    const path = inputs.path;
    if (typeof path === "string" && /[\\/]/.test(path)) {
      if (["checkpoint", "lora", "controlnet", "load_image"].includes(node.type)) inputs.path = basename(path);
      if (node.type === "save_image") inputs.path = basename(path).replace(JOB_PREFIX, "");
    }
    if (node.type === "sampler" && typeof inputs.preview_path === "string") {
      inputs.preview_path = basename(inputs.preview_path).replace(PREVIEW_PREFIX, "");
    }
  }
  return g;
}

/** Whether a JSON document is a ComfyUI "API format" workflow (node ids → { class_type, inputs }). */
export function isComfyWorkflow(doc) {
  if (!doc || typeof doc !== "object" || Array.isArray(doc) || "nodes" in doc) return false;
  const values = Object.values(doc);
  return values.length > 0 && values.every((v) => v && typeof v === "object" && typeof v.class_type === "string");
}

/** The seed of a graph's first sampler, if literal. */
export function graphSeed(graph) {
  for (const n of Object.values(graph?.nodes ?? {})) {
    if (n?.type === "sampler" && typeof n.inputs?.seed === "number") return n.inputs.seed;
  }
  return undefined;
}
