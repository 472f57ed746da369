import { randomBytes } from "node:crypto";
import type { ScenarioInput } from "../../src/emulator/scenario.js";

/*
 * The standard test world: one multi-tenant app used by most tenants, and a tenant for each
 * way Microsoft 365 can refuse a send. Secrets are random per test process, so a "never
 * logged" check cannot pass by accident.
 */

const secret = (label: string): string => `${label}-${randomBytes(18).toString("base64url")}`;

export const APP_ID = "11111111-2222-3333-4444-555555555555";
export const APP_SECRET = secret("app");
export const WOODGROVE_APP_ID = "22222222-3333-4444-5555-666666666666";
export const WOODGROVE_OLD_SECRET = secret("woodgrove-old");
export const WOODGROVE_NEW_SECRET = secret("woodgrove-new");
export const LITWARE_APP_ID = "33333333-4444-5555-6666-777777777777";
export const LITWARE_SECRET = secret("litware");

const tenant = (n: number, domain: string) => ({ id: `a0000000-0000-4000-8000-00000000000${n}`, domain });

/** Sends fine. */
export const CONTOSO = tenant(1, "contoso.com");
/** The app's access policy allows only alerts@fabrikam.com, not the configured sender: policy_denied. */
export const FABRIKAM = tenant(2, "fabrikam.com");
/** Service principal without Mail.Send consent: permission_missing. */
export const NORTHWIND = tenant(3, "northwind.com");
/** Sender mailbox not enabled for REST: mailbox_unavailable. */
export const ADATUM = tenant(4, "adatum.com");
/** Sends fine; kept for tests that break Entra or Graph with faults. */
export const TAILSPIN = tenant(5, "tailspin.com");
/** Own app whose primary secret has expired; the secondary works. */
export const WOODGROVE = tenant(6, "woodgrove.com");
/** Own app, configured with a wrong secret: credential_rejected. */
export const LITWARE = tenant(7, "litware.com");

const MAIL_SEND = ["Mail.Send"];

function sendingTenant(t: { id: string; domain: string }, appId: string, extra: Record<string, unknown> = {}) {
  return {
    id: t.id,
    domains: [t.domain],
    mailboxes: [{ address: `noreply@${t.domain}` }],
    consents: [{ appId, roles: MAIL_SEND }],
    ...extra,
  };
}

export function standardScenario(): ScenarioInput {
  return {
    throttling: false,
    tenants: [
      sendingTenant(CONTOSO, APP_ID),
      sendingTenant(FABRIKAM, APP_ID, {
        mailboxes: [{ address: "noreply@fabrikam.com" }, { address: "alerts@fabrikam.com" }],
        accessPolicies: [{ appId: APP_ID, allow: ["alerts@fabrikam.com"] }],
      }),
      sendingTenant(NORTHWIND, APP_ID, { consents: [{ appId: APP_ID, roles: [] }] }),
      sendingTenant(ADATUM, APP_ID, { mailboxes: [{ address: "noreply@adatum.com", state: "notRestEnabled" }] }),
      sendingTenant(TAILSPIN, APP_ID),
      sendingTenant(WOODGROVE, WOODGROVE_APP_ID),
      sendingTenant(LITWARE, LITWARE_APP_ID),
    ],
    apps: [
      { clientId: APP_ID, displayName: "noreply-relay", homeTenant: CONTOSO.id, secrets: [{ value: APP_SECRET }] },
      {
        clientId: WOODGROVE_APP_ID,
        displayName: "woodgrove relay",
        homeTenant: WOODGROVE.id,
        secrets: [{ value: WOODGROVE_OLD_SECRET, expiresAt: "2020-01-01T00:00:00Z" }, { value: WOODGROVE_NEW_SECRET }],
      },
      { clientId: LITWARE_APP_ID, displayName: "litware relay", homeTenant: LITWARE.id, secrets: [{ value: LITWARE_SECRET }] },
    ],
  };
}

/** A minimal valid /send body for `tenant`. */
export function message(tenant = "contoso", extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { tenant, to: ["someone@example.com"], subject: "Hello", text: "Hi there", ...extra };
}
