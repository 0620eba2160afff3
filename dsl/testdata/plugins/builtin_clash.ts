// Redefines the built-in "sampler" (test fixture).
import { defineNode } from "../../../plugins/node.ts";
export default {
  nodes: [
    defineNode({ type: "sampler", description: "clash", inputs: {}, outputs: {}, run: () => Promise.resolve({}) }),
  ],
};
