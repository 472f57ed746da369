import type { FastifyInstance } from "fastify";
import type { Registry } from "prom-client";
import type { Lifecycle } from "./lifecycle.js";

const JSON_TYPE = "application/json; charset=utf-8";
const OK = JSON.stringify({ status: "ok" });
const READY = JSON.stringify({ status: "ready" });
const DRAINING = JSON.stringify({ status: "shutting_down" });

/** GET /healthz, GET /readyz, GET /metrics: no auth, cheap, never touch Entra or Graph. */
export function registerProbeRoutes(app: FastifyInstance, deps: { lifecycle: Lifecycle; registry: Registry }): void {
  // Liveness stays 200 while draining: restarting a process that is finishing its sends would lose them.
  app.get("/healthz", (_request, reply) => reply.header("content-type", JSON_TYPE).send(OK));

  app.get("/readyz", (_request, reply) => {
    const ready = deps.lifecycle.ready;
    return reply
      .code(ready ? 200 : 503)
      .header("content-type", JSON_TYPE)
      .send(ready ? READY : DRAINING);
  });

  app.get("/metrics", async (_request, reply) => {
    const text = await deps.registry.metrics();
    return reply.header("content-type", deps.registry.contentType).send(text);
  });
}
