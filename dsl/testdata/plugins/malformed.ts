// A plugin exporting a node without a run function (test fixture).
export default { nodes: [{ type: "no_run", description: "missing run", inputs: {}, outputs: {} }] };
