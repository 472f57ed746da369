import type { FastifyRequest } from "fastify";
import { authenticateCaller } from "./api-key.js";
import { RelayError } from "../core/problems.js";
import type { RouteRegistrar } from "./route-registrar.js";

/**
 * GET /tenants: every configured tenant with its sender, app registration, credential type and
 * expiry, last outcome and problem, recipients used, sends in flight and waiting, throttling in
 * force (`TenantsResponse` in openapi.yaml). Admin callers only; never a secret, path or env name.
 */
export const tenantsRoute: RouteRegistrar = (app, ctx) => {
  function admitAdmin(request: FastifyRequest): void {
    const caller = authenticateCaller(request.headers.authorization, ctx.callers());
    request.relay.caller = caller;
    if (!caller.admin) throw new RelayError("tenant_forbidden", "Only admin callers may read /tenants.");
  }

  app.get("/tenants", async (request, reply) => {
    admitAdmin(request);
    return reply.header("content-type", "application/json; charset=utf-8").send(JSON.stringify({ tenants: await ctx.tenantStatus() }));
  });
};
