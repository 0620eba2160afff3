/**
 * The example backend as an sdflow plugin: list this module in a graph's
 * `"plugins"` and the `sdflow-ref-example` backend becomes available.
 *
 * A plugin exports the same manifest as `manifest.json` (per-platform
 * `libraries`, optional `sources`); sdflow resolves its relative paths against
 * this module, wherever it was loaded from, and picks the library for the
 * running OS and architecture. It imports nothing from sdflow: a third-party
 * plugin served by URL works the same way.
 *
 * @module
 */

import manifest from "./manifest.json" with { type: "json" };

export default { backends: [manifest] };
