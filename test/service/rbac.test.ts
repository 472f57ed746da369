import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { APP_ID, message, standardScenario } from "../support/fixtures.js";
import { startHarness, type Harness } from "../support/harness.js";

/*
 * A tenant on Exchange RBAC for Applications (tenants.<key>.accessModel: rbac): the app holds no
 * Entra Mail.Send permission, only an "Application Mail.Send" role assignment scoped to the
 * sender mailbox. Its tokens carry no roles, and that is how it should be.
 */

const PROSEWARE = { id: "a0000000-0000-4000-8000-000000000008", domain: "proseware.com" };

describe("RBAC for Applications tenants", () => {
  let h: Harness;
  const tokenRequests = (): number => h.emulator.state.requests({ kind: "token", tenant: PROSEWARE.id }).length;

  beforeAll(async () => {
    const scenario = standardScenario();
    scenario.tenants!.push({
      id: PROSEWARE.id,
      domains: [PROSEWARE.domain],
      mailboxes: [{ address: "noreply@proseware.com" }, { address: "billing@proseware.com" }],
      // Service principal without any Entra permission: the Exchange grant below is all it has.
      consents: [{ appId: APP_ID, roles: [] }],
      roleAssignments: [{ appId: APP_ID, role: "Application Mail.Send", mailboxes: ["noreply@proseware.com"] }],
    });
    h = await startHarness({
      scenario,
      // Dropping a token after a refusal would show at once (it is never right for an RBAC tenant).
      permissionRecheckMs: 0,
      configure: (c) => {
        c.tenants.proseware = { tenantId: PROSEWARE.id, sender: "noreply@proseware.com", accessModel: "rbac" };
        // A second tenant key whose sender the management scope does not cover.
        c.tenants["proseware-billing"] = { tenantId: PROSEWARE.id, sender: "billing@proseware.com", accessModel: "rbac" };
      },
    });
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.reset();
  });

  it("when the sender is in the app's management scope, then a token without roles sends and 202 is returned", async () => {
    const res = await h.send(message("proseware", { subject: "scoped send" }));
    expect(res.status, res.text).toBe(202);
    expect(h.emulator.state.messages({ tenant: PROSEWARE.id, subject: "scoped send" })).toHaveLength(1);
  });

  it("when the sender is outside the scope, then 403 policy_denied about the management scope, no advice to grant Mail.Send, and the token is kept", async () => {
    const first = await h.send(message("proseware-billing"));
    const tokensAfterFirst = tokenRequests();
    const again = await h.send(message("proseware-billing"));

    for (const res of [first, again]) {
      expect(res.status).toBe(403);
      expect(res.json).toMatchObject({ code: "policy_denied", graphCode: "ErrorAccessDenied" });
    }
    expect(first.json.detail).toContain("management scope");
    expect(first.json.detail).not.toMatch(/admin consent|Mail\.Send \(Application\)/);
    // The refusal did not throw the token away: the second send asked Entra for nothing. (The
    // first may have asked for nothing either: both tenant keys are this Entra tenant with the
    // same app, whose shared credential already holds the tenant's token when a test before ran.)
    expect(tokensAfterFirst).toBeLessThanOrEqual(1);
    expect(tokenRequests()).toBe(tokensAfterFirst);
    expect(h.emulator.state.messages({ tenant: PROSEWARE.id })).toHaveLength(0);
  });
});
