// A reference for issue 15: the least a relay built on the project's fixed stack does per send,
// to tell what the stack costs from what the service's own guarantees cost. It is the lean
// baseline (bench/lean-baseline.mjs: same API-key check, tenant table, token cache, Graph JSON,
// undici pool and answers; bench/lib/pass-through.mjs) with the pieces every send of the
// service also goes through, each used the cheapest way this project found:
//
//   - an express 5 app (ETag and X-Powered-By off, requests born with express's prototypes as
//     src/http/listener.ts does) with `express.json()` for the body and `res.status().json()`;
//   - a zod schema of the send request (recipients, subject, text/html, cc/bcc/replyTo,
//     importance, headers, attachments) parsed on every body;
//   - the Graph client (`Client.initWithMiddleware`) with a two-step middleware chain: the
//     tenant's token, then one undici request (no fetch Response: ResponseType.RAW);
//   - one pino line per request to stdout (pino's default destination);
//   - prom-client: a request-duration histogram and a per-tenant outcome counter, through
//     cached label children.
// No idempotency, mailbox slots, recipient limits, retries, timeouts, drain, hostile-input
// checks or per-tenant status: those are the service's own.
//
// Env: as bench/lean-baseline.mjs, and BENCH_FLOOR_WITHOUT: a comma-separated list of pieces to
// leave out (zod, graph-client, pino, prom-client), to measure what each costs.
// Prints one JSON line {"url": "..."} once listening.
import { randomUUID } from "node:crypto";
import http from "node:http";
import { performance } from "node:perf_hooks";
import { Client, ResponseType } from "@microsoft/microsoft-graph-client";
import express from "express";
import { pino } from "pino";
import { Counter, Histogram, Registry } from "prom-client";
import { z } from "zod";
import { announce, callerOf, graph, graphBody, graphPool, problemBody, tenants, token } from "./lib/pass-through.mjs";

const address = z.string().min(3).max(320).regex(/^[^\s@]+@[^\s@]+$/);
const recipient = z.union([address, z.object({ address, name: z.string().max(256).optional() }).strict()]);
const recipients = z.array(recipient).max(500);
const sendRequest = z
  .object({
    tenant: z.string().min(1).max(64),
    to: recipients.min(1),
    cc: recipients.optional(),
    bcc: recipients.optional(),
    replyTo: recipients.optional(),
    subject: z.string().min(1).max(998),
    text: z.string().max(4_000_000).optional(),
    html: z.string().max(4_000_000).optional(),
    importance: z.enum(["low", "normal", "high"]).optional(),
    headers: z.record(z.string().regex(/^x-/i), z.string().max(995)).optional(),
    attachments: z
      .array(z.object({ filename: z.string().min(1).max(255), content: z.string().base64(), contentType: z.string().max(255).optional(), contentId: z.string().max(255).optional(), inline: z.boolean().optional() }).strict())
      .max(100)
      .optional(),
    saveToSentItems: z.boolean().optional(),
  })
  .strict();

const without = new Set((process.env.BENCH_FLOOR_WITHOUT ?? "").split(",").filter(Boolean));
for (const piece of without) if (!["zod", "graph-client", "pino", "prom-client"].includes(piece)) throw new Error(`BENCH_FLOOR_WITHOUT: unknown piece ${piece}`);

const logger = pino({ level: "info", base: { service: "stack-floor" } });
const registry = new Registry();
const durations = new Histogram({ name: "http_request_duration_seconds", help: "requests", labelNames: ["method", "route", "status"], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [registry] });
const outcomes = new Counter({ name: "sends_total", help: "sends", labelNames: ["tenant", "outcome"], registers: [registry] });
const children = new Map();
function observe(status, tenant, outcome, seconds) {
  const k = `${status}|${tenant}|${outcome}`;
  let c = children.get(k);
  if (c === undefined) children.set(k, (c = { h: durations.labels("POST", "/send", String(status)), c: outcomes.labels(tenant, outcome) }));
  c.h.observe(seconds);
  c.c.inc();
}

/** The tenant key of one Graph request, carried through the Graph client's middleware chain. */
class SendTarget {
  constructor(tenantKey, tenant, requestId) {
    this.tenantKey = tenantKey;
    this.tenant = tenant;
    this.requestId = requestId;
    this.status = 0;
    this.detail = "";
  }
}
const targetOf = (context) => context.middlewareControl.getMiddlewareOptions(SendTarget);
const graphOrigin = graph.origin;
const auth = {
  async execute(context) {
    const t = targetOf(context);
    context.options.headers = { ...context.options.headers, authorization: `Bearer ${await token(t.tenantKey, t.tenant.tenantId)}`, "client-request-id": t.requestId };
    return this.next.execute(context);
  },
  setNext(next) {
    this.next = next;
  },
};
/** One request on the Graph pool; its status (and Graph's answer, when not 202) left in the target. */
async function exchange(t, request) {
  const g = await graphPool.request(request);
  t.status = g.statusCode;
  if (g.statusCode === 202) await g.body.dump();
  else t.detail = (await g.body.text()).slice(0, 500);
}
const transport = {
  async execute(context) {
    const t = targetOf(context);
    await exchange(t, { method: context.options.method, path: context.request.slice(graphOrigin.length), headers: context.options.headers, body: context.options.body });
    context.response = t;
  },
};
auth.setNext(transport);
/** The same request without the Graph client (BENCH_FLOOR_WITHOUT=graph-client), as the lean baseline sends it. */
async function direct(t, payload) {
  const headers = { "content-type": "application/json", authorization: `Bearer ${await token(t.tenantKey, t.tenant.tenantId)}`, "client-request-id": t.requestId };
  await exchange(t, { method: "POST", path: t.tenant.path, headers, body: payload });
}
const client = Client.initWithMiddleware({ middleware: auth, baseUrl: graph.href.replace(/\/+$/, ""), defaultVersion: "v1.0", customHosts: new Set([graph.hostname]) });

const app = express();
app.set("etag", false);
app.set("x-powered-by", false);
app.use((req, res, next) => {
  const requestId = randomUUID();
  const started = performance.now();
  res.locals.requestId = requestId;
  res.setHeader("x-request-id", requestId);
  res.once("finish", () => {
    const seconds = (performance.now() - started) / 1000;
    if (!without.has("prom-client")) observe(res.statusCode, res.locals.tenant ?? "-", res.locals.outcome ?? String(res.statusCode), seconds);
    if (!without.has("pino")) logger.info({ requestId, method: req.method, route: req.path, status: res.statusCode, durationMs: Math.round(seconds * 10_000) / 10, tenant: res.locals.tenant, outcome: res.locals.outcome }, "request");
  });
  next();
});
const problem = (res, status, code, extra) => res.status(status).type("application/problem+json").json(problemBody(res.locals.requestId, status, code, extra));
app.get(["/readyz", "/healthz"], (req, res) => res.json({ status: "ok" }));
app.post(
  "/send",
  (req, res, next) => {
    // The key is checked once, before the body is read; the handler reads what it allows.
    res.locals.allowed = callerOf(req.headers.authorization);
    return res.locals.allowed === undefined ? problem(res, 401, "unauthorized") : next();
  },
  express.json({ limit: "10mb" }),
  async (req, res) => {
    const { allowed } = res.locals;
    const parsed = without.has("zod") ? { success: true, data: req.body } : sendRequest.safeParse(req.body);
    if (!parsed.success) return problem(res, 400, "validation_failed", { errors: parsed.error.issues.slice(0, 20).map((i) => ({ path: i.path.join("."), message: i.message })) });
    const body = parsed.data;
    const tenant = tenants.get(body.tenant);
    if (tenant === undefined) return problem(res, 404, "unknown_tenant");
    if (!allowed.has("*") && !allowed.has(body.tenant)) return problem(res, 403, "tenant_forbidden");
    res.locals.tenant = body.tenant;
    const id = randomUUID();
    const internetMessageId = `<${id}@${tenant.domain}>`;
    const target = new SendTarget(body.tenant, tenant, res.locals.requestId);
    try {
      if (without.has("graph-client")) await direct(target, graphBody(body, internetMessageId, body.saveToSentItems ?? tenant.save));
      else await client.api(tenant.user).middlewareOptions([target]).responseType(ResponseType.RAW).header("content-type", "application/json").post(graphBody(body, internetMessageId, body.saveToSentItems ?? tenant.save));
    } catch (err) {
      res.locals.outcome = "upstream_unavailable";
      return problem(res, 503, "upstream_unavailable", { detail: String(err) });
    }
    if (target.status !== 202) {
      res.locals.outcome = "upstream";
      return problem(res, 502, "upstream", { graphStatus: target.status, detail: target.detail });
    }
    res.locals.outcome = "sent";
    res.status(202).json({ id, internetMessageId, tenant: body.tenant, sender: tenant.sender, acceptedAt: new Date().toISOString() });
  },
);

// Requests and responses born with express's prototypes (src/http/listener.ts, bornWith).
const Request = function (socket) {
  Reflect.apply(http.IncomingMessage, this, [socket]);
};
const Response = function (req, options) {
  Reflect.apply(http.ServerResponse, this, [req, options]);
};
Request.prototype = app.request;
Response.prototype = app.response;
const server = http.createServer({ keepAliveTimeout: 65_000, IncomingMessage: Request, ServerResponse: Response }, app);
server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? "127.0.0.1", () => announce(server));
