import type { Response } from "express";
import type { Registry } from "prom-client";
import type { Lifecycle } from "../core/lifecycle.js";
import type { RouteTable } from "./route-table.js";

const JSON_TYPE = "application/json; charset=utf-8";
const OK = JSON.stringify({ status: "ok" });

/** What readiness needs to know of the delivery stores. */
export interface ProbeStore {
  readonly type: "memory" | "redis";
  readonly up: boolean;
  /** False with `store.onUnavailable: reject`: a pod that cannot reach Redis could not send, so it takes no traffic. */
  readonly readyWithoutStore: boolean;
}

/**
 * The readiness answer. With the shared store, a pod that lost Redis is not ready unless it may
 * send on its own (`onUnavailable: local`): traffic goes to the replicas that can still keep
 * the guarantees. The body says which store and whether it answers.
 */
export function readiness(draining: boolean, store: ProbeStore | undefined): { ready: boolean; body: string } {
  const storeStatus = store === undefined ? undefined : { type: store.type, status: store.up ? "ok" : "unavailable" };
  if (draining) return { ready: false, body: JSON.stringify({ status: "shutting_down", ...(storeStatus ? { store: storeStatus } : {}) }) };
  if (store !== undefined && !store.up && !store.readyWithoutStore) {
    return { ready: false, body: JSON.stringify({ status: "store_unavailable", store: storeStatus }) };
  }
  return { ready: true, body: JSON.stringify({ status: "ready", ...(storeStatus ? { store: storeStatus } : {}) }) };
}

/** GET /healthz, GET /readyz, GET /metrics: no auth, cheap, never touch Entra or Graph. */
export function registerProbeRoutes(routes: RouteTable, deps: { lifecycle: Lifecycle; registry: Registry; stores?: ProbeStore }): void {
  // Liveness stays 200 while draining: restarting a process that is finishing its sends would lose them.
  routes.get("/healthz", (_req, res) => send(res, 200, JSON_TYPE, OK));

  routes.get("/readyz", (_req, res) => {
    const { ready, body } = readiness(!deps.lifecycle.ready, deps.stores);
    send(res, ready ? 200 : 503, JSON_TYPE, body);
  });

  routes.get("/metrics", async (_req, res) => {
    const text = await deps.registry.metrics();
    send(res, 200, deps.registry.contentType, text);
  });
}

function send(res: Response, status: number, contentType: string, body: string): void {
  res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(body) });
  res.end(body);
}
