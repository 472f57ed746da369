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
// Env: BENCH_CONFIG (the service's JSON config), PORT (default 0), HOST (default 127.0.0.1),
// BENCH_TOKEN_SCOPE (default https://graph.microsoft.com/.default).
// Prints one JSON line {"url": "..."} once listening.
import { createHash, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import { createSecureContext, rootCertificates } from "node:tls";
import { URLSearchParams } from "node:url";
import { Pool } from "undici";

const config = JSON.parse(readFileSync(process.env.BENCH_CONFIG ?? "", "utf8"));
const authority = new URL(config.cloud.authorityHost);
const graph = new URL(config.cloud.graphBaseUrl);
const graphPrefix = `${graph.pathname.replace(/\/+$/, "")}/v1.0/users/`;
const authorityPrefix = authority.pathname.replace(/\/+$/, "");
const scope = process.env.BENCH_TOKEN_SCOPE ?? "https://graph.microsoft.com/.default";
const clientId = config.app.clientId;
const clientSecret = readFileSync(config.app.credential.secretFile, "utf8").trim();

/** keySha256 -> the tenants the caller may send for ("*": all). */
const callers = new Map(Object.values(config.callers).map((c) => [c.keySha256.toLowerCase(), new Set(c.tenants)]));
/** tenant key -> { tenantId, sender, domain, saveToSentItems }. */
const tenants = new Map(
  Object.entries(config.tenants).map(([key, t]) => [key, { tenantId: t.tenantId, sender: t.sender, domain: t.sender.slice(t.sender.indexOf("@") + 1), path: `${graphPrefix}${encodeURIComponent(t.sender)}/sendMail`, save: t.saveToSentItems ?? false }]),
);

// One SecureContext with the public roots plus the emulator's CA (as the service does: passing
// `ca` per connection would parse the roots on every handshake).
const secureContext = createSecureContext({ ca: config.tls?.caFile ? [...rootCertificates, readFileSync(config.tls.caFile, "utf8")] : rootCertificates });
const pools = new Map();
function pool(origin) {
  let p = pools.get(origin);
  if (p === undefined) {
    p = new Pool(origin, { connections: 256, pipelining: 1, keepAliveTimeout: 4_000, keepAliveMaxTimeout: 120_000, connect: { secureContext, timeout: 10_000 } });
    pools.set(origin, p);
  }
  return p;
}
const graphPool = pool(graph.origin);
const authorityPool = pool(authority.origin);

/** tenant key -> { promise, value? }; one token request per tenant while the token is valid. */
const tokens = new Map();
async function fetchToken(tenantId) {
  const form = new URLSearchParams({ client_id: clientId, client_secret: clientSecret, scope, grant_type: "client_credentials" }).toString();
  const res = await authorityPool.request({
    method: "POST",
    path: `${authorityPrefix}/${encodeURIComponent(tenantId)}/oauth2/v2.0/token`,
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: form,
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`token ${res.statusCode}: ${text.slice(0, 300)}`);
  const json = JSON.parse(text);
  return { token: json.access_token, expiresAt: Date.now() + (json.expires_in - 300) * 1000 };
}
function token(key, tenantId) {
  const entry = tokens.get(key);
  if (entry?.value !== undefined && entry.value.expiresAt > Date.now()) return entry.value.token;
  if (entry !== undefined && entry.value === undefined) return entry.promise.then((v) => v.token);
  const fresh = { value: undefined, promise: fetchToken(tenantId) };
  tokens.set(key, fresh);
  fresh.promise.then(
    (v) => (fresh.value = v),
    () => tokens.delete(key),
  );
  return fresh.promise.then((v) => v.token);
}

const recipient = (r) => (typeof r === "string" ? { emailAddress: { address: r } } : { emailAddress: r.name === undefined ? { address: r.address } : { address: r.address, name: r.name } });

/** The sendMail JSON, with the same members as the service's (empty lists left out). */
function graphBody(body, internetMessageId, saveToSentItems) {
  const message = {
    subject: body.subject,
    body: body.html !== undefined ? { contentType: "HTML", content: body.html } : { contentType: "Text", content: body.text ?? "" },
    toRecipients: Array.isArray(body.to) ? body.to.map(recipient) : [],
    internetMessageId,
  };
  if (Array.isArray(body.cc) && body.cc.length > 0) message.ccRecipients = body.cc.map(recipient);
  if (Array.isArray(body.bcc) && body.bcc.length > 0) message.bccRecipients = body.bcc.map(recipient);
  if (Array.isArray(body.replyTo) && body.replyTo.length > 0) message.replyTo = body.replyTo.map(recipient);
  if (body.importance !== undefined) message.importance = body.importance;
  if (body.headers) message.internetMessageHeaders = Object.entries(body.headers).map(([name, value]) => ({ name, value: String(value) }));
  if (Array.isArray(body.attachments) && body.attachments.length > 0) {
    message.attachments = body.attachments.map((a) => {
      const att = { "@odata.type": "#microsoft.graph.fileAttachment", name: a.filename, contentType: a.contentType ?? "application/octet-stream", contentBytes: a.content };
      if (a.inline === true) att.isInline = true;
      if (a.contentId !== undefined) att.contentId = a.contentId;
      return att;
    });
  }
  return JSON.stringify({ message, saveToSentItems });
}

const JSON_TYPE = "application/json; charset=utf-8";
function reply(res, status, requestId, obj) {
  const text = JSON.stringify(obj);
  res.writeHead(status, { "content-type": status < 300 ? JSON_TYPE : "application/problem+json", "content-length": Buffer.byteLength(text), "x-request-id": requestId });
  res.end(text);
}
const problem = (res, requestId, status, code, extra = {}) => reply(res, status, requestId, { type: `about:blank#${code}`, status, code, requestId, ...extra });

async function send(req, res, requestId) {
  const auth = req.headers.authorization;
  const allowed = auth !== undefined && auth.startsWith("Bearer ") ? callers.get(createHash("sha256").update(auth.slice(7)).digest("hex")) : undefined;
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
server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? "127.0.0.1", () => {
  const { address, port } = server.address();
  console.log(JSON.stringify({ url: `http://${address}:${port}` }));
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
