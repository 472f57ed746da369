import { describe, expect, it } from "vitest";
import type { AppConfig } from "../config/schema.js";
import { RelayError } from "../core/problems.js";
import type { TokenProvider, TokenTarget } from "../core/ports.js";
import { createRememberingTokenProvider } from "./credential-failure-memory.js";

function manualClock(start = Date.UTC(2026, 0, 1)) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

const app = (secretFile: string): AppConfig => ({
  clientId: "11111111-2222-3333-4444-555555555555",
  credential: { type: "secret", secretFile },
});

const target = (tenantKey: string, secretFile = "/run/secrets/a"): TokenTarget => ({
  tenantKey,
  tenantId: "72f988bf-86f1-41af-91ab-2d7cd011db47",
  app: app(secretFile),
});

/** An Entra stand-in that answers from a script and counts the calls it got. */
function scriptedEntra(answer: (t: TokenTarget) => string | RelayError) {
  const calls: string[] = [];
  const provider: TokenProvider = {
    getToken: (t) => {
      calls.push(t.tenantKey);
      const a = answer(t);
      return typeof a === "string" ? Promise.resolve(a) : Promise.reject(a);
    },
  };
  return { provider, calls };
}

const rejected = () => new RelayError("credential_rejected", "Entra ID rejected the client secret", { aadsts: "7000215" });

describe("createRememberingTokenProvider", () => {
  it("when Entra rejects the credential, then further calls within the hold are answered from memory with the same code and aadsts", async () => {
    const clock = manualClock();
    const entra = scriptedEntra(rejected);
    const tokens = createRememberingTokenProvider(entra.provider, { holdMs: 30_000, clock });
    await expect(tokens.getToken(target("contoso"))).rejects.toMatchObject({ code: "credential_rejected" });
    clock.advance(29_999);
    const err = await tokens.getToken(target("contoso")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RelayError);
    expect(err).toMatchObject({ code: "credential_rejected", extras: { aadsts: "7000215" } });
    expect((err as RelayError).message).toMatch(/remembered from 2026-01-01T00:00:00\.000Z/);
    expect(entra.calls).toEqual(["contoso"]);
  });

  it("when the hold has passed, then Entra is asked again", async () => {
    const clock = manualClock();
    let fixed = false;
    const entra = scriptedEntra(() => (fixed ? "token" : rejected()));
    const tokens = createRememberingTokenProvider(entra.provider, { holdMs: 30_000, clock });
    await tokens.getToken(target("contoso")).catch(() => {});
    fixed = true;
    clock.advance(30_000);
    await expect(tokens.getToken(target("contoso"))).resolves.toBe("token");
    expect(entra.calls).toHaveLength(2);
  });

  it("when Entra is unreachable, then nothing is remembered", async () => {
    const entra = scriptedEntra(() => new RelayError("upstream_unavailable", "Entra ID did not answer", { retryAfterSeconds: 1 }));
    const tokens = createRememberingTokenProvider(entra.provider, { holdMs: 30_000, clock: manualClock() });
    await tokens.getToken(target("contoso")).catch(() => {});
    await tokens.getToken(target("contoso")).catch(() => {});
    expect(entra.calls).toHaveLength(2);
  });

  it("when one tenant is rejected, then another tenant still asks Entra", async () => {
    const entra = scriptedEntra((t) => (t.tenantKey === "contoso" ? rejected() : "token"));
    const tokens = createRememberingTokenProvider(entra.provider, { holdMs: 30_000, clock: manualClock() });
    await tokens.getToken(target("contoso")).catch(() => {});
    await expect(tokens.getToken(target("fabrikam"))).resolves.toBe("token");
    expect(tokens.rejection("fabrikam")).toBeUndefined();
  });

  it("when forget is called for the tenant, then the next call asks Entra", async () => {
    const entra = scriptedEntra(rejected);
    const tokens = createRememberingTokenProvider(entra.provider, { holdMs: 30_000, clock: manualClock() });
    await tokens.getToken(target("contoso")).catch(() => {});
    tokens.forget("contoso");
    await tokens.getToken(target("contoso")).catch(() => {});
    expect(entra.calls).toHaveLength(2);
  });

  it("when a reload changes the tenant's credential settings, then the new target is not held by the old rejection", async () => {
    const entra = scriptedEntra((t) => (t.app.credential.type === "secret" && t.app.credential.secretFile === "/run/secrets/new" ? "token" : rejected()));
    const tokens = createRememberingTokenProvider(entra.provider, { holdMs: 30_000, clock: manualClock() });
    await tokens.getToken(target("contoso", "/run/secrets/old")).catch(() => {});
    await expect(tokens.getToken(target("contoso", "/run/secrets/new"))).resolves.toBe("token");
  });

  it("when a rejection is remembered, then rejection() tells since and until, and nothing after the hold", async () => {
    const clock = manualClock();
    const tokens = createRememberingTokenProvider(scriptedEntra(rejected).provider, { holdMs: 10_000, clock });
    await tokens.getToken(target("contoso")).catch(() => {});
    expect(tokens.rejection("contoso")).toMatchObject({ since: clock.now(), until: clock.now() + 10_000, error: { code: "credential_rejected" } });
    clock.advance(10_000);
    expect(tokens.rejection("contoso")).toBeUndefined();
  });

  it("when holdMs is a function, then each rejection uses its current value", async () => {
    const clock = manualClock();
    let holdSeconds = 10;
    const tokens = createRememberingTokenProvider(scriptedEntra(rejected).provider, { holdMs: () => holdSeconds * 1000, clock });
    await tokens.getToken(target("contoso")).catch(() => {});
    expect(tokens.rejection("contoso")?.until).toBe(clock.now() + 10_000);
    holdSeconds = 60; // a reload changed credentialFailureHoldSeconds
    clock.advance(10_000);
    await tokens.getToken(target("contoso")).catch(() => {});
    expect(tokens.rejection("contoso")?.until).toBe(clock.now() + 60_000);
  });

  it("when the inner provider has more methods (invalidate, close), then the wrapper passes them through bound to it", async () => {
    class EntraLike implements TokenProvider {
      readonly #invalidated: string[] = [];
      getToken(): Promise<string> {
        return Promise.resolve("token");
      }
      invalidate(t: TokenTarget): void {
        this.#invalidated.push(t.tenantKey); // a private field: fails if called with the wrapper as `this`
      }
      invalidated(): string[] {
        return this.#invalidated;
      }
      close(): Promise<void> {
        return Promise.resolve();
      }
    }
    const inner = new EntraLike();
    const tokens = createRememberingTokenProvider(inner, { holdMs: 30_000, clock: manualClock() });
    tokens.invalidate(target("contoso"));
    await tokens.close();
    expect(inner.invalidated()).toEqual(["contoso"]);
    await expect(tokens.getToken(target("contoso"))).resolves.toBe("token");
  });

  it("when the inner provider has getters (the Entra provider's size), then the wrapper reads them live from it", async () => {
    class Counting implements TokenProvider {
      #held = 0;
      getToken(): Promise<string> {
        this.#held += 1;
        return Promise.resolve("token");
      }
      get size(): number {
        return this.#held;
      }
    }
    const tokens = createRememberingTokenProvider(new Counting(), { holdMs: 30_000, clock: manualClock() });
    expect(tokens.size).toBe(0);
    await tokens.getToken(target("contoso"));
    expect(tokens.size).toBe(1);
  });

  it("when holdMs is 0, then every call asks Entra", async () => {
    const entra = scriptedEntra(rejected);
    const tokens = createRememberingTokenProvider(entra.provider, { holdMs: 0, clock: manualClock() });
    await tokens.getToken(target("contoso")).catch(() => {});
    await tokens.getToken(target("contoso")).catch(() => {});
    expect(entra.calls).toHaveLength(2);
  });

  it("when a rejection is remembered, then cachedToken gives no token, so the send asks getToken and gets the rejection", async () => {
    const clock = manualClock();
    let cached: string | undefined = "cached-token";
    const inner: TokenProvider = { getToken: () => Promise.reject(rejected()), cachedToken: () => cached };
    const tokens = createRememberingTokenProvider(inner, { holdMs: 30_000, clock });
    expect(tokens.cachedToken?.(target("contoso"))).toBe("cached-token");
    await tokens.getToken(target("contoso")).catch(() => {});
    expect(tokens.cachedToken?.(target("contoso"))).toBeUndefined();
    // Another tenant's token is not held back by this one's rejection.
    expect(tokens.cachedToken?.(target("fabrikam"))).toBe("cached-token");
    clock.advance(30_000);
    expect(tokens.cachedToken?.(target("contoso"))).toBe("cached-token");
    cached = undefined;
    expect(tokens.cachedToken?.(target("contoso"))).toBeUndefined();
  });
});
