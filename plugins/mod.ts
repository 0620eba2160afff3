/**
 * Plugins: the node API (`defineNode`), the plugin module format, the
 * built-in node catalog and the image codecs the image nodes use.
 *
 * @example
 * ```ts
 * import { defineNode } from "./mod.ts";
 * export const invert = defineNode({
 *   type: "invert",
 *   description: "Inverts an image's colours.",
 *   inputs: { image: { type: "IMAGE", description: "The images to invert." } },
 *   outputs: { image: "IMAGE" },
 *   run({ image }) {
 *     return Promise.resolve({ image: image.map((im) => ({ ...im, data: im.data.map((v) => 255 - v) })) });
 *   },
 * });
 * ```
 */

export * from "./node.ts";
export * from "./plugin.ts";
export { type BuiltinNode, builtinNodes } from "./catalog.ts";
export * from "./image/mod.ts";
