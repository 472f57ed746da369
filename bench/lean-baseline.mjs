// The bench's primary baseline (issue 15): the leanest honest pass-through in front of the same
// emulator. It does what sending the same Graph request needs and nothing else:
//
//   - node:http server, keep-alive;
//   - the service's API-key check: SHA-256 of the bearer key looked up among the config's
//     callers, and the caller must be allowed the tenant;
//   - the body read as Buffers and parsed with JSON.parse once; the tenant looked up (404 when
//     unknown); no other validation;
//   - the Graph sendMail JSON built from the body (recipients, subject, body, cc/bcc/replyTo,
//     importance, headers, attachments with the caller's base64 passed through untouched,
//     internetMessageId `<uuid@sender-domain>`, saveToSentItems), as the service builds it;
//   - an undici Pool per origin (keep-alive, one request per connection, as the service's
//     dispatcher) trusting the emulator's CA; a token per tenant from a client-credentials POST,
//     cached until 5 minutes before it expires; `client-request-id` = the request id;
//   - the service's answer: 202 `{id, internetMessageId, tenant, sender, acceptedAt}` with
//     X-Request-Id; 502 when Graph says anything but 202, 503 when it cannot be reached.
// No logging, metrics, schema validation, limits, retries or idempotency.
//
// What it shares with bench/stack-floor.mjs is in bench/lib/pass-through.mjs.
// Env: BENCH_CONFIG (the service's JSON config), PORT (default 0), HOST (default 127.0.0.1),
// BENCH_TOKEN_SCOPE (default https://graph.microsoft.com/.default).
// Prints one JSON line {"url": "..."} once listening.
import { randomUUID } from "node:crypto";
import http from "node:http";
import { announce, callerOf, graphBody, graphPool, JSON_TYPE, problemBody, tenants, token } from "./lib/pass-through.mjs";

function reply(res, status, requestId, obj) {
  const text = JSON.stringify(obj);
  res.writeHead(status, { "content-type": status < 300 ? JSON_TYPE : "application/problem+json", "content-length": Buffer.byteLength(text), "x-request-id": requestId });
  res.end(text);
}
const problem = (res, requestId, status, code, extra) => reply(res, status, requestId, problemBody(requestId, status, code, extra));

async function send(req, res, requestId) {
  const allowed = callerOf(req.headers.authorization);
  if (allowed === undefined) {
    req.resume();
    return problem(res, requestId, 401, "unauthorized");
  }
  const chunks = [];
  for await (const c of req) chunks.push(c);
  let body;
  try {
    body = JSON.parse((chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)).toString("utf8"));
  } catch {
    return problem(res, requestId, 400, "validation_failed");
  }
  const tenant = typeof body?.tenant === "string" ? tenants.get(body.tenant) : undefined;
  if (tenant === undefined) return problem(res, requestId, 404, "unknown_tenant");
  if (!allowed.has("*") && !allowed.has(body.tenant)) return problem(res, requestId, 403, "tenant_forbidden");
  const id = randomUUID();
  const internetMessageId = `<${id}@${tenant.domain}>`;
  const payload = graphBody(body, internetMessageId, body.saveToSentItems ?? tenant.save);
  try {
    const bearer = await token(body.tenant, tenant.tenantId);
    const g = await graphPool.request({
      method: "POST",
      path: tenant.path,
      headers: { "content-type": "application/json", authorization: `Bearer ${bearer}`, "client-request-id": requestId },
      body: payload,
    });
    if (g.statusCode !== 202) {
      const detail = await g.body.text();
      return problem(res, requestId, 502, "upstream", { graphStatus: g.statusCode, detail: detail.slice(0, 500) });
    }
    await g.body.dump();
  } catch (err) {
    return problem(res, requestId, 503, "upstream_unavailable", { detail: String(err) });
  }
  reply(res, 202, requestId, { id, internetMessageId, tenant: body.tenant, sender: tenant.sender, acceptedAt: new Date().toISOString() });
}

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const requestId = randomUUID();
  if (req.method === "POST" && req.url === "/send") {
    send(req, res, requestId).catch((err) => problem(res, requestId, 500, "internal", { detail: String(err) }));
  } else if (req.url === "/readyz" || req.url === "/healthz") {
    reply(res, 200, requestId, { status: "ok" });
  } else {
    req.resume();
    problem(res, requestId, 404, "not_found");
  }
});
server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? "127.0.0.1", () => announce(server));
