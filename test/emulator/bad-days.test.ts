import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ScenarioInput } from "../../src/emulator/scenario.js";
import { startEmulator, type Emulator } from "../../src/emulator/start-emulator.js";
import { client, jwtPayload, mail } from "./fixtures.js";

/*
 * The emulator on Microsoft 365's bad days (issue 12): behaviours a client must meet before it
 * meets them in production. Each answer's source is next to it in src/emulator.
 */

const TENANT = "b0000000-0000-4000-8000-000000000001";
/** Sends through Exchange RBAC for Applications only: a scoped role assignment, no Entra role. */
const RBAC_APP = "b1111111-1111-4111-8111-111111111111";
/** Has the Entra Mail.Send application permission (tenant-wide). */
const ENTRA_APP = "b2222222-2222-4222-8222-222222222222";
const SECRET = "bad-days-secret";

function scenario(): ScenarioInput {
  return {
    throttling: false,
    tenants: [
      {
        id: TENANT,
        domains: ["proseware.com"],
        mailboxes: [{ address: "noreply@proseware.com" }, { address: "ceo@proseware.com" }],
        consents: [
          { appId: RBAC_APP, roles: [] },
          { appId: ENTRA_APP, roles: ["Mail.Send"] },
        ],
        roleAssignments: [{ appId: RBAC_APP, role: "Application Mail.Send", mailboxes: ["noreply@proseware.com"] }],
      },
    ],
    apps: [
      { clientId: RBAC_APP, secrets: [{ value: SECRET }] },
      { clientId: ENTRA_APP, secrets: [{ value: SECRET }] },
    ],
  };
}

let emu: Emulator;
let http: ReturnType<typeof client>;

beforeAll(async () => {
  emu = await startEmulator({ scenario: scenario() });
  http = client(emu);
});
afterAll(async () => {
  await http.close();
  await emu.close();
});
afterEach(() => {
  emu.state.reset({ reloadScenario: true });
});

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  return ((await res.json()) as { error: { code: string; message: string } }).error;
}

describe("RBAC for Applications", () => {
  it("when the app's only grant is an Exchange role assignment, then its token has no roles and it still sends from a mailbox in the scope", async () => {
    const token = await http.accessToken(TENANT, RBAC_APP, SECRET);
    expect(jwtPayload(token).roles).toBeUndefined();

    const res = await http.sendMail("noreply@proseware.com", token, mail({ subject: "rbac in scope" }));

    expect(res.status).toBe(202);
    expect(emu.state.messages({ subject: "rbac in scope" })).toHaveLength(1);
  });

  it("when the mailbox is outside the app's management scope, then 403 ErrorAccessDenied and nothing is sent", async () => {
    const token = await http.accessToken(TENANT, RBAC_APP, SECRET);
    const res = await http.sendMail("ceo@proseware.com", token, mail({ subject: "rbac out of scope" }));

    expect(res.status).toBe(403);
    expect(await errorOf(res)).toMatchObject({ code: "ErrorAccessDenied" });
    expect(emu.state.messages({ subject: "rbac out of scope" })).toHaveLength(0);
  });

  it("when the app also holds the Entra Mail.Send permission, then the grants add up and any mailbox works (why RBAC tenants must remove it)", async () => {
    emu.state.patchScenario({
      tenants: [{ ...scenario().tenants![0]!, consents: [{ appId: RBAC_APP, roles: ["Mail.Send"] }] }],
    });
    const token = await http.accessToken(TENANT, RBAC_APP, SECRET);
    expect((await http.sendMail("ceo@proseware.com", token, mail())).status).toBe(202);
  });

  it("when the organization-wide grant has no scope, then every mailbox is in it", async () => {
    emu.state.patchScenario({
      tenants: [{ ...scenario().tenants![0]!, roleAssignments: [{ appId: RBAC_APP, role: "Application Mail.Send" }] }],
    });
    const token = await http.accessToken(TENANT, RBAC_APP, SECRET);
    expect((await http.sendMail("ceo@proseware.com", token, mail())).status).toBe(202);
  });
});
