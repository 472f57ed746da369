import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import express, { type Express } from "express";
import type { RouteTable } from "../../src/http/route-table.js";

/**
 * A bare express app for one route module (or a stand-in route) in a test, routed as the
 * relay's app routes (exact paths, case-sensitive), with a UUID X-Request-Id on every answer
 * as the relay gives; unknown paths get a plain 404. Drive it with supertest.
 */
export async function routeApp(register: (routes: RouteTable, app: Express) => unknown): Promise<Express> {
  const app = express();
  app.set("case sensitive routing", true);
  app.set("strict routing", true);
  app.set("x-powered-by", false);
  app.set("etag", false);
  app.use((_req, res, next) => {
    res.setHeader("x-request-id", randomUUID());
    next();
  });
  const routes: RouteTable = {
    get: (path, handler) => void app.get(path, handler),
    post: (path, handler) => void app.post(path, handler),
  };
  await register(routes, app);
  app.use((_req, res) => {
    res.status(404).end();
  });
  return app;
}

/** Listens on 127.0.0.1:0 (for clients that need a URL, e.g. the typed API client). */
export async function listenApp(app: Express): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
