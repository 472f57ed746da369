import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { TAILSPIN, WOODGROVE, message } from "../support/fixtures.js";
import { metricValue, startHarness, type Harness } from "../support/harness.js";

describe("POST /send: tokens, throttling and ambiguous answers", () => {
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

  it("when 100 messages are sent to one tenant, then Entra is asked for exactly one token", async () => {
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => h.send(message("tailspin", { subject: `n${i}` }))));
    expect(results.map((r) => r.status)).toEqual(Array(100).fill(202));
    expect(h.emulator.state.messages({ tenant: TAILSPIN.id })).toHaveLength(100);
    expect(h.emulator.state.requests({ kind: "token" })).toHaveLength(1);
    const metrics = (await h.get("/metrics")).text;
    expect(metricValue(metrics, "noreply_relay_token_requests_total", { tenant: "tailspin", outcome: "success" })).toBe(1);
    expect(metricValue(metrics, "noreply_relay_send_total", { tenant: "tailspin", outcome: "sent" })).toBe(100);
    expect(metricValue(metrics, "noreply_relay_graph_requests_total", { tenant: "tailspin", status: "202" })).toBe(100);
  });

  it("when Graph answers 429 with Retry-After 1, then the service waits and the send succeeds with 202", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@contoso.com", action: "respond", status: 429, retryAfter: 1, times: 1 });
    const started = Date.now();
    const res = await h.send(message("contoso"));
    expect(res.status).toBe(202);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(h.emulator.state.requests({ kind: "sendMail" }).map((r) => r.status)).toEqual([429, 202]);
    expect(h.emulator.state.messages()).toHaveLength(1);
    const metrics = (await h.get("/metrics")).text;
    expect(metricValue(metrics, "noreply_relay_graph_throttled_total", { tenant: "contoso" })).toBe(1);
    const line = h.logs.requests().find((l) => l.messageId === res.json.id);
    expect(line).toMatchObject({ outcome: "sent", attempts: 2, tenant: "contoso", caller: "ops" });
  });

  it("when Graph stores the message but answers 504, then outcome_unknown, no retry, and exactly one message exists", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@contoso.com", action: "acceptThen504", times: 1 });
    const res = await h.send(message("contoso"));
    expect(res.status).toBe(504);
    expect(res.json).toMatchObject({ code: "outcome_unknown", retryable: false });
    expect(res.headers.get("retry-after")).toBeNull();
    // Wait a moment: a retry, if there were one, would arrive now.
    await new Promise((r) => setTimeout(r, 200));
    expect(h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(1);
    expect(h.emulator.state.messages()).toHaveLength(1);
    const line = h.logs.requests().find((l) => l.requestId === res.json.requestId);
    expect(line).toMatchObject({ level: 50, outcome: "outcome_unknown", status: 504 });
  });

  it("when the primary secret has expired, then the secondary secret takes over and the message is sent", async () => {
    const res = await h.send(message("woodgrove"));
    expect(res.status).toBe(202);
    expect(h.emulator.state.messages({ tenant: WOODGROVE.id })).toHaveLength(1);
    const tokens = h.emulator.state.requests({ kind: "token", tenant: WOODGROVE.id });
    expect(tokens.map((t) => t.errorCode)).toEqual(["AADSTS7000222", undefined]);
    const metrics = (await h.get("/metrics")).text;
    expect(metricValue(metrics, "noreply_relay_credential_fallback_total", { tenant: "woodgrove" })).toBe(1);
  });
});
