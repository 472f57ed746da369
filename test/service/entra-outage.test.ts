import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { TAILSPIN, message } from "../support/fixtures.js";
import { metricValue, startHarness, type Harness } from "../support/harness.js";

/*
 * Entra ID on its bad day: the token endpoint answers what Entra really sends during an incident
 * (503 temporarily_unavailable, AADSTS90033; the emulator's token-endpoint fault body). That is
 * an outage, not a bad credential: retryable, never remembered as a rejection, and over as soon
 * as Entra is back, not a minute later when MSAL's own throttle would let go.
 */

type Row = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- assertions read arbitrary members

describe("Entra ID outage", () => {
  let h: Harness;
  const tokenRequests = (): number => h.emulator.state.requests({ kind: "token", tenant: TAILSPIN.id }).length;

  beforeAll(async () => {
    h = await startHarness({ logLevel: "info" });
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.reset();
  });

  it("when Entra answers 503 AADSTS90033, then sends get 503 upstream_unavailable with Retry-After, and nothing is remembered as a credential rejection", async () => {
    h.emulator.state.inject({ kind: "token", tenant: TAILSPIN.id, action: "respond", status: 503 });

    const first = await h.send(message("tailspin"));
    const second = await h.send(message("tailspin"));

    for (const res of [first, second]) {
      expect(res.status).toBe(503);
      expect(res.json).toMatchObject({ code: "upstream_unavailable", retryable: true, aadsts: "90033" });
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    }
    expect(first.json.detail).toContain("not a problem with the credential");
    const row = ((await h.get("/tenants", { key: h.keys.admin })).json.tenants as Row[]).find((t) => t.tenant === "tailspin")!;
    expect(row.credentialRejectedUntil).toBeUndefined();
    expect(row.lastProblem).toMatchObject({ code: "upstream_unavailable" });
    const metrics = (await h.get("/metrics")).text;
    expect(metricValue(metrics, "noreply_relay_token_requests_total", { tenant: "tailspin", outcome: "credential_rejected" })).toBe(0);
    expect(metricValue(metrics, "noreply_relay_token_requests_total", { tenant: "tailspin", outcome: "upstream_unavailable" })).toBeGreaterThan(0);
    // The second send was answered from the short outage hold, not by asking Entra again.
    expect(tokenRequests()).toBeLessThanOrEqual(2);
  });

  it("when Entra recovers, then a send after the Retry-After it was told goes out (no minute-long stall from MSAL's throttle)", async () => {
    const outage = h.emulator.state.inject({ kind: "token", tenant: TAILSPIN.id, action: "respond", status: 503 });
    const failed = await h.send(message("tailspin", { subject: "during the outage" }));
    expect(failed.status).toBe(503);
    const retryAfter = Number(failed.headers.get("retry-after"));
    expect(retryAfter).toBeLessThanOrEqual(5);

    outage.clear();
    const recovered = Date.now();
    await new Promise((r) => setTimeout(r, retryAfter * 1000));
    const res = await h.send(message("tailspin", { subject: "after the outage" }));

    expect(res.status, res.text).toBe(202);
    expect(Date.now() - recovered).toBeLessThan(8_000);
    expect(h.emulator.state.messages({ tenant: TAILSPIN.id, subject: "after the outage" })).toHaveLength(1);
  });
});
