import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

/*
 * Scenario = the emulator's directory: tenants with their mailboxes, consents and access
 * policies, app registrations with their credentials, plus throttling/latency knobs.
 * Every object is strict: a misspelt key is an error, not a silently ignored setting,
 * because a typo in a test scenario would otherwise make a test pass for the wrong reason.
 * See src/emulator/README.md for the reference with examples.
 */

// Entra GUIDs used in tests are often not RFC 4122 (e.g. 11111111-2222-3333-4444-555555555555).
const guid = z.guid();

const dateLike = z
  .union([z.date(), z.iso.datetime({ offset: true }), z.iso.date()])
  .transform((v) => (v instanceof Date ? v : new Date(v)));

/**
 * `enabled`: can receive Graph calls. `notRestEnabled`: exists but Graph answers
 * MailboxNotEnabledForRESTAPI. `full`: over its quota, so Exchange refuses to send from it
 * (ErrorQuotaExceeded). `sendingBlocked`: Exchange blocked it from sending (a restricted sender
 * after outbound spam limits: ErrorMessageSubmissionBlocked).
 */
export const mailboxStateSchema = z.enum(["enabled", "notRestEnabled", "full", "sendingBlocked"]);

/** A mailbox (user with an Exchange Online mailbox) of a tenant. */
export const mailboxSchema = z.strictObject({
  /** Primary SMTP address = UPN. Matched case-insensitively. */
  address: z.email(),
  /** Object id of the user; generated deterministically from tenant id + address when absent. */
  id: guid.optional(),
  displayName: z.string().optional(),
  state: mailboxStateSchema.default("enabled"),
  /** Extra SMTP addresses (proxyAddresses) that also resolve to this mailbox. */
  aliases: z.array(z.email()).default([]),
  /** Addresses this mailbox has the Send As right for; a `from` elsewhere gets 403 ErrorSendAsDenied. */
  sendAs: z.array(z.email()).default([]),
});

/** Admin consent of an app in a tenant: creates its service principal there and grants Graph app roles. */
export const consentSchema = z.strictObject({
  appId: guid,
  /**
   * Application permissions (app roles) on Microsoft Graph granted by admin consent in this tenant.
   * An entry with `roles: []` models "service principal exists, nothing consented":
   * Entra still issues a token, without a `roles` claim.
   */
  roles: z.array(z.string().min(1)).default([]),
});

/** ApplicationAccessPolicy (or RBAC for Applications scope) limiting which mailboxes an app may use. */
export const accessPolicySchema = z
  .strictObject({
    appId: guid,
    /** ApplicationAccessPolicy RestrictAccess: the app may only use these mailboxes (address or object id). */
    allow: z.array(z.string().min(1)).optional(),
    /** ApplicationAccessPolicy DenyAccess: the app may use every mailbox except these. */
    deny: z.array(z.string().min(1)).optional(),
  })
  .refine((p) => (p.allow === undefined) !== (p.deny === undefined), {
    message: "an access policy needs exactly one of `allow` or `deny`",
  });

/**
 * An Exchange RBAC for Applications grant: `New-ManagementRoleAssignment -App <sp> -Role <role>
 * [-CustomResourceScope <scope>]` (https://learn.microsoft.com/en-us/exchange/permissions-exo/application-rbac).
 * Such a grant lives in Exchange, not in Entra: the app's token carries no role for it, and Graph
 * still lets the app act on the mailboxes in the scope. Grants add to the Entra permissions.
 */
export const roleAssignmentSchema = z.strictObject({
  appId: guid,
  /** Exchange application role; `Application Mail.Send` is the one sendMail needs. */
  role: z.string().min(1).default("Application Mail.Send"),
  /** The management scope: the mailboxes (address, alias or object id) it covers. Absent = the whole organization. */
  mailboxes: z.array(z.string().min(1)).optional(),
});

/** An Entra ID tenant with its Exchange Online mailboxes. */
export const tenantSchema = z.strictObject({
  id: guid,
  displayName: z.string().optional(),
  /** Verified domains; the tenant can be addressed by any of them in token/discovery URLs. */
  domains: z.array(z.string().min(1)).default([]),
  mailboxes: z.array(mailboxSchema).default([]),
  consents: z.array(consentSchema).default([]),
  /** Per app. No policy for an app = it may send as any mailbox of the tenant. */
  accessPolicies: z.array(accessPolicySchema).default([]),
  /** Exchange RBAC for Applications role assignments (scoped grants that tokens do not show). */
  roleAssignments: z.array(roleAssignmentSchema).default([]),
  /** False: the tenant has no Exchange Online; Graph answers 401 OrganizationFromTenantGuidNotFound. */
  exchangeOnline: z.boolean().default(true),
});

/** A client secret of an app registration. */
export const secretSchema = z.strictObject({
  value: z.string().min(1),
  /** Optional; an expired secret is refused with AADSTS7000222. */
  expiresAt: dateLike.optional(),
  /** Optional key id (GUID) shown in AADSTS7000222 texts, like Entra's. Generated when absent. */
  keyId: guid.optional(),
});

/** A certificate credential (public part) of an app registration. */
export const certificateSchema = z.strictObject({
  /** Public certificate (PEM). Client assertions are matched by their x5t / x5t#S256 header. */
  pem: z.string().includes("-----BEGIN CERTIFICATE-----"),
  /** Optional; an expired certificate is refused with AADSTS700027. */
  expiresAt: dateLike.optional(),
});

/** A federated identity credential (workload identity federation) of an app registration. */
export const federatedCredentialSchema = z.strictObject({
  name: z.string().optional(),
  /** Issuer URL of the external IdP, or `emulator` for the emulator's own OIDC issuer ({url}/_emulator/oidc). */
  issuer: z.string().min(1),
  subject: z.string().min(1),
  audience: z.string().min(1).default("api://AzureADTokenExchange"),
});

/** An app registration (multi-tenant capable). */
export const appSchema = z.strictObject({
  clientId: guid,
  displayName: z.string().optional(),
  /** Tenant where the app is registered; its service principal exists there even without a consent entry. */
  homeTenant: guid.optional(),
  /** Disabled service principal: token requests fail with AADSTS7000112. */
  disabled: z.boolean().default(false),
  secrets: z.array(secretSchema).default([]),
  certificates: z.array(certificateSchema).default([]),
  federatedCredentials: z.array(federatedCredentialSchema).default([]),
});

/** Outlook throttling per (app, mailbox). */
export const throttlingSchema = z.strictObject({
  /** Requests in flight per (app, mailbox); the next one gets 429 ApplicationThrottled. 0 = unlimited. */
  mailboxConcurrency: z.number().int().min(0).default(4),
  /** Requests per (app, mailbox) per window; 0 = unlimited. Outlook: 10,000 per 10 minutes. */
  requestsPerWindow: z.number().int().min(0).default(10_000),
  windowSeconds: z.number().positive().default(600),
  /**
   * Recipients (to+cc+bcc) per mailbox in a rolling 24 h before Exchange refuses to submit more
   * (ErrorSubmissionQuotaExceeded); 0 = unlimited. Exchange Online: 10,000
   * (https://learn.microsoft.com/en-us/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits).
   */
  recipientsPerDay: z.number().int().min(0).default(10_000),
  /**
   * Request bytes (POST/PUT/PATCH bodies) per mailbox per `uploadWindowSeconds` before 429
   * "Application is over its IncomingBytes limit."; 0 = unlimited. Outlook: 150 MB per 5 minutes
   * (https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits).
   */
  uploadBytesPerWindow: z.number().int().min(0).default(150 * 1024 * 1024),
  uploadWindowSeconds: z.number().positive().default(300),
});

/** Latency added to every Entra and Graph request. */
export const latencySchema = z.strictObject({
  fixedMs: z.number().min(0).default(0),
  /** Uniform random extra delay in [0, jitterMs). */
  jitterMs: z.number().min(0).default(0),
});

const throttlingDisabled = {
  mailboxConcurrency: 0,
  requestsPerWindow: 0,
  windowSeconds: 600,
  recipientsPerDay: 0,
  uploadBytesPerWindow: 0,
  uploadWindowSeconds: 300,
} as const;

/** The whole scenario document. */
export const scenarioSchema = z
  .strictObject({
    /**
     * Access token lifetime (`exp - iat`), seconds. Absent: a random value from 3600 to 5400 per
     * token, as Entra assigns by default ("a random value ranging between 60-90 minutes (75 minutes
     * on average)", https://learn.microsoft.com/en-us/entra/identity-platform/configurable-token-lifetimes),
     * so a client cannot come to rely on one fixed lifetime.
     */
    tokenLifetimeSeconds: z.number().int().positive().optional(),
    tenants: z.array(tenantSchema).default([]),
    apps: z.array(appSchema).default([]),
    /** `false` turns throttling off entirely. */
    throttling: z
      .union([z.literal(false), throttlingSchema])
      .default({ mailboxConcurrency: 4, requestsPerWindow: 10_000, windowSeconds: 600, recipientsPerDay: 10_000, uploadBytesPerWindow: 150 * 1024 * 1024, uploadWindowSeconds: 300 })
      .transform((t) => (t === false ? { ...throttlingDisabled } : t)),
    latency: latencySchema.default({ fixedMs: 0, jitterMs: 0 }),
  })
  .superRefine((s, ctx) => {
    const seen = new Map<string, string>();
    const claim = (key: string, what: string, path: (string | number)[]) => {
      const k = key.toLowerCase();
      const prev = seen.get(k);
      if (prev !== undefined) ctx.addIssue({ code: "custom", message: `duplicate ${what} '${key}' (also ${prev})`, path });
      else seen.set(k, path.join("."));
    };
    s.tenants.forEach((t, ti) => {
      claim(`tenant:${t.id}`, "tenant id", ["tenants", ti, "id"]);
      t.domains.forEach((d, di) => claim(`tenant:${d}`, "tenant domain", ["tenants", ti, "domains", di]));
      t.mailboxes.forEach((m, mi) => {
        claim(`mailbox:${m.address}`, "mailbox address", ["tenants", ti, "mailboxes", mi, "address"]);
        m.aliases.forEach((a, ai) => claim(`mailbox:${a}`, "mailbox address", ["tenants", ti, "mailboxes", mi, "aliases", ai]));
        if (m.id !== undefined) claim(`mailbox:${m.id}`, "mailbox id", ["tenants", ti, "mailboxes", mi, "id"]);
      });
    });
    s.apps.forEach((a, ai) => claim(`app:${a.clientId}`, "app clientId", ["apps", ai, "clientId"]));
  })
  .transform((s) => ({
    ...s,
    tenants: s.tenants.map((t) => ({
      ...t,
      mailboxes: t.mailboxes.map((m) => ({ ...m, id: m.id ?? stableGuid(`${t.id}/${m.address.toLowerCase()}`) })),
    })),
    apps: s.apps.map((a) => ({
      ...a,
      secrets: a.secrets.map((sec, i) => ({ ...sec, keyId: sec.keyId ?? stableGuid(`${a.clientId}/secret/${i}`) })),
    })),
  }));

/** What a scenario file / API body may contain (defaults not yet applied). */
export type ScenarioInput = z.input<typeof scenarioSchema>;
/** A validated scenario with every default applied and every mailbox id / secret keyId filled in. */
export type Scenario = z.output<typeof scenarioSchema>;
/** A validated tenant. */
export type TenantConfig = Scenario["tenants"][number];
/** A validated mailbox (`id` always set). */
export type MailboxConfig = TenantConfig["mailboxes"][number];
/** A validated app registration. */
export type AppConfig = Scenario["apps"][number];
/** Effective throttling limits (0 = limit off). */
export type ThrottlingConfig = Scenario["throttling"];
/** Effective latency. */
export type LatencyConfig = Scenario["latency"];
/** Mailbox state. */
export type MailboxState = z.output<typeof mailboxStateSchema>;

/** Thrown for an invalid scenario; `message` lists every issue with its path. */
export class ScenarioError extends Error {
  override readonly name = "ScenarioError";
  constructor(
    message: string,
    readonly issues: readonly { path: string; message: string }[] = [],
  ) {
    super(message);
  }
}

/** Validates a scenario object (from YAML/JSON/code) and applies defaults. Throws ScenarioError. */
export function parseScenario(input: unknown): Scenario {
  const result = scenarioSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => ({ path: i.path.join(".") || "(root)", message: i.message }));
  throw new ScenarioError(`invalid scenario: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`, issues);
}

/** Parses scenario text; YAML is a superset of JSON, so one parser serves both. */
export function parseScenarioText(text: string): Scenario {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ScenarioError(`scenario is not valid YAML/JSON: ${(err as Error).message}`);
  }
  return parseScenario(doc);
}

/** Reads and validates a `.yaml`/`.yml`/`.json` scenario file. */
export async function loadScenarioFile(file: string): Promise<Scenario> {
  return parseScenarioText(await readFile(file, "utf8"));
}

/**
 * Merges a partial scenario into a base one (PATCH semantics): top-level keys replace,
 * except `tenants` (merged by `id`) and `apps` (merged by `clientId`), whose entries replace
 * whole entries with the same key and append the others.
 */
export function mergeScenarioInput(base: ScenarioInput, patch: ScenarioInput): ScenarioInput {
  const byKey = <T>(a: T[] | undefined, b: T[] | undefined, key: (x: T) => string): T[] | undefined => {
    if (b === undefined) return a;
    const out = [...(a ?? [])];
    for (const item of b) {
      const i = out.findIndex((x) => key(x).toLowerCase() === key(item).toLowerCase());
      if (i >= 0) out[i] = item;
      else out.push(item);
    }
    return out;
  };
  return {
    ...base,
    ...patch,
    tenants: byKey(base.tenants, patch.tenants, (t) => t.id),
    apps: byKey(base.apps, patch.apps, (a) => a.clientId),
  };
}

/** Name-based GUID (SHA-1, RFC 4122 v5 layout) so reloading a scenario keeps generated ids stable. */
export function stableGuid(name: string): string {
  const h = createHash("sha1").update(`noreply-relay-emulator:${name}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
