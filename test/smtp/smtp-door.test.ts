import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { simpleParser } from "mailparser";
import { CONTOSO, TAILSPIN } from "../support/fixtures.js";
import { itWithTool } from "../support/external-tools.js";
import { metricValue } from "../support/harness.js";
import { composeMessage, receivedMime, refusal, startSmtpHarness, type SmtpHarness } from "./smtp-support.js";

/*
 * The SMTP door with a real client: nodemailer over STARTTLS against the service's listener, the
 * service against the Entra/Graph emulator over HTTPS. What Graph receives (the emulator keeps
 * the sendMail body as it arrived) is compared byte for byte with what the client wrote.
 */

// A 1×1 PNG: an inline image the HTML refers to by cid.
const PIXEL = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==", "base64");

describe("SMTP door", () => {
  let s: SmtpHarness;

  beforeAll(async () => {
    // Several tests here fail AUTH on purpose from 127.0.0.1: the lockout is tested in smtp-limits.test.ts.
    s = await startSmtpHarness({ smtp: { authFailures: { max: 100, windowSeconds: 300 } } });
  });
  afterAll(async () => {
    await s?.close();
  });
  beforeEach(() => {
    s.h.emulator.state.reset();
  });

  it("when a client sends plain text over STARTTLS, then Graph receives exactly the client's bytes in MIME form and the reply names the Message-ID", async () => {
    const raw = await composeMessage({
      from: "Contoso <noreply@contoso.com>",
      to: "someone@example.com",
      subject: "Plain text över SMTP",
      text: "Hello from a scanner.\r\n.\r\nA line with only a dot must survive dot-stuffing.",
      messageId: `<plain-${randomBytes(6).toString("hex")}@contoso.com>`,
    });
    const info = await s.transport("contoso", s.h.keys.ops).sendMail({ envelope: { from: "noreply@contoso.com", to: ["someone@example.com"] }, raw });

    expect(info.response).toMatch(/^250 2\.0\.0 accepted by Microsoft Graph as <plain-[0-9a-f]+@contoso\.com>/);
    const [stored] = s.h.emulator.state.messages({ tenant: CONTOSO.id });
    expect(stored?.format).toBe("mime");
    expect(stored?.sender).toBe("noreply@contoso.com");
    expect(receivedMime(stored!).equals(raw)).toBe(true);
    expect(s.h.emulator.state.messages()).toHaveLength(1);
  });

  it("when a client sends HTML with an inline image and attachments, then the MIME structure arrives intact, byte for byte", async () => {
    const pdf = randomBytes(40_000);
    const raw = await composeMessage({
      from: "noreply@contoso.com",
      to: ["Alice <alice@example.com>"],
      cc: "bob@example.com",
      subject: "Invoice 42",
      text: "Your invoice is attached.",
      html: '<p>Your invoice is attached.</p><img src="cid:logo@contoso">',
      attachments: [
        { filename: "logo.png", content: PIXEL, cid: "logo@contoso", contentType: "image/png" },
        { filename: "invoice-42.pdf", content: pdf, contentType: "application/pdf" },
        { filename: "notes.txt", content: "line 1\nline 2\n", contentType: "text/plain" },
      ],
      headers: { "X-Invoice": "42" },
    });
    await s.transport("contoso", s.h.keys.ops).sendMail({ envelope: { from: "noreply@contoso.com", to: ["alice@example.com", "bob@example.com"] }, raw });

    const [stored] = s.h.emulator.state.messages({ tenant: CONTOSO.id });
    const received = receivedMime(stored!);
    expect(received.equals(raw)).toBe(true);
    const parsed = await simpleParser(received, { keepCidLinks: true });
    expect(parsed.html).toContain('src="cid:logo@contoso"');
    expect(parsed.attachments.map((a) => [a.filename, a.contentType, a.size])).toEqual([
      ["logo.png", "image/png", PIXEL.length],
      ["invoice-42.pdf", "application/pdf", pdf.length],
      ["notes.txt", "text/plain", 14],
    ]);
    expect(parsed.attachments[1]!.content.equals(pdf)).toBe(true);
    expect(stored!.attachments.find((a) => a.name === "logo.png")?.isInline).toBe(true);
    expect(stored!.toRecipients).toEqual([{ address: "alice@example.com", name: "Alice" }]);
    expect(stored!.ccRecipients).toEqual([{ address: "bob@example.com" }]);
    expect(stored!.bccRecipients).toEqual([]);
  });

  it("when nodemailer composes the message itself (its ordinary sendMail), then it is delivered with the client's Message-ID", async () => {
    const info = await s.transport("contoso", s.h.keys.ops).sendMail({
      from: "noreply@contoso.com",
      to: "someone@example.com",
      subject: "composed by the client",
      text: "ordinary use",
    });

    const [stored] = s.h.emulator.state.messages({ subject: "composed by the client" });
    expect(stored?.internetMessageId).toBe(info.messageId);
    // The text part ends with the line end nodemailer writes after it.
    expect(stored?.body).toEqual({ contentType: "text", content: expect.stringMatching(/^ordinary use\r?\n?$/) });
  });

  it("when the envelope has recipients the header does not name, then they get a Bcc field of exactly those, and the client's own Bcc field is left out", async () => {
    // A client that writes a Bcc field (RFC 5322 §3.6.3 allows it) must not decide who is blind-copied: the envelope does.
    const raw = Buffer.from(
      [
        "From: noreply@contoso.com",
        "To: visible@example.com",
        "Bcc: not-in-envelope@example.com",
        "Subject: blind copies",
        `Message-ID: <bcc-${randomBytes(6).toString("hex")}@contoso.com>`,
        "",
        "hi",
        "",
      ].join("\r\n"),
    );
    await s
      .transport("contoso", s.h.keys.ops)
      .sendMail({ envelope: { from: "noreply@contoso.com", to: ["visible@example.com", "hidden1@example.com", "Hidden2@Example.com"] }, raw });

    const [stored] = s.h.emulator.state.messages({ subject: "blind copies" });
    expect(stored!.bccRecipients.map((a) => a.address)).toEqual(["hidden1@example.com", "Hidden2@example.com"]);
    const received = receivedMime(stored!).toString("utf8");
    expect(received).not.toContain("not-in-envelope");
    // What Graph gets is the client's message with the client's Bcc field removed and ours in front.
    const withoutClientBcc = raw.toString("utf8").replace(/^Bcc: not-in-envelope@example\.com\r\n/m, "");
    expect(received).toBe(`Bcc: hidden1@example.com,\r\n Hidden2@example.com\r\n${withoutClientBcc}`);
  });

  it("when the To header names an address that is not an envelope recipient, then 554 5.6.0 and nothing is sent", async () => {
    const raw = await composeMessage({ from: "noreply@contoso.com", to: "stranger@example.com", subject: "stranger", text: "x" });
    const r = await refusal(s.transport("contoso", s.h.keys.ops).sendMail({ envelope: { from: "noreply@contoso.com", to: ["someone@example.com"] }, raw }));

    expect(r.responseCode).toBe(554);
    expect(r.response).toMatch(/^554 5\.6\.0 the To or Cc header names an address that is not an envelope recipient/);
    expect(s.h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(0);
  });

  it("when the password is not a known API key, then 535 5.7.8 and the key is neither echoed nor logged", async () => {
    const wrong = `wrong-${randomBytes(12).toString("hex")}`;
    const r = await refusal(s.transport("contoso", wrong).sendMail({ from: "noreply@contoso.com", to: "someone@example.com", subject: "x", text: "x" }));

    expect(r.responseCode).toBe(535);
    expect(r.response).toMatch(/^535 5\.7\.8 /);
    expect(s.h.logs.text).toContain('"msg":"smtp auth failed"');
    expect(s.h.logs.text).not.toContain(wrong);
    expect(s.h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(0);
  });

  it("when the caller's key is valid but not allowed for the tenant named as username, then 535 as for an unknown key", async () => {
    // billing may send for contoso only.
    const r = await refusal(s.transport("tailspin", s.h.keys.billing).sendMail({ from: "noreply@tailspin.com", to: "someone@example.com", subject: "x", text: "x" }));
    const known = await refusal(s.transport("no-such-tenant", s.h.keys.ops).sendMail({ from: "noreply@tailspin.com", to: "someone@example.com", subject: "x", text: "x" }));

    expect(r.responseCode).toBe(535);
    expect(known.responseCode).toBe(535);
    expect(s.h.emulator.state.messages({ tenant: TAILSPIN.id })).toHaveLength(0);
  });

  it("when MAIL FROM is not the tenant's sender, then 550 5.7.1 with the reason, before the message is sent", async () => {
    const r = await refusal(s.transport("contoso", s.h.keys.ops).sendMail({ from: "ceo@contoso.com", to: "someone@example.com", subject: "spoof", text: "x" }));

    expect(r.responseCode).toBe(550);
    expect(r.response).toBe('550 5.7.1 tenant "contoso" sends only from noreply@contoso.com');
    expect(s.h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(0);
  });

  it("when the envelope sender is right but the From header is another address, then 550 5.7.1 and nothing is sent", async () => {
    const raw = await composeMessage({ from: "ceo@contoso.com", to: "someone@example.com", subject: "header spoof", text: "x" });
    const r = await refusal(s.transport("contoso", s.h.keys.ops).sendMail({ envelope: { from: "noreply@contoso.com", to: ["someone@example.com"] }, raw }));

    expect(r.responseCode).toBe(550);
    expect(r.response).toBe('550 5.7.1 the From header must be noreply@contoso.com: tenant "contoso" sends only from it');
    expect(s.h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(0);
  });

  it("when the client tries AUTH before STARTTLS, then it is refused and no credential is checked", async () => {
    const r = await refusal(s.transport("contoso", s.h.keys.ops, { ignoreTLS: true }).sendMail({ from: "noreply@contoso.com", to: "someone@example.com", subject: "x", text: "x" }));

    expect(r.responseCode).toBe(538);
    expect(s.h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(0);
  });

  it("when the message is larger than smtp.maxMessageBytes (3 MiB: Graph's 4 MB in base64), then 552 and Graph is not called", async () => {
    const raw = await composeMessage({
      from: "noreply@contoso.com",
      to: "someone@example.com",
      subject: "too big",
      text: "x",
      attachments: [{ filename: "big.bin", content: randomBytes(2_400_000) }],
    });
    expect(raw.length).toBeGreaterThan(3 * 1024 * 1024);
    const r = await refusal(s.transport("contoso", s.h.keys.ops).sendMail({ envelope: { from: "noreply@contoso.com", to: ["someone@example.com"] }, raw }));

    expect(r.responseCode).toBe(552);
    expect(r.response).toMatch(/^552 5\.3\.4 /);
    expect(s.h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(0);
  });

  it("when Graph refuses the sender mailbox by access policy, then 550 5.7.1 with Graph's reason and the client stops", async () => {
    const r = await refusal(s.transport("fabrikam", s.h.keys.ops).sendMail({ from: "noreply@fabrikam.com", to: "someone@example.com", subject: "x", text: "x" }));

    expect(r.responseCode).toBe(550);
    expect(r.response).toMatch(/^550 5\.7\.1 /);
  });

  it("when a message is sent, then the SMTP metrics count it by tenant and outcome and the log line has the request id but not the body", async () => {
    const marker = `body-${randomBytes(8).toString("hex")}`;
    await s.transport("contoso", s.h.keys.ops).sendMail({ from: "noreply@contoso.com", to: "someone@example.com", subject: "metrics", text: marker });

    const text = await s.h.relay.service.registry.metrics();
    expect(metricValue(text, "noreply_relay_smtp_messages_total", { tenant: "contoso", outcome: "sent" })).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, "noreply_relay_smtp_connections_total", { listener: "submission" })).toBeGreaterThanOrEqual(1);
    const line = s.h.logs.records().find((r) => r.msg === "smtp message" && r.outcome === "sent");
    expect(line).toMatchObject({ caller: "ops", tenant: "contoso", reply: 250, recipients: 1 });
    expect(line?.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(s.h.logs.text).not.toContain(marker);
    expect(s.h.logs.text).not.toContain(s.h.keys.ops);
  });

  itWithTool("promtool", "when /metrics is scraped after SMTP traffic and refusals, then promtool check metrics passes", async () => {
    await s.transport("contoso", s.h.keys.ops).sendMail({ from: "noreply@contoso.com", to: "someone@example.com", subject: "promtool", text: "x" });
    await refusal(s.transport("contoso", "not-a-key").sendMail({ from: "noreply@contoso.com", to: "someone@example.com", subject: "x", text: "x" }));
    const res = await s.h.get("/metrics");
    expect(res.text).toContain("noreply_relay_smtp_replies_total");
    const check = spawnSync("promtool", ["check", "metrics"], { input: res.text, encoding: "utf8" });
    expect(check.stdout + check.stderr).toBe("");
    expect(check.status).toBe(0);
  });
});
