// A node whose output socket type is malformed (test fixture).
export default {
  nodes: [{
    type: "bad_socket",
    description: "x",
    inputs: {},
    outputs: { out: "latent" },
    run: () => Promise.resolve({}),
  }],
};
