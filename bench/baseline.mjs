// The bench baseline: the least a relay must do per request, with nothing else.
// Parse the JSON body, check the API key, pick the tenant's sender, build the Graph message,
// POST it with a keep-alive agent and a token fetched once per tenant (client credentials),
// answer 202 JSON. No logging, metrics, validation library, limits or retries.
//
// Env: BENCH_CONFIG (the service's JSON config), PORT (default 0), HOST (default 127.0.0.1),
// BENCH_TOKEN_SCOPE (default https://graph.microsoft.com/.default).
// Prints one JSON line {"url": "..."} once listening.
import { createHash, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { URLSearchParams } from "node:url";

const config = JSON.parse(readFileSync(process.env.BENCH_CONFIG ?? "", "utf8"));
const authorityHost = config.cloud.authorityHost.replace(/\/+$/, "");
const graphBaseUrl = config.cloud.graphBaseUrl.replace(/\/+$/, "");
const scope = process.env.BENCH_TOKEN_SCOPE ?? "https://graph.microsoft.com/.default";
const clientId = config.app.clientId;
const clientSecret = readFileSync(config.app.credential.secretFile, "utf8").trim();
const keys = new Set(Object.values(config.callers).map((c) => c.keySha256.toLowerCase()));
const tenants = new Map(Object.entries(config.tenants));

const agent = new https.Agent({
  keepAlive: true,
  maxSockets: 256,
  maxFreeSockets: 256,
  ca: config.tls?.caFile ? readFileSync(config.tls.caFile, "utf8") : undefined,
});

function post(url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: "POST", agent, headers: { ...headers, "content-length": Buffer.byteLength(body) } }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** tenant key -> Promise<{ token, expiresAt }>; one token request per tenant while valid. */
const tokens = new Map();
async function fetchToken(tenantId) {
  const form = new URLSearchParams({ client_id: clientId, client_secret: clientSecret, scope, grant_type: "client_credentials" }).toString();
  const res = await post(`${authorityHost}/${tenantId}/oauth2/v2.0/token`, { "content-type": "application/x-www-form-urlencoded" }, form);
  if (res.status !== 200) throw new Error(`token ${res.status}: ${res.body.slice(0, 300)}`);
  const json = JSON.parse(res.body);
  return { token: json.access_token, expiresAt: Date.now() + (json.expires_in - 300) * 1000 };
}
function token(key, tenantId) {
  let p = tokens.get(key);
  if (p === undefined || (p.settled && p.value.expiresAt < Date.now())) {
    const entry = fetchToken(tenantId).then(
      (value) => {
        entry.settled = true;
        entry.value = value;
        return value;
      },
      (err) => {
        tokens.delete(key);
        throw err;
      },
    );
    p = entry;
    tokens.set(key, p);
  }
  return p.then((v) => v.token);
}

const recipient = (r) => (typeof r === "string" ? { emailAddress: { address: r } } : { emailAddress: { address: r.address, ...(r.name ? { name: r.name } : {}) } });
const list = (v) => (Array.isArray(v) ? v.map(recipient) : []);

function graphMessage(body, sender, internetMessageId, saveToSentItems) {
  const message = {
    subject: body.subject,
    body: body.html !== undefined ? { contentType: "HTML", content: body.html } : { contentType: "Text", content: body.text },
    toRecipients: list(body.to),
    ccRecipients: list(body.cc),
    bccRecipients: list(body.bcc),
    replyTo: list(body.replyTo),
    internetMessageId,
  };
  if (body.importance) message.importance = body.importance;
  if (body.headers) message.internetMessageHeaders = Object.entries(body.headers).map(([name, value]) => ({ name, value: String(value) }));
  if (Array.isArray(body.attachments) && body.attachments.length > 0) {
    message.attachments = body.attachments.map((a) => ({
      "@odata.type": "#microsoft.graph.fileAttachment",
      name: a.filename,
      contentType: a.contentType ?? "application/octet-stream",
      contentBytes: a.content,
      ...(a.contentId ? { contentId: a.contentId } : {}),
      isInline: a.inline === true,
    }));
  }
  return JSON.stringify({ message, saveToSentItems });
}

function reply(res, status, obj) {
  const text = JSON.stringify(obj);
  res.writeHead(status, { "content-type": status < 300 ? "application/json" : "application/problem+json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

async function send(req, res) {
  const auth = req.headers.authorization ?? "";
  const key = auth.startsWith("Bearer ") ? auth.slice(7) : "";
  if (!keys.has(createHash("sha256").update(key).digest("hex"))) return reply(res, 401, { code: "unauthorized", status: 401 });
  const chunks = [];
  for await (const c of req) chunks.push(c);
  let body;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    return reply(res, 400, { code: "validation_failed", status: 400 });
  }
  const tenant = tenants.get(body.tenant);
  if (tenant === undefined) return reply(res, 404, { code: "unknown_tenant", status: 404 });
  if (!Array.isArray(body.to) || body.to.length === 0 || !body.subject || (body.text === undefined && body.html === undefined)) {
    return reply(res, 400, { code: "validation_failed", status: 400 });
  }
  const id = randomUUID();
  const internetMessageId = `<${id}@${tenant.sender.slice(tenant.sender.indexOf("@") + 1)}>`;
  const payload = graphMessage(body, tenant.sender, internetMessageId, body.saveToSentItems ?? tenant.saveToSentItems ?? false);
  try {
    const bearer = await token(body.tenant, tenant.tenantId);
    const g = await post(`${graphBaseUrl}/v1.0/users/${encodeURIComponent(tenant.sender)}/sendMail`, { "content-type": "application/json", authorization: `Bearer ${bearer}` }, payload);
    if (g.status !== 202) return reply(res, 502, { code: "upstream", status: 502, graphStatus: g.status, detail: g.body.slice(0, 500) });
  } catch (err) {
    return reply(res, 503, { code: "upstream_unavailable", status: 503, detail: String(err) });
  }
  reply(res, 202, { id, internetMessageId, tenant: body.tenant, sender: tenant.sender, acceptedAt: new Date().toISOString() });
}

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  if (req.method === "POST" && req.url === "/send") {
    send(req, res).catch((err) => reply(res, 500, { code: "internal", status: 500, detail: String(err) }));
  } else if (req.url === "/readyz" || req.url === "/healthz") {
    reply(res, 200, { status: "ok" });
  } else {
    reply(res, 404, { status: 404 });
  }
});
server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? "127.0.0.1", () => {
  const { address, port } = server.address();
  console.log(JSON.stringify({ url: `http://${address}:${port}` }));
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
