import { consentRoutes } from "./consent-routes.js";
import { registerDocsRoutes } from "./docs-routes.js";
import type { RouteRegistrar } from "./route-table.js";
import { tenantsRoute } from "./tenants-route.js";

/**
 * Route modules of other capabilities that server.ts (and the demo) register on the app,
 * after the core routes. Hook point: export a `RouteRegistrar` from your module and add it
 * here. Tests pass their own list to createApp, so adding one here changes no test.
 */
export const optionalRoutes: readonly RouteRegistrar[] = [
  // GET /openapi.yaml, GET /docs (Swagger UI)
  (routes) => registerDocsRoutes(routes),
  // GET /consent/callback (admin-consent onboarding)
  consentRoutes,
  // GET /tenants (admin callers)
  tenantsRoute,
];
