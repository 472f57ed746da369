// Deterministic bench fixtures: tenants, the emulator scenario, the service config,
// the API key, and the /send bodies of the two workloads (small text, HTML + 100 KB attachment).
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export const APP_CLIENT_ID = "b3c4e5f6-0000-4000-8000-00000000bec0";
export const APP_SECRET = "bench-client-secret-not-a-real-one";
export const API_KEY = "nrr_bench_0123456789abcdef0123456789abcdef";
export const API_KEY_SHA256 = createHash("sha256").update(API_KEY).digest("hex");

/** Tenant `i` of the bench: key, Entra tenant id (GUID), domain and the one sender mailbox. */
export function benchTenant(i) {
  const hex = i.toString(16).padStart(12, "0");
  const domain = `t${i}.bench.example`;
  return {
    key: `t${i}`,
    tenantId: `0b0b0b0b-0000-4000-8000-${hex}`,
    domain,
    sender: `noreply@${domain}`,
  };
}

export function benchTenants(n) {
  return Array.from({ length: n }, (_, i) => benchTenant(i));
}

/** Emulator scenario: every tenant has its mailbox and consents Mail.Send for the bench app. */
export function buildScenario(tenants, { latencyMs }) {
  return {
    tokenLifetimeSeconds: 3599,
    throttling: false,
    latency: { fixedMs: latencyMs, jitterMs: 0 },
    apps: [{ clientId: APP_CLIENT_ID, displayName: "noreply-relay bench", secrets: [{ value: APP_SECRET }] }],
    tenants: tenants.map((t) => ({
      id: t.tenantId,
      displayName: `Bench tenant ${t.key}`,
      domains: [t.domain],
      mailboxes: [{ address: t.sender }],
      consents: [{ appId: APP_CLIENT_ID, roles: ["Mail.Send"] }],
    })),
  };
}

/**
 * Service config (docs/configuration.md), written as JSON (a YAML subset) so that the
 * baseline can read the same file with JSON.parse.
 *
 * `limits` are raised on purpose in the throughput config: the bench measures the relay's
 * own cost per request, not Exchange's per-mailbox limits (4 in flight, 10,000 recipients a
 * day), which would otherwise cap the service at 4 × tenants / latency and not the baseline.
 */
export function buildConfig(tenants, { emulatorUrl, caFile, secretFile, raiseLimits }) {
  const tenantEntries = {};
  for (const t of tenants) {
    tenantEntries[t.key] = {
      tenantId: t.tenantId,
      sender: t.sender,
      ...(raiseLimits ? { limits: { maxConcurrency: 64, recipientsPerDay: 1_000_000, maxQueue: 10_000 } } : {}),
    };
  }
  return {
    cloud: { authorityHost: emulatorUrl, graphBaseUrl: emulatorUrl },
    tls: { caFile },
    app: { clientId: APP_CLIENT_ID, credential: { type: "secret", secretFile } },
    tenants: tenantEntries,
    callers: { bench: { keySha256: API_KEY_SHA256, tenants: ["*"] } },
  };
}

export function writeJson(dir, name, value) {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(value));
  return file;
}

/** Small deterministic PRNG (mulberry32) so every run sends the same sequence. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ATTACHMENT_BYTES = 100 * 1024;
let attachmentBase64;
function attachment() {
  if (attachmentBase64 === undefined) {
    const rnd = prng(42);
    const buf = Buffer.alloc(ATTACHMENT_BYTES);
    for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(rnd() * 256);
    attachmentBase64 = buf.toString("base64");
  }
  return attachmentBase64;
}

/** A transactional plain-text mail, ~0.5 KB of JSON. */
export function smallTextBody(t, n) {
  return {
    tenant: t.key,
    to: [`customer${n}@example.com`],
    subject: `Your sign-in code ${100000 + (n % 900000)}`,
    text:
      `Hello,\n\nyour sign-in code is ${100000 + (n % 900000)}. It expires in 10 minutes.\n` +
      "If you did not ask for it, you can ignore this message.\n\n-- The Bench Team",
  };
}

/** An HTML invoice with a 100 KB PDF attachment (base64, ~137 KB of JSON). */
export function htmlAttachmentBody(t, n) {
  const rows = Array.from({ length: 12 }, (_, i) => `<tr><td>Item ${i + 1}</td><td>${(i + 1) * 7}.00 EUR</td></tr>`).join("");
  return {
    tenant: t.key,
    to: [{ address: `billing${n}@example.com`, name: `Customer ${n}` }],
    cc: [`accounts${n}@example.com`],
    subject: `Invoice INV-${20000 + n}`,
    html: `<html><body><h1>Invoice INV-${20000 + n}</h1><p>Thank you for your order.</p><table>${rows}</table></body></html>`,
    text: `Invoice INV-${20000 + n} is attached.`,
    attachments: [{ filename: `INV-${20000 + n}.pdf`, contentType: "application/pdf", content: attachment() }],
    headers: { "X-Order-Id": String(20000 + n) },
  };
}

/**
 * The request rotation: each tenant gets 4 small mails for 1 attachment mail (80/20),
 * shuffled with a fixed seed so consecutive requests mix tenants and kinds. Capped at
 * `maxEntries` so that autocannon's pre-built request buffers stay small with many tenants.
 */
export function buildRotation(tenants, { maxEntries = 100, attachmentShare = 0.2 } = {}) {
  const perTenant = 5;
  const total = Math.min(maxEntries, tenants.length * perTenant);
  const slots = [];
  for (let j = 0; j < total; j++) {
    const tenant = tenants[j % tenants.length];
    const kind = Math.floor(j / tenants.length) % perTenant < perTenant * attachmentShare ? "attachment" : "small";
    slots.push({ tenant, kind });
  }
  // When the cap cut the list short, keep the 80/20 share exact.
  const wantAttach = Math.round(total * attachmentShare);
  let haveAttach = slots.filter((s) => s.kind === "attachment").length;
  for (let j = slots.length - 1; j >= 0 && haveAttach !== wantAttach; j--) {
    if (haveAttach < wantAttach && slots[j].kind === "small") {
      slots[j].kind = "attachment";
      haveAttach++;
    } else if (haveAttach > wantAttach && slots[j].kind === "attachment") {
      slots[j].kind = "small";
      haveAttach--;
    }
  }
  const rnd = prng(7);
  for (let i = slots.length - 1; i > 0; i--) {
    const k = Math.floor(rnd() * (i + 1));
    [slots[i], slots[k]] = [slots[k], slots[i]];
  }
  return slots.map((s, n) => ({
    kind: s.kind,
    tenant: s.tenant.key,
    body: JSON.stringify(s.kind === "attachment" ? htmlAttachmentBody(s.tenant, n) : smallTextBody(s.tenant, n)),
  }));
}

export const SEND_HEADERS = {
  "content-type": "application/json",
  authorization: `Bearer ${API_KEY}`,
};
