import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { APP_ID, CONTOSO, message, standardScenario } from "../support/fixtures.js";
import { startHarness, type Harness } from "../support/harness.js";

/*
 * Graph's refusals read by their code, not only their status (issue 12): each scenario is the
 * emulator's model of the real cause, answered with Graph's documented status and text.
 */

/** A tenant with Entra ID but no Exchange Online. */
const NOD = { id: "a0000000-0000-4000-8000-000000000009", domain: "nodpublishers.com" };

describe("Graph refusals by code", () => {
  let h: Harness;
  const sendMails = (mailbox: string): number => h.emulator.state.requests({ kind: "sendMail", mailbox }).length;

  beforeAll(async () => {
    const scenario = standardScenario();
    scenario.tenants![0]!.mailboxes!.push(
      { address: "full@contoso.com", state: "full" },
      { address: "spammy@contoso.com", state: "sendingBlocked" },
      { address: "busy@contoso.com" },
      { address: "sendas@contoso.com" },
      { address: "plain@contoso.com" },
    );
    scenario.tenants!.push({
      id: NOD.id,
      domains: [NOD.domain],
      mailboxes: [{ address: "noreply@nodpublishers.com" }],
      consents: [{ appId: APP_ID, roles: ["Mail.Send"] }],
      exchangeOnline: false,
    });
    // Exchange's recipient rate limit, small enough to reach: 3 recipients a day per mailbox.
    scenario.throttling = { mailboxConcurrency: 0, requestsPerWindow: 0, recipientsPerDay: 3 };
    h = await startHarness({
      scenario,
      configure: (c) => {
        for (const local of ["full", "spammy", "busy", "sendas", "plain"]) c.tenants[local] = { tenantId: CONTOSO.id, sender: `${local}@contoso.com` };
        c.tenants.nod = { tenantId: NOD.id, sender: "noreply@nodpublishers.com" };
      },
    });
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.clearFaults();
  });

  it("when Exchange refuses to send as the address (403 ErrorSendAsDenied), then 403 sender_not_allowed", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "sendas@contoso.com", action: "respond", graphError: "sendAsDenied", times: 1 });
    const res = await h.send(message("sendas"));
    expect(res.status).toBe(403);
    expect(res.json).toMatchObject({ code: "sender_not_allowed", graphCode: "ErrorSendAsDenied" });
    expect(res.json.detail).toContain("Send As");
  });

  it("when the sender mailbox is full (ErrorQuotaExceeded), then 502 mailbox_unavailable saying so, not permission_missing", async () => {
    const res = await h.send(message("full"));
    expect(res.status).toBe(502);
    expect(res.json).toMatchObject({ code: "mailbox_unavailable", graphCode: "ErrorQuotaExceeded" });
    expect(res.json.detail).toContain("full@contoso.com is full");
  });

  it("when Exchange blocked the sender (ErrorMessageSubmissionBlocked), then 502 mailbox_unavailable naming the blocked sender", async () => {
    const res = await h.send(message("spammy"));
    expect(res.status).toBe(502);
    expect(res.json).toMatchObject({ code: "mailbox_unavailable", graphCode: "ErrorMessageSubmissionBlocked" });
    expect(res.json.detail).toContain("blocked the sender mailbox spammy@contoso.com");
  });

  it("when the tenant has no Exchange Online (401 OrganizationFromTenantGuidNotFound), then 502 mailbox_unavailable without a wasted token refresh", async () => {
    const res = await h.send(message("nod"));
    expect(res.status).toBe(502);
    expect(res.json).toMatchObject({ code: "mailbox_unavailable", graphCode: "OrganizationFromTenantGuidNotFound" });
    expect(res.json.detail).toContain("no Exchange Online");
    expect(h.emulator.state.requests({ kind: "token", tenant: NOD.id })).toHaveLength(1);
    expect(sendMails("noreply@nodpublishers.com")).toBe(1);
  });

  it("when Exchange's daily submission quota runs out (ErrorSubmissionQuotaExceeded), then 429 with a day-long Retry-After at once, and the mailbox's later sends are refused without asking Graph", async () => {
    expect((await h.send(message("busy", { to: ["a@example.com", "b@example.com"] }))).status).toBe(202);

    const refused = await h.send(message("busy", { to: ["c@example.com", "d@example.com"] }));
    const later = await h.send(message("busy", { to: ["e@example.com"] }));

    expect(refused.status).toBe(429);
    expect(refused.json).toMatchObject({ code: "rate_limited", graphCode: "ErrorSubmissionQuotaExceeded" });
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(23 * 3600);
    expect(later.status).toBe(429);
    expect(Number(later.headers.get("retry-after"))).toBeGreaterThan(23 * 3600);
    // One 202 and one refusal reached Graph; the third send never did, and nothing was retried.
    expect(sendMails("busy@contoso.com")).toBe(2);
  });

  it("when Graph refuses the request itself with a 400, then 400 validation_failed lists the message as the field at fault (the answer conforms to openapi.yaml)", async () => {
    h.emulator.state.inject({
      kind: "sendMail",
      mailbox: "plain@contoso.com",
      action: "respond",
      status: 400,
      body: { error: { code: "ErrorInvalidRequest", message: "The request is invalid." } },
      times: 1,
    });
    const res = await h.send(message("plain"));
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ code: "validation_failed", graphCode: "ErrorInvalidRequest" });
    expect(res.json.errors).toEqual([{ path: "(message)", message: "refused by Microsoft Graph (ErrorInvalidRequest)" }]);
  });
});
