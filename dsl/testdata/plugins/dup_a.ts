// Defines node type "twin" (test fixture; dup_b.ts defines it too).
import { defineNode } from "../../../plugins/node.ts";
export default {
  nodes: [defineNode({ type: "twin", description: "a", inputs: {}, outputs: {}, run: () => Promise.resolve({}) })],
};
