import { decodeJwt } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createEntraTokenProvider, type EntraTokenProvider } from "../../src/auth/entra-token-provider.js";
import { createClientCertificate } from "../../src/emulator/certificates.js";
import { RelayError } from "../../src/core/problems.js";
import {
  APP,
  CONTOSO,
  FABRIKAM,
  GOOD_SECRET,
  NOWHERE,
  capturingLogger,
  closedPort,
  recordingObserver,
  startHarness,
  targetOf,
  type Harness,
  type RecordingObserver,
} from "./emulator-harness.js";

const CERT_APP = "22222222-3333-4444-5555-666666666666";
const WI_APP = "33333333-4444-5555-6666-777777777777";
const ROTATED_APP = "44444444-5555-6666-7777-888888888888";
const DISABLED_APP = "55555555-6666-7777-8888-999999999999";
const FOREIGN_APP = "66666666-7777-8888-9999-aaaaaaaaaaaa";
const WI_SUBJECT = "system:serviceaccount:mail:noreply-relay";
const EXPIRED_SECRET = "expired~secret-0";
const NEXT_SECRET = "next~secret-2";

let h: Harness;
let certPem: string;
let provider: EntraTokenProvider | undefined;

beforeAll(async () => {
  const cert = await createClientCertificate();
  certPem = cert.pem;
  const consent = (appId: string) => ({ appId, roles: ["Mail.Send"] });
  h = await startHarness({
    tenants: [
      {
        id: CONTOSO,
        domains: ["contoso.com"],
        mailboxes: [{ address: "noreply@contoso.com" }],
        consents: [consent(APP), consent(CERT_APP), consent(WI_APP), consent(ROTATED_APP), consent(DISABLED_APP)],
      },
      { id: FABRIKAM, domains: ["fabrikam.com"], mailboxes: [{ address: "noreply@fabrikam.com" }], consents: [consent(APP), consent(FOREIGN_APP)] },
    ],
    apps: [
      { clientId: APP, secrets: [{ value: GOOD_SECRET }] },
      { clientId: CERT_APP, certificates: [{ pem: cert.certPem }] },
      { clientId: WI_APP, federatedCredentials: [{ issuer: "emulator", subject: WI_SUBJECT }] },
      { clientId: ROTATED_APP, secrets: [{ value: EXPIRED_SECRET, expiresAt: "2024-01-01T00:00:00Z" }, { value: NEXT_SECRET }] },
      { clientId: DISABLED_APP, disabled: true, secrets: [{ value: GOOD_SECRET }] },
      // Registered in fabrikam only: contoso has no service principal for it.
      { clientId: FOREIGN_APP, homeTenant: FABRIKAM, secrets: [{ value: GOOD_SECRET }] },
    ],
  });
});

afterAll(async () => {
  await h.close();
});

afterEach(async () => {
  await provider?.close();
  provider = undefined;
  h.emulator.state.reset();
});

function secretApp(clientId: string, secret: string, extra: Record<string, unknown> = {}) {
  return { clientId, credential: { type: "secret", secretFile: h.file(`secret-${clientId}-${secret.length}`, `${secret}\n`), ...extra } };
}

function makeProvider(rest: Record<string, unknown>, observer: RecordingObserver = recordingObserver()) {
  const config = h.config(rest);
  const { logger, lines } = capturingLogger();
  provider = createEntraTokenProvider({ config, observer, logger });
  return { config, provider, observer, lines };
}

async function rejection(promise: Promise<unknown>): Promise<RelayError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RelayError);
  return err as RelayError;
}

const contoso = { tenantId: CONTOSO, sender: "noreply@contoso.com" };
const fabrikam = { tenantId: FABRIKAM, sender: "noreply@fabrikam.com" };

describe("token caching", () => {
  it("when one tenant asks 100 times, 20 of them concurrently before any token exists, then Entra gets exactly one token request", async () => {
    const { config, provider, observer } = makeProvider({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso } });
    const target = targetOf(config, "contoso");

    const first = await Promise.all(Array.from({ length: 20 }, () => provider.getToken(target)));
    const rest: string[] = [];
    for (let i = 0; i < 80; i++) rest.push(await provider.getToken(target));

    expect(new Set([...first, ...rest]).size).toBe(1);
    expect(await h.tokenRequests()).toBe(1);
    expect(observer.of("tokenRequest")).toEqual([{ kind: "tokenRequest", tenant: "contoso", outcome: "success" }]);
  });

  it("when two tenants ask, then each gets its own token from its own tenant with one request each", async () => {
    const { config, provider, observer } = makeProvider({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso, fabrikam } });

    const [a, b] = await Promise.all([provider.getToken(targetOf(config, "contoso")), provider.getToken(targetOf(config, "fabrikam"))]);
    await provider.getToken(targetOf(config, "contoso"));
    await provider.getToken(targetOf(config, "fabrikam"));

    expect(decodeJwt(a).tid).toBe(CONTOSO);
    expect(decodeJwt(b).tid).toBe(FABRIKAM);
    expect(await h.tokenRequests()).toBe(2);
    expect(observer.of("tokenRequest").map((c) => c.tenant).sort()).toEqual(["contoso", "fabrikam"]);
    expect(provider.size).toBe(2);
  });

  it("when the config is parsed again unchanged, then the credential and its token are kept; a removed tenant's credential is dropped", async () => {
    const app = secretApp(APP, GOOD_SECRET);
    const { config, provider } = makeProvider({ app, tenants: { contoso, fabrikam } });
    await provider.getToken(targetOf(config, "contoso"));
    await provider.getToken(targetOf(config, "fabrikam"));

    const reloaded = h.config({ app, tenants: { contoso } });
    expect(provider.retain([targetOf(reloaded, "contoso")])).toBe(1);
    await provider.getToken(targetOf(reloaded, "contoso"));

    expect(provider.size).toBe(1);
    expect(await h.tokenRequests()).toBe(2);
  });

  it("when a token reaches its renewal point, then it is no longer handed out and a new one is requested", async () => {
    h.emulator.state.patchScenario({ tokenLifetimeSeconds: 2 });
    try {
      // The provider's clock runs ahead on demand; MSAL's real clock already treats a 2 s token as due.
      let skew = 0;
      const config = h.config({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso } });
      const observer = recordingObserver();
      provider = createEntraTokenProvider({ config, observer, logger: capturingLogger().logger, clock: { now: () => Date.now() + skew } });
      const target = targetOf(config, "contoso");
      await provider.getToken(target);
      await provider.getToken(target);
      expect(await h.tokenRequests()).toBe(1);

      skew = 1_500;
      await provider.getToken(target);
      expect(await h.tokenRequests()).toBe(2);
      expect(observer.of("tokenRequest").map((c) => c.outcome)).toEqual(["success", "success"]);
    } finally {
      h.emulator.state.patchScenario({ tokenLifetimeSeconds: 3599 });
    }
  });

  it("when tenants of one app ask, then one credential serves them all: the authority's metadata is fetched once, not per tenant or per token", async () => {
    const { config, provider } = makeProvider({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso, fabrikam } });
    await provider.getToken(targetOf(config, "contoso"));
    await provider.getToken(targetOf(config, "fabrikam"));
    provider.invalidate(targetOf(config, "fabrikam"));
    await provider.getToken(targetOf(config, "fabrikam"));

    expect(await h.tokenRequests()).toBe(3);
    // The invalidated token is asked for past MSAL's cache, with a credential of its own (one more discovery).
    expect(h.emulator.state.requests({ kind: "discovery" }).map((r) => r.tenant)).toHaveLength(2);
  });

  it("when the shared credential has served its number of token requests, then a new one replaces it (the identity library keeps a little per request)", async () => {
    const config = h.config({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso, fabrikam, "contoso-billing": { tenantId: CONTOSO, sender: "billing@contoso.com" } } });
    provider = createEntraTokenProvider({ config, observer: recordingObserver(), logger: capturingLogger().logger, sharedCredentialRequests: 2 });
    await provider.getToken(targetOf(config, "contoso"));
    await provider.getToken(targetOf(config, "fabrikam"));
    // The old object would answer from MSAL's cache (contoso's token); the new one asks Entra.
    await provider.getToken(targetOf(config, "contoso-billing"));

    expect(await h.tokenRequests()).toBe(3);
    expect(h.emulator.state.requests({ kind: "discovery" })).toHaveLength(2);
  });

  it("when the renewal point is reached while MSAL's cache still holds the token, then a new token is asked for anyway", async () => {
    let skew = 0;
    const config = h.config({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso } });
    provider = createEntraTokenProvider({ config, observer: recordingObserver(), logger: capturingLogger().logger, clock: { now: () => Date.now() + skew } });
    const target = targetOf(config, "contoso");
    const first = await provider.getToken(target);
    // Past the provider's renewal point (5 minutes before expiry); MSAL's real clock says fresh.
    // Still valid for 199 s, so it is handed out once more while the renewal runs behind it.
    skew = 3_400_000;
    expect(await provider.getToken(target)).toBe(first);
    await expect.poll(() => h.tokenRequests()).toBe(2);
    await expect.poll(() => provider!.getToken(target)).not.toBe(first);
  });

  it("when two tenants of one app ask at once and Entra refuses one, then each gets its own outcome, counted for its own tenant", async () => {
    // FOREIGN_APP has a service principal in fabrikam only: contoso refuses with AADSTS700016.
    const { config, provider, observer } = makeProvider({ app: secretApp(FOREIGN_APP, GOOD_SECRET), tenants: { contoso, fabrikam } });
    const [refused, token] = await Promise.all([rejection(provider.getToken(targetOf(config, "contoso"))), provider.getToken(targetOf(config, "fabrikam"))]);

    expect(refused.extras.aadsts).toBe("700016");
    expect(decodeJwt(token).tid).toBe(FABRIKAM);
    expect(observer.of("tokenRequest").map((c) => `${c.tenant}:${c.outcome}`).sort()).toEqual(["contoso:credential_rejected", "fabrikam:success"]);
  });

  it("when a token is invalidated, then the next call asks Entra for a new one", async () => {
    const { config, provider } = makeProvider({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso } });
    const target = targetOf(config, "contoso");
    await provider.getToken(target);
    provider.invalidate(target);
    await provider.getToken(target);
    expect(await h.tokenRequests()).toBe(2);
  });
});

describe("credential types", () => {
  it("when the credential is a client secret from a file, then a Graph token for the app and tenant is issued", async () => {
    const { config, provider } = makeProvider({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso } });
    const claims = decodeJwt(await provider.getToken(targetOf(config, "contoso")));
    expect(claims).toMatchObject({ tid: CONTOSO, appid: APP, roles: ["Mail.Send"], aud: "https://graph.microsoft.com" });
  });

  it("when the credential is a client secret from an environment variable, then a token is issued", async () => {
    const config = h.config({ app: { clientId: APP, credential: { type: "secret", secretEnv: "RELAY_TEST_SECRET" } }, tenants: { contoso } });
    provider = createEntraTokenProvider({ config, observer: recordingObserver(), logger: capturingLogger().logger, env: { RELAY_TEST_SECRET: GOOD_SECRET } });
    expect(decodeJwt(await provider.getToken(targetOf(config, "contoso"))).appid).toBe(APP);
  });

  it("when the credential is a certificate (PEM with key), then a token is issued", async () => {
    const certificateFile = h.file("client.pem", certPem);
    const { config, provider } = makeProvider({
      app: { clientId: CERT_APP, credential: { type: "certificate", certificateFile, sendCertificateChain: true } },
      tenants: { contoso },
    });
    expect(decodeJwt(await provider.getToken(targetOf(config, "contoso"))).appid).toBe(CERT_APP);
  });

  it("when the credential is a workload identity, then the token file is read on every token request", async () => {
    const tokenFile = h.file("federated-token", await h.emulator.state.mintFederatedToken({ subject: "system:serviceaccount:other:app" }));
    const { config, provider } = makeProvider({
      app: { clientId: WI_APP, credential: { type: "workloadIdentity", tokenFile } },
      tenants: { contoso },
    });
    const target = targetOf(config, "contoso");

    expect((await rejection(provider.getToken(target))).extras.aadsts).toBe("700213");
    h.file("federated-token", await h.emulator.state.mintFederatedToken({ subject: WI_SUBJECT }));
    expect(decodeJwt(await provider.getToken(target)).appid).toBe(WI_APP);
  });
});

describe("Entra refusals", () => {
  it("when the secret is wrong, then credential_rejected with AADSTS7000215, advice, and the secret is neither logged nor in the detail", async () => {
    const wrong = "wrong~secret-value-42";
    const { config, provider, observer, lines } = makeProvider({ app: secretApp(APP, wrong), tenants: { contoso } });

    const err = await rejection(provider.getToken(targetOf(config, "contoso")));

    expect(err.code).toBe("credential_rejected");
    expect(err.extras.aadsts).toBe("7000215");
    expect(err.message).toMatch(/client secret is invalid \(AADSTS7000215\)\. Put the secret's Value/);
    expect(err.message).not.toContain(wrong);
    expect(lines.join("\n")).not.toContain(wrong);
    expect(observer.of("tokenRequest")).toEqual([{ kind: "tokenRequest", tenant: "contoso", outcome: "credential_rejected" }]);
  });

  it("when the secret has expired and no secondary is configured, then credential_rejected with AADSTS7000222", async () => {
    const { config, provider, observer } = makeProvider({ app: secretApp(ROTATED_APP, EXPIRED_SECRET), tenants: { contoso } });
    const err = await rejection(provider.getToken(targetOf(config, "contoso")));
    expect(err.extras.aadsts).toBe("7000222");
    expect(err.message).toContain("Create a new client secret");
    expect(observer.of("credentialFallback")).toEqual([]);
  });

  it("when the secret has expired and a secondary secret is configured, then the secondary is used from then on and the fallback is reported once", async () => {
    const { config, provider, observer, lines } = makeProvider({
      app: secretApp(ROTATED_APP, EXPIRED_SECRET, { secondarySecretFile: h.file("next-secret", NEXT_SECRET) }),
      tenants: { contoso },
    });
    const target = targetOf(config, "contoso");

    expect(decodeJwt(await provider.getToken(target)).appid).toBe(ROTATED_APP);
    provider.invalidate(target);
    await provider.getToken(target);

    expect(observer.of("credentialFallback")).toEqual([{ kind: "credentialFallback", tenant: "contoso" }]);
    expect(observer.of("tokenRequest").map((c) => c.outcome)).toEqual(["credential_rejected", "success", "success"]);
    expect(lines.some((l) => l.includes('"level":40') && l.includes("secondary secret"))).toBe(true);
    expect(lines.join("\n")).not.toContain(NEXT_SECRET);
    expect(lines.join("\n")).not.toContain(EXPIRED_SECRET);
  });

  it("when the tenant does not exist, then credential_rejected with AADSTS90002 (not MSAL's endpoints_resolution_error)", async () => {
    const { config, provider } = makeProvider({ app: secretApp(APP, GOOD_SECRET), tenants: { nowhere: { tenantId: NOWHERE, sender: "a@nowhere.example" } } });
    const err = await rejection(provider.getToken(targetOf(config, "nowhere")));
    expect(err.code).toBe("credential_rejected");
    expect(err.extras.aadsts).toBe("90002");
    expect(err.message).toContain("Check tenantId");
    expect(err.message).not.toContain("endpoints_resolution_error");
  });

  it("when the tenant does not exist and the app's credential already knows the authority (another tenant sent first), then still AADSTS90002", async () => {
    const nowhere = { tenantId: NOWHERE, sender: "a@nowhere.example" };
    const { config, provider } = makeProvider({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso, nowhere } });
    await provider.getToken(targetOf(config, "contoso"));
    const err = await rejection(provider.getToken(targetOf(config, "nowhere")));
    expect(err.code).toBe("credential_rejected");
    expect(err.extras.aadsts).toBe("90002");
    expect(err.message).toContain("Check tenantId");
  });

  it("when the app is disabled in the tenant, then credential_rejected with AADSTS7000112", async () => {
    const { config, provider } = makeProvider({ app: secretApp(DISABLED_APP, GOOD_SECRET), tenants: { contoso } });
    const err = await rejection(provider.getToken(targetOf(config, "contoso")));
    expect(err.extras.aadsts).toBe("7000112");
    expect(err.message).toContain("enable the app");
  });

  it("when the app has no service principal in the tenant, then credential_rejected with AADSTS700016", async () => {
    const { config, provider } = makeProvider({ app: secretApp(FOREIGN_APP, GOOD_SECRET), tenants: { contoso } });
    const err = await rejection(provider.getToken(targetOf(config, "contoso")));
    expect(err.extras.aadsts).toBe("700016");
    expect(err.message).toContain("admin consent");
  });

  it("when the secret file cannot be read, then credential_rejected naming the key, not the path's content", async () => {
    const { config, provider } = makeProvider({
      app: { clientId: APP, credential: { type: "secret", secretFile: `${h.dir}/missing-secret` } },
      tenants: { contoso },
    });
    const err = await rejection(provider.getToken(targetOf(config, "contoso")));
    expect(err.code).toBe("credential_rejected");
    expect(err.message).toContain("secretFile cannot be read (ENOENT)");
  });
});

describe("Entra unavailable", () => {
  it("when the token endpoint answers 503, then upstream_unavailable with Retry-After and the failed requests are counted", async () => {
    h.emulator.state.inject({ kind: "token", action: "respond", status: 503 });
    const { config, provider, observer } = makeProvider({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso } });
    const err = await rejection(provider.getToken(targetOf(config, "contoso")));
    expect(err.code).toBe("upstream_unavailable");
    expect(err.extras.retryAfterSeconds).toBe(5);
    expect(err.message).toContain("HTTP 503");
    // One quick retry of an idempotent token request.
    expect(observer.of("tokenRequest").map((c) => c.outcome)).toEqual(["upstream_unavailable", "upstream_unavailable"]);
  });

  it("when Entra answers its outage body (503 temporarily_unavailable, AADSTS90033), then upstream_unavailable naming the code, not credential_rejected", async () => {
    h.emulator.state.inject({ kind: "token", action: "respond", status: 503 });
    const { config, provider, observer } = makeProvider({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso } });
    const err = await rejection(provider.getToken(targetOf(config, "contoso")));
    expect(err.code).toBe("upstream_unavailable");
    expect(err.extras).toMatchObject({ aadsts: "90033", retryAfterSeconds: 5 });
    expect(err.message).toMatch(/HTTP 503, temporarily_unavailable, AADSTS90033/);
    expect(err.message).toContain("not a problem with the credential");
    expect(h.emulator.state.requests({ kind: "token" }).map((r) => r.errorCode)).toContain("AADSTS90033");
    expect(observer.of("tokenRequest").map((c) => c.outcome)).not.toContain("credential_rejected");
  });

  it("when Entra refuses with a transient AADSTS code under a 4xx status (50033), then it still counts as an outage", async () => {
    h.emulator.state.inject({
      kind: "token",
      action: "respond",
      status: 400,
      body: { error: "invalid_request", error_description: "AADSTS50033: A transient error has occurred.", error_codes: [50033] },
    });
    const { config, provider } = makeProvider({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso } });
    const err = await rejection(provider.getToken(targetOf(config, "contoso")));
    expect(err.code).toBe("upstream_unavailable");
    expect(err.extras.aadsts).toBe("50033");
  });

  it("when nothing listens at the authority, then upstream_unavailable", async () => {
    const port = await closedPort();
    const config = h.config({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso } });
    const down = { ...config, cloud: { ...config.cloud, authorityHost: `https://127.0.0.1:${port}` } };
    provider = createEntraTokenProvider({ config: down, observer: recordingObserver(), logger: capturingLogger().logger });
    const err = await rejection(provider.getToken(targetOf(config, "contoso")));
    expect(err.code).toBe("upstream_unavailable");
    expect(err.message).toContain("ECONNREFUSED");
  });

  it("when Entra hangs, then the caller's signal ends the wait with upstream_unavailable", async () => {
    h.emulator.state.inject({ kind: "token", action: "hang", times: 1 });
    const { config, provider } = makeProvider({ app: secretApp(APP, GOOD_SECRET), tenants: { contoso } });
    const started = Date.now();
    const err = await rejection(provider.getToken(targetOf(config, "contoso"), AbortSignal.timeout(300)));
    expect(err.code).toBe("upstream_unavailable");
    expect(Date.now() - started).toBeLessThan(1_500);
  });
});
