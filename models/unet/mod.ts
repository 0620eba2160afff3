/** The ldm UNet (SD 1.x / 2.x / XL) as a tensor graph. See unet.ts. */
export {
  buildUnet,
  resBlock,
  spatialTransformer,
  transformerBlock,
  type UnetBuildOptions,
  type UnetGraph,
} from "./unet.ts";
export { type SdxlSizeConditioning, sdxlVector } from "./sdxl.ts";
