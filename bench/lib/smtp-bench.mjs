// `npm run bench -- --smtp`: the SMTP door against POST /send of the same service process, on
// the same emulator. Closed loop (messages/s, service CPU per message) and fixed rate (latency:
// what SMTP adds over /send at p50/p99), in alternating rounds.
//
// Both sides are keyed, so they do the same work in the relay: an SMTP message's Message-ID is
// its idempotency key, so /send carries a fresh Idempotency-Key per request (keyless /send is
// measured too, as a reference). SMTP clients keep their connections (STARTTLS and AUTH once
// per connection, as a device's or an MTA's pooled connection does); each message is MAIL FROM,
// RCPT TO and DATA, the round trips SMTP has.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import nodemailer from "nodemailer";
import { API_KEY } from "./fixtures.mjs";
import { summarise } from "./load.mjs";

/** Certificate, key and CA for the SMTP listener, made with the emulator's certificate code (through tsx). */
export function makeSmtpTls(root, dir) {
  const certificates = pathToFileURL(join(root, "src", "emulator", "certificates.ts")).href;
  const files = { caFile: join(dir, "smtp-ca.pem"), certFile: join(dir, "smtp-cert.pem"), keyFile: join(dir, "smtp-key.pem") };
  const script = `import(${JSON.stringify(certificates)}).then(async (m) => { const fs = await import("node:fs"); const t = await m.createTlsMaterial();
    fs.writeFileSync(${JSON.stringify(files.caFile)}, t.caPem); fs.writeFileSync(${JSON.stringify(files.certFile)}, t.certPem);
    fs.writeFileSync(${JSON.stringify(files.keyFile)}, t.keyPem, { mode: 0o600 }); })`;
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: root, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`could not make the SMTP certificate: ${r.stderr}`);
  return files;
}

/** The smtp section of the bench service's config: all clients come from 127.0.0.1. */
export function smtpConfig(port, tls) {
  return { enabled: true, port, tls: { certFile: tls.certFile, keyFile: tls.keyFile }, maxConnectionsPerClient: 0, maxConnections: 1024 };
}

/**
 * The small text message of the /send rotation (bench/lib/fixtures.mjs smallTextBody) as a
 * client would write it, with a fresh Message-ID each time.
 */
function smallTextMime(tenant, n, messageId) {
  const code = 100000 + (n % 900000);
  return Buffer.from(
    [
      `From: ${tenant.sender}`,
      `To: customer${n}@example.com`,
      `Subject: Your sign-in code ${code}`,
      `Message-ID: ${messageId}`,
      "Date: Thu, 03 Dec 2026 10:00:00 +0000",
      "MIME-Version: 1.0",
      "Content-Type: text/plain; charset=utf-8",
      "Content-Transfer-Encoding: 7bit",
      "",
      "Hello,",
      "",
      `your sign-in code is ${code}. It expires in 10 minutes.`,
      "If you did not ask for it, you can ignore this message.",
      "",
      "-- The Bench Team",
      "",
    ].join("\r\n"),
  );
}

/** SMTP clients: per tenant a pool of kept connections (username = tenant key, password = the bench key). */
export function createSmtpClients({ port, ca, tenants, connectionsPerTenant, prefix }) {
  const transports = new Map(
    tenants.map((t) => [
      t.key,
      nodemailer.createTransport({
        host: "127.0.0.1",
        port,
        requireTLS: true,
        auth: { user: t.key, pass: API_KEY },
        tls: { ca: [ca], servername: "localhost" },
        pool: true,
        maxConnections: connectionsPerTenant,
        maxMessages: Infinity,
        socketTimeout: 30_000,
      }),
    ]),
  );
  let seq = 0;
  /** One message for tenant `t`; resolves with the latency in ms and the reply code. */
  async function send(t) {
    const n = seq++;
    const raw = smallTextMime(t, n, `<${prefix}-${n}@${t.domain}>`);
    const start = process.hrtime.bigint();
    try {
      const info = await transports.get(t.key).sendMail({ envelope: { from: t.sender, to: [`customer${n}@example.com`] }, raw });
      return { ms: Number(process.hrtime.bigint() - start) / 1e6, code: Number(String(info.response).slice(0, 3)) };
    } catch (err) {
      return { ms: Number(process.hrtime.bigint() - start) / 1e6, code: err.responseCode ?? 0, error: String(err.response ?? err.message) };
    }
  }
  return { send, close: () => transports.forEach((tr) => tr.close()) };
}

/** Closed loop: `connections` workers, each on its tenant's kept connection, sending back to back. */
export async function smtpThroughput(clients, tenants, { connections, durationS }) {
  const latencies = [];
  const codes = {};
  let firstError;
  const end = Date.now() + durationS * 1000;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: connections }, async (_, w) => {
      const t = tenants[w % tenants.length];
      while (Date.now() < end) {
        const r = await clients.send(t);
        codes[r.code] = (codes[r.code] ?? 0) + 1;
        if (r.code === 250) latencies.push(r.ms);
        else firstError ??= r.error;
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { requests: latencies.length + Object.entries(codes).reduce((a, [c, n]) => a + (c === "250" ? 0 : n), 0), ok: latencies.length, rps: latencies.length / seconds, codes, firstError, latency: summarise(latencies) };
}

/** Open loop at `rate` messages/s, round-robin over the tenants; the first `warmupS` seconds are not counted. */
export async function smtpPaced(clients, tenants, { rate, durationS, warmupS = 0 }) {
  const total = Math.round(rate * durationS);
  const warm = Math.round(rate * warmupS);
  const samples = [];
  const codes = {};
  const pending = [];
  const t0 = performance.now();
  let lateMsMax = 0;
  for (let n = 0; n < total; n++) {
    const due = t0 + (n * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    lateMsMax = Math.max(lateMsMax, performance.now() - due);
    pending.push(
      clients.send(tenants[n % tenants.length]).then((r) => {
        if (n < warm) return;
        codes[r.code] = (codes[r.code] ?? 0) + 1;
        if (r.code === 250) samples.push(r.ms);
      }),
    );
  }
  await Promise.all(pending);
  return { sent: total, measured: total - warm, codes, lateMsMax, samples };
}

export { summarise };
