import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CONTOSO, message } from "../support/fixtures.js";
import { metricValue, startHarness, type Harness } from "../support/harness.js";

/*
 * Idempotency-Key over HTTP: the service on port 0 with the real adapters, the emulator as
 * Entra and Graph. "Sent" is what the emulator stored, never what the service says.
 */
describe("POST /send with Idempotency-Key", () => {
  let h: Harness;
  const key = (): Record<string, string> => ({ "idempotency-key": `order-${randomUUID()}` });
  const stored = (subject: string) => h.emulator.state.messages({ subject });

  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.reset();
  });

  it("when 20 requests with one key and body arrive at once, then one message is sent and all 20 get its 202", async () => {
    const headers = key();
    const body = message("contoso", { subject: "concurrent replays" });
    // Graph is slow, so the replays surely arrive while the first request is sending.
    h.emulator.state.inject({ kind: "sendMail", action: "latency", fixedMs: 300 });
    const metricsBefore = (await h.get("/metrics")).text;

    const results = await Promise.all(Array.from({ length: 20 }, () => h.send(body, { headers })));

    expect(results.map((r) => r.status)).toEqual(Array(20).fill(202));
    expect(new Set(results.map((r) => r.text)).size).toBe(1);
    expect(results.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(19);
    expect(stored("concurrent replays")).toHaveLength(1);
    expect(h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(1);
    expect(stored("concurrent replays")[0]!.internetMessageId).toBe(results[0]!.json.internetMessageId);
    const metrics = (await h.get("/metrics")).text;
    const duplicates = (t: string) => metricValue(t, "noreply_relay_send_total", { tenant: "contoso", outcome: "duplicate" });
    expect(duplicates(metrics) - duplicates(metricsBefore)).toBe(19);
  });

  it("when a replay arrives while the first request is still sending, then it waits and gets the first answer", async () => {
    const headers = key();
    const body = message("contoso", { subject: "replay waits" });
    h.emulator.state.inject({ kind: "sendMail", action: "latency", fixedMs: 600, times: 1 });
    const first = h.send(body, { headers });
    await new Promise((r) => setTimeout(r, 150));
    const started = Date.now();
    const replay = await h.send(body, { headers });

    expect(replay.status).toBe(202);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(replay.json).toEqual((await first).json);
    expect(stored("replay waits")).toHaveLength(1);
  });

  it("when a key is replayed after the first answer, then the same status and body come back and nothing is sent", async () => {
    const headers = key();
    const body = message("contoso", { subject: "later replay" });
    const first = await h.send(body, { headers });
    // Key order and whitespace do not make a different request.
    const reordered = JSON.stringify(Object.fromEntries(Object.entries(body).reverse()), null, 2);
    const replay = await h.send(reordered, { headers });

    expect(first.status).toBe(202);
    expect(replay.status).toBe(202);
    expect(replay.text).toBe(first.text);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    // The first answer's request id: the log line of the request that sent the message.
    expect(replay.headers.get("x-request-id")).toBe(first.headers.get("x-request-id"));
    expect(stored("later replay")).toHaveLength(1);
    const lines = h.logs.requests().filter((l) => l.requestId === first.headers.get("x-request-id") || l.replayOf === first.headers.get("x-request-id"));
    expect(lines.map((l) => l.outcome)).toEqual(["sent", "duplicate"]);
    expect(lines[1]).toMatchObject({ tenant: "contoso", caller: "ops" });
  });

  it("when the same key comes with a different body, then 409 idempotency_conflict and nothing more is sent", async () => {
    const headers = key();
    expect((await h.send(message("contoso", { subject: "conflict A" }), { headers })).status).toBe(202);
    const res = await h.send(message("contoso", { subject: "conflict B" }), { headers });

    expect(res.status).toBe(409);
    expect(res.json).toMatchObject({ code: "idempotency_conflict", retryable: false });
    expect(stored("conflict")).toHaveLength(1);
  });

  it("when the same key with a different body arrives while the first is still sending, then 409 at once", async () => {
    const headers = key();
    h.emulator.state.inject({ kind: "sendMail", action: "latency", fixedMs: 800, times: 1 });
    const first = h.send(message("contoso", { subject: "busy A" }), { headers });
    await new Promise((r) => setTimeout(r, 150));
    const started = Date.now();
    const res = await h.send(message("contoso", { subject: "busy B" }), { headers });

    expect(res.status).toBe(409);
    expect(Date.now() - started).toBeLessThan(500);
    expect((await first).status).toBe(202);
    expect(stored("busy")).toHaveLength(1);
  });

  it("when the first attempt provably sent nothing (Graph 503), then a retry with the same key sends the message", async () => {
    const headers = key();
    const body = message("contoso", { subject: "retry after 503" });
    h.emulator.state.inject({ kind: "sendMail", action: "respond", status: 503, times: 1 });
    const failed = await h.send(body, { headers });
    const retried = await h.send(body, { headers });

    expect(failed.status).toBe(503);
    expect(retried.status).toBe(202);
    expect(retried.headers.get("idempotent-replayed")).toBeNull();
    expect(stored("retry after 503")).toHaveLength(1);
  });

  it("when the first attempt was refused locally (429 recipient limit) or invalid (400), then the key stays free", async () => {
    const headers = key();
    const invalid = await h.send(message("contoso", { subject: "" }), { headers });
    expect(invalid.status).toBe(400);
    // The corrected request is another body, and still no conflict: the 400 was forgotten.
    const fixed = await h.send(message("contoso", { subject: "fixed after 400" }), { headers });
    expect(fixed.status).toBe(202);
    expect(fixed.headers.get("idempotent-replayed")).toBeNull();
    expect(stored("fixed after 400")).toHaveLength(1);
  });

  it("when Graph may have taken the message (504 outcome_unknown), then a retry with the same key replays the 504 and sends nothing", async () => {
    const headers = key();
    const body = message("contoso", { subject: "unknown outcome" });
    h.emulator.state.inject({ kind: "sendMail", action: "acceptThen504", times: 1 });
    const first = await h.send(body, { headers });
    const retry = await h.send(body, { headers });

    expect(first.status).toBe(504);
    expect(retry.status).toBe(504);
    expect(retry.json).toEqual(first.json);
    expect(retry.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(1);
    expect(h.emulator.state.messages({ tenant: CONTOSO.id })).toHaveLength(1);
  });

  it("when two callers use the same key, then each gets its own message: keys are per caller", async () => {
    const headers = key();
    const body = message("contoso", { subject: "per caller" });
    const ops = await h.send(body, { headers });
    const billing = await h.send(body, { headers, key: h.keys.billing });

    expect([ops.status, billing.status]).toEqual([202, 202]);
    expect(billing.json.id).not.toBe(ops.json.id);
    expect(stored("per caller")).toHaveLength(2);
  });

  it("when the key is longer than 255 characters or not printable ASCII, then 400 naming Idempotency-Key and nothing is sent", async () => {
    for (const bad of ["k".repeat(256), "  ", "naïve"]) {
      const res = await h.send(message("contoso", { subject: "bad key" }), { headers: { "idempotency-key": bad } });
      expect(res.status, bad).toBe(400);
      expect(res.json.errors).toEqual([expect.objectContaining({ path: "Idempotency-Key" })]);
    }
    const longest = await h.send(message("contoso", { subject: "bad key" }), { headers: { "idempotency-key": "k".repeat(255) } });
    expect(longest.status).toBe(202);
    expect(stored("bad key")).toHaveLength(1);
  });
});
