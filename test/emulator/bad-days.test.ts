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

describe("Exchange's refusals of a send", () => {
  type TenantInput = NonNullable<ScenarioInput["tenants"]>[number];
  const withMailboxes = (mailboxes: NonNullable<TenantInput["mailboxes"]>, extra: Partial<TenantInput> = {}): void => {
    const base = scenario().tenants![0]!;
    emu.state.patchScenario({ tenants: [{ ...base, mailboxes: [...(base.mailboxes ?? []), ...mailboxes], ...extra }] });
  };

  it("when the message's from is an address the mailbox has no Send As right for, then 403 ErrorSendAsDenied with Microsoft's text; with the right, 202", async () => {
    withMailboxes([{ address: "desk@proseware.com", sendAs: ["support@proseware.com"] }]);
    const token = await http.accessToken(TENANT, ENTRA_APP, SECRET);

    const denied = await http.sendMail("desk@proseware.com", token, mail({ from: { emailAddress: { address: "ceo@proseware.com" } } }));
    const allowed = await http.sendMail("desk@proseware.com", token, mail({ from: { emailAddress: { address: "support@proseware.com" } } }));

    expect(denied.status).toBe(403);
    expect(await errorOf(denied)).toEqual({
      code: "ErrorSendAsDenied",
      message: "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message.",
      innerError: expect.any(Object),
    });
    expect(allowed.status).toBe(202);
  });

  it("when the mailbox is full, then 403 ErrorQuotaExceeded; when Exchange blocked it from sending, then 403 ErrorMessageSubmissionBlocked", async () => {
    withMailboxes([
      { address: "full@proseware.com", state: "full" },
      { address: "spammy@proseware.com", state: "sendingBlocked" },
    ]);
    const token = await http.accessToken(TENANT, ENTRA_APP, SECRET);

    const full = await http.sendMail("full@proseware.com", token, mail());
    const blocked = await http.sendMail("spammy@proseware.com", token, mail());

    expect(full.status).toBe(403);
    expect(await errorOf(full)).toMatchObject({ code: "ErrorQuotaExceeded", message: "Mailbox has exceeded maximum mailbox size." });
    expect(blocked.status).toBe(403);
    expect(await errorOf(blocked)).toMatchObject({ code: "ErrorMessageSubmissionBlocked" });
    expect(emu.state.messages()).toHaveLength(0);
  });

  it("when the tenant has no Exchange Online, then 401 OrganizationFromTenantGuidNotFound naming the tenant, even with a fresh token", async () => {
    withMailboxes([], { exchangeOnline: false });
    const token = await http.accessToken(TENANT, ENTRA_APP, SECRET);
    const res = await http.sendMail("noreply@proseware.com", token, mail());
    expect(res.status).toBe(401);
    expect(await errorOf(res)).toMatchObject({ code: "OrganizationFromTenantGuidNotFound", message: `The tenant for tenant guid '${TENANT}' does not exist.` });
  });

  it("when a mailbox's recipients in 24 hours would pass the daily limit, then 429 ErrorSubmissionQuotaExceeded without a Retry-After, and nothing is sent", async () => {
    emu.state.setThrottling({ recipientsPerDay: 3 });
    const token = await http.accessToken(TENANT, ENTRA_APP, SECRET);
    const two = { toRecipients: [{ emailAddress: { address: "a@example.org" } }], ccRecipients: [{ emailAddress: { address: "b@example.org" } }] };

    expect((await http.sendMail("noreply@proseware.com", token, mail(two))).status).toBe(202);
    const refused = await http.sendMail("noreply@proseware.com", token, mail({ ...two, subject: "over the quota" }));

    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBeNull();
    expect(await errorOf(refused)).toMatchObject({ code: "ErrorSubmissionQuotaExceeded" });
    expect(emu.state.messages({ subject: "over the quota" })).toHaveLength(0);
    // Another mailbox has its own count.
    expect((await http.sendMail("ceo@proseware.com", token, mail(two))).status).toBe(202);
  });

  it("when a fault names a catalogued refusal, then Graph answers with its documented status and text", async () => {
    emu.state.inject({ kind: "sendMail", action: "respond", graphError: "sendAsDenied", times: 1 });
    const token = await http.accessToken(TENANT, ENTRA_APP, SECRET);
    const res = await http.sendMail("noreply@proseware.com", token, mail());
    expect(res.status).toBe(403);
    expect(await errorOf(res)).toMatchObject({ code: "ErrorSendAsDenied" });
    expect(() => emu.state.inject({ kind: "sendMail", action: "respond", graphError: "noSuchError" })).toThrow(/unknown graphError/);
  });
});

describe("details that steer clients", () => {
  it("when a client gives up on a slow send and retries at once, then its earlier request still holds the mailbox's slot (429), and that message is still sent", async () => {
    emu.state.setThrottling({ mailboxConcurrency: 1 });
    emu.state.inject({ kind: "sendMail", mailbox: "noreply@proseware.com", action: "latency", fixedMs: 700, times: 1 });
    const token = await http.accessToken(TENANT, ENTRA_APP, SECRET);

    const gaveUp = http.sendMail("noreply@proseware.com", token, mail({ subject: "given up" }), {}, AbortSignal.timeout(150));
    await expect(gaveUp).rejects.toThrow();
    const retry = await http.sendMail("noreply@proseware.com", token, mail({ subject: "retry" }));

    expect(retry.status).toBe(429);
    expect(await errorOf(retry)).toMatchObject({ code: "ApplicationThrottled" });
    await new Promise((r) => setTimeout(r, 800));
    expect(emu.state.messages({ subject: "given up" })).toHaveLength(1);
    expect((await http.sendMail("noreply@proseware.com", token, mail({ subject: "later" }))).status).toBe(202);
  });

  it("when the upload budget of a mailbox is spent, then 429 ApplicationThrottled 'over its IncomingBytes limit' with a Retry-After", async () => {
    emu.state.setThrottling({ uploadBytesPerWindow: 2_000, uploadWindowSeconds: 300 });
    const token = await http.accessToken(TENANT, ENTRA_APP, SECRET);
    const big = mail({ body: { contentType: "Text", content: "x".repeat(1_200) } });

    expect((await http.sendMail("noreply@proseware.com", token, big)).status).toBe(202);
    const res = await http.sendMail("noreply@proseware.com", token, big);

    expect(res.status).toBe(429);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(200);
    expect(await errorOf(res)).toMatchObject({ code: "ApplicationThrottled", message: "Application is over its IncomingBytes limit." });
  });

  it("when no lifetime is configured, then tokens live a random 60 to 90 minutes, like Entra's", async () => {
    const lifetimes = new Set<number>();
    for (let i = 0; i < 6; i++) {
      const res = await http.token(TENANT, ENTRA_APP, SECRET);
      const body = (await res.json()) as { expires_in: number; access_token: string };
      const claims = jwtPayload(body.access_token);
      expect(body.expires_in).toBeGreaterThanOrEqual(3600);
      expect(body.expires_in).toBeLessThanOrEqual(5400);
      expect((claims.exp as number) - (claims.iat as number)).toBe(body.expires_in);
      lifetimes.add(body.expires_in);
    }
    expect(lifetimes.size).toBeGreaterThan(1);
  });

  it("when Graph answers 401, then it carries the WWW-Authenticate challenge naming Graph's app id", async () => {
    const res = await http.sendMail("noreply@proseware.com", "not-a-token", mail());
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe(
      `Bearer realm="", authorization_uri="${emu.url}/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`,
    );
  });

  it("when Graph fails on its own (503, 504), then the body is UnknownError with an empty message", async () => {
    const token = await http.accessToken(TENANT, ENTRA_APP, SECRET);
    for (const status of [503, 504]) {
      emu.state.inject({ kind: "sendMail", action: "respond", status, times: 1 });
      const res = await http.sendMail("noreply@proseware.com", token, mail());
      expect(res.status).toBe(status);
      expect(await errorOf(res)).toMatchObject({ code: "UnknownError", message: "" });
    }
  });
});

describe("Retry-After as Graph sends it", () => {
  it("when a fault gives Retry-After with decimals or as an HTTP-date, then the header carries it exactly so", async () => {
    const token = await http.accessToken(TENANT, ENTRA_APP, SECRET);
    const date = new Date(Date.now() + 3_000).toUTCString();
    emu.state.inject({ kind: "sendMail", action: "respond", status: 429, retryAfter: 2.128, times: 1 });
    emu.state.inject({ kind: "sendMail", action: "respond", status: 429, retryAfter: date, times: 1 });

    const decimal = await http.sendMail("noreply@proseware.com", token, mail());
    const httpDate = await http.sendMail("noreply@proseware.com", token, mail());

    expect(decimal.headers.get("retry-after")).toBe("2.128");
    expect(httpDate.headers.get("retry-after")).toBe(date);
  });
});
