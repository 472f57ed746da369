import { describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { parseConfig } from "../../src/config/load-config.js";
import { daysLeft, EXPIRY_LINE_MAX_TENANTS, listCredentialExpiry, startExpiryWarnings } from "../../src/onboarding/expiry.js";
import { APP_ID, CONTOSO_TID, OWN_APP_ID } from "./fixtures.js";

const now = Date.parse("2026-03-01T00:00:00Z");
const day = 86_400_000;

function config(sharedExpiry: number | undefined, ownExpiry: number | undefined) {
  return parseConfig(
    stringify({
      app: {
        clientId: APP_ID,
        credential: { type: "secret", secretEnv: "S", ...(sharedExpiry !== undefined ? { expiresAt: new Date(sharedExpiry).toISOString() } : {}) },
      },
      tenants: {
        contoso: { tenantId: CONTOSO_TID, sender: "noreply@contoso.com" },
        litware: { tenantId: "litware.com", sender: "noreply@litware.com" },
        fabrikam: {
          tenantId: "fabrikam.com",
          sender: "noreply@fabrikam.com",
          app: { clientId: OWN_APP_ID, credential: { type: "certificate", certificateFile: "/c.pem", ...(ownExpiry !== undefined ? { expiresAt: new Date(ownExpiry).toISOString() } : {}) } },
        },
      },
      callers: {},
    }),
  );
}

function recorder() {
  const lines: { obj: Record<string, unknown>; msg: string }[] = [];
  return { lines, logger: { warn: (obj: object, msg: string) => void lines.push({ obj: obj as Record<string, unknown>, msg }) } };
}

describe("listCredentialExpiry", () => {
  it("when tenants use the shared app or their own, then each row names the credential, client id, expiry and days left", () => {
    const rows = listCredentialExpiry(config(now + 400 * day, now + 10 * day + 3600_000), now);
    expect(rows).toEqual([
      { tenantKey: "contoso", credential: "secret", source: "shared", clientId: APP_ID, expiresAt: new Date(now + 400 * day), daysLeft: 400, status: "ok" },
      { tenantKey: "fabrikam", credential: "certificate", source: "tenant", clientId: OWN_APP_ID, expiresAt: new Date(now + 10 * day + 3600_000), daysLeft: 10, status: "expiring" },
      { tenantKey: "litware", credential: "secret", source: "shared", clientId: APP_ID, expiresAt: new Date(now + 400 * day), daysLeft: 400, status: "ok" },
    ]);
  });

  it("when expiresAt is absent or past, then the status is unknown or expired", () => {
    const rows = listCredentialExpiry(config(undefined, now - 2 * day), now);
    expect(rows.find((r) => r.tenantKey === "contoso")).toMatchObject({ status: "unknown" });
    expect(rows.find((r) => r.tenantKey === "contoso")).not.toHaveProperty("daysLeft");
    expect(rows.find((r) => r.tenantKey === "fabrikam")).toMatchObject({ status: "expired", daysLeft: -2 });
  });

  it("when exactly 30 days are left, then it is no longer ok", () => {
    expect(listCredentialExpiry(config(now + 30 * day, undefined), now)[0]!.status).toBe("ok");
    expect(listCredentialExpiry(config(now + 30 * day - 1, undefined), now)[0]!.status).toBe("expiring");
    expect(daysLeft(new Date(now + 12 * 3600_000), now)).toBe(0);
  });
});

describe("startExpiryWarnings", () => {
  it("when started, then it warns at once about expiring and expired credentials, one line per credential, with no secret", () => {
    const { lines, logger } = recorder();
    const w = startExpiryWarnings({ config: config(now + 5 * day, now - 1 * day - 5000), logger, clock: { now: () => now } });
    w.stop();
    expect(lines).toHaveLength(2);
    const shared = lines.find((l) => l.obj.clientId === APP_ID)!;
    expect(shared.obj).toMatchObject({ event: "credential_expiry", tenants: ["contoso", "litware"], tenantCount: 2, credential: "secret", daysLeft: 5, status: "expiring" });
    expect(shared.msg).toMatch(/expires in 5 day\(s\)/);
    const own = lines.find((l) => l.obj.clientId === OWN_APP_ID)!;
    expect(own.obj).toMatchObject({ tenant: "fabrikam", tenants: ["fabrikam"], credential: "certificate", status: "expired" });
    expect(own.msg).toMatch(/EXPIRED 1 day\(s\) ago/);
    expect(JSON.stringify(lines)).not.toMatch(/secretEnv|"S"/);
  });

  it("when 10,000 tenants share the expiring app, then its one line counts them and lists only the first few", () => {
    const base = config(now + 5 * day, undefined);
    const many = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`t${String(i).padStart(5, "0")}`, base.tenants.contoso!]));
    const { lines, logger } = recorder();
    startExpiryWarnings({ config: { app: base.app, tenants: many }, logger, clock: { now: () => now } }).stop();
    expect(lines).toHaveLength(1);
    const [line] = lines;
    expect(line!.obj).toMatchObject({ tenantCount: 10_000, tenantsOmitted: 10_000 - EXPIRY_LINE_MAX_TENANTS, daysLeft: 5, status: "expiring" });
    expect(line!.obj.tenant).toBeUndefined();
    expect(line!.obj.tenants).toEqual(Array.from({ length: EXPIRY_LINE_MAX_TENANTS }, (_, i) => `t${String(i).padStart(5, "0")}`));
    expect(line!.msg).toContain(`10000 tenants t00000, t00001,`);
    expect(line!.msg).toContain(`and ${10_000 - EXPIRY_LINE_MAX_TENANTS} more (noreply-relay tenants lists them)`);
    // Well under the 16 KB at which Docker's json-file driver splits a line.
    expect(JSON.stringify(line).length).toBeLessThan(2_000);
  });

  it("when exactly the most tenants a line lists share it, then none is left out", () => {
    const base = config(now - day, undefined);
    const some = Object.fromEntries(Array.from({ length: EXPIRY_LINE_MAX_TENANTS }, (_, i) => [`t${i}`, base.tenants.contoso!]));
    const { lines, logger } = recorder();
    startExpiryWarnings({ config: { app: base.app, tenants: some }, logger, clock: { now: () => now } }).stop();
    expect(lines[0]!.obj).toMatchObject({ tenantCount: EXPIRY_LINE_MAX_TENANTS, status: "expired" });
    expect(lines[0]!.obj).not.toHaveProperty("tenantsOmitted");
    expect(lines[0]!.obj.tenants).toHaveLength(EXPIRY_LINE_MAX_TENANTS);
    expect(lines[0]!.msg).not.toContain("more");
  });

  it("when nothing expires within 30 days, then it logs nothing", () => {
    const { lines, logger } = recorder();
    startExpiryWarnings({ config: config(now + 90 * day, undefined), logger, clock: { now: () => now } }).stop();
    expect(lines).toEqual([]);
  });

  it("when the interval passes, then it checks again against the current config and clock", async () => {
    const { lines, logger } = recorder();
    let t = now;
    let current = config(now + 90 * day, now + 90 * day);
    const w = startExpiryWarnings({ config: () => current, logger, clock: { now: () => t }, intervalMs: 20 });
    expect(lines).toEqual([]);
    current = config(now + 90 * day, now + 40 * day);
    t = now + 20 * day;
    await new Promise((r) => setTimeout(r, 60));
    w.stop();
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines[0]!.obj).toMatchObject({ tenant: "fabrikam", daysLeft: 20 });
  });

  it("when started, then its timer does not keep the process alive", () => {
    const { logger } = recorder();
    const original = globalThis.setInterval;
    let unrefed = false;
    globalThis.setInterval = ((fn: () => void, ms: number) => {
      const t = original(fn, ms);
      const unref = t.unref.bind(t);
      t.unref = () => {
        unrefed = true;
        return unref();
      };
      return t;
    }) as typeof setInterval;
    try {
      startExpiryWarnings({ config: config(undefined, undefined), logger, clock: { now: () => now } }).stop();
    } finally {
      globalThis.setInterval = original;
    }
    expect(unrefed).toBe(true);
  });
});
