import { createPublicKey } from "node:crypto";
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../src/emulator/start-emulator.js";
import {
  APP,
  APP_DISABLED,
  APP_FOREIGN,
  APP_NO_CONSENT,
  client,
  CONTOSO,
  EXPIRED_SECRET,
  FABRIKAM,
  jwtPayload,
  scenario,
  SECRET,
  UNKNOWN_TENANT,
} from "./fixtures.js";

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

const DESCRIPTION = /^AADSTS(\d+): (.*)\r\nTrace ID: ([0-9a-f-]{36})\r\nCorrelation ID: ([0-9a-f-]{36})\r\nTimestamp: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ)$/s;

async function expectEntraError(res: Awaited<ReturnType<typeof http.token>>, status: number, error: string, code: number, text: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  const body = (await res.json()) as Record<string, unknown>;
  expect(Object.keys(body).sort()).toEqual(["correlation_id", "error", "error_codes", "error_description", "error_uri", "timestamp", "trace_id"]);
  expect(body.error).toBe(error);
  expect(body.error_codes).toEqual([code]);
  expect(body.error_uri).toBe(`https://login.microsoftonline.com/error?code=${code}`);
  const m = DESCRIPTION.exec(String(body.error_description));
  expect(m, String(body.error_description)).not.toBeNull();
  expect(m![1]).toBe(String(code));
  expect(m![2]).toBe(text);
  expect(m![3]).toBe(body.trace_id);
  expect(m![4]).toBe(body.correlation_id);
  expect(m![5]).toBe(body.timestamp);
}

describe("token endpoint", () => {
  it("issues an RS256 Graph token, verifiable with the tenant's JWKS", async () => {
    const res = await http.token(CONTOSO, APP, SECRET);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { token_type: string; expires_in: number; ext_expires_in: number; access_token: string };
    expect(body).toMatchObject({ token_type: "Bearer", expires_in: 3599, ext_expires_in: 3599 });
    const config = (await (await http.fetch(`/${CONTOSO}/v2.0/.well-known/openid-configuration`)).json()) as { jwks_uri: string };
    const jwks = (await (await http.fetch(new URL(config.jwks_uri).pathname)).json()) as JSONWebKeySet;
    const { protectedHeader } = await compactVerify(body.access_token, createLocalJWKSet(jwks));
    expect(protectedHeader.alg).toBe("RS256");
    const claims = jwtPayload(body.access_token);
    expect(claims).toMatchObject({ aud: "https://graph.microsoft.com", tid: CONTOSO, appid: APP, azp: APP, roles: ["Mail.Send"], idtyp: "app" });
    expect(typeof claims.iat).toBe("number");
    expect(claims.exp).toBe((claims.iat as number) + 3599);
  });

  it("uses the configured token lifetime", async () => {
    const short = await startEmulator({ scenario: scenario(), tokenLifetimeSeconds: 60 });
    const c = client(short);
    try {
      const token = await c.accessToken(CONTOSO, APP);
      const claims = jwtPayload(token);
      expect((claims.exp as number) - (claims.iat as number)).toBe(60);
    } finally {
      await c.close();
      await short.close();
    }
  });

  it("issues a token without `roles` when nothing was consented (Entra does, for client credentials)", async () => {
    const token = await http.accessToken(CONTOSO, APP_NO_CONSENT);
    expect(jwtPayload(token)).not.toHaveProperty("roles");
  });

  it("issues per-tenant tokens for a multi-tenant app consented in several tenants", async () => {
    expect(jwtPayload(await http.accessToken("fabrikam.com", APP)).tid).toBe(FABRIKAM);
  });

  it("accepts client_secret_basic", async () => {
    const res = await http.fetch(`/${CONTOSO}/oauth2/v2.0/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${Buffer.from(`${APP}:${SECRET}`).toString("base64")}` },
      body: "grant_type=client_credentials&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
    });
    expect(res.status).toBe(200);
  });

  it("invalid secret: 401 invalid_client AADSTS7000215", async () => {
    await expectEntraError(await http.token(CONTOSO, APP, "nope"), 401, "invalid_client", 7000215,
      `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${APP}'.`);
  });

  it("expired secret: 401 invalid_client AADSTS7000222", async () => {
    await expectEntraError(await http.token(CONTOSO, APP, EXPIRED_SECRET), 401, "invalid_client", 7000222,
      `The provided client secret keys for app '${APP}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.`);
  });

  it("app not in the directory: 400 unauthorized_client AADSTS700016", async () => {
    await expectEntraError(await http.token(CONTOSO, APP_FOREIGN, SECRET), 400, "unauthorized_client", 700016,
      `Application with identifier '${APP_FOREIGN}' was not found in the directory 'Contoso'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`);
    await expectEntraError(await http.token(CONTOSO, "77777777-7777-4777-8777-777777777777", SECRET), 400, "unauthorized_client", 700016,
      "Application with identifier '77777777-7777-4777-8777-777777777777' was not found in the directory 'Contoso'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.");
  });

  it("tenant not found: 400 invalid_request AADSTS90002", async () => {
    await expectEntraError(await http.token(UNKNOWN_TENANT, APP, SECRET), 400, "invalid_request", 90002,
      `Tenant '${UNKNOWN_TENANT}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.`);
  });

  it("disabled app: 400 unauthorized_client AADSTS7000112", async () => {
    await expectEntraError(await http.token(CONTOSO, APP_DISABLED, SECRET), 400, "unauthorized_client", 7000112, `Application '${APP_DISABLED}'(Disabled app) is disabled.`);
  });

  it("request problems: missing credential, bad scope, other resource, other grant", async () => {
    const post = (form: Record<string, string>) =>
      http.fetch(`/${CONTOSO}/oauth2/v2.0/token`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(form).toString() });
    const base = { grant_type: "client_credentials", client_id: APP, scope: "https://graph.microsoft.com/.default" };
    await expectEntraError(await post(base), 401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.");
    await expectEntraError(await post({ ...base, client_secret: SECRET, scope: "Mail.Send" }), 400, "invalid_scope", 1002012,
      "The provided value for scope Mail.Send is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).");
    const other = await post({ ...base, client_secret: SECRET, scope: "https://vault.azure.net/.default" });
    expect(((await other.json()) as { error_codes: number[] }).error_codes).toEqual([500011]);
    await expectEntraError(await post({ ...base, client_secret: SECRET, grant_type: "password" }), 400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type 'password'.");
  });

  it("accepts a federated assertion minted through /_emulator/oidc/token", async () => {
    const config = (await (await http.fetch("/_emulator/oidc/.well-known/openid-configuration")).json()) as { issuer: string };
    expect(config.issuer).toBe(emu.state.oidcIssuer);
    const minted = (await (
      await http.fetch("/_emulator/oidc/token", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ subject: "system:serviceaccount:relay:sender" }) })
    ).json()) as { token: string };
    expect(jwtPayload(minted.token)).toMatchObject({ iss: emu.state.oidcIssuer, aud: "api://AzureADTokenExchange" });
    const res = await http.fetch(`/${CONTOSO}/oauth2/v2.0/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "client_credentials",
        client_id: APP,
        scope: "https://graph.microsoft.com/.default",
        client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion: minted.token,
      }).toString(),
    });
    expect(res.status).toBe(200);
    const wrongAudience = await emu.state.mintFederatedToken({ subject: "system:serviceaccount:relay:sender", audience: "api://other" });
    const refused = await http.fetch(`/${CONTOSO}/oauth2/v2.0/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "client_credentials",
        client_id: APP,
        scope: "https://graph.microsoft.com/.default",
        client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion: wrongAudience,
      }).toString(),
    });
    await expectEntraError(refused, 401, "invalid_client", 700212,
      "No matching federated identity record found for presented assertion audience 'api://other'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation");
  });

  it("echoes client-request-id as the correlation id", async () => {
    const res = await http.fetch(`/${CONTOSO}/oauth2/v2.0/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "client-request-id": "0b4a3f3c-1111-4222-8333-944455556666" },
      body: new URLSearchParams({ grant_type: "client_credentials", client_id: APP, client_secret: "bad", scope: "https://graph.microsoft.com/.default" }).toString(),
    });
    expect(((await res.json()) as { correlation_id: string }).correlation_id).toBe("0b4a3f3c-1111-4222-8333-944455556666");
  });
});

describe("discovery", () => {
  it("serves the tenant's OpenID configuration with emulator URLs (by GUID or domain)", async () => {
    for (const t of [CONTOSO, "contoso.com"]) {
      const res = await http.fetch(`/${t}/v2.0/.well-known/openid-configuration`);
      expect(res.status).toBe(200);
      const config = (await res.json()) as Record<string, string>;
      expect(config.issuer).toBe(`${emu.url}/${CONTOSO}/v2.0`);
      expect(config.token_endpoint).toBe(`${emu.url}/${CONTOSO}/oauth2/v2.0/token`);
      expect(config.jwks_uri).toBe(`${emu.url}/${CONTOSO}/discovery/v2.0/keys`);
    }
  });

  it("answers discovery of an unknown tenant with 400 invalid_tenant AADSTS90002, as Entra does", async () => {
    await expectEntraError(await http.fetch(`/${UNKNOWN_TENANT}/v2.0/.well-known/openid-configuration`), 400, "invalid_tenant", 90002,
      `Tenant '${UNKNOWN_TENANT}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.`);
  });

  it("serves instance discovery and a JWKS whose key verifies the issued tokens", async () => {
    const inst = (await (await http.fetch(`/common/discovery/instance?api-version=1.1&authorization_endpoint=${encodeURIComponent(`${emu.url}/${CONTOSO}/oauth2/v2.0/authorize`)}`)).json()) as Record<string, unknown>;
    expect(inst.tenant_discovery_endpoint).toBe(`${emu.url}/${CONTOSO}/v2.0/.well-known/openid-configuration`);
    const jwks = (await (await http.fetch("/common/discovery/keys")).json()) as { keys: { kid: string; kty: string }[] };
    expect(jwks.keys[0]).toMatchObject({ kty: "RSA", use: "sig" });
    const token = await http.accessToken(CONTOSO, APP);
    await expect(compactVerify(token, createPublicKey({ key: jwks.keys[0]!, format: "jwk" }))).resolves.toBeDefined();
  });
});
