import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ADATUM, APP_ID, CONTOSO, WOODGROVE_APP_ID, message } from "../support/fixtures.js";
import { startHarness, type Harness } from "../support/harness.js";

/* GET /tenants over HTTP; the harness checks every answer against openapi.yaml (TenantsResponse). */

type Row = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- assertions read arbitrary members

describe("GET /tenants", () => {
  let h: Harness;
  const rows = async (): Promise<Row[]> => {
    const res = await h.get("/tenants", { key: h.keys.admin });
    expect(res.status).toBe(200);
    return res.json.tenants as Row[];
  };
  const row = async (tenant: string): Promise<Row> => (await rows()).find((r) => r.tenant === tenant)!;

  beforeAll(async () => {
    h = await startHarness({
      configure: (c) => {
        c.tenants.contoso!.displayName = "Contoso Ltd";
      },
    });
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.reset();
  });

  it("when an admin asks, then every tenant is listed in config order with sender, app, credential type and expiry", async () => {
    const all = await rows();

    expect(all.map((r) => r.tenant)).toEqual(Object.keys(h.configInput.tenants));
    expect(all[0]).toEqual({
      tenant: "contoso",
      displayName: "Contoso Ltd",
      tenantId: CONTOSO.id,
      sender: "noreply@contoso.com",
      app: { clientId: APP_ID, own: false, credentialType: "secret", credentialExpiresAt: "2027-06-30T00:00:00.000Z" },
      limits: { maxConcurrency: 4, recipientsPerDay: 10_000, maxQueue: 1000 },
      recipientsUsed: 0,
      inFlight: 0,
      waiting: 0,
    });
    expect(all.find((r) => r.tenant === "woodgrove")!.app).toEqual({ clientId: WOODGROVE_APP_ID, own: true, credentialType: "secret" });
  });

  it("when the answer is written, then it holds no secret, API key, file path or environment name", async () => {
    await h.send(message("litware"));
    const text = (await h.get("/tenants", { key: h.keys.admin })).text;
    for (const s of h.secrets) expect(text).not.toContain(s);
    expect(text).not.toContain(h.dir);
    expect(text).not.toMatch(/secretFile|secretEnv|certificateFile|tokenFile/);
  });

  it("when the key is not an admin's, then 403 tenant_forbidden; without a key, 401 with a Bearer challenge", async () => {
    const forbidden = await h.get("/tenants", { key: h.keys.ops });
    expect(forbidden.status).toBe(403);
    expect(forbidden.json).toMatchObject({ code: "tenant_forbidden", detail: "Only admin callers may read /tenants." });
    const anonymous = await h.get("/tenants");
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect((await h.get("/tenants", { key: "not-a-key" })).status).toBe(401);
  });

  it("when sends succeed and fail, then each tenant shows its last outcome and its last problem with their times", async () => {
    const t0 = Date.now();
    expect((await h.send(message("fabrikam"))).status).toBe(403);
    h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@tailspin.com", action: "respond", status: 503, times: 1 });
    expect((await h.send(message("tailspin"))).status).toBe(503);
    expect((await h.send(message("tailspin", { to: ["a@example.com", "b@example.com"] }))).status).toBe(202);

    const fabrikam = await row("fabrikam");
    expect(fabrikam).toMatchObject({ lastOutcome: "policy_denied", lastProblem: { code: "policy_denied", graphCode: "ErrorAccessDenied" } });
    expect(Date.parse(fabrikam.lastProblem.at)).toBeGreaterThanOrEqual(t0 - 1000);
    const tailspin = await row("tailspin");
    // A success after a problem: the problem stays visible, with its time.
    expect(tailspin).toMatchObject({ lastOutcome: "sent", lastProblem: { code: "upstream_unavailable" }, recipientsUsed: 2 });
    expect(Date.parse(tailspin.lastOutcomeAt)).toBeGreaterThanOrEqual(Date.parse(tailspin.lastProblem.at));
  });

  it("when a replay is answered, then the tenant's last outcome stays that of its last real send", async () => {
    const headers = { "idempotency-key": `status-${Date.now()}` };
    const body = message("adatum", { subject: "replayed" });
    const first = await h.send(body, { headers });
    expect(first.json.code).toBe("mailbox_unavailable");
    // mailbox_unavailable sent nothing, so the key was forgotten: make the tenant send, then replay that.
    h.emulator.state.patchScenario({
      tenants: [{ id: ADATUM.id, domains: [ADATUM.domain], mailboxes: [{ address: "noreply@adatum.com" }], consents: [{ appId: APP_ID, roles: ["Mail.Send"] }] }],
    });
    expect((await h.send(body, { headers })).status).toBe(202);
    h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@adatum.com", action: "respond", status: 503, times: 1 });
    expect((await h.send(message("adatum"))).status).toBe(503);
    const replay = await h.send(body, { headers });

    expect(replay.status).toBe(202);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(await row("adatum")).toMatchObject({ lastOutcome: "upstream_unavailable" });
  });
});
