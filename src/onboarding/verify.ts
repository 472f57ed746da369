import { randomUUID } from "node:crypto";
import { decodeJwt } from "jose";
import type { Config } from "../config/schema.js";
import { isRelayError, type ProblemCode } from "../core/problems.js";
import type { Clock, GraphSender, TokenProvider, TokenTarget } from "../core/ports.js";
import { isTenantGuid } from "./consent.js";
import { daysAgo, listCredentialExpiry } from "./expiry.js";

/*
 * `noreply-relay verify <tenant>`: asks Entra for a real token with the tenant's credential
 * and reads what Entra put in it. The token's payload is decoded WITHOUT verifying its
 * signature: it came straight from the authority over TLS and is used for nothing but this
 * report. The token itself is never printed or logged.
 */

export type CheckStatus = "PASS" | "WARN" | "FAIL";

export interface VerifyCheck {
  /** Stable id for machines: config, credential-expiry, token, tenant-id, app-id, mail-send, excess-permissions, send-test. */
  readonly id: string;
  readonly status: CheckStatus;
  readonly message: string;
  /** What to do about a WARN or FAIL. */
  readonly advice?: string;
  /** Entra error code, when Entra refused. */
  readonly aadsts?: string;
  /** Problem code of the service, when a send or token request failed. */
  readonly code?: ProblemCode;
}

/** The claims that matter, decoded from the token. */
export interface TokenClaims {
  readonly tid?: string;
  readonly appId?: string;
  readonly roles: readonly string[];
  readonly audience?: string;
  readonly expiresAt?: string;
}

export interface VerifyReport {
  readonly tenant: string;
  readonly tenantId: string;
  readonly sender: string;
  readonly clientId: string;
  readonly appSource: "tenant" | "shared";
  readonly ok: boolean;
  readonly checks: readonly VerifyCheck[];
  readonly claims?: TokenClaims;
}

export interface VerifyDeps {
  readonly tokenProvider: TokenProvider;
  /** Needed only for `sendTest`. */
  readonly graphSender?: GraphSender;
  /** GETs a JSON document (the authority's openid-configuration, to resolve a domain to its tenant id). */
  readonly fetchJson: (url: string) => Promise<unknown>;
  readonly clock: Clock;
  /** What to do about an AADSTS code (the table in src/auth). */
  readonly aadstsAdvice?: (code: string) => string | undefined;
}

export interface VerifyOptions {
  /** Send one real message from the tenant's sender to this address. */
  readonly sendTest?: string;
  /**
   * The tenant scopes the app with RBAC for Applications: then the token must NOT carry a
   * tenant-wide Mail.Send role (it would override the Exchange scope), and only a test send
   * proves the scoped grant.
   */
  readonly rbac?: boolean;
}

/** The one permission the service needs. */
export const REQUIRED_ROLE = "Mail.Send";
/** Roles that make a leaked credential far worse: they read or change mail in every mailbox. */
const DANGEROUS_ROLES = /^(Mail\.ReadWrite|Mail\.Read|Mail\.ReadBasic(\.All)?|full_access_as_app|EWS\..*|MailboxSettings\.ReadWrite|Mail\.Send\.Shared|Directory\.ReadWrite\.All)$/;

const PROBLEM_ADVICE: Partial<Record<ProblemCode, string>> = {
  policy_denied:
    "The tenant's Exchange scope (RBAC for Applications or ApplicationAccessPolicy) does not include the sender. Run the script from `noreply-relay policy-script <tenant>` in the tenant; changes can take up to 2 hours to reach Graph.",
  permission_missing:
    "The app has no Mail.Send permission for this mailbox: admin consent missing or revoked, or (RBAC for Applications) no 'Application Mail.Send' role assignment. Send the consent link again or run the policy script.",
  mailbox_unavailable:
    "The sender mailbox does not exist in this tenant, has no Exchange Online licence/mailbox, or is not enabled for the REST API. Check the sender address in the config and the mailbox in Exchange admin center.",
  recipient_rejected: "Graph refused the test recipient address; try another address.",
  rate_limited: "Graph is throttling this mailbox; try again in a few minutes.",
  upstream_unavailable: "Entra ID or Graph could not be reached or answered 5xx; check the network path and try again.",
  outcome_unknown: "Graph did not confirm the message; it may still arrive. Check the recipient's inbox before trying again.",
  credential_rejected: "Entra rejected the credential; see the AADSTS code.",
};

/** Runs every check for one configured tenant. Never throws for a failed check: it reports it. */
export async function verifyTenant(
  config: Pick<Config, "tenants" | "app" | "cloud">,
  tenantKey: string,
  deps: VerifyDeps,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const tenant = Object.hasOwn(config.tenants, tenantKey) ? config.tenants[tenantKey] : undefined;
  const app = tenant?.app ?? config.app;
  if (!tenant || !app) {
    return {
      tenant: tenantKey,
      tenantId: "",
      sender: "",
      clientId: "",
      appSource: "shared",
      ok: false,
      checks: [{ id: "config", status: "FAIL", message: `no tenant "${tenantKey}" in the config`, advice: "Run `noreply-relay tenants` to list the configured tenants." }],
    };
  }
  const checks: VerifyCheck[] = [];
  const now = deps.clock.now();
  const base = {
    tenant: tenantKey,
    tenantId: tenant.tenantId,
    sender: tenant.sender,
    clientId: app.clientId,
    appSource: tenant.app ? ("tenant" as const) : ("shared" as const),
  };

  checks.push(expiryCheck(config, tenantKey, now));

  const target: TokenTarget = { tenantKey, tenantId: tenant.tenantId, app };
  let token: string;
  try {
    token = await deps.tokenProvider.getToken(target);
  } catch (err) {
    checks.push(tokenFailure(err, deps));
    return { ...base, ok: false, checks };
  }

  let claims: TokenClaims;
  try {
    claims = readClaims(token);
  } catch {
    checks.push({ id: "token", status: "FAIL", message: "Entra returned a token whose payload cannot be decoded", advice: "Check cloud.authorityHost: it must be the Entra authority." });
    return { ...base, ok: false, checks };
  }
  checks.push({
    id: "token",
    status: "PASS",
    message: `token obtained${claims.expiresAt ? ` (valid until ${claims.expiresAt})` : ""}; claims below are decoded without verifying the signature, and the token is not shown`,
  });

  checks.push(await tenantIdCheck(config.cloud.authorityHost, tenant.tenantId, claims.tid, deps));
  checks.push(appIdCheck(app.clientId, claims.appId));
  checks.push(mailSendCheck(claims.roles, options));
  const excess = excessCheck(claims.roles);
  if (excess) checks.push(excess);

  if (options.sendTest !== undefined) {
    checks.push(await sendTest(target, tenant.sender, options.sendTest, deps, options.rbac === true ? "rbac" : "consent"));
  } else if (options.rbac && !claims.roles.includes(REQUIRED_ROLE)) {
    checks.push({
      id: "send-test",
      status: "WARN",
      message: "not run: with RBAC for Applications the token cannot show the scoped grant",
      advice: "Run again with --send-test <your address> to prove the app can send as the sender.",
    });
  }

  return { ...base, ok: !checks.some((c) => c.status === "FAIL"), checks, claims };
}

function expiryCheck(config: Pick<Config, "tenants" | "app">, tenantKey: string, now: number): VerifyCheck {
  const row = listCredentialExpiry(config, now).find((r) => r.tenantKey === tenantKey);
  if (!row || row.status === "unknown") {
    return row?.credential === "workloadIdentity"
      ? { id: "credential-expiry", status: "PASS", message: "federated credential (no expiry)" }
      : {
          id: "credential-expiry",
          status: "WARN",
          message: `${row?.credential ?? "credential"} has no expiresAt in the config, so its expiry is not watched`,
          advice: "Add expiresAt (from the app registration's Certificates & secrets page) to the credential in the config.",
        };
  }
  const when = row.expiresAt!.toISOString().slice(0, 10);
  if (row.status === "expired") {
    return {
      id: "credential-expiry",
      status: "FAIL",
      message: `${row.credential} of app ${row.clientId} expired on ${when} (${daysAgo(row.expiresAt!, now)} day(s) ago)`,
      advice: "Create a new secret/certificate on the app registration, put it where the config points, and update expiresAt.",
    };
  }
  if (row.status === "expiring") {
    return {
      id: "credential-expiry",
      status: "WARN",
      message: `${row.credential} of app ${row.clientId} expires on ${when} (in ${row.daysLeft} day(s))`,
      advice: "Create the next secret now and set it as secondarySecretFile/Env, then swap it in before the old one expires.",
    };
  }
  return { id: "credential-expiry", status: "PASS", message: `${row.credential} expires on ${when} (in ${row.daysLeft} days)` };
}

function tokenFailure(err: unknown, deps: VerifyDeps): VerifyCheck {
  if (isRelayError(err)) {
    const aadsts = err.extras.aadsts;
    const advice = (aadsts !== undefined ? deps.aadstsAdvice?.(aadsts) : undefined) ?? PROBLEM_ADVICE[err.code];
    return {
      id: "token",
      status: "FAIL",
      message: aadsts !== undefined ? `Entra refused the token request: AADSTS${aadsts}` : `token request failed: ${err.code}: ${err.message}`,
      code: err.code,
      ...(aadsts !== undefined ? { aadsts } : {}),
      ...(advice !== undefined ? { advice } : {}),
    };
  }
  return { id: "token", status: "FAIL", message: `token request failed: ${(err as Error).message ?? String(err)}` };
}

/** Reads tid, appid/azp, roles, aud and exp from a JWT without verifying it. */
export function readClaims(token: string): TokenClaims {
  const payload = decodeJwt(token);
  const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
  const roles = Array.isArray(payload.roles) ? payload.roles.filter((r): r is string => typeof r === "string") : [];
  const tid = str(payload.tid);
  const appId = str(payload.appid) ?? str(payload.azp);
  const audience = typeof payload.aud === "string" ? payload.aud : Array.isArray(payload.aud) ? payload.aud.join(" ") : undefined;
  return {
    ...(tid !== undefined ? { tid } : {}),
    ...(appId !== undefined ? { appId } : {}),
    roles,
    ...(audience !== undefined ? { audience } : {}),
    ...(typeof payload.exp === "number" ? { expiresAt: new Date(payload.exp * 1000).toISOString() } : {}),
  };
}

async function tenantIdCheck(authorityHost: string, configured: string, tid: string | undefined, deps: VerifyDeps): Promise<VerifyCheck> {
  if (tid === undefined) return { id: "tenant-id", status: "FAIL", message: "the token has no tid claim", advice: "Check cloud.authorityHost." };
  if (isTenantGuid(configured)) {
    return configured.toLowerCase() === tid.toLowerCase()
      ? { id: "tenant-id", status: "PASS", message: `tid ${tid} matches the configured tenantId` }
      : {
          id: "tenant-id",
          status: "FAIL",
          message: `the token is for tenant ${tid}, but the config says ${configured}`,
          advice: "Correct tenants.<key>.tenantId (Entra admin center > Overview > Tenant ID).",
        };
  }
  const resolved = await resolveDomain(authorityHost, configured, deps).catch(() => undefined);
  if (resolved === undefined) {
    return {
      id: "tenant-id",
      status: "WARN",
      message: `the token is for tenant ${tid}; could not resolve ${configured} to a tenant id to compare`,
      advice: `Put the tenant GUID (${tid}) in tenants.<key>.tenantId instead of the domain, if it is the right tenant.`,
    };
  }
  return resolved.toLowerCase() === tid.toLowerCase()
    ? { id: "tenant-id", status: "PASS", message: `tid ${tid} matches ${configured} (resolved through the authority's openid-configuration)` }
    : {
        id: "tenant-id",
        status: "FAIL",
        message: `the token is for tenant ${tid}, but ${configured} belongs to tenant ${resolved}`,
        advice: "Correct tenants.<key>.tenantId.",
      };
}

/** A verified domain's tenant id, from `{authority}/{domain}/v2.0/.well-known/openid-configuration` → issuer. */
export async function resolveDomain(authorityHost: string, domain: string, deps: Pick<VerifyDeps, "fetchJson">): Promise<string | undefined> {
  const doc = await deps.fetchJson(`${authorityHost.replace(/\/+$/, "")}/${encodeURIComponent(domain)}/v2.0/.well-known/openid-configuration`);
  const issuer = doc && typeof doc === "object" ? (doc as { issuer?: unknown }).issuer : undefined;
  if (typeof issuer !== "string") return undefined;
  return /\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:\/|$)/i.exec(issuer)?.[1];
}

function appIdCheck(clientId: string, appId: string | undefined): VerifyCheck {
  if (appId === undefined) return { id: "app-id", status: "WARN", message: "the token names no app (appid/azp)" };
  return appId.toLowerCase() === clientId.toLowerCase()
    ? { id: "app-id", status: "PASS", message: `issued to app ${appId}` }
    : { id: "app-id", status: "FAIL", message: `issued to app ${appId}, but the config says ${clientId}`, advice: "Correct the app's clientId in the config." };
}

function mailSendCheck(roles: readonly string[], options: VerifyOptions): VerifyCheck {
  const has = roles.includes(REQUIRED_ROLE);
  if (options.rbac) {
    return has
      ? {
          id: "mail-send",
          status: "FAIL",
          message: "the token carries a tenant-wide Mail.Send role from Entra ID: the app can send as ANY mailbox, whatever the RBAC for Applications scope says",
          advice: "Remove the Entra grant: run the policy script with -RemoveEntraGrant (or Enterprise applications > the app > Permissions > revoke Mail.Send).",
        }
      : { id: "mail-send", status: "PASS", message: "no tenant-wide Mail.Send in the token: the Exchange RBAC for Applications scope decides" };
  }
  return has
    ? {
        id: "mail-send",
        status: "PASS",
        message:
          "Mail.Send role present; it is tenant-wide in Entra ID, so an ApplicationAccessPolicy must narrow it to the sender (`policy-script --legacy`); a tenant on RBAC for Applications must not have it (check with --rbac)",
      }
    : {
        id: "mail-send",
        status: "FAIL",
        message: `the token has no Mail.Send role (roles: ${roles.length > 0 ? roles.join(", ") : "none"})`,
        advice:
          "Admin consent is missing or was revoked: send the link from `noreply-relay consent-url <tenant>` to the customer's admin. If this tenant uses RBAC for Applications, no role in the token is expected: run verify --rbac --send-test <address>.",
      };
}

function excessCheck(roles: readonly string[]): VerifyCheck | undefined {
  const extra = roles.filter((r) => r !== REQUIRED_ROLE);
  if (extra.length === 0) return undefined;
  const dangerous = extra.filter((r) => DANGEROUS_ROLES.test(r));
  return {
    id: "excess-permissions",
    status: "WARN",
    message: `the app has more than Mail.Send in this tenant: ${extra.join(", ")}${dangerous.length > 0 ? ` (${dangerous.join(", ")} can reach the content of every mailbox)` : ""}`,
    advice: "Remove these permissions from the app registration and revoke them in the tenant (Enterprise applications > the app > Permissions); noreply-relay needs only Mail.Send.",
  };
}

async function sendTest(target: TokenTarget, sender: string, to: string, deps: VerifyDeps, accessModel: "consent" | "rbac"): Promise<VerifyCheck> {
  if (!deps.graphSender) return { id: "send-test", status: "FAIL", message: "no Graph sender available" };
  const now = deps.clock.now();
  const requestId = randomUUID();
  try {
    const result = await deps.graphSender.send({
      target,
      sender,
      message: {
        subject: `noreply-relay test message (${target.tenantKey})`,
        body: {
          contentType: "Text",
          content: `This is a test message from noreply-relay, sent by "noreply-relay verify ${target.tenantKey} --send-test" at ${new Date(now).toISOString()}.\nIf you received it, the tenant is set up correctly. No reply is needed.`,
        },
        toRecipients: [{ emailAddress: { address: to } }],
      },
      saveToSentItems: false,
      deadline: now + 30_000,
      requestId,
      accessModel,
    });
    return {
      id: "send-test",
      status: "PASS",
      message: `Graph accepted a test message from ${sender} to ${to}${result.graphRequestId ? ` (Graph request-id ${result.graphRequestId})` : ""}`,
    };
  } catch (err) {
    if (isRelayError(err)) {
      const advice = (err.extras.aadsts !== undefined ? deps.aadstsAdvice?.(err.extras.aadsts) : undefined) ?? PROBLEM_ADVICE[err.code];
      return {
        id: "send-test",
        status: "FAIL",
        message: `Graph refused the test message: ${err.code}${err.extras.graphCode ? ` (${err.extras.graphCode})` : ""}: ${err.message}`,
        code: err.code,
        ...(err.extras.aadsts !== undefined ? { aadsts: err.extras.aadsts } : {}),
        ...(advice !== undefined ? { advice } : {}),
      };
    }
    return { id: "send-test", status: "FAIL", message: `test send failed: ${(err as Error).message ?? String(err)}` };
  }
}

/** Human-readable report: one line per check, advice indented under it, a verdict at the end. */
export function formatReport(report: VerifyReport): string {
  const lines = [
    `verify ${report.tenant}: tenant ${report.tenantId || "?"}, sender ${report.sender || "?"}, app ${report.clientId || "?"}${report.clientId ? ` (${report.appSource === "tenant" ? "tenant's own app" : "shared app"})` : ""}`,
  ];
  const width = Math.max(...report.checks.map((c) => c.id.length));
  for (const c of report.checks) {
    lines.push(`${c.status.padEnd(4)}  ${c.id.padEnd(width)}  ${c.message}`);
    if (c.advice && c.status !== "PASS") lines.push(`${" ".repeat(width + 8)}→ ${c.advice}`);
  }
  if (report.claims) {
    lines.push(`claims: tid=${report.claims.tid ?? "-"} appid=${report.claims.appId ?? "-"} roles=[${report.claims.roles.join(", ")}]`);
  }
  const fails = report.checks.filter((c) => c.status === "FAIL").length;
  const warns = report.checks.filter((c) => c.status === "WARN").length;
  lines.push(`result: ${fails > 0 ? "FAIL" : warns > 0 ? "PASS with warnings" : "PASS"} (${fails} FAIL, ${warns} WARN)`);
  return `${lines.join("\n")}\n`;
}
