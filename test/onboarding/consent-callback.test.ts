import type { Express } from "express";
import { pino } from "pino";
import request from "supertest";
import { Registry } from "prom-client";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { parseConfig } from "../../src/config/load-config.js";
import { consentRoutes, escapeHtml, registerConsentRoutes, type ConsentRouteConfig } from "../../src/http/consent-routes.js";
import { createConsentState } from "../../src/onboarding/consent.js";
import { fixedConfigSource } from "../../src/config/config-source.js";
import { MemoryOnceBook } from "../../src/delivery/once-book.js";
import { checkedRequest } from "../support/checked-request.js";
import { routeApp } from "../support/route-app.js";
import { APP_ID, CONTOSO_TID, FABRIKAM_TID, STATE_KEY, tempConfig } from "./fixtures.js";

const key = Buffer.from(STATE_KEY);
let now = Date.parse("2026-03-01T12:00:00Z");
const clock = { now: () => now };

const config: ConsentRouteConfig = {
  consent: { stateSecretEnv: "NRR_TEST_STATE_KEY", stateTtlSeconds: 3600 },
  tenants: {
    contoso: { tenantId: CONTOSO_TID, sender: "noreply@contoso.com", saveToSentItems: false, accessModel: "consent", limits: { maxConcurrency: 4, recipientsPerDay: 10_000, maxQueue: 1000 } },
  },
};

let app: Express;
const registry = new Registry();
const logLines: Record<string, unknown>[] = [];

beforeAll(async () => {
  const logger = pino({ level: "info" }, { write: (s: string) => logLines.push(JSON.parse(s)) });
  app = await routeApp((routes) =>
    registerConsentRoutes(routes, { config: () => config, registry, logger, clock, env: { NRR_TEST_STATE_KEY: STATE_KEY }, once: new MemoryOnceBook({ clock }) }),
  );
});
beforeEach(() => {
  now = Date.parse("2026-03-01T12:00:00Z");
  logLines.length = 0;
});

function state(tenant: string, tenantKey?: string, ttlSeconds = 3600): string {
  return createConsentState({ tenant, ...(tenantKey ? { tenantKey } : {}), clientId: APP_ID, key, now, ttlSeconds });
}

async function callback(params: Record<string, string>): Promise<{ status: number; html: string; headers: Headers }> {
  const res = await checkedRequest(app).get(`/consent/callback?${new URLSearchParams(params).toString()}`);
  return { status: res.status, html: res.text, headers: res.headers };
}

async function count(outcome: string): Promise<number> {
  const metric = await registry.getSingleMetric("noreply_relay_consent_callbacks_total")!.get();
  return metric.values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

describe("GET /consent/callback", () => {
  it("when Microsoft redirects with admin_consent=True and a valid state, then the page says granted with the tenant id, and it is logged and counted", async () => {
    const before = await count("granted");
    const r = await callback({ admin_consent: "True", tenant: FABRIKAM_TID, state: state("fabrikam.com") });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(r.html).toContain("Consent granted");
    expect(r.html).toContain(FABRIKAM_TID);
    expect(r.html).toContain(`tenantId: ${FABRIKAM_TID}`);
    expect(r.html).toContain("sender: noreply@fabrikam.com");
    expect(await count("granted")).toBe(before + 1);
    expect(logLines).toContainEqual(expect.objectContaining({ event: "consent_callback", outcome: "granted", tenantId: FABRIKAM_TID, intendedTenant: "fabrikam.com", clientId: APP_ID }));
  });

  it("when the page is served, then it has no script, a strict CSP, and is not cached or referred", async () => {
    const r = await callback({ admin_consent: "True", tenant: FABRIKAM_TID, state: state("fabrikam.com") });
    expect(r.html).not.toMatch(/<script/i);
    expect(r.html).not.toMatch(/\son\w+=/i);
    expect(r.headers.get("content-security-policy")).toMatch(/^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+'; /);
    expect(r.headers.get("cache-control")).toBe("no-store");
    expect(r.headers.get("referrer-policy")).toBe("no-referrer");
  });

  it("when a configured tenant consents, then no new-tenant snippet is offered", async () => {
    const r = await callback({ admin_consent: "True", tenant: CONTOSO_TID, state: state(CONTOSO_TID, "contoso") });
    expect(r.status).toBe(200);
    expect(r.html).not.toContain("<pre>");
    expect(r.html).toContain("contoso");
  });

  it("when the link was made for a tenant GUID and the redirect names another tenant, then it is refused, not granted, and logged as a mismatch", async () => {
    const granted = await count("granted");
    const invalid = await count("invalid_state");
    const r = await callback({ admin_consent: "True", tenant: FABRIKAM_TID, state: state(CONTOSO_TID, "contoso") });
    expect(r.status).toBe(400);
    expect(r.html).not.toContain("Consent granted");
    expect(r.html).not.toContain("<pre>");
    expect(r.html).toContain("made for another organization");
    expect(r.html).toContain(CONTOSO_TID);
    expect(await count("granted")).toBe(granted);
    expect(await count("invalid_state")).toBe(invalid + 1);
    expect(logLines).toContainEqual(
      expect.objectContaining({ event: "consent_callback", outcome: "invalid_state", reason: "tenant_mismatch", tenantId: FABRIKAM_TID, intendedTenant: CONTOSO_TID, level: 40 }),
    );
  });

  it("when the link was made for a tenant GUID and the redirect names it in upper case, then it is the same tenant and granted", async () => {
    const r = await callback({ admin_consent: "True", tenant: CONTOSO_TID.toUpperCase(), state: state(CONTOSO_TID, "contoso") });
    expect(r.status).toBe(200);
    expect(r.html).toContain("Consent granted");
  });

  it("when the link was made for a domain, then consent is accepted but the page, snippet and log say the tenant ID could not be checked against the domain", async () => {
    const r = await callback({ admin_consent: "True", tenant: FABRIKAM_TID, state: state("fabrikam.com") });
    expect(r.status).toBe(200);
    expect(r.html).toContain("Consent granted");
    expect(r.html).toContain(`This link was made for fabrikam.com`);
    expect(r.html).toContain("could not check");
    expect(r.html).toMatch(/tenantId: 0b3c5a7e-3d1f-4c8e-9a2b-6f1e2d3c4b5a +# check that fabrikam\.com is this tenant/);
    expect(logLines).toContainEqual(expect.objectContaining({ outcome: "granted", tenantId: FABRIKAM_TID, intendedTenant: "fabrikam.com", tenantBinding: "unchecked_domain" }));
  });

  it("when a valid state comes back a second time, then the second callback is refused as invalid_state (page, metric, log) and not granted again", async () => {
    const s = state(CONTOSO_TID, "contoso");
    const first = await callback({ admin_consent: "True", tenant: CONTOSO_TID, state: s });
    expect(first.status).toBe(200);
    const granted = await count("granted");
    const invalid = await count("invalid_state");
    const replays: Record<string, string>[] = [
      { admin_consent: "True", tenant: CONTOSO_TID, state: s },
      { error: "access_denied", error_description: "AADSTS65004: declined", state: s },
    ];
    for (const params of replays) {
      const again = await callback(params);
      expect(again.status).toBe(400);
      expect(again.html).toContain("This consent link has already been used");
      expect(again.html).not.toContain("Consent granted");
      expect(again.html).not.toContain("Consent was not granted");
    }
    expect(await count("granted")).toBe(granted);
    expect(await count("invalid_state")).toBe(invalid + 2);
    expect(logLines).toContainEqual(expect.objectContaining({ event: "consent_callback", outcome: "invalid_state", reason: "replayed", intendedTenant: CONTOSO_TID, level: 40 }));
  });

  it("when a state was refused as another tenant's, then it is used up too (a link is good for one callback)", async () => {
    const s = state(CONTOSO_TID, "contoso");
    expect((await callback({ admin_consent: "True", tenant: FABRIKAM_TID, state: s })).status).toBe(400);
    const r = await callback({ admin_consent: "True", tenant: CONTOSO_TID, state: s });
    expect(r.status).toBe(400);
    expect(r.html).toContain("already been used");
  });

  it("when the book of used states cannot be reached, then the callback is refused with 503 and the link still works afterwards", async () => {
    const logs: Record<string, unknown>[] = [];
    let down = true;
    const shared = new MemoryOnceBook({ clock });
    const flaky = await routeApp((routes) =>
      registerConsentRoutes(routes, {
        config: () => config,
        registry,
        logger: pino({}, { write: (s: string) => logs.push(JSON.parse(s)) }),
        clock,
        env: { NRR_TEST_STATE_KEY: STATE_KEY },
        once: { claim: (id, ttlMs) => (down ? Promise.reject(new Error("store unavailable")) : shared.claim(id, ttlMs)) },
      }),
    );
    const s = state(CONTOSO_TID, "contoso");
    const url = `/consent/callback?${new URLSearchParams({ admin_consent: "True", tenant: CONTOSO_TID, state: s }).toString()}`;
    const refused = await request(flaky).get(url);
    expect(refused.status).toBe(503);
    expect(refused.headers["retry-after"]).toBeDefined();
    expect(refused.text).not.toContain("Consent granted");
    expect(logs).toContainEqual(expect.objectContaining({ outcome: "error", reason: "once_book_unavailable" }));
    down = false;
    const later = await request(flaky).get(url);
    expect(later.status).toBe(200);
    expect(later.text).toContain("Consent granted");
  });

  it("when the state is forged, then a 400 page refuses it, nothing is granted, and invalid_state is counted", async () => {
    const before = await count("invalid_state");
    const granted = await count("granted");
    const genuine = state(CONTOSO_TID);
    const [body] = genuine.split(".");
    const forged = `${body}.${Buffer.alloc(32, 1).toString("base64url")}`;
    for (const s of [forged, "garbage", ""]) {
      const r = await callback({ admin_consent: "True", tenant: FABRIKAM_TID, state: s });
      expect(r.status).toBe(400);
      expect(r.html).toContain("This consent link is not valid");
      expect(r.html).not.toContain("Consent granted");
    }
    const r = await callback({ admin_consent: "True", tenant: FABRIKAM_TID });
    expect(r.status).toBe(400);
    expect(await count("invalid_state")).toBe(before + 4);
    expect(await count("granted")).toBe(granted);
    expect(logLines).toContainEqual(expect.objectContaining({ outcome: "invalid_state", reason: "bad_signature", level: 40 }));
  });

  it("when the state has expired, then a 400 page says the link expired", async () => {
    const s = state(CONTOSO_TID, "contoso", 600);
    now += 601_000;
    const r = await callback({ admin_consent: "True", tenant: CONTOSO_TID, state: s });
    expect(r.status).toBe(400);
    expect(r.html).toContain("expired");
    expect(logLines).toContainEqual(expect.objectContaining({ outcome: "invalid_state", reason: "expired" }));
  });

  it("when the admin declined, then the page says consent was not granted and denied is counted", async () => {
    const before = await count("denied");
    const r = await callback({
      error: "access_denied",
      error_description: "AADSTS65004: User declined to consent to access the app.",
      state: state(CONTOSO_TID),
    });
    expect(r.status).toBe(200);
    expect(r.html).toContain("Consent was not granted");
    expect(await count("denied")).toBe(before + 1);
  });

  it("when Entra's error text is hostile or long, then it appears only escaped and cut short under the fixed heading, never in the title", async () => {
    const evil = `</code></dd></dl><h1>Consent granted</h1><title>x</title>`;
    const r = await callback({ error: `invalid_request${evil}`, error_description: `AADSTS90002: ${evil}${"y".repeat(5000)}`, state: state(CONTOSO_TID) });
    expect(r.status).toBe(200);
    const [head, body] = r.html.split("</head>") as [string, string];
    expect(head).toContain("<title>Microsoft Entra ID reported an error</title>");
    expect(head).not.toContain("invalid_request");
    expect(head).not.toContain("AADSTS");
    expect(r.html).not.toContain(evil);
    expect(r.html.length).toBeLessThan(5000);
    const [before, section] = body.split("<h2>What Microsoft Entra ID said</h2>") as [string, string | undefined];
    expect(section).toBeDefined();
    expect(before).not.toContain("invalid_request");
    expect(before).not.toContain("AADSTS");
    expect(section).toContain(escapeHtml(evil));
    expect(section).toContain("…");
    // The log names Entra's error only when it is a plain OAuth error code.
    expect(logLines).toContainEqual(expect.objectContaining({ event: "consent_callback", outcome: "error", error: "(not an error code)" }));
    expect(JSON.stringify(logLines)).not.toContain("<h1>");
  });

  it("when Entra reports another error with hostile text, then it is shown escaped and counted as error", async () => {
    const before = await count("error");
    const evil = `<script>alert(1)</script><img src=x onerror=alert(2)> "quoted" 'single' \`tick\``;
    const r = await callback({ error: "invalid_request", error_description: `AADSTS90002: ${evil}`, state: state(CONTOSO_TID) });
    expect(r.status).toBe(200);
    expect(r.html).not.toContain("<script>alert");
    expect(r.html).not.toContain("<img");
    expect(r.html).toContain(escapeHtml(evil));
    expect(await count("error")).toBe(before + 1);
    expect(logLines).toContainEqual(expect.objectContaining({ outcome: "error", aadsts: "90002", error: "invalid_request" }));
  });

  it("when the redirect says neither granted nor error, or the tenant is not a GUID, then it is a 400 error", async () => {
    expect((await callback({ state: state(CONTOSO_TID) })).status).toBe(400);
    const r = await callback({ admin_consent: "True", tenant: "<b>x</b>", state: state(CONTOSO_TID) });
    expect(r.status).toBe(400);
    expect(r.html).not.toContain("<b>x</b>");
  });

  it("when a parameter is repeated, then it is not trusted", async () => {
    const s = state(CONTOSO_TID);
    const res = await request(app).get(`/consent/callback?admin_consent=True&tenant=${CONTOSO_TID}&tenant=${FABRIKAM_TID}&state=${s}`);
    expect(res.status).toBe(400);
  });

  it("when the state key is not available, then every callback is refused and the log says why", async () => {
    const logs: Record<string, unknown>[] = [];
    const other = await routeApp((routes) =>
      registerConsentRoutes(routes, {
        config: { ...config, consent: { stateSecretEnv: "UNSET_VAR", stateTtlSeconds: 60 } },
        registry, // same registry: the counter is reused, not registered twice
        logger: pino({}, { write: (s: string) => logs.push(JSON.parse(s)) }),
        clock,
        env: {},
        once: new MemoryOnceBook({ clock }),
      }),
    );
    const r = await request(other).get(`/consent/callback?admin_consent=True&tenant=${CONTOSO_TID}&state=${state(CONTOSO_TID)}`);
    expect(r.status).toBe(400);
    expect(logs).toContainEqual(expect.objectContaining({ reason: "no_state_key" }));
    expect(String(logs[0]?.msg)).toContain("consent.stateSecretEnv: environment variable UNSET_VAR is not set");
  });

  it("when the metric is exported, then all four outcomes exist from the start", async () => {
    const text = await registry.metrics();
    for (const outcome of ["granted", "denied", "invalid_state", "error"]) {
      expect(text).toMatch(new RegExp(`noreply_relay_consent_callbacks_total\\{outcome="${outcome}"\\} \\d+`));
    }
  });
});

describe("GET /consent/callback inside createApp", () => {
  it("when registered as a route module, then the app serves it, logs the request with its outcome, and counts it", async () => {
    const tmp = tempConfig();
    const keyFile = tmp.file("state-key", STATE_KEY);
    const cfg = parseConfig(
      JSON.stringify({
        consent: { stateSecretFile: keyFile },
        app: { clientId: APP_ID, credential: { type: "secret", secretEnv: "UNUSED" } },
        tenants: { contoso: { tenantId: CONTOSO_TID, sender: "noreply@contoso.com" } },
        callers: {},
      }),
    );
    const unused = () => {
      throw new Error("not used by the consent route");
    };
    const appRegistry = new Registry();
    const lines: Record<string, unknown>[] = [];
    const relay = await createApp({
      configSource: fixedConfigSource(cfg),
      tokenProvider: { getToken: unused },
      graphSender: { send: unused },
      registry: appRegistry,
      logger: pino({ level: "info" }, { write: (s: string) => lines.push(JSON.parse(s)) }),
      clock,
      routes: [consentRoutes],
    });
    try {
      const client = checkedRequest(relay.server);
      const res = await client.get(`/consent/callback?${new URLSearchParams({ admin_consent: "True", tenant: FABRIKAM_TID, state: state("fabrikam.com") }).toString()}`);
      expect(res.status).toBe(200);
      expect(res.text).toContain("Consent granted");
      expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
      expect(lines).toContainEqual(expect.objectContaining({ route: "/consent/callback", status: 200, outcome: "consent_granted" }));
      expect(await appRegistry.metrics()).toContain('noreply_relay_consent_callbacks_total{outcome="granted"} 1');
      const forged = await client.get(`/consent/callback?admin_consent=True&tenant=${FABRIKAM_TID}&state=x.y`);
      expect(forged.status).toBe(400);
      expect(lines).toContainEqual(expect.objectContaining({ route: "/consent/callback", status: 400, outcome: "consent_invalid_state" }));
    } finally {
      await relay.shutdown(1000);
      tmp.cleanup();
    }
  });
});
