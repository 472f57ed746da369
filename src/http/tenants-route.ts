import { RelayError } from "../core/problems.js";
import { authenticateCaller } from "./api-key.js";
import { requireContext } from "./request-context.js";
import type { RouteRegistrar } from "./route-table.js";

/**
 * GET /tenants: every configured tenant with its sender, app registration, credential type and
 * expiry, last outcome and problem, recipients used, sends in flight and waiting, throttling in
 * force (`TenantsResponse` in openapi.yaml). Admin callers only; never a secret, path or env name.
 */
export const tenantsRoute: RouteRegistrar = (routes, ctx) => {
  routes.get("/tenants", async (req, res) => {
    const caller = authenticateCaller(req.headers.authorization, ctx.callers());
    requireContext(req).caller = caller;
    if (!caller.admin) throw new RelayError("tenant_forbidden", "Only admin callers may read /tenants.");
    const body = JSON.stringify({ tenants: await ctx.tenantStatus() });
    res.writeHead(200, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) });
    res.end(body);
  });
};
