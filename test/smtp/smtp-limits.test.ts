import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CONTOSO } from "../support/fixtures.js";
import { metricValue } from "../support/harness.js";
import { composeMessage, refusal, SmtpWire, startSmtpHarness, type SmtpHarness } from "./smtp-support.js";

/*
 * The SMTP door's limits with real connections: the AUTH lockout per client address, the
 * per-message and per-connection time limits, the per-client connection cap, implicit TLS, the
 * 4 MB Graph limit measured after base64, and AUTH without TLS only when allowInsecureAuth says so.
 * Each test connects from its own loopback address (127.0.0.x), so one test's lockout or open
 * connections do not touch another's.
 */

const MAIL = { from: "noreply@contoso.com", to: "someone@example.com", subject: "limits", text: "x" };

describe("SMTP door limits", () => {
  let s: SmtpHarness;

  beforeAll(async () => {
    s = await startSmtpHarness({
      smtp: {
        implicitTlsPort: 0,
        messageTimeoutSeconds: 1,
        connectionTimeoutSeconds: 2,
        maxConnectionsPerClient: 2,
        // Above what fits Graph once in base64: the 4 MB check after base64 is the one that refuses.
        maxMessageBytes: 6 * 1024 * 1024,
        authFailures: { max: 3, windowSeconds: 60 },
      },
    });
  });
  afterAll(async () => {
    await s?.close();
  });
  beforeEach(() => {
    s.h.emulator.state.reset();
  });

  it("when a client address fails AUTH max times, then its next AUTH gets 421 4.7.0 even with the right key, and another address still gets in", async () => {
    const from = "127.0.0.2";
    for (let i = 0; i < 3; i++) {
      const r = await refusal(s.transport("contoso", `wrong-${i}`, { localAddress: from }).sendMail(MAIL));
      expect(r.responseCode).toBe(535);
    }
    const locked = await refusal(s.transport("contoso", s.h.keys.ops, { localAddress: from }).sendMail(MAIL));
    await s.transport("contoso", s.h.keys.ops, { localAddress: "127.0.0.3" }).sendMail(MAIL);

    expect(locked.responseCode).toBe(421);
    expect(locked.response).toMatch(/^421 4\.7\.0 too many failed AUTH attempts from your address/);
    expect(s.h.emulator.state.messages({ tenant: CONTOSO.id })).toHaveLength(1);
    const text = await s.h.relay.service.registry.metrics();
    expect(metricValue(text, "noreply_relay_smtp_auth_failures_total", { reason: "credentials" })).toBe(3);
    expect(metricValue(text, "noreply_relay_smtp_auth_failures_total", { reason: "locked_out" })).toBe(1);
  });

  it("when a client stalls in the middle of DATA past smtp.messageTimeoutSeconds, then 421 4.4.2, the connection closes and nothing is sent", async () => {
    const { wire } = await SmtpWire.open(s.port, { localAddress: "127.0.0.4" });
    await wire.startTls(s.caPem);
    expect(await wire.auth("contoso", s.h.keys.ops)).toMatch(/^235 /);
    expect(await wire.command("MAIL FROM:<noreply@contoso.com>")).toMatch(/^250 /);
    expect(await wire.command("RCPT TO:<someone@example.com>")).toMatch(/^250 /);
    expect(await wire.command("DATA")).toMatch(/^354 /);
    wire.write("From: noreply@contoso.com\r\nTo: someone@example.com\r\nSubject: slow\r\n\r\nthe first half");

    const reply = await wire.reply();
    await wire.closed();

    expect(reply).toBe("421 4.4.2 the message took longer than 1 s; nothing was sent");
    expect(s.h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(0);
  });

  it("when a connection stays open past smtp.connectionTimeoutSeconds, then 421 4.4.2 and it is closed", async () => {
    const { wire } = await SmtpWire.open(s.port, { localAddress: "127.0.0.5" });
    await wire.startTls(s.caPem);
    expect(await wire.auth("contoso", s.h.keys.ops)).toMatch(/^235 /);
    const started = Date.now();

    const reply = await wire.reply(5_000);
    await wire.closed();

    expect(reply).toBe("421 4.4.2 connection open too long; reconnect");
    expect(Date.now() - started).toBeGreaterThan(1_000);
  });

  it("when a client address has smtp.maxConnectionsPerClient open, then its next connection gets 421 4.7.0 at once", async () => {
    const open = await Promise.all([SmtpWire.open(s.port, { localAddress: "127.0.0.6" }), SmtpWire.open(s.port, { localAddress: "127.0.0.6" })]);
    const third = await SmtpWire.open(s.port, { localAddress: "127.0.0.6" });
    const other = await SmtpWire.open(s.port, { localAddress: "127.0.0.7" });
    try {
      expect(open.map((o) => o.greeting.slice(0, 4))).toEqual(["220 ", "220 "]);
      expect(third.greeting).toBe("421 4.7.0 too many connections from your address");
      await third.wire.closed();
      expect(other.greeting).toMatch(/^220 /);
      const text = await s.h.relay.service.registry.metrics();
      expect(metricValue(text, "noreply_relay_smtp_connections_refused_total", { reason: "per_client" })).toBeGreaterThanOrEqual(1);
    } finally {
      for (const o of [...open, third, other]) o.wire.destroy();
    }
  });

  it("when a client uses implicit TLS (smtp.implicitTlsPort), then the message is delivered", async () => {
    const info = await s
      .transport("contoso", s.h.keys.ops, { port: s.implicitTlsPort!, secure: true, localAddress: "127.0.0.8" })
      .sendMail({ ...MAIL, subject: "implicit TLS" });

    expect(info.response).toMatch(/^250 2\.0\.0 /);
    expect(s.h.emulator.state.messages({ subject: "implicit TLS" })).toHaveLength(1);
    const text = await s.h.relay.service.registry.metrics();
    expect(metricValue(text, "noreply_relay_smtp_connections_total", { listener: "implicit_tls" })).toBeGreaterThanOrEqual(1);
  });

  it("when a message is within smtp.maxMessageBytes but over Graph's 4 MB once in base64, then 552 5.3.4 and Graph is not called", async () => {
    const raw = await composeMessage({ ...MAIL, attachments: [{ filename: "big.bin", content: randomBytes(2_600_000) }] });
    expect(raw.length).toBeLessThan(6 * 1024 * 1024);
    expect(Math.ceil(raw.length / 3) * 4).toBeGreaterThan(4 * 1024 * 1024);

    const r = await refusal(
      s.transport("contoso", s.h.keys.ops, { localAddress: "127.0.0.9" }).sendMail({ envelope: { from: MAIL.from, to: [MAIL.to] }, raw }),
    );

    expect(r.responseCode).toBe(552);
    expect(r.response).toMatch(/^552 5\.3\.4 the message is [\d.]+ MB in base64, as Graph would receive it; Graph accepts at most 4 MB$/);
    expect(s.h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(0);
  });
});

describe("SMTP door without TLS (smtp.allowInsecureAuth, for localhost and tests)", () => {
  let s: SmtpHarness;

  beforeAll(async () => {
    s = await startSmtpHarness({ smtp: { tls: undefined, allowInsecureAuth: true } });
  });
  afterAll(async () => {
    await s?.close();
  });

  it("when allowInsecureAuth is set and there is no certificate, then STARTTLS is not offered and AUTH in clear text delivers", async () => {
    const { wire } = await SmtpWire.open(s.port);
    const ehlo = await wire.command("EHLO test.example");
    wire.destroy();
    const info = await s.transport("contoso", s.h.keys.ops, { ignoreTLS: true }).sendMail({ ...MAIL, subject: `clear ${randomBytes(4).toString("hex")}` });

    expect(ehlo).toMatch(/AUTH PLAIN LOGIN/);
    expect(ehlo).not.toMatch(/STARTTLS/);
    expect(info.response).toMatch(/^250 2\.0\.0 /);
    expect(s.h.emulator.state.messages({ tenant: CONTOSO.id })).toHaveLength(1);
  });
});

