import type { RouteRegistrar } from "./route-registrar.js";

/**
 * Route modules of other capabilities that server.ts (and the demo) register on the app.
 * Hook point: export a `RouteRegistrar` from your module and add it here, e.g.
 *   import { registerDocsRoutes } from "./docs-routes.js";        // GET /openapi.yaml, GET /docs
 *   import { registerConsentRoutes } from "./consent-routes.js";  // admin-consent callback
 * Tests pass their own list to createApp, so adding one here changes no test.
 */
export const optionalRoutes: readonly RouteRegistrar[] = [];
