import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CONTOSO, message, standardScenario } from "../support/fixtures.js";
import { startHarness, type Harness } from "../support/harness.js";

/*
 * Graph's Retry-After as it really comes (decimals, long values) through the service: one answer
 * can hold a mailbox back for at most server.maxRetryAfterSeconds, and an operator can end the
 * hold with SIGHUP or a reload that changes the tenant.
 */

describe("Retry-After from Graph, through the service", () => {
  let h: Harness;
  const sendMails = (mailbox: string): number => h.emulator.state.requests({ kind: "sendMail", mailbox }).length;

  beforeAll(async () => {
    const scenario = standardScenario();
    for (const local of ["capped", "hup", "changed"]) scenario.tenants![0]!.mailboxes!.push({ address: `${local}@contoso.com` });
    h = await startHarness({
      scenario,
      configure: (c) => {
        c.server!.maxRetryAfterSeconds = 60;
        for (const local of ["capped", "hup", "changed"]) c.tenants[local] = { tenantId: CONTOSO.id, sender: `${local}@contoso.com` };
      },
    });
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.reset();
  });

  it("when Graph asks a mailbox to wait an hour, then the caller is told server.maxRetryAfterSeconds, and so are later sends held back without asking Graph", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "capped@contoso.com", action: "respond", status: 429, retryAfter: 3600, times: 1 });

    const first = await h.send(message("capped"));
    const later = await h.send(message("capped"));

    expect(first.status).toBe(429);
    expect(first.headers.get("retry-after")).toBe("60");
    expect(later.status).toBe(429);
    expect(Number(later.headers.get("retry-after"))).toBeLessThanOrEqual(60);
    expect(sendMails("capped@contoso.com")).toBe(1);
  });

  it("when a mailbox is held back by Graph's Retry-After and SIGHUP comes, then the next send goes to Graph at once", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "hup@contoso.com", action: "respond", status: 429, retryAfter: 30.5, times: 1 });
    const throttled = await h.send(message("hup"));
    expect(throttled.headers.get("retry-after")).toBe("31");
    expect((await h.send(message("hup"))).status).toBe(429);
    expect(sendMails("hup@contoso.com")).toBe(1);

    h.reload(); // what SIGHUP does
    const res = await h.send(message("hup", { subject: "after SIGHUP" }));

    expect(res.status, res.text).toBe(202);
    expect(sendMails("hup@contoso.com")).toBe(2);
  });

  it("when a reload changes a held-back tenant, then its mailbox's throttle memory is cleared", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "changed@contoso.com", action: "respond", status: 429, retryAfter: 45, times: 1 });
    expect((await h.send(message("changed"))).status).toBe(429);
    expect((await h.send(message("changed"))).status).toBe(429);

    await h.rewriteConfig((c) => {
      c.tenants.changed!.displayName = "Changed Ltd";
    });
    expect(h.reload()).toBe("success");
    const res = await h.send(message("changed", { subject: "after the reload" }));

    expect(res.status, res.text).toBe(202);
  });
});
