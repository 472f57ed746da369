import { randomUUID } from "node:crypto";
import type { Duplex } from "node:stream";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Config } from "./config/schema.js";
import type { RememberingTokenProvider } from "./auth/credential-failure-memory.js";
import { createMemoryStores, type DeliveryStores } from "./delivery/delivery-stores.js";
import { describeTenants } from "./delivery/tenant-status.js";
import { BEARER_CHALLENGE } from "./http/api-key.js";
import { registerJsonBodyParser } from "./http/json-body.js";
import { Lifecycle } from "./http/lifecycle.js";
import { registerProbeRoutes } from "./http/probe-routes.js";
import { asRelayError, PROBLEM_CONTENT_TYPE, toProblemResponse } from "./http/problem-response.js";
import { RelayError } from "./core/problems.js";
import { RequestContext } from "./http/request-context.js";
import type { RouteContext, RouteRegistrar } from "./http/route-registrar.js";
import { registerSendRoute } from "./http/send-route.js";
import { systemClock, type Clock, type GraphSender, type TokenProvider, type TokenTarget } from "./core/ports.js";
import { SendMail } from "./mail/send-mail.js";
import { getRelayMetrics, NO_TENANT, type RelayMetrics } from "./metrics/relay-metrics.js";
import { CallerDirectory } from "./tenants/caller-directory.js";
import type { ConfigSource } from "./config/config-source.js";
import { buildTenantDirectory, type TenantDirectory } from "./tenants/tenant-directory.js";

/**
 * The token provider as the app uses it. Besides tokens, whatever of these it has: `retain`
 * (the Entra provider: keep these targets' credentials, drop the rest) and `forget` /
 * `rejection` (src/delivery/credential-failure-memory.ts) are used on reload and by /tenants.
 */
export type AppTokenProvider = TokenProvider &
  Partial<Pick<RememberingTokenProvider, "forget" | "rejection">> & {
    retain?(targets: Iterable<TokenTarget>): number;
  };

/** Everything the app needs from outside; server.ts wires the real ones, tests their own. */
export interface AppDeps {
  /** The loaded config and its reloads. */
  readonly configSource: ConfigSource;
  readonly tokenProvider: AppTokenProvider;
  readonly graphSender: GraphSender;
  /** Metrics go here, never to prom-client's global registry. */
  readonly registry: Registry;
  /** The one pino instance; the app writes one line per request to it. */
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Route modules of other capabilities (docs, consent, /tenants); see src/http/optional-routes.ts. */
  readonly routes?: readonly RouteRegistrar[];
  /**
   * Where Idempotency-Keys, mailbox slots, daily recipients and last outcomes are kept (see
   * src/delivery/delivery-stores.ts); default this process's memory, sized by the start-up config.
   */
  readonly stores?: DeliveryStores;
}

/** The built app: Fastify plus the handles server.ts needs for probes and shutdown. */
export interface RelayApp {
  readonly fastify: FastifyInstance;
  readonly lifecycle: Lifecycle;
  readonly metrics: RelayMetrics;
  tenants(): TenantDirectory;
  /**
   * Graceful stop: /readyz turns 503, new sends get 503 `upstream_unavailable` (with
   * Retry-After and Connection: close), sends in flight finish (up to `timeoutMs`), then
   * the listener closes. Resolves `drained: false` when the timeout cut sends short.
   */
  shutdown(timeoutMs: number): Promise<{ drained: boolean }>;
  /** Forgets every mailbox's Graph throttle memory (SIGHUP); sends held back by it go at once. */
  clearThrottles(): void;
}

const QUIET_ROUTES = new Set(["/healthz", "/readyz", "/metrics"]);

/** Builds the service without listening. */
export async function createApp(deps: AppDeps): Promise<RelayApp> {
  const { configSource, logger, registry, tokenProvider } = deps;
  const clock = deps.clock ?? systemClock;
  const metrics = getRelayMetrics(registry);
  const lifecycle = new Lifecycle();

  let config: Config = configSource.current();
  let tenants = buildTenantDirectory(config);
  let callers = new CallerDirectory(config);
  // Made once: a reload does not resize or move them (idempotency and store are restart-only keys).
  const stores = deps.stores ?? createMemoryStores(config, clock);
  const { mailboxes: limiter, recipients, activity: tenantStatus, idempotency } = stores;
  const publishTenants = (): void => {
    limiter.sync(new Map(tenants.list().map((t) => [t.mailboxKey, t.limits])));
    // No per-tenant zero series: the chart's alerts handle a series' first appearance, and
    // 10,000 tenants × zeros would make every scrape megabytes long.
    metrics.setCredentialExpiries(tenants.credentialExpiries());
  };
  publishTenants();
  // Recipients are counted per mailbox, the gauge is per tenant key (tenants may share a mailbox).
  // Mapped at scrape time: one pass over the tenants costs less than a standing map of 10,000.
  metrics.setRecipientsSource(async () => {
    const list = tenants.list();
    const byMailbox = await recipients.usage([...new Set(list.map((t) => t.mailboxKey))]);
    const byTenant = new Map<string, number>();
    if (byMailbox.size === 0) return byTenant;
    for (const t of list) {
      const used = byMailbox.get(t.mailboxKey);
      if (used !== undefined) byTenant.set(t.key, used);
    }
    return byTenant;
  });
  /*
   * A reload swaps what new requests see. Sends in flight keep the Tenant, token target and
   * mailbox slot they started with. Unchanged tenants keep their objects, so their credentials
   * and cached tokens stay; a changed tenant's remembered credential rejection is forgotten so
   * the new settings are tried at once.
   */
  configSource.subscribe((next) => {
    const previous = tenants;
    config = next;
    tenants = buildTenantDirectory(next, previous);
    callers = new CallerDirectory(next);
    publishTenants();
    tenantStatus.retain(tenants.list().map((t) => t.key));
    tokenProvider.retain?.(tenants.list().map((t) => t.target));
    for (const t of previous.list()) if (tenants.get(t.key) !== t) tokenProvider.forget?.(t.key);
    // A changed tenant also starts without its mailbox's throttle memory (a renamed or re-added one keeps it).
    for (const t of tenants.list()) {
      const before = previous.get(t.key);
      if (before !== undefined && before !== t) limiter.clearThrottle(t.mailboxKey);
    }
  });

  const sendMail = new SendMail({
    tenants: () => tenants,
    tokenProvider,
    graphSender: deps.graphSender,
    limiter,
    recipients,
    clock,
    deadlineSeconds: () => config.server.requestDeadlineSeconds,
    inflight: metrics.inflightSends,
    status: tenantStatus,
    work: lifecycle,
  });

  const app = Fastify({
    logger: false, // one line per request is written below, to deps.logger
    bodyLimit: config.server.maxBodyBytes,
    genReqId: () => randomUUID(),
    requestIdHeader: false, // our ids are UUIDs (Graph wants a GUID client-request-id), never a caller's string
    return503OnClosing: false, // draining is answered by the send route with a problem+json
    forceCloseConnections: "idle",
    clientErrorHandler: answerClientError,
    frameworkErrors: (error, request, reply) => {
      request.relay ??= new RequestContext(clock.now());
      sendProblem(request, reply, asRelayError(error));
    },
  });

  // Bodies are JSON only: a text/plain body would otherwise reach validation as a string.
  app.removeContentTypeParser("text/plain");
  registerJsonBodyParser(app);

  // Static paths and their methods, to tell 405 from 404.
  const methodsByPath = new Map<string, Set<string>>();
  app.addHook("onRoute", (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    let set = methodsByPath.get(route.url);
    if (set === undefined) methodsByPath.set(route.url, (set = new Set()));
    for (const m of methods) set.add(m);
  });

  app.decorateRequest("relay", null as unknown as RequestContext);
  app.addHook("onRequest", (request, reply, done) => {
    request.relay = new RequestContext(clock.now());
    reply.header("x-request-id", request.id);
    done();
  });

  app.addHook("onResponse", (request, reply, done) => {
    const ctx = request.relay;
    const route = request.is404 ? "unmatched" : request.routeOptions.url ?? "unmatched";
    const status = reply.statusCode;
    const seconds = reply.elapsedTime / 1000;
    metrics.httpRequest(request.method, route, status, seconds);
    if (route === "/send") metrics.sendOutcome(ctx.tenant ?? NO_TENANT, ctx.outcome ?? String(status));
    logRequest(logger, request, ctx, route, status, seconds);
    done();
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    request.relay ??= new RequestContext(clock.now());
    sendProblem(request, reply, asRelayError(error), error);
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split("?", 1)[0]!;
    const allowed = methodsByPath.get(path);
    if (allowed !== undefined && allowed.size > 0) {
      reply.header("allow", [...allowed].join(", "));
      sendProblem(request, reply, new RelayError("method_not_allowed", `${request.method} is not allowed on ${path}`));
      return;
    }
    sendProblem(request, reply, new RelayError("not_found", `no resource at ${path}`));
  });

  registerProbeRoutes(app, { lifecycle, registry, stores });
  registerSendRoute(app, {
    sendMail,
    callers: () => callers,
    tenants: () => tenants,
    lifecycle,
    idempotency,
    deadlineSeconds: () => config.server.requestDeadlineSeconds,
  });

  const credentials = tokenProvider.rejection !== undefined ? { rejection: tokenProvider.rejection.bind(tokenProvider) } : undefined;
  const routeContext: RouteContext = {
    configSource,
    logger,
    registry,
    clock,
    tokenProvider,
    tenants: () => tenants,
    callers: () => callers,
    tenantStatus: async () =>
      describeTenants(tenants.list(), { activity: tenantStatus, recipients, limiter, ...(credentials !== undefined ? { credentials } : {}) }),
  };
  for (const register of deps.routes ?? []) await register(app, routeContext);

  return {
    fastify: app,
    lifecycle,
    metrics,
    tenants: () => tenants,
    clearThrottles() {
      limiter.clearThrottle();
    },
    async shutdown(timeoutMs) {
      lifecycle.beginDrain();
      const drained = await lifecycle.waitIdle(timeoutMs);
      await app.close();
      return { drained };
    },
  };
}

/*
 * Malformed HTTP (bad request line, oversized headers) never reaches a route; Node hands the
 * socket over. The answer is still problem+json, written by hand, and the connection closed.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  const detail = err.code === "HPE_HEADER_OVERFLOW" ? "the request headers are too large" : "the request is not valid HTTP";
  // Even a request the parser refused gets its id, so the answer matches the spec and the problem's requestId.
  const requestId = randomUUID();
  const problem = toProblemResponse(
    new RelayError("validation_failed", detail, { errors: [{ path: "(request)", message: detail }] }),
    requestId,
  );
  const body = JSON.stringify(problem.body);
  socket.end(
    `HTTP/1.1 400 Bad Request\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
  );
}

function sendProblem(request: FastifyRequest, reply: FastifyReply, err: RelayError, cause?: unknown): void {
  const ctx = request.relay;
  ctx.outcome = err.code;
  if (err.code === "unauthorized") reply.header("www-authenticate", BEARER_CHALLENGE);
  if (err.status >= 500) ctx.detail = err.message;
  if (err.code === "internal_error") ctx.bug = cause;
  if (err.extras.aadsts !== undefined) ctx.aadsts = err.extras.aadsts;
  if (err.extras.graphCode !== undefined) ctx.graphCode = err.extras.graphCode;
  if (err.extras.graphRequestId !== undefined) ctx.graphRequestId = err.extras.graphRequestId;
  const problem = toProblemResponse(err, request.id);
  if (problem.retryAfterSeconds !== undefined) reply.header("retry-after", String(problem.retryAfterSeconds));
  reply.code(problem.status).header("content-type", PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem.body));
}

/*
 * One line per request. Only names, codes and ids: never the Authorization header, the
 * body, a token or a secret. Probes and scrapes log at debug so they do not drown sends.
 */
function logRequest(logger: Logger, request: FastifyRequest, ctx: RequestContext, route: string, status: number, seconds: number): void {
  const level = status >= 500 ? "error" : QUIET_ROUTES.has(route) ? "debug" : "info";
  if (!logger.isLevelEnabled(level)) return;
  const line: Record<string, unknown> = {
    requestId: request.id,
    method: request.method,
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
