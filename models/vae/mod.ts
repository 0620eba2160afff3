/** The ldm AutoencoderKL (SD VAE) as tensor graphs, and its host-side pre/post-processing. See vae.ts. */
export {
  buildVaeDecoder,
  buildVaeEncoder,
  fromImages,
  resnet,
  sampleLatent,
  toImages,
  type VaeBuildOptions,
} from "./vae.ts";
