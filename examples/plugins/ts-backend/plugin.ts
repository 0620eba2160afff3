/**
 * The example TypeScript backend as a plugin: list it in a graph's `plugins`
 * and run with `--backend js-example` (or a loader's `"backend": "js-example"`).
 */

import { jsBackendFactory } from "./backend.ts";

export default { tsBackends: [jsBackendFactory] };
