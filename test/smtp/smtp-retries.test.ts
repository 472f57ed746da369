import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { TAILSPIN } from "../support/fixtures.js";
import { metricValue } from "../support/harness.js";
import { composeMessage, refusal, startSmtpHarness, type SmtpHarness } from "./smtp-support.js";

/*
 * What an SMTP client does with the door's replies: a 4xx makes it keep the message and send
 * the same bytes again later (as an MTA's queue or a device's retry does); the door must then
 * deliver exactly once. The resend here is the client sending the very message it built once.
 */

const ENVELOPE = { from: "noreply@tailspin.com", to: ["someone@example.com"] };

function tailspinMessage(subject: string): Promise<Buffer> {
  return composeMessage({
    from: "noreply@tailspin.com",
    to: "someone@example.com",
    subject,
    text: "a message a client will retry",
    messageId: `<${randomBytes(8).toString("hex")}@tailspin.com>`,
  });
}

describe("SMTP replies that make clients retry, and the retries", () => {
  let s: SmtpHarness;

  beforeAll(async () => {
    // A Graph Retry-After of 3 s does not fit a 2 s deadline: the door answers instead of waiting.
    s = await startSmtpHarness({
      configure: (config) => {
        config.server = { ...config.server, requestDeadlineSeconds: 2, maxRetryAfterSeconds: 3 };
      },
    });
  });
  afterAll(async () => {
    await s?.close();
  });
  beforeEach(() => {
    s.h.emulator.state.reset();
    s.h.relay.clearThrottles();
  });

  it("when Graph throttles the mailbox, then 451 4.7.0 with the wait, and the client's resend after it is delivered exactly once", async () => {
    s.h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@tailspin.com", action: "respond", status: 429, retryAfter: 3, times: 1 });
    const raw = await tailspinMessage("throttled");
    const client = s.transport("tailspin", s.h.keys.ops);

    const first = await refusal(client.sendMail({ envelope: ENVELOPE, raw }));
    expect(first.responseCode).toBe(451);
    expect(first.response).toMatch(/^451 4\.7\.0 .*\(retry after 3 s\)$/);
    expect(s.h.emulator.state.messages({ tenant: TAILSPIN.id })).toHaveLength(0);

    await sleep(3_100);
    const again = await client.sendMail({ envelope: ENVELOPE, raw });

    expect(again.response).toMatch(/^250 2\.0\.0 accepted by Microsoft Graph/);
    expect(s.h.emulator.state.messages({ tenant: TAILSPIN.id })).toHaveLength(1);
    expect(s.h.emulator.state.requests({ kind: "sendMail" }).map((r) => r.status)).toEqual([429, 202]);
  });

  it("when Graph takes the message and then fails (outcome unknown), then 451 4.4.0, and the client's resend is answered 250 without a second message", async () => {
    s.h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@tailspin.com", action: "acceptThen504", status: 504, times: 1 });
    const raw = await tailspinMessage("outcome unknown");
    const client = s.transport("tailspin", s.h.keys.ops);

    const first = await refusal(client.sendMail({ envelope: ENVELOPE, raw }));
    const again = await client.sendMail({ envelope: ENVELOPE, raw });

    expect(first.responseCode).toBe(451);
    expect(first.response).toMatch(/^451 4\.4\.0 .*a resend of this message \(same Message-ID\) is not sent again/);
    expect(again.response).toMatch(/^250 2\.0\.0 <[0-9a-f]+@tailspin\.com> was handed to Microsoft Graph before \(request [0-9a-f-]{36}\), which did not confirm it; not sent again$/);
    expect(s.h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(1);
    expect(s.h.emulator.state.messages({ tenant: TAILSPIN.id })).toHaveLength(1);
    const text = await s.h.relay.service.registry.metrics();
    expect(metricValue(text, "noreply_relay_smtp_messages_total", { tenant: "tailspin", outcome: "duplicate" })).toBeGreaterThanOrEqual(1);
  });

  it("when a client resends a message that was accepted (it lost the 250), then 250 again and still one message", async () => {
    const raw = await tailspinMessage("lost reply");
    const client = s.transport("tailspin", s.h.keys.ops);

    await client.sendMail({ envelope: ENVELOPE, raw });
    const again = await client.sendMail({ envelope: ENVELOPE, raw });

    expect(again.response).toMatch(/was accepted before \(request [0-9a-f-]{36}\); not sent again$/);
    expect(s.h.emulator.state.messages({ tenant: TAILSPIN.id })).toHaveLength(1);
  });

  it("when another caller sends a message with the same Message-ID, then it is its own message (the key is per caller)", async () => {
    const raw = await tailspinMessage("two callers");

    await s.transport("tailspin", s.h.keys.ops).sendMail({ envelope: ENVELOPE, raw });
    await s.transport("tailspin", s.h.keys.admin).sendMail({ envelope: ENVELOPE, raw });

    expect(s.h.emulator.state.messages({ tenant: TAILSPIN.id })).toHaveLength(2);
  });

  it("when a Message-ID is reused for a different message, then 554 5.6.0 and the second is not sent", async () => {
    const messageId = `<${randomBytes(8).toString("hex")}@tailspin.com>`;
    const client = s.transport("tailspin", s.h.keys.ops);
    const one = await composeMessage({ from: "noreply@tailspin.com", to: "someone@example.com", subject: "first", text: "one", messageId });
    const two = await composeMessage({ from: "noreply@tailspin.com", to: "someone@example.com", subject: "second", text: "two", messageId });

    await client.sendMail({ envelope: ENVELOPE, raw: one });
    const r = await refusal(client.sendMail({ envelope: ENVELOPE, raw: two }));

    expect(r.responseCode).toBe(554);
    expect(r.response).toMatch(/^554 5\.6\.0 Idempotency-Key .* was used before with a different body$/);
    expect(s.h.emulator.state.messages({ tenant: TAILSPIN.id }).map((m) => m.subject)).toEqual(["first"]);
  });

  it("when Graph is unavailable (503), then 451 4.4.1 and the resend delivers once", async () => {
    s.h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@tailspin.com", action: "respond", status: 503, times: 1 });
    const raw = await tailspinMessage("unavailable");
    const client = s.transport("tailspin", s.h.keys.ops);

    const first = await refusal(client.sendMail({ envelope: ENVELOPE, raw }));
    await client.sendMail({ envelope: ENVELOPE, raw });

    expect(first.response).toMatch(/^451 4\.4\.1 /);
    expect(s.h.emulator.state.messages({ tenant: TAILSPIN.id })).toHaveLength(1);
  });
});
