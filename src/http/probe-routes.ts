import { createHash, timingSafeEqual } from "node:crypto";
import type { Response } from "express";
import { RelayError } from "../core/problems.js";
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

/** Where /metrics is served and who may read it (config `metrics`). */
export interface MetricsAccess {
  /** False when the metrics have their own port (`metrics.port`): the API port does not serve them. */
  readonly onApiPort: boolean;
  /** The bearer token a scrape must send, when one is configured. */
  readonly token: () => string | undefined;
}

/** GET /healthz, GET /readyz, GET /metrics: cheap, never touch Entra or Graph; /metrics may need a token. */
export function registerProbeRoutes(
  routes: RouteTable,
  deps: { lifecycle: Lifecycle; registry: Registry; stores?: ProbeStore; metrics?: MetricsAccess },
): void {
  // Liveness stays 200 while draining: restarting a process that is finishing its sends would lose them.
  routes.get("/healthz", (_req, res) => send(res, 200, JSON_TYPE, OK));

  routes.get("/readyz", (_req, res) => {
    const { ready, body } = readiness(!deps.lifecycle.ready, deps.stores);
    send(res, ready ? 200 : 503, JSON_TYPE, body);
  });

  if (deps.metrics?.onApiPort === false) return;
  routes.get("/metrics", async (req, res) => {
    assertMetricsReader(req.headers.authorization, deps.metrics?.token());
    const text = await deps.registry.metrics();
    send(res, 200, deps.registry.contentType, text);
  });
}

/**
 * With a metrics token configured, a scrape must send `Authorization: Bearer <token>` (compared in
 * constant time); 401 otherwise. The metrics name every tenant key and when its credential expires.
 */
export function assertMetricsReader(authorization: string | undefined, token: string | undefined): void {
  if (token === undefined) return;
  const given = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? "")?.[1];
  const a = createHash("sha256").update(given ?? "").digest();
  const b = createHash("sha256").update(token).digest();
  if (given === undefined || !timingSafeEqual(a, b)) throw new RelayError("unauthorized", "GET /metrics needs the metrics bearer token (config metrics.tokenFile/tokenEnv)");
}

function send(res: Response, status: number, contentType: string, body: string): void {
  res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(body) });
  res.end(body);
}
