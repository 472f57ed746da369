import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load-config.js";
import {
  buildConsentUrl,
  ConsentSetupError,
  createConsentState,
  makeConsentLink,
  readStateSecret,
  resolveConsentTarget,
  verifyConsentState,
} from "../../src/onboarding/consent.js";
import { APP_ID, baseConfig, CONTOSO_TID, OWN_APP_ID, STATE_KEY, tempConfig, type TempConfig } from "./fixtures.js";
import { stringify } from "yaml";

const key = Buffer.from(STATE_KEY);
const now = Date.parse("2026-03-01T12:00:00Z");

describe("consent state", () => {
  it("when a state is signed, then it verifies and carries the tenant, key, app and expiry", () => {
    const state = createConsentState({ tenant: CONTOSO_TID, tenantKey: "contoso", clientId: APP_ID, key, now, ttlSeconds: 600 });
    const check = verifyConsentState(state, key, now + 1000);
    expect(check).toMatchObject({ ok: true, payload: { v: 1, tid: CONTOSO_TID, key: "contoso", app: APP_ID, exp: now / 1000 + 600 } });
  });

  it("when two states are made for the same tenant, then they differ (random nonce)", () => {
    const a = createConsentState({ tenant: CONTOSO_TID, clientId: APP_ID, key, now, ttlSeconds: 600 });
    const b = createConsentState({ tenant: CONTOSO_TID, clientId: APP_ID, key, now, ttlSeconds: 600 });
    expect(a).not.toBe(b);
  });

  it("when the TTL has passed, then the state is refused as expired", () => {
    const state = createConsentState({ tenant: CONTOSO_TID, clientId: APP_ID, key, now, ttlSeconds: 600 });
    expect(verifyConsentState(state, key, now + 599_000).ok).toBe(true);
    expect(verifyConsentState(state, key, now + 600_000)).toEqual({ ok: false, reason: "expired" });
  });

  it("when the payload is changed (another tenant, later expiry), then the signature no longer matches", () => {
    const state = createConsentState({ tenant: CONTOSO_TID, clientId: APP_ID, key, now, ttlSeconds: 600 });
    const [body, mac] = state.split(".") as [string, string];
    const payload = JSON.parse(Buffer.from(body, "base64url").toString());
    for (const forged of [{ ...payload, tid: "evil.example.com" }, { ...payload, exp: payload.exp + 86_400 }]) {
      const forgedState = `${Buffer.from(JSON.stringify(forged)).toString("base64url")}.${mac}`;
      expect(verifyConsentState(forgedState, key, now)).toEqual({ ok: false, reason: "bad_signature" });
    }
  });

  it("when the state was signed with another key, then it is refused", () => {
    const state = createConsentState({ tenant: CONTOSO_TID, clientId: APP_ID, key: Buffer.from("another-key-another-key-another-key!!"), now, ttlSeconds: 600 });
    expect(verifyConsentState(state, key, now)).toEqual({ ok: false, reason: "bad_signature" });
  });

  it.each([
    ["", "missing"],
    [undefined, "missing"],
    ["abc", "malformed"],
    ["a.b.c", "malformed"],
    ["a b.c", "malformed"],
    ["x".repeat(5000), "malformed"],
    ["eyJ2IjoxfQ.AAAA", "bad_signature"],
  ])("when the state is %j, then it is refused as %s", (state, reason) => {
    expect(verifyConsentState(state, key, now)).toEqual({ ok: false, reason });
  });

  it("when the signature is spelled another way that decodes to the same bytes, then it is refused (a state has one spelling, so single use cannot be dodged)", () => {
    const state = createConsentState({ tenant: CONTOSO_TID, clientId: APP_ID, key, now, ttlSeconds: 600 });
    const [body, mac] = state.split(".") as [string, string];
    // 32 bytes are 43 base64url characters: the last one carries 2 spare bits a lenient decoder ignores.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const last = alphabet.indexOf(mac.at(-1)!);
    const twin = `${mac.slice(0, -1)}${alphabet[last ^ 1]}`;
    expect(Buffer.from(twin, "base64url").equals(Buffer.from(mac, "base64url"))).toBe(true);
    expect(verifyConsentState(`${body}.${twin}`, key, now)).toEqual({ ok: false, reason: "bad_signature" });
  });

  it("when a state verifies, then its id is the same for the same state and differs between two states (the key of its single use)", () => {
    const a = createConsentState({ tenant: CONTOSO_TID, clientId: APP_ID, key, now, ttlSeconds: 600 });
    const b = createConsentState({ tenant: CONTOSO_TID, clientId: APP_ID, key, now, ttlSeconds: 600 });
    const idOf = (s: string): string => {
      const check = verifyConsentState(s, key, now);
      if (!check.ok) throw new Error(check.reason);
      return check.id;
    };
    expect(idOf(a)).toBe(idOf(a));
    expect(idOf(a)).not.toBe(idOf(b));
    expect(idOf(a)).not.toContain(a.split(".")[1]);
  });

  it("when a validly signed payload has the wrong shape, then it is refused as malformed", async () => {
    const { createHmac } = await import("node:crypto");
    const body = Buffer.from(JSON.stringify({ v: 1, tid: "not a tenant", app: APP_ID, exp: now / 1000 + 60, n: "x" })).toString("base64url");
    const mac = createHmac("sha256", key).update(body).digest("base64url");
    expect(verifyConsentState(`${body}.${mac}`, key, now)).toEqual({ ok: false, reason: "malformed" });
  });
});

describe("consent URL", () => {
  it("when built, then it is {authorityHost}/{tenant}/adminconsent with client_id, redirect_uri and state encoded", () => {
    const url = new URL(
      buildConsentUrl({
        authorityHost: "https://login.microsoftonline.com/",
        tenant: "contoso.onmicrosoft.com",
        clientId: APP_ID,
        redirectUri: "https://relay.example.net/consent/callback",
        state: "abc.def",
      }),
    );
    expect(url.origin + url.pathname).toBe("https://login.microsoftonline.com/contoso.onmicrosoft.com/adminconsent");
    expect(Object.fromEntries(url.searchParams)).toEqual({
      client_id: APP_ID,
      redirect_uri: "https://relay.example.net/consent/callback",
      state: "abc.def",
    });
  });

  it("when the tenant is not a GUID or domain, then no URL is made", () => {
    expect(() => buildConsentUrl({ authorityHost: "https://x", tenant: "../common?x", clientId: APP_ID, redirectUri: "https://r", state: "s" })).toThrow(
      ConsentSetupError,
    );
  });
});

describe("consent link from the config", () => {
  let tmp: TempConfig;
  afterEach(() => tmp?.cleanup());

  function load(mutate: (c: Record<string, unknown>) => void = () => {}) {
    tmp = tempConfig();
    tmp.file("state-key", `${STATE_KEY}\n`);
    const raw = baseConfig(tmp.dir, new Date(now));
    mutate(raw);
    return parseConfig(stringify(raw));
  }

  it("when given a configured tenant key, then the link is for its tenantId and app, redirecting to publicUrl/consent/callback", () => {
    const config = load();
    const link = makeConsentLink(config, "fabrikam", { now });
    const url = new URL(link.url);
    expect(url.pathname).toBe("/fabrikam.com/adminconsent");
    expect(url.searchParams.get("client_id")).toBe(OWN_APP_ID);
    expect(url.searchParams.get("redirect_uri")).toBe("https://relay.example.net/consent/callback");
    const check = verifyConsentState(url.searchParams.get("state")!, key, now);
    expect(check).toMatchObject({ ok: true, payload: { tid: "fabrikam.com", key: "fabrikam", app: OWN_APP_ID } });
    expect(link.expiresAt.toISOString()).toBe(new Date(now + 3600_000).toISOString());
  });

  it("when given the GUID or domain of a customer not yet configured, then the top-level app is used and no key is carried", () => {
    const config = load();
    for (const tenant of ["1e2d3c4b-5a69-4788-9a0b-1c2d3e4f5a6b", "newcustomer.com"]) {
      const link = makeConsentLink(config, tenant, { now });
      const url = new URL(link.url);
      expect(url.pathname).toBe(`/${tenant}/adminconsent`);
      expect(url.searchParams.get("client_id")).toBe(APP_ID);
      const check = verifyConsentState(url.searchParams.get("state")!, key, now);
      expect(check.ok && check.payload.key).toBeUndefined();
    }
  });

  it("when consent.redirectUri is set, then it wins over server.publicUrl", () => {
    const config = load((c) => ((c.consent as Record<string, unknown>).redirectUri = "https://consent.example.net/cb"));
    expect(new URL(makeConsentLink(config, "contoso", { now }).url).searchParams.get("redirect_uri")).toBe("https://consent.example.net/cb");
  });

  it("when neither redirectUri nor publicUrl is set, then the error names consent.redirectUri", () => {
    const config = load((c) => delete (c.server as Record<string, unknown>).publicUrl);
    expect(() => makeConsentLink(config, "contoso", { now })).toThrow(/^consent\.redirectUri: /);
  });

  it("when the argument is neither a key nor a tenant, then it is refused", () => {
    const config = load();
    expect(() => resolveConsentTarget(config, "not a tenant")).toThrow(/neither a configured tenant key nor a tenant GUID or domain/);
  });

  it("when a new customer is onboarded without a top-level app, then the error names app", () => {
    const config = load((c) => {
      delete c.app;
      (c.tenants as Record<string, unknown>).contoso = { tenantId: CONTOSO_TID, sender: "noreply@contoso.com", app: { clientId: OWN_APP_ID, credential: { type: "secret", secretEnv: "X" } } };
    });
    expect(() => resolveConsentTarget(config, "newcustomer.com")).toThrow(/^app: /);
  });

  it("when the state key is missing, short, or its variable unset, then the error names the config key", () => {
    expect(() => readStateSecret(undefined)).toThrow(/^consent: /);
    tmp = tempConfig();
    expect(() => readStateSecret({ stateSecretFile: `${tmp.dir}/nope`, stateTtlSeconds: 60 })).toThrow(/^consent\.stateSecretFile: cannot read file \(ENOENT\)/);
    const short = tmp.file("short", "too-short");
    expect(() => readStateSecret({ stateSecretFile: short, stateTtlSeconds: 60 })).toThrow(/^consent\.stateSecretFile: the key must be at least 32 bytes/);
    expect(() => readStateSecret({ stateSecretEnv: "NRR_STATE", stateTtlSeconds: 60 }, {})).toThrow(/^consent\.stateSecretEnv: environment variable NRR_STATE is not set/);
    expect(readStateSecret({ stateSecretEnv: "NRR_STATE", stateTtlSeconds: 60 }, { NRR_STATE: STATE_KEY }).toString()).toBe(STATE_KEY);
  });
});
