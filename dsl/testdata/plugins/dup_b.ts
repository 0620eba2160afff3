// Defines node type "twin" (test fixture; dup_a.ts defines it too).
import { defineNode } from "../../../plugins/node.ts";
export default {
  nodes: [defineNode({ type: "twin", description: "b", inputs: {}, outputs: {}, run: () => Promise.resolve({}) })],
};
