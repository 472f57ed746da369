import { randomUUID } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import express, { type NextFunction, type Request, type Response } from "express";
import type { Logger } from "pino";
import type { Lifecycle } from "./core/lifecycle.js";
import { RelayError } from "./core/problems.js";
import { LogBudget } from "./core/log-budget.js";
import { authenticateCaller, BEARER_CHALLENGE } from "./http/api-key.js";
import { createListener } from "./http/listener.js";
import { registerProbeRoutes, type MetricsAccess } from "./http/probe-routes.js";
import { asRelayError, PROBLEM_CONTENT_TYPE, toProblemResponse } from "./http/problem-response.js";
import { attachContext, contextOf, RequestContext } from "./http/request-context.js";
import type { RouteContext, RouteRegistrar, RouteTable } from "./http/route-table.js";
import { registerSendRoute } from "./http/send-route.js";
import { NO_TENANT, type RelayMetrics } from "./metrics/relay-metrics.js";
import { createService, type RelayService, type ServiceDeps } from "./service.js";
import type { TenantDirectory } from "./tenants/tenant-directory.js";

/** What the HTTP adapter needs besides the service. */
export interface HttpOptions {
  /** Route modules of other capabilities (docs, consent, /tenants); see src/http/optional-routes.ts. */
  readonly routes?: readonly RouteRegistrar[];
  /** Where /metrics is served and the token it needs (config `metrics`); default open on this port. */
  readonly metrics?: MetricsAccess;
}

/** The built app: the express app on its own HTTP server (not listening yet), and the handles server.ts needs. */
export interface RelayApp {
  readonly express: express.Express;
  /** The HTTP server the app answers on; supertest and listen() use it. */
  readonly server: Server;
  readonly service: RelayService;
  readonly lifecycle: Lifecycle;
  readonly metrics: RelayMetrics;
  readonly tenants: () => TenantDirectory;
  /** Listens; resolves with `http://host:port` as bound. */
  listen(port: number, host: string): Promise<string>;
  /**
   * Graceful stop: /readyz turns 503, new sends get 503 `upstream_unavailable` (with
   * Retry-After and Connection: close), sends in flight finish (up to `timeoutMs`), then
   * the listener closes and idle keep-alive connections with it. Resolves `drained: false`
   * when the timeout cut exchanges short, and how many sends were still at Graph then (`cut`).
   */
  shutdown(timeoutMs: number): Promise<{ drained: boolean; cut: number }>;
  /** Forgets every mailbox's Graph throttle memory (SIGHUP). */
  readonly clearThrottles: () => void;
}

const QUIET_ROUTES = new Set(["/healthz", "/readyz", "/metrics"]);
/** The outcome and status label of a request whose caller went away before the answer. */
const CLIENT_CLOSED = "client_closed";
const CLIENT_CLOSED_STATUS = 499;
/** The `route` label of requests no route matched. */
const UNMATCHED = "unmatched";

/** Builds the service and its HTTP adapter, without listening (see createHttpApp). */
export async function createApp(deps: ServiceDeps & HttpOptions): Promise<RelayApp> {
  return createHttpApp(createService(deps), deps);
}

/**
 * The express adapter over a service: request ids, the per-request context, one log line and
 * the HTTP metrics per request, problem+json for every refusal (404 and 405 with `Allow`
 * included), the core routes and the route modules of `options.routes`.
 */
export async function createHttpApp(service: RelayService, options: HttpOptions = {}): Promise<RelayApp> {
  const { logger, metrics, lifecycle, clock } = service;
  const app = express();
  const httpLimits = service.config().server.http;
  // As the service has always answered: exact paths (no case folding, no trailing-slash twins), no
  // framework banner, no automatic ETags (the docs routes set their own), and no proxy trust.
  app.set("case sensitive routing", true);
  app.set("strict routing", true);
  app.set("x-powered-by", false);
  app.set("etag", false);
  app.set("trust proxy", false);

  app.use((req: Request, res: Response, next: NextFunction) => {
    // Our ids are UUIDs (Graph wants a GUID client-request-id), never a caller's string.
    const ctx = new RequestContext(randomUUID(), clock.now());
    attachContext(req, ctx);
    res.setHeader("x-request-id", ctx.requestId);
    const started = process.hrtime.bigint();
    const done = (): void => finished(req, res, ctx, started);
    // "close" follows "finish" on every answer, and also comes alone when the caller hung up first.
    res.once("close", done);
    // HTTP/1.1 requires Host (RFC 9112 §3.2); Node's own refusal would be a bodiless 400.
    if (req.httpVersion === "1.1" && req.headers.host === undefined) {
      sendProblem(req, res, new RelayError("validation_failed", "the Host header is missing", { errors: [{ path: "Host", message: "is required" }] }));
      return;
    }
    next();
  });

  const unauthorizedLines = new LogBudget(20, 10_000);
  const finished = (req: Request, res: Response, ctx: RequestContext, started: bigint): void => {
    const route = routeOf(req);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    // The caller hung up before the answer was out: 499 (as proxies log it), outcome client_closed.
    // A send it started goes on; its own outcome shows in the Graph metrics and /tenants.
    const left = !res.writableFinished;
    if (left && ctx.outcome === undefined) ctx.outcome = CLIENT_CLOSED;
    const status = left ? CLIENT_CLOSED_STATUS : res.statusCode;
    metrics.httpRequest(req.method, route, status, seconds);
    if (route === "/send") metrics.sendOutcome(ctx.tenant ?? NO_TENANT, ctx.outcome ?? String(status));
    // Failed logins are counted in full but logged at most 20 per 10 s: a key-guessing client must not flood the log.
    if (status === 401) {
      const verdict = unauthorizedLines.take(performance.now());
      if (verdict.suppressedBefore > 0) logger.warn({ suppressed: verdict.suppressedBefore, status: 401 }, "request lines of unauthorized requests were left out");
      if (!verdict.allowed) return;
    }
    logRequest(logger, req, ctx, route, status, seconds);
  };

  // Static paths and their methods, to tell 405 from 404.
  const methodsByPath = new Map<string, Set<string>>();
  const remember = (path: string, methods: string[]): void => {
    let set = methodsByPath.get(path);
    if (set === undefined) methodsByPath.set(path, (set = new Set()));
    for (const m of methods) set.add(m);
  };
  const table: RouteTable = {
    get(path, handler) {
      remember(path, ["GET", "HEAD"]);
      app.get(path, handler);
    },
    post(path, handler) {
      remember(path, ["POST"]);
      app.post(path, handler);
    },
  };

  registerProbeRoutes(table, { lifecycle, registry: service.registry, stores: service.stores, ...(options.metrics !== undefined ? { metrics: options.metrics } : {}) });
  registerSendRoute(table, {
    sendMail: service.sendMail,
    callers: service.callers,
    tenants: service.tenants,
    lifecycle,
    maxBodyBytes: () => service.config().server.maxBodyBytes,
    requestTimeoutSeconds: () => httpLimits.requestTimeoutSeconds,
    clock,
  });
  const routeContext: RouteContext = {
    configSource: service.configSource,
    logger,
    registry: service.registry,
    clock,
    tokenProvider: service.tokenProvider,
    tenants: service.tenants,
    callers: service.callers,
    tenantStatus: service.tenantStatus,
    once: service.stores.once,
  };
  for (const register of options.routes ?? []) await register(table, routeContext);

  app.use((req: Request, res: Response) => {
    const path = req.path;
    const allowed = methodsByPath.get(path);
    if (allowed !== undefined && allowed.size > 0) {
      res.setHeader("allow", [...allowed].join(", "));
      sendProblem(req, res, new RelayError("method_not_allowed", `${req.method} is not allowed on ${path}`));
      return;
    }
    sendProblem(req, res, new RelayError("not_found", `no resource at ${path}`));
  });

  app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) {
      // Too late for a problem: end the exchange (express's own fallback would write HTML).
      contextOf(req)!.bug ??= err;
      res.destroy();
      return;
    }
    void next;
    sendProblem(req, res, asRelayError(err), err);
  });

  // Listener settings are read once: server.http is a restart-only key.
  const server = createListener(app, {
    limits: httpLimits,
    // Requests and responses are made with express's prototypes (see createListener).
    prototypes: { request: app.request, response: app.response },
    mayContinue: (req) => mayContinue(req, service),
    onRefusedConnection: (reason) => logger.warn({ reason }, "connection refused: too many open connections"),
  });

  return {
    express: app,
    server,
    service,
    lifecycle,
    metrics,
    tenants: service.tenants,
    clearThrottles: service.clearThrottles,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        const onError = (err: Error): void => reject(err);
        server.once("error", onError);
        server.listen(port, host, () => {
          server.removeListener("error", onError);
          const address = server.address() as AddressInfo;
          const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
          resolve(`http://${shown}:${address.port}`);
        });
      });
    },
    async shutdown(timeoutMs) {
      const started = performance.now();
      lifecycle.beginDrain();
      const idle = await lifecycle.waitIdle(timeoutMs);
      // Sends still at Graph when the time is up: the caller is told how many the stop cuts short.
      const cut = lifecycle.inProgress;
      const closed = await closeWithin(server, Math.max(0, timeoutMs - (performance.now() - started)));
      return { drained: idle && closed, cut };
    },
  };
}

/**
 * Stops listening; keep-alive connections with nothing in flight close now, the others when their
 * answer is out, and whatever is still open at `withinMs` is cut: the drain timeout holds. True
 * when everything closed in time.
 */
function closeWithin(server: Server, withinMs: number): Promise<boolean> {
  if (!server.listening) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.closeAllConnections();
      resolve(false);
    }, withinMs);
    server.close(() => {
      clearTimeout(timer);
      resolve(true);
    });
    server.closeIdleConnections();
  });
}

/** 100 Continue only for POST /send from a caller whose API key is known, while not draining. */
function mayContinue(req: IncomingMessage, service: RelayService): boolean {
  if (req.method !== "POST" || (req.url ?? "").split("?", 1)[0] !== "/send" || service.lifecycle.isDraining) return false;
  try {
    authenticateCaller(req.headers.authorization, service.callers());
    return true;
  } catch {
    return false;
  }
}

/** The route pattern that answered (a bounded metrics label), never the raw URL. */
function routeOf(req: Request): string {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  return typeof path === "string" ? path : UNMATCHED;
}

function sendProblem(req: IncomingMessage, res: ServerResponse, err: RelayError, cause?: unknown): void {
  const ctx = contextOf(req);
  const requestId = ctx?.requestId ?? randomUUID();
  if (ctx !== undefined) {
    ctx.outcome = err.code;
    if (err.status >= 500) ctx.detail = err.message;
    if (err.code === "internal_error") ctx.bug = cause;
    if (err.extras.aadsts !== undefined) ctx.aadsts = err.extras.aadsts;
    if (err.extras.graphCode !== undefined) ctx.graphCode = err.extras.graphCode;
    if (err.extras.graphRequestId !== undefined) ctx.graphRequestId = err.extras.graphRequestId;
  }
  const problem = toProblemResponse(err, requestId);
  const body = JSON.stringify(problem.body);
  const headers: Record<string, string | number> = {
    "content-type": PROBLEM_CONTENT_TYPE,
    "content-length": Buffer.byteLength(body),
    "x-request-id": requestId,
  };
  if (err.code === "unauthorized") headers["www-authenticate"] = BEARER_CHALLENGE;
  // A refused request whose body was not read (or not to the end): close the connection rather
  // than read and throw away what the caller is still sending.
  if (!req.complete) headers.connection = "close";
  if (problem.retryAfterSeconds !== undefined) headers["retry-after"] = String(problem.retryAfterSeconds);
  res.writeHead(problem.status, headers);
  res.end(body);
}

/*
 * One line per request. Only names, codes and ids: never the Authorization header, the
 * body, a token or a secret. Probes and scrapes log at debug so they do not drown sends.
 */
function logRequest(logger: Logger, req: Request, ctx: RequestContext, route: string, status: number, seconds: number): void {
  const level = status >= 500 ? "error" : QUIET_ROUTES.has(route) ? "debug" : "info";
  if (!logger.isLevelEnabled(level)) return;
  const line: Record<string, unknown> = {
    requestId: ctx.requestId,
    method: req.method,
    route,
    status,
    durationMs: Math.round(seconds * 1000 * 10) / 10,
  };
  if (ctx.caller !== undefined) line.caller = ctx.caller.name;
  if (ctx.tenant !== undefined) line.tenant = ctx.tenant;
  if (ctx.outcome !== undefined) line.outcome = ctx.outcome;
  if (ctx.messageId !== undefined) line.messageId = ctx.messageId;
  if (ctx.graphRequestId !== undefined) line.graphRequestId = ctx.graphRequestId;
  if (ctx.attempts !== undefined) line.attempts = ctx.attempts;
  if (ctx.replayOf !== undefined) line.replayOf = ctx.replayOf;
  if (ctx.aadsts !== undefined) line.aadsts = ctx.aadsts;
  if (ctx.graphCode !== undefined) line.graphCode = ctx.graphCode;
  if (ctx.detail !== undefined) line.detail = ctx.detail;
  if (ctx.bug !== undefined) line.err = ctx.bug;
  logger[level](line, "request");
}
