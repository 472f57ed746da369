import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { LITWARE, LITWARE_APP_ID, LITWARE_SECRET, NORTHWIND, message, standardScenario } from "../support/fixtures.js";
import { metricValue, startHarness, type Harness } from "../support/harness.js";

/*
 * What the service remembers about a tenant's credentials: Entra's rejection for a while (so a
 * wrong secret does not flood the customer's Entra), until a reload or SIGHUP brings a fix; and
 * a token without Mail.Send is dropped after permission_missing so consent granted later counts.
 */

const litwareTokenRequests = (h: Harness) => h.emulator.state.requests({ kind: "token", clientId: LITWARE_APP_ID }).length;

describe("credential failure memory", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({
      configure: (c, dir) => {
        // A second tenant key on Litware's app, with its own (wrong) secret file.
        c.tenants["litware-b"] = {
          tenantId: LITWARE.id,
          sender: "noreply@litware.com",
          app: { clientId: LITWARE_APP_ID, credential: { type: "secret", secretFile: join(dir, "litware-b-secret") } },
        };
      },
      beforeLoad: (dir) => writeFile(join(dir, "litware-b-secret"), `wrong-${randomBytes(8).toString("hex")}`),
    });
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.reset();
  });

  it("when Entra rejects a tenant's credential, then further sends are answered from memory without asking Entra, and /tenants says until when", async () => {
    const first = await h.send(message("litware"));
    const again = await Promise.all(Array.from({ length: 5 }, () => h.send(message("litware"))));

    expect(first.status).toBe(502);
    expect(first.json).toMatchObject({ code: "credential_rejected", aadsts: "7000215" });
    for (const res of again) expect(res.json).toMatchObject({ code: "credential_rejected", aadsts: "7000215" });
    expect(litwareTokenRequests(h)).toBe(1);
    const metrics = (await h.get("/metrics")).text;
    expect(metricValue(metrics, "noreply_relay_token_requests_total", { tenant: "litware", outcome: "credential_rejected" })).toBe(1);
    expect(metricValue(metrics, "noreply_relay_send_total", { tenant: "litware", outcome: "credential_rejected" })).toBe(6);

    const row = ((await h.get("/tenants", { key: h.keys.admin })).json.tenants as Record<string, any>[]).find((t) => t.tenant === "litware")!; // eslint-disable-line @typescript-eslint/no-explicit-any
    // server.credentialFailureHoldSeconds defaults to 30.
    expect(Date.parse(row.credentialRejectedUntil) - Date.now()).toBeGreaterThan(25_000);
    expect(row.lastProblem).toMatchObject({ code: "credential_rejected", aadsts: "7000215" });
  });

  it("when a reload points the rejected tenant at a new secret, then Entra is asked at once and the send goes out", async () => {
    expect((await h.send(message("litware"))).status).toBe(502);
    await writeFile(join(h.dir, "litware-secret-new"), LITWARE_SECRET);
    await h.rewriteConfig((c) => {
      c.tenants.litware!.app!.credential = { type: "secret", secretFile: join(h.dir, "litware-secret-new") };
    });
    expect(h.reload()).toBe("success");

    const res = await h.send(message("litware", { subject: "after the new secret" }));
    expect(res.status).toBe(202);
    expect(h.emulator.state.messages({ tenant: LITWARE.id, subject: "after the new secret" })).toHaveLength(1);
  });

  it("when the secret file is fixed in place and SIGHUP comes, then the remembered rejection is forgotten and the send goes out", async () => {
    expect((await h.send(message("litware-b"))).status).toBe(502);
    await writeFile(join(h.dir, "litware-b-secret"), LITWARE_SECRET);
    // The file alone changes nothing for the hold's 30 s: no config change, no Entra request.
    expect((await h.send(message("litware-b"))).status).toBe(502);
    expect(litwareTokenRequests(h)).toBe(1);

    expect(h.reload()).toBe("unchanged"); // what SIGHUP does
    const res = await h.send(message("litware-b", { subject: "after SIGHUP" }));
    expect(res.status).toBe(202);
  });
});

describe("permission_missing: a token without Mail.Send is not kept for its lifetime", () => {
  const northwind = () => standardScenario().tenants!.find((t) => t.id === NORTHWIND.id)!;

  it("when sends keep getting permission_missing, then Entra is not asked again for each of them", async () => {
    const h = await startHarness();
    try {
      const results = [];
      for (let i = 0; i < 5; i++) results.push(await h.send(message("northwind")));
      expect(results.map((r) => r.json.code)).toEqual(Array(5).fill("permission_missing"));
      expect(h.emulator.state.requests({ kind: "token", tenant: NORTHWIND.id })).toHaveLength(1);
    } finally {
      await h.close();
    }
  });

  it("when the admin grants consent after a permission_missing, then the next send (after the recheck interval) gets a fresh token and goes out", async () => {
    const h = await startHarness({ permissionRecheckMs: 0 });
    try {
      const before = await h.send(message("northwind"));
      expect(before.json.code).toBe("permission_missing");

      h.emulator.state.patchScenario({ tenants: [{ ...northwind(), consents: [{ appId: northwind().consents![0]!.appId, roles: ["Mail.Send"] }] }] });
      const after = await h.send(message("northwind", { subject: "after consent" }));

      expect(after.status).toBe(202);
      expect(h.emulator.state.requests({ kind: "token", tenant: NORTHWIND.id })).toHaveLength(2);
      expect(h.emulator.state.messages({ tenant: NORTHWIND.id, subject: "after consent" })).toHaveLength(1);
    } finally {
      await h.close();
    }
  });
});

describe("credential expiry warnings", () => {
  it("when a credential expires within 30 days, then the service warns at start-up, naming the app and its tenants", async () => {
    const expiresAt = new Date(Date.now() + 10 * 86_400_000 + 3_600_000).toISOString();
    const h = await startHarness({
      configure: (c) => {
        const app = c.app!;
        app.credential = { ...app.credential, expiresAt };
      },
    });
    try {
      const warning = h.logs.records().find((r) => r.event === "credential_expiry");
      expect(warning).toMatchObject({ level: 40, clientId: h.config.app!.clientId, daysLeft: 10, status: "expiring" });
      expect(warning!.tenants).toEqual(expect.arrayContaining(["contoso", "fabrikam", "tailspin"]));
    } finally {
      await h.close();
    }
  });
});
