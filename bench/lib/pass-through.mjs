// What the pass-through references of the bench share (bench/lean-baseline.mjs,
// bench/stack-floor.mjs): the service's config read as they need it, the API-key check, the
// tenant table, an undici Pool per origin trusting the emulator's CA, a client-credentials token
// per tenant cached until 5 minutes before it expires, the Graph sendMail JSON as the service
// builds it, and the service's answers.
//
// Env: BENCH_CONFIG (the service's JSON config), BENCH_TOKEN_SCOPE (default
// https://graph.microsoft.com/.default).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext, rootCertificates } from "node:tls";
import { URLSearchParams } from "node:url";
import { Pool } from "undici";

export const config = JSON.parse(readFileSync(process.env.BENCH_CONFIG ?? "", "utf8"));
const authority = new URL(config.cloud.authorityHost);
export const graph = new URL(config.cloud.graphBaseUrl);
const graphPrefix = `${graph.pathname.replace(/\/+$/, "")}/v1.0/users/`;
const authorityPrefix = authority.pathname.replace(/\/+$/, "");
const scope = process.env.BENCH_TOKEN_SCOPE ?? "https://graph.microsoft.com/.default";
const clientId = config.app.clientId;
const clientSecret = readFileSync(config.app.credential.secretFile, "utf8").trim();

/** keySha256 -> the tenants the caller may send for ("*": all). */
const callers = new Map(Object.values(config.callers).map((c) => [c.keySha256.toLowerCase(), new Set(c.tenants)]));
/** tenant key -> { tenantId, sender, domain, path (the sendMail path below the Graph origin), user (the path below /v1.0), save }. */
export const tenants = new Map(
  Object.entries(config.tenants).map(([key, t]) => [
    key,
    {
      tenantId: t.tenantId,
      sender: t.sender,
      domain: t.sender.slice(t.sender.indexOf("@") + 1),
      path: `${graphPrefix}${encodeURIComponent(t.sender)}/sendMail`,
      user: `/users/${encodeURIComponent(t.sender)}/sendMail`,
      save: t.saveToSentItems ?? false,
    },
  ]),
);

/** The tenants the caller with this Authorization header may send for, or undefined (401). */
export function callerOf(authorization) {
  return authorization !== undefined && authorization.startsWith("Bearer ") ? callers.get(createHash("sha256").update(authorization.slice(7)).digest("hex")) : undefined;
}

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
export const graphPool = pool(graph.origin);
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

/** The tenant's token: the cached one, or the one being fetched. */
export function token(key, tenantId) {
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
export function graphBody(body, internetMessageId, saveToSentItems) {
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

export const JSON_TYPE = "application/json; charset=utf-8";

/** The service's problem+json body. */
export const problemBody = (requestId, status, code, extra = {}) => ({ type: `about:blank#${code}`, status, code, requestId, ...extra });

/** Prints the one JSON line the bench waits for. */
export function announce(server) {
  const { address, port } = server.address();
  console.log(JSON.stringify({ url: `http://${address}:${port}` }));
}

for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
