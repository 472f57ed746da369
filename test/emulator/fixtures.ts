import { Agent as HttpsAgent } from "node:https";
import { Agent, fetch, type RequestInit, type Response } from "undici";
import type { ClientCertificate } from "../../src/emulator/certificates.js";
import type { ScenarioInput } from "../../src/emulator/scenario.js";
import type { Emulator } from "../../src/emulator/start-emulator.js";

export const CONTOSO = "72f988bf-86f1-41af-91ab-2d7cd011db47";
export const FABRIKAM = "0f0e0d0c-0b0a-4909-8807-060504030201";
export const UNKNOWN_TENANT = "99999999-9999-4999-8999-999999999999";

export const APP = "11111111-2222-3333-4444-555555555555";
export const APP_DISABLED = "22222222-2222-4222-8222-222222222222";
export const APP_NO_CONSENT = "33333333-3333-4333-8333-333333333333";
export const APP_READ_ONLY = "44444444-4444-4444-8444-444444444444";
export const APP_SCOPED = "55555555-5555-4555-8555-555555555555";
export const APP_FOREIGN = "66666666-6666-4666-8666-666666666666";

export const SECRET = "emulator-test-secret";
export const EXPIRED_SECRET = "emulator-expired-secret";
export const NOREPLY_ID = "a0a0a0a0-b1b1-4c2c-8d3d-e4e4e4e4e4e4";
export const FEDERATED_SUBJECT = "system:serviceaccount:relay:sender";
export const GRAPH_SCOPE = "https://graph.microsoft.com/.default";

/** Two tenants, six apps: every Entra/Graph outcome the tests need. */
export function scenario(cert?: ClientCertificate): ScenarioInput {
  const secrets = [{ value: SECRET }];
  return {
    tokenLifetimeSeconds: 3599,
    tenants: [
      {
        id: CONTOSO,
        displayName: "Contoso",
        domains: ["contoso.com", "contoso.onmicrosoft.com"],
        mailboxes: [
          { address: "noreply@contoso.com", id: NOREPLY_ID, aliases: ["no-reply@contoso.com"] },
          { address: "legacy@contoso.com", state: "notRestEnabled" },
          { address: "billing@contoso.com" },
        ],
        consents: [
          { appId: APP, roles: ["Mail.Send"] },
          { appId: APP_NO_CONSENT, roles: [] },
          { appId: APP_READ_ONLY, roles: ["User.Read.All"] },
          { appId: APP_SCOPED, roles: ["Mail.Send"] },
          { appId: APP_DISABLED, roles: ["Mail.Send"] },
        ],
        accessPolicies: [{ appId: APP_SCOPED, allow: ["noreply@contoso.com"] }],
      },
      {
        id: FABRIKAM,
        domains: ["fabrikam.com"],
        mailboxes: [{ address: "info@fabrikam.com" }],
        consents: [{ appId: APP, roles: ["Mail.Send"] }],
      },
    ],
    apps: [
      {
        clientId: APP,
        displayName: "noreply-relay",
        homeTenant: CONTOSO,
        secrets: [...secrets, { value: EXPIRED_SECRET, expiresAt: "2020-01-01T00:00:00Z" }],
        certificates: cert === undefined ? [] : [{ pem: cert.certPem }],
        federatedCredentials: [{ issuer: "emulator", subject: FEDERATED_SUBJECT }],
      },
      { clientId: APP_DISABLED, displayName: "Disabled app", homeTenant: CONTOSO, disabled: true, secrets },
      { clientId: APP_NO_CONSENT, secrets },
      { clientId: APP_READ_ONLY, secrets },
      { clientId: APP_SCOPED, secrets },
      { clientId: APP_FOREIGN, homeTenant: FABRIKAM, secrets },
    ],
    throttling: false,
  };
}

/** Options that point @azure/identity credentials at the emulator and trust its CA. */
export function credentialOptions(emu: Emulator) {
  return { authorityHost: emu.url, disableInstanceDiscovery: true, agent: new HttpsAgent({ ca: emu.caPem }) };
}

/** Raw HTTPS client for the emulator that trusts its CA. */
export function client(emu: Emulator) {
  const dispatcher = new Agent({ connect: { ca: emu.caPem } });
  const call = (path: string, init: RequestInit = {}): Promise<Response> => fetch(`${emu.url}${path}`, { ...init, dispatcher });
  return {
    dispatcher,
    fetch: call,
    /** Client-credentials token request with a secret; returns the raw response. */
    token(tenant: string, clientId: string, secret: string, scope = GRAPH_SCOPE): Promise<Response> {
      return call(`/${tenant}/oauth2/v2.0/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ grant_type: "client_credentials", client_id: clientId, client_secret: secret, scope }).toString(),
      });
    },
    async accessToken(tenant: string, clientId: string, secret = SECRET): Promise<string> {
      const r = await this.token(tenant, clientId, secret);
      const body = (await r.json()) as { access_token?: string };
      if (body.access_token === undefined) throw new Error(`no token: ${JSON.stringify(body)}`);
      return body.access_token;
    },
    sendMail(user: string, token: string | undefined, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
      return call(`/v1.0/users/${encodeURIComponent(user)}/sendMail`, {
        method: "POST",
        ...(signal !== undefined ? { signal } : {}),
        headers: { "content-type": "application/json", ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...headers },
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
    },
    close: () => dispatcher.close(),
  };
}

/** A minimal valid sendMail body. */
export function mail(overrides: Record<string, unknown> = {}, to = "someone@example.org"): { message: Record<string, unknown>; saveToSentItems?: boolean } {
  return {
    message: {
      subject: "Your receipt",
      body: { contentType: "Text", content: "Thanks!" },
      toRecipients: [{ emailAddress: { address: to } }],
      ...overrides,
    },
  };
}

/** Decodes a JWT payload without verifying it. */
export function jwtPayload(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf8")) as Record<string, unknown>;
}
