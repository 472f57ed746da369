import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { TAILSPIN, message } from "../support/fixtures.js";
import { startHarness, type Harness } from "../support/harness.js";

/*
 * A 5xx that arrives after the whole message went to Graph is not "nothing was sent": Graph's
 * front end may have failed while Exchange delivered the mail (public reports show copies after
 * 5xx retries). The emulator stores the message and then fails with each status.
 */

describe("5xx after the message was written", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.reset();
  });

  it.each([500, 502, 504])(
    "when Graph stores the message and answers %i, then 504 outcome_unknown, no retry, and a retry with the same Idempotency-Key replays it without a second message",
    async (status) => {
      h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@tailspin.com", action: "acceptThen504", status, times: 1 });
      const body = message("tailspin", { subject: `ambiguous ${status}` });
      const key = `ambiguous-${status}-${Date.now()}`;

      const first = await h.send(body, { headers: { "idempotency-key": key } });
      const again = await h.send(body, { headers: { "idempotency-key": key } });

      expect(first.status).toBe(504);
      expect(first.json).toMatchObject({ code: "outcome_unknown", retryable: false });
      expect(again.status).toBe(504);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      expect(h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(1);
      expect(h.emulator.state.messages({ tenant: TAILSPIN.id, subject: `ambiguous ${status}` })).toHaveLength(1);
    },
  );

  it("when Graph answers 503 (it took nothing), then 503 upstream_unavailable and the same key can send again", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@tailspin.com", action: "respond", status: 503, times: 1 });
    const body = message("tailspin", { subject: "after a 503" });
    const key = `unavailable-${Date.now()}`;

    const first = await h.send(body, { headers: { "idempotency-key": key } });
    const again = await h.send(body, { headers: { "idempotency-key": key } });

    expect(first.status).toBe(503);
    expect(first.json.graphCode).toBe("UnknownError");
    expect(again.status).toBe(202);
    expect(h.emulator.state.messages({ subject: "after a 503" })).toHaveLength(1);
  });
});
