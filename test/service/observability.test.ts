import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { message } from "../support/fixtures.js";
import { itWithTool } from "../support/external-tools.js";
import { metricValue, startHarness, type Harness } from "../support/harness.js";

describe("metrics, logs and probes", () => {
  let h: Harness;
  const sent: string[] = [];

  beforeAll(async () => {
    h = await startHarness();
    // Traffic of every kind, so the scrape and the logs below have something to show.
    const body = message("contoso", {
      subject: "Quarterly statement 7f3a",
      // Not hex: a message id or request id (UUIDs) in the log could contain a hex marker by chance.
      text: "Body text that must never be logged zq9k",
      attachments: [{ filename: "s.txt", contentType: "text/plain", content: Buffer.from("attachment-secret-5d2b").toString("base64") }],
    });
    const ok = await h.send(body);
    sent.push(ok.json.id as string);
    await h.send(message("fabrikam"));
    await h.send(message("litware"));
    await h.send(message("woodgrove"));
    await h.send(message("contoso"), { key: "wrong-key-123" });
    await h.send("{broken");
    await h.get("/nope/123");
    await h.get("/healthz");
  });
  afterAll(async () => {
    await h?.close();
  });

  itWithTool("promtool", "when /metrics is scraped, then promtool check metrics passes", async () => {
    const res = await h.get("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const check = spawnSync("promtool", ["check", "metrics"], { input: res.text, encoding: "utf8" });
    expect(check.stdout + check.stderr).toBe("");
    expect(check.status).toBe(0);
  });

  it("when requests were served, then every contract metric is exported with its labels", async () => {
    const text = (await h.get("/metrics")).text;
    for (const name of [
      "noreply_relay_send_total",
      "noreply_relay_policy_denied_total",
      "noreply_relay_graph_requests_total",
      "noreply_relay_graph_request_duration_seconds",
      "noreply_relay_token_requests_total",
      "noreply_relay_graph_throttled_total",
      "noreply_relay_inflight_sends",
      "noreply_relay_credential_expiry_timestamp_seconds",
      "noreply_relay_http_request_duration_seconds",
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect(metricValue(text, "noreply_relay_send_total", { tenant: "contoso", outcome: "sent" })).toBe(1);
    expect(metricValue(text, "noreply_relay_send_total", { tenant: "_unknown", outcome: "unauthorized" })).toBe(1);
    expect(metricValue(text, "noreply_relay_send_total", { tenant: "_unknown", outcome: "validation_failed" })).toBe(1);
    expect(metricValue(text, "noreply_relay_token_requests_total", { tenant: "litware", outcome: "credential_rejected" })).toBe(1);
    expect(metricValue(text, "noreply_relay_inflight_sends")).toBe(0);
    // 2027-06-30T00:00:00Z from the config's app.credential.expiresAt, for each tenant on that app.
    expect(metricValue(text, "noreply_relay_credential_expiry_timestamp_seconds", { tenant: "contoso", credential: "primary" })).toBe(Date.parse("2027-06-30T00:00:00Z") / 1000);
    expect(text).not.toContain("nodejs_active_handles_total");
  });

  it("when an unknown path is requested, then the http metric's route label is a pattern, never the raw URL", async () => {
    const text = (await h.get("/metrics")).text;
    expect(text).toMatch(/noreply_relay_http_request_duration_seconds_count\{method="GET",route="unmatched",status="404"\} 1/);
    expect(text).toMatch(/noreply_relay_http_request_duration_seconds_count\{method="POST",route="\/send",status="202"\} 2/);
    expect(text).not.toContain("/nope/123");
  });

  it("when requests were served, then each has one log line with requestId, caller, tenant, outcome and Graph request-id", () => {
    const lines = h.logs.requests().filter((l) => l.route === "/send");
    expect(lines).toHaveLength(6);
    const ok = lines.find((l) => l.messageId === sent[0]);
    expect(ok).toMatchObject({ level: 30, caller: "ops", tenant: "contoso", outcome: "sent", status: 202, attempts: 1 });
    expect(ok!.requestId).toEqual(expect.any(String));
    expect(ok!.graphRequestId).toEqual(expect.any(String));
    expect(ok!.durationMs).toEqual(expect.any(Number));
    expect(lines.find((l) => l.outcome === "credential_rejected")).toMatchObject({ level: 50, tenant: "litware", aadsts: "7000215" });
    expect(lines.find((l) => l.outcome === "policy_denied")).toMatchObject({ level: 30, tenant: "fabrikam" });
    expect(lines.find((l) => l.outcome === "unauthorized")!.caller).toBeUndefined();
  });

  it("when anything was logged, then no secret, API key, token or message content appears in the logs", () => {
    const text = h.logs.text;
    expect(h.logs.lines.length).toBeGreaterThan(6);
    for (const s of h.secrets) expect(text).not.toContain(s);
    expect(text).not.toContain("wrong-key-123");
    // JWTs (access tokens, client assertions) start with a base64url JSON header.
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
    expect(text).not.toMatch(/authorization/i);
    for (const s of ["Quarterly statement 7f3a", "zq9k", "attachment-secret-5d2b", Buffer.from("attachment-secret-5d2b").toString("base64"), "someone@example.com"]) {
      expect(text).not.toContain(s);
    }
  });

  it("when the service runs, then /healthz and /readyz answer 200 with JSON", async () => {
    const health = await h.get("/healthz");
    expect(health.status).toBe(200);
    expect(health.json).toEqual({ status: "ok" });
    const ready = await h.get("/readyz");
    expect(ready.status).toBe(200);
    expect(ready.json).toEqual({ status: "ready", store: { type: "memory", status: "ok" } });
  });
});
