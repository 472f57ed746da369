import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import type { Config } from "../config/schema.js";
import type { Clock } from "../core/ports.js";
import { isTenantGuid, readStateSecret, verifyConsentState, type ConsentStatePayload } from "../onboarding/consent.js";
import { contextOf } from "./request-context.js";
import type { RouteRegistrar, RouteTable } from "./route-table.js";

/*
 * GET /consent/callback: where Entra sends the customer's admin after the admin-consent
 * page (…/adminconsent?client_id=…&redirect_uri=…&state=…). Microsoft adds
 * `admin_consent=True&tenant=<guid>&state=…` on success, or `error=…&error_description=…&state=…`.
 * The state must be one this service signed (src/onboarding/consent.ts) and still valid;
 * anything else is refused with a 400 page, so a forged link cannot make this page claim a
 * consent that did not happen.
 *
 * The page is static HTML: every value escaped, no script, a CSP that allows only its own
 * style block. It tells the admin what happened and gives the operator the config snippet.
 */

export type ConsentOutcome = "granted" | "denied" | "invalid_state" | "error";

/** The slice of config the route reads. */
export type ConsentRouteConfig = Pick<Config, "consent" | "tenants">;

export interface ConsentRouteDeps {
  /** The config, or a function returning the current one (so a reload is seen). */
  readonly config: ConsentRouteConfig | (() => ConsentRouteConfig);
  /** prom-client registry that gets `noreply_relay_consent_callbacks_total{outcome}`. */
  readonly registry: Registry;
  readonly logger: Pick<Logger, "info" | "warn">;
  readonly clock: Clock;
  /** Where `consent.stateSecretEnv` is looked up; default process.env. */
  readonly env?: NodeJS.ProcessEnv;
}

const METRIC = "noreply_relay_consent_callbacks_total";
const MAX_TEXT = 500;

const STYLE = `body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.5rem}.granted h1{color:#0b6a0b}.denied h1,.error h1,.invalid_state h1{color:#a4262c}
code,pre{font:14px ui-monospace,Consolas,monospace;background:#f3f3f3}pre{padding:1rem;overflow:auto}
dt{font-weight:600}dd{margin:0 0 .5rem 0}`;
const CSP = `default-src 'none'; style-src 'sha256-${createHash("sha256").update(STYLE).digest("base64")}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`);
}

function counter(registry: Registry): Counter<"outcome"> {
  const existing = registry.getSingleMetric(METRIC);
  if (existing) return existing as Counter<"outcome">;
  const c = new Counter({
    name: METRIC,
    help: "Admin-consent callbacks received, by outcome (granted, denied, invalid_state, error).",
    labelNames: ["outcome"],
    registers: [registry],
  });
  for (const outcome of ["granted", "denied", "invalid_state", "error"] as const) c.inc({ outcome }, 0);
  return c;
}

/** One query value: a string, or undefined when absent or repeated. */
function single(query: unknown, name: string): string | undefined {
  if (query === null || typeof query !== "object") return undefined;
  const v = (query as Record<string, unknown>)[name];
  return typeof v === "string" ? v : undefined;
}

function clip(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  // eslint-disable-next-line no-control-regex
  const clean = value.replace(/[\u0000-\u001f\u007f]+/g, " ");
  return clean.length > MAX_TEXT ? `${clean.slice(0, MAX_TEXT)}…` : clean;
}

interface Page {
  readonly status: number;
  readonly outcome: ConsentOutcome;
  readonly title: string;
  readonly paragraphs: readonly string[];
  readonly facts: readonly (readonly [string, string])[];
  readonly snippet?: string;
}

function render(page: Page): string {
  const facts = page.facts.length
    ? `<dl>${page.facts.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd><code>${escapeHtml(v)}</code></dd>`).join("")}</dl>`
    : "";
  const snippet = page.snippet
    ? `<h2>For the noreply-relay operator</h2><p>Add this to the config file (set the sender to the tenant's noreply mailbox), then run <code>noreply-relay verify</code> for the tenant:</p><pre>${escapeHtml(page.snippet)}</pre>`
    : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><title>${escapeHtml(page.title)}</title><style>${STYLE}</style></head>
<body class="${page.outcome}"><h1>${escapeHtml(page.title)}</h1>
${page.paragraphs.map((p) => `<p>${escapeHtml(p)}</p>`).join("\n")}
${facts}
${snippet}
</body></html>
`;
}

/** The YAML for a tenant that consented; values are GUIDs / validated keys only. */
function configSnippet(tenantId: string, payload: ConsentStatePayload, config: ConsentRouteConfig): string | undefined {
  if (payload.key !== undefined && Object.hasOwn(config.tenants, payload.key)) {
    const t = config.tenants[payload.key]!;
    if (t.tenantId.toLowerCase() === tenantId.toLowerCase()) return undefined; // already configured as is
    return `tenants:\n  ${payload.key}:\n    tenantId: ${tenantId}   # was ${t.tenantId}\n`;
  }
  const key = suggestKey(payload.tid);
  return `tenants:\n  ${key}:\n    tenantId: ${tenantId}\n    sender: noreply@${isTenantGuid(payload.tid) ? "example.com" : payload.tid}   # the ONE mailbox to send from\n`;
}

function suggestKey(tenant: string): string {
  if (isTenantGuid(tenant)) return "new-tenant";
  const label = tenant.split(".")[0]!.toLowerCase().replace(/[^a-z0-9-]/g, "-").replace(/^-+/, "");
  return label || "new-tenant";
}

/**
 * Registers GET /consent/callback. Needs `consent.stateSecretFile|stateSecretEnv`
 * at request time (read per callback, so a rotated key is picked up); without it every
 * callback is refused as invalid_state.
 */
export function registerConsentRoutes(routes: RouteTable, deps: ConsentRouteDeps): void {
  const callbacks = counter(deps.registry);
  const currentConfig = typeof deps.config === "function" ? deps.config : () => deps.config as ConsentRouteConfig;

  routes.get("/consent/callback", (request, res) => {
    const config = currentConfig();
    const query: unknown = request.query;
    const state = single(query, "state");
    const tenant = single(query, "tenant");
    const adminConsent = single(query, "admin_consent");
    const error = clip(single(query, "error"));
    const errorDescription = clip(single(query, "error_description"));
    const aadsts = /AADSTS(\d{5,})/.exec(errorDescription ?? "")?.[1];

    let page: Page;
    let key: Buffer | undefined;
    let setupProblem: string | undefined;
    try {
      key = readStateSecret(config.consent, deps.env ?? process.env);
    } catch (err) {
      setupProblem = (err as Error).message;
    }
    const check = key ? verifyConsentState(state, key, deps.clock.now()) : ({ ok: false, reason: "missing" } as const);

    if (!check.ok) {
      page = {
        status: 400,
        outcome: "invalid_state",
        title: "This consent link is not valid",
        paragraphs: [
          check.reason === "expired"
            ? "The link you followed has expired. Nothing was recorded by noreply-relay."
            : "The link you followed was not issued by this noreply-relay service, or was changed. Nothing was recorded by noreply-relay.",
          "If you did grant consent in Microsoft Entra ID just now, that consent exists in your tenant regardless; ask your noreply-relay contact for a new link so they learn about it.",
        ],
        facts: tenant !== undefined && isTenantGuid(tenant) ? [["Tenant ID (as sent by Microsoft)", tenant]] : [],
      };
      deps.logger.warn(
        { event: "consent_callback", outcome: page.outcome, reason: setupProblem ? "no_state_key" : check.reason, tenantId: page.facts.length ? tenant : undefined },
        setupProblem ? `consent callback refused: ${setupProblem}` : `consent callback refused: state ${check.reason}`,
      );
    } else if (error !== undefined) {
      const denied = error === "access_denied" || aadsts === "65004";
      page = {
        status: 200,
        outcome: denied ? "denied" : "error",
        title: denied ? "Consent was not granted" : "Microsoft Entra ID reported an error",
        paragraphs: denied
          ? ["The administrator declined the permissions, so noreply-relay cannot send mail for this organization.", "If this was a mistake, ask your noreply-relay contact for a new link."]
          : [
              "Microsoft Entra ID did not complete the consent. Common causes: the account that signed in is not an administrator of the organization (a Global, Application or Cloud Application Administrator), or it belongs to another organization.",
              "Send the details below to your noreply-relay contact.",
            ],
        facts: [
          ["Intended tenant", check.payload.tid],
          ["Error", error],
          ...(errorDescription ? ([["Details", errorDescription]] as const) : []),
        ],
      };
      deps.logger.warn(
        { event: "consent_callback", outcome: page.outcome, intendedTenant: check.payload.tid, tenantKey: check.payload.key, clientId: check.payload.app, error, aadsts },
        `admin consent ${page.outcome}`,
      );
    } else if (adminConsent !== undefined && adminConsent.toLowerCase() === "true" && tenant !== undefined && isTenantGuid(tenant)) {
      const mismatch = isTenantGuid(check.payload.tid) && check.payload.tid.toLowerCase() !== tenant.toLowerCase();
      const snippet = configSnippet(tenant, check.payload, config);
      page = {
        status: 200,
        outcome: "granted",
        title: "Consent granted: thank you",
        paragraphs: [
          "noreply-relay can now request tokens for your organization. One step is left for you: restricting the app to the single noreply mailbox. Your noreply-relay contact will send you a PowerShell script for that.",
          ...(mismatch
            ? [`Note: this link was made for tenant ${check.payload.tid}, but consent was granted in tenant ${tenant}. If that is not what you intended, tell your noreply-relay contact.`]
            : []),
        ],
        facts: [
          ["Tenant ID", tenant],
          ["Application (client) ID", check.payload.app],
          ...(check.payload.key !== undefined ? ([["noreply-relay tenant key", check.payload.key]] as const) : []),
        ],
        ...(snippet !== undefined ? { snippet } : {}),
      };
      deps.logger.info(
        { event: "consent_callback", outcome: "granted", tenantId: tenant, intendedTenant: check.payload.tid, tenantKey: check.payload.key, clientId: check.payload.app, mismatch },
        "admin consent granted",
      );
    } else {
      page = {
        status: 400,
        outcome: "error",
        title: "Incomplete response from Microsoft",
        paragraphs: ["The redirect from Microsoft Entra ID did not say whether consent was granted. Ask your noreply-relay contact for a new link."],
        facts: [["Intended tenant", check.payload.tid]],
      };
      deps.logger.warn(
        { event: "consent_callback", outcome: "error", intendedTenant: check.payload.tid, tenantKey: check.payload.key, adminConsent: clip(adminConsent) },
        "consent callback without admin_consent=True or a tenant id",
      );
    }

    callbacks.inc({ outcome: page.outcome });
    // Inside createApp the request's own log line carries the outcome too (absent on a bare express app).
    const relay = contextOf(request);
    if (relay) {
      relay.outcome = `consent_${page.outcome}`;
      if (aadsts !== undefined) relay.aadsts = aadsts;
    }
    const html = render(page);
    res.writeHead(page.status, {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": CSP,
      "cache-control": "no-store",
      "referrer-policy": "no-referrer",
      "x-content-type-options": "nosniff",
      "x-frame-options": "DENY",
      "content-length": Buffer.byteLength(html),
    });
    res.end(html);
  });
}

/**
 * The route module for `createApp({ routes: [consentRoutes] })` (src/http/optional-routes.ts):
 * the current config from the config source, the app's registry, logger and clock.
 */
export const consentRoutes: RouteRegistrar = (routes, ctx) =>
  registerConsentRoutes(routes, { config: () => ctx.configSource.current(), registry: ctx.registry, logger: ctx.logger, clock: ctx.clock });
