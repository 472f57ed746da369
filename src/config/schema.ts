import { z } from "zod";
import type { AppRegistration } from "../core/ports.js";

/**
 * The one schema of the config file (docs/configuration.md). Every key carries a
 * description: the configuration reference in docs/configuration.md is checked against these by a test.
 * Unknown keys are errors at every level (strictObject).
 */

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// A verified domain as Entra accepts it in the authority path (contoso.com, contoso.onmicrosoft.com).
const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i;
const TENANT_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const httpsUrl = z
  .url({ protocol: /^https$/, error: "must be an https:// URL" })
  .transform((u) => u.replace(/\/+$/, ""));

/** RFC 3339 time, from a YAML timestamp (Date) or a string. */
const timestamp = z.union([
  z.date(),
  z.iso.datetime({ offset: true, error: "must be an RFC 3339 time, e.g. 2027-06-30T00:00:00Z" }).transform((s) => new Date(s)),
]);

const clientId = z.string().regex(GUID, "must be a GUID (the app registration's Application (client) ID)");
const filePath = z.string().min(1, "must be a file path");
const envName = z.string().regex(ENV_NAME, "must be an environment variable name");

const secretCredential = z
  .strictObject({
    type: z.literal("secret").describe("Client secret credential."),
    secretFile: filePath.optional().describe("File holding the client secret (e.g. a mounted Kubernetes Secret)."),
    secretEnv: envName.optional().describe("Name of the environment variable holding the client secret."),
    secondarySecretFile: filePath
      .optional()
      .describe("File with the next client secret; used when Entra rejects the first as invalid or expired (AADSTS7000215/7000222)."),
    secondarySecretEnv: envName.optional().describe("Environment variable with the next client secret (like secondarySecretFile)."),
    expiresAt: timestamp.optional().describe("When the secret expires (RFC 3339); exported as a gauge and warned about 30 days ahead."),
  })
  .superRefine((c, ctx) => {
    const given = [c.secretFile, c.secretEnv].filter((v) => v !== undefined).length;
    if (given !== 1) {
      ctx.addIssue({ code: "custom", path: ["secretFile"], message: "give exactly one of secretFile or secretEnv (never the secret inline)" });
    }
    if (c.secondarySecretFile !== undefined && c.secondarySecretEnv !== undefined) {
      ctx.addIssue({ code: "custom", path: ["secondarySecretFile"], message: "give at most one of secondarySecretFile or secondarySecretEnv" });
    }
  });

const certificateCredential = z.strictObject({
  type: z.literal("certificate").describe("Certificate credential (a signed client assertion)."),
  certificateFile: filePath.describe("PEM file holding the certificate and its private key."),
  sendCertificateChain: z
    .boolean()
    .default(false)
    .describe("Send the x5c chain with each assertion (needed for subject-name/issuer authentication)."),
  expiresAt: timestamp.optional().describe("When the certificate expires (RFC 3339); exported as a gauge."),
});

const workloadIdentityCredential = z.strictObject({
  type: z.literal("workloadIdentity").describe("Federated credential: a Kubernetes service account token exchanged with Entra."),
  tokenFile: filePath.describe("File holding the federated token, re-read on every token request (AKS mounts it and rotates it)."),
  expiresAt: timestamp.optional().describe("Optional expiry to export as a gauge (federated credentials normally do not expire)."),
});

export const credentialSchema = z
  .discriminatedUnion("type", [secretCredential, certificateCredential, workloadIdentityCredential], {
    error: "type must be one of secret, certificate, workloadIdentity",
  })
  .describe("How the app proves its identity to Entra ID: exactly one type.");

export const appSchema = z
  .strictObject({
    clientId: clientId.describe("Application (client) ID of the app registration."),
    credential: credentialSchema,
  })
  .describe("An Entra ID app registration with Mail.Send (application) permission.");

export const limitsSchema = z
  .strictObject({
    maxConcurrency: z
      .int()
      .min(1)
      .max(64)
      .default(4)
      .describe("Sends in flight to Graph at once for this sender mailbox (Graph allows 4 per app per mailbox)."),
    recipientsPerDay: z
      .int()
      .min(1)
      .max(1_000_000)
      .default(10_000)
      .describe("Recipients (to+cc+bcc) per rolling 24 h before sends are refused (Exchange Online blocks the mailbox at 10,000)."),
    maxQueue: z
      .int()
      .min(0)
      .max(100_000)
      .default(1_000)
      .describe("Sends that may wait for a free slot for this mailbox; beyond this, 429 rate_limited."),
  })
  .describe("Per-tenant limits; the defaults match Exchange Online's own limits.");

export const tenantSchema = z.strictObject({
  tenantId: z
    .string()
    .refine((v) => GUID.test(v) || DOMAIN.test(v), "must be a tenant GUID or a verified domain")
    .describe("The customer's Entra tenant: GUID or verified domain."),
  sender: z.email({ error: "invalid email" }).max(254).describe("The ONLY mailbox this tenant sends from."),
  displayName: z.string().max(256).optional().describe("Human name of the customer, shown by /tenants and the CLI."),
  saveToSentItems: z.boolean().default(false).describe("Keep a copy in the sender's Sent Items unless the request says otherwise."),
  app: appSchema.optional().describe("A registration the customer made in its own tenant; overrides the top-level app."),
  accessModel: z
    .enum(["consent", "rbac"])
    .default("consent")
    .describe(
      "How the tenant grants Mail.Send: consent (the Entra application permission, optionally narrowed by an ApplicationAccessPolicy) or rbac (Exchange RBAC for Applications: a role assignment scoped to the sender; tokens carry no Mail.Send role).",
    ),
  limits: limitsSchema.prefault({}),
});

export const callerSchema = z.strictObject({
  keySha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/i, "must be the hex SHA-256 of the API key (64 hex digits)")
    .transform((s) => s.toLowerCase())
    .describe("Hex SHA-256 of the caller's API key; the key itself is never stored."),
  tenants: z.array(z.string().min(1)).min(1).describe('Tenant keys this caller may send for, or ["*"] for all.'),
  admin: z.boolean().default(false).describe("Admin callers may read GET /tenants."),
});

/** A redis:// or rediss:// URL (Redis or Valkey). */
const redisUrl = z
  .string()
  .refine((v) => {
    try {
      return ["redis:", "rediss:"].includes(new URL(v).protocol);
    } catch {
      return false;
    }
  }, "must be a redis:// or rediss:// URL")
  .refine((v) => {
    try {
      return new URL(v).password === "";
    } catch {
      return true;
    }
  }, "must not hold a password: put it in passwordFile/passwordEnv, or the whole URL in urlFile/urlEnv");

export const storeSchema = z
  .strictObject({
    type: z
      .enum(["memory", "redis"])
      .default("memory")
      .describe("memory: this process only (one replica); redis: shared by every replica (Redis or Valkey)."),
    url: redisUrl.optional().describe("redis://host:6379/0 or rediss://… (TLS); without a password (see passwordFile)."),
    urlFile: filePath.optional().describe("File holding the Redis URL, password included if it has one (a mounted Secret)."),
    urlEnv: envName.optional().describe("Environment variable holding the Redis URL, password included if it has one."),
    passwordFile: filePath.optional().describe("File holding the Redis password (AUTH), when the URL has none."),
    passwordEnv: envName.optional().describe("Environment variable holding the Redis password (AUTH), when the URL has none."),
    keyPrefix: z
      .string()
      .regex(/^[A-Za-z0-9._:-]{1,64}$/, "use 1 to 64 letters, digits or . _ : -")
      .default("noreply-relay:")
      .describe("Prefix of every Redis key and channel: lets several installations share one Redis."),
    tls: z
      .strictObject({
        caFile: filePath.optional().describe("Extra CA (PEM) trusted for rediss:// connections."),
        serverName: z.string().min(1).optional().describe("TLS server name to verify when it differs from the URL's host."),
      })
      .prefault({})
      .describe("TLS trust for rediss:// URLs."),
    onUnavailable: z
      .enum(["reject", "local"])
      .default("reject")
      .describe(
        "When Redis cannot be reached: reject answers sends without Idempotency-Key with 503 too; local lets them through under this pod's own limits. Sends with an Idempotency-Key always get 503.",
      ),
    leaseSeconds: z
      .number()
      .min(2)
      .max(120)
      .default(10)
      .describe("Lease of a mailbox slot or a pending Idempotency-Key, renewed while the pod works: how soon a killed pod's holds come back."),
    commandTimeoutMs: z
      .int()
      .min(50)
      .max(30_000)
      .default(1_000)
      .describe("A Redis command not answered within this is treated as Redis being unavailable."),
    connectTimeoutSeconds: z
      .number()
      .min(1)
      .max(120)
      .default(10)
      .describe("How long start-up waits for Redis before it exits with an error."),
  })
  .superRefine((s, ctx) => {
    const urls = [s.url, s.urlFile, s.urlEnv].filter((v) => v !== undefined).length;
    if (s.type === "redis" && urls !== 1) {
      ctx.addIssue({ code: "custom", path: ["url"], message: "with type redis, give exactly one of url, urlFile or urlEnv" });
    }
    if (s.type === "memory" && urls > 0) {
      ctx.addIssue({ code: "custom", path: ["type"], message: "a Redis URL is set but type is memory: set type: redis (or remove the URL)" });
    }
    if (s.passwordFile !== undefined && s.passwordEnv !== undefined) {
      ctx.addIssue({ code: "custom", path: ["passwordFile"], message: "give at most one of passwordFile or passwordEnv" });
    }
  })
  .describe("Where delivery state lives (Idempotency-Keys, mailbox slots, throttling, daily recipients, credential rejections).");

/** Limits of the HTTP listener: what one client may make the service do before it answers. */
export const httpLimitsSchema = z
  .strictObject({
    headersTimeoutSeconds: z
      .number()
      .min(1)
      .max(120)
      .default(10)
      .describe("Time a client has to send a request's headers; slower ones get 408 and the connection closes."),
    requestTimeoutSeconds: z
      .number()
      .min(1)
      .max(600)
      .default(60)
      .describe("Time a client has to send a whole request, body included; slower ones get 408 and the connection closes."),
    keepAliveTimeoutSeconds: z.number().min(1).max(600).default(5).describe("How long an idle keep-alive connection stays open."),
    maxConnections: z.int().min(1).max(100_000).default(2048).describe("Open connections at most; more are closed at once."),
    maxConnectionsPerClient: z
      .int()
      .min(0)
      .max(100_000)
      .default(256)
      .describe("Open connections per client IP address at most (0: no per-client cap). Behind a proxy every request shares its address: size it for the proxy."),
  })
  .superRefine((h, ctx) => {
    if (h.requestTimeoutSeconds < h.headersTimeoutSeconds) {
      ctx.addIssue({ code: "custom", path: ["requestTimeoutSeconds"], message: "must be at least headersTimeoutSeconds" });
    }
  })
  .describe("Limits of the HTTP listener (slow or greedy clients).");

/** Who may read /metrics, and where. */
export const metricsSchema = z
  .strictObject({
    tokenFile: filePath.optional().describe("File holding a bearer token that GET /metrics requires (it lists tenant keys and credential expiry)."),
    tokenEnv: envName.optional().describe("Environment variable holding that bearer token."),
    port: z
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe("Serve GET /metrics on this port only (same host), not on the API port: scrapes stay apart from callers."),
  })
  .superRefine((m, ctx) => {
    if (m.tokenFile !== undefined && m.tokenEnv !== undefined) ctx.addIssue({ code: "custom", path: ["tokenFile"], message: "give at most one of tokenFile or tokenEnv" });
  })
  .describe("Access to the Prometheus metrics; default: open on the API port, as the contract says.");

/** The SMTP door (src/smtp): off unless enabled. Read at start-up only (a restart-only key). */
export const smtpSchema = z
  .strictObject({
    enabled: z.boolean().default(false).describe("Accept mail over SMTP submission besides POST /send (docs/smtp.md)."),
    host: z.string().min(1).optional().describe("Address the SMTP listeners bind to; default the HTTP listener's (HOST)."),
    port: z
      .int()
      .min(0)
      .max(65535)
      .default(587)
      .describe("Submission port: the client starts in plain text and must use STARTTLS before AUTH. 0 picks a free port (tests)."),
    implicitTlsPort: z
      .int()
      .min(0)
      .max(65535)
      .optional()
      .describe("Also listen with implicit TLS (SMTPS, usually 465) on this port, for clients that cannot do STARTTLS."),
    hostname: z
      .string()
      .regex(/^[A-Za-z0-9.-]{1,253}$/, "must be a host name")
      .optional()
      .describe("The name in the greeting and the EHLO answer; default the machine's host name."),
    tls: z
      .strictObject({
        certFile: filePath.describe("PEM file with the server certificate (and its chain) for STARTTLS and implicit TLS."),
        keyFile: filePath.describe("PEM file with the certificate's private key."),
      })
      .optional()
      .describe("The SMTP listeners' certificate; required unless allowInsecureAuth is set."),
    allowInsecureAuth: z
      .boolean()
      .default(false)
      .describe("Accept AUTH without TLS. Only for localhost and tests: the API key would cross the network in clear text."),
    maxMessageBytes: z
      .int()
      .min(1024)
      .max(8 * 1024 * 1024)
      .default(3 * 1024 * 1024)
      .describe("Largest message accepted (SIZE). 3 MiB is what fits Graph's 4 MB once base64-encoded; larger ones are refused with 552 5.3.4."),
    socketTimeoutSeconds: z.number().min(1).max(3600).default(60).describe("An idle connection (no command, no data) is closed after this long."),
    messageTimeoutSeconds: z
      .number()
      .min(1)
      .max(3600)
      .default(300)
      .describe("Time from MAIL FROM to the end of DATA; a slower message is answered 421 4.4.2 and the connection closed."),
    connectionTimeoutSeconds: z
      .number()
      .min(1)
      .max(86_400)
      .default(1800)
      .describe("Longest a connection may stay open, however busy; then it gets 421 4.4.2 and is closed (a message already handed to Graph gets its reply first)."),
    maxConnections: z.int().min(1).max(100_000).default(512).describe("Open SMTP connections at most; more are refused with 421."),
    maxConnectionsPerClient: z
      .int()
      .min(0)
      .max(100_000)
      .default(32)
      .describe("Open SMTP connections per client IP address at most (0: no per-client cap)."),
    authFailures: z
      .strictObject({
        max: z.int().min(1).max(10_000).default(5).describe("Failed AUTH attempts one client address may make within windowSeconds."),
        windowSeconds: z.number().min(1).max(86_400).default(300).describe("The window; past max failures the address gets 421 4.7.0 until it has passed."),
      })
      .prefault({})
      .describe("Rate limit of failed AUTH attempts per client address (password guessing)."),
  })
  .superRefine((smtp, ctx) => {
    if (!smtp.enabled) return;
    if (smtp.tls === undefined && !smtp.allowInsecureAuth) {
      ctx.addIssue({ code: "custom", path: ["tls"], message: "give tls.certFile and tls.keyFile (or, for localhost and tests only, allowInsecureAuth: true)" });
    }
    if (smtp.implicitTlsPort !== undefined && smtp.tls === undefined) {
      ctx.addIssue({ code: "custom", path: ["implicitTlsPort"], message: "implicit TLS needs tls.certFile and tls.keyFile" });
    }
    if (smtp.implicitTlsPort !== undefined && smtp.implicitTlsPort !== 0 && smtp.implicitTlsPort === smtp.port) {
      ctx.addIssue({ code: "custom", path: ["implicitTlsPort"], message: "must differ from port" });
    }
  })
  .describe("SMTP submission for devices and applications that cannot call HTTP: username = tenant key, password = API key.");

export const configSchema = z
  .strictObject({
    cloud: z
      .strictObject({
        authorityHost: httpsUrl.default("https://login.microsoftonline.com").describe("Entra ID authority host."),
        graphBaseUrl: httpsUrl.default("https://graph.microsoft.com").describe("Microsoft Graph base URL (without /v1.0)."),
      })
      .prefault({})
      .describe("National cloud or emulator endpoints; defaults are Microsoft's global cloud."),
    tls: z
      .strictObject({
        caFile: filePath.optional().describe("Extra CA (PEM) trusted for the authority and Graph, e.g. the emulator's CA."),
      })
      .prefault({})
      .describe("TLS trust for outgoing connections."),
    server: z
      .strictObject({
        requestDeadlineSeconds: z
          .number()
          .positive()
          .max(300)
          .default(30)
          .describe("How long one /send may take, waits and Graph retries included."),
        drainTimeoutSeconds: z
          .number()
          .min(0)
          .max(600)
          .default(20)
          .describe("On SIGTERM, how long in-flight sends may finish before the process exits."),
        maxBodyBytes: z
          .int()
          .min(1024)
          .max(64 * 1024 * 1024)
          .default(8 * 1024 * 1024)
          .describe("Largest /send request body accepted (base64 makes attachments a third larger than Graph's 4 MB)."),
        credentialFailureHoldSeconds: z
          .number()
          .min(0)
          .max(3600)
          .default(30)
          .describe("After Entra rejects a tenant's credential, answer from memory for this long instead of asking Entra again."),
        maxRetryAfterSeconds: z
          .int()
          .min(1)
          .max(86_400)
          .default(600)
          .describe(
            "Longest wait one Graph Retry-After may impose on a mailbox; longer values are clamped (a reload or SIGHUP also clears a mailbox's throttle memory).",
          ),
        watchConfig: z.boolean().default(true).describe("Re-read the config file when it changes (SIGHUP always re-reads)."),
        publicUrl: httpsUrlOrHttp().optional().describe("The service's external base URL, used for the admin-consent redirect URI."),
        http: httpLimitsSchema.prefault({}),
      })
      .prefault({})
      .describe("Service behaviour; all optional."),
    idempotency: z
      .strictObject({
        ttlSeconds: z.int().min(60).max(7 * 86_400).default(86_400).describe("How long an Idempotency-Key is remembered per caller."),
        maxEntries: z.int().min(1).max(10_000_000).default(100_000).describe("Most remembered keys; the oldest are evicted first."),
        maxBytes: z
          .int()
          .min(1024)
          .max(4 * 1024 * 1024 * 1024)
          .default(64 * 1024 * 1024)
          .describe(
            "Most bytes of memory the remembered keys may take, each counted for what it really costs (about 550 B with a small answer); the oldest are evicted first.",
          ),
      })
      .prefault({})
      .describe("The in-memory Idempotency-Key store."),
    store: storeSchema.prefault({}),
    metrics: metricsSchema.prefault({}),
    smtp: smtpSchema.prefault({}),
    consent: z
      .strictObject({
        redirectUri: httpsUrlOrHttp().optional().describe("Redirect URI registered on the app for admin consent (default {server.publicUrl}/consent/callback)."),
        stateSecretFile: filePath.optional().describe("File with the key that signs the consent `state` parameter."),
        stateSecretEnv: envName.optional().describe("Environment variable with the key that signs the consent `state` parameter."),
        stateTtlSeconds: z.int().min(60).max(30 * 86_400).default(7 * 86_400).describe("How long a consent link stays valid."),
      })
      .optional()
      .describe("Admin-consent onboarding (consent-url and /consent/callback)."),
    app: appSchema.optional().describe("The multi-tenant app registration used for every tenant without its own app."),
    tenants: z.record(z.string().regex(TENANT_KEY, "tenant keys use letters, digits, . _ -"), tenantSchema).describe("Tenants by the key callers use."),
    callers: z.record(z.string().regex(TENANT_KEY, "caller names use letters, digits, . _ -"), callerSchema).describe("Calling applications by name."),
  })
  .superRefine((cfg, ctx) => {
    for (const [key, tenant] of Object.entries(cfg.tenants)) {
      if (!tenant.app && !cfg.app) {
        ctx.addIssue({ code: "custom", path: ["tenants", key, "app"], message: "no app: set the top-level app or this tenant's app" });
      }
    }
    const seen = new Map<string, string>();
    for (const [name, caller] of Object.entries(cfg.callers)) {
      caller.tenants.forEach((t, i) => {
        if (t !== "*" && !(t in cfg.tenants)) {
          ctx.addIssue({ code: "custom", path: ["callers", name, "tenants", i], message: `unknown tenant "${t}"` });
        }
      });
      const other = seen.get(caller.keySha256);
      if (other !== undefined) {
        ctx.addIssue({ code: "custom", path: ["callers", name, "keySha256"], message: `same key as caller "${other}"` });
      }
      seen.set(caller.keySha256, name);
    }
  });

function httpsUrlOrHttp() {
  return z.url({ protocol: /^https?$/, error: "must be an http(s):// URL" }).transform((u) => u.replace(/\/+$/, ""));
}

/** The parsed config: defaults applied, secrets not yet read. */
export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type TenantConfig = z.output<typeof tenantSchema>;
export type CallerConfig = z.output<typeof callerSchema>;
export type AppConfig = z.output<typeof appSchema>;
export type CredentialConfig = z.output<typeof credentialSchema>;
export type LimitsConfig = z.output<typeof limitsSchema>;
export type StoreConfig = z.output<typeof storeSchema>;
export type HttpLimitsConfig = z.output<typeof httpLimitsSchema>;
export type MetricsConfig = z.output<typeof metricsSchema>;
export type SmtpConfig = z.output<typeof smtpSchema>;

/*
 * The ports (src/core/ports.ts) describe an app registration without importing the config:
 * this fails to compile when the schema's output and that description part ways.
 */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const appShapeMatches: Same<DeepReadonly<AppConfig>, AppRegistration> = true;
void appShapeMatches;
type DeepReadonly<T> = T extends Date ? T : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T;
