import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import type { Config } from "../config/schema.js";
import type { Clock } from "../core/ports.js";
import type { OnceBook } from "../delivery/once-book.js";
import { isTenantGuid, readStateSecret, verifyConsentState, type ConsentStatePayload, type StateCheck } from "../onboarding/consent.js";
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
 * A state is good for one callback: the first one that passes the signature and expiry checks
 * claims the state's id in the once book (the service's `stores.once`, shared by every replica
 * with the Redis store) until the state would expire anyway; any later callback with it, on any
 * replica, is refused as invalid_state (reason "replayed"). Every outcome uses it up, a denial
 * or an Entra error too: otherwise a link could be replayed to show Entra's (caller-chosen)
 * error text on this page again and again. The cost: an admin who retries the same link after
 * an error needs a new one, which the pages say.
 *
 * A state made for a tenant GUID is bound to it: a callback naming another tenant is refused
 * (invalid_state, reason "tenant_mismatch"), as only a changed redirect can do that (the link
 * sends the admin to that tenant's own consent page). See grantedPage for a domain's state.
 *
 * The page is static HTML: every value escaped, no script, a CSP that allows only its own
 * style block. It tells the admin what happened and gives the operator the config snippet.
 * Entra's `error` and `error_description` (the caller can write anything there) appear only
 * escaped, cut short, under the fixed heading "What Microsoft Entra ID said"; the title and
 * headings are this service's own text.
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
  /** Where used states are remembered: the service's `stores.once` (shared by replicas with the Redis store). */
  readonly once: OnceBook;
}

const METRIC = "noreply_relay_consent_callbacks_total";
/** Longest Entra error_description shown; Entra's own are a few hundred characters. */
const MAX_TEXT = 500;
/** Longest Entra `error` shown (OAuth error codes are short words). */
const MAX_ERROR = 100;
/**
 * A used state is remembered this much past its expiry: replicas' clocks may differ a little,
 * and one running behind must not take an expired-elsewhere state as new once its claim is gone.
 */
const CLAIM_SLACK_MS = 5 * 60_000;
/** Seconds an admin is asked to wait when the once book cannot be reached. */
const RETRY_AFTER_SECONDS = 30;

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

function clip(value: string | undefined, max = MAX_TEXT): string | undefined {
  if (value === undefined) return undefined;
  // eslint-disable-next-line no-control-regex
  const clean = value.replace(/[\u0000-\u001f\u007f]+/g, " ");
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/** Entra's `error` for the log: the code when it is one, never free text. */
function errorCode(error: string): string {
  return /^[a-z0-9_]{1,64}$/i.test(error) ? error : "(not an error code)";
}

interface Page {
  readonly status: number;
  readonly outcome: ConsentOutcome;
  /** This service's own text (never a request's). */
  readonly title: string;
  readonly paragraphs: readonly string[];
  readonly facts: readonly (readonly [string, string])[];
  /** What Entra sent (clipped), shown only under its own fixed heading. */
  readonly entra?: { readonly error: string; readonly description?: string };
  readonly snippet?: string;
  readonly retryAfterSeconds?: number;
}

function definitions(facts: readonly (readonly [string, string])[]): string {
  return facts.length ? `<dl>${facts.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd><code>${escapeHtml(v)}</code></dd>`).join("")}</dl>` : "";
}

function render(page: Page): string {
  const facts = definitions(page.facts);
  const entra = page.entra
    ? `<h2>What Microsoft Entra ID said</h2>${definitions([["Error", page.entra.error], ...(page.entra.description !== undefined ? ([["Details", page.entra.description]] as const) : [])])}`
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
${entra}
${snippet}
</body></html>
`;
}

/**
 * The YAML for a tenant that consented; values are GUIDs / validated keys only. A link made for
 * a domain gets a reminder: Microsoft's answer does not prove the GUID is that domain's tenant.
 */
function configSnippet(tenantId: string, payload: ConsentStatePayload, config: ConsentRouteConfig): string | undefined {
  const check = isTenantGuid(payload.tid) ? [] : [`check that ${payload.tid} is this tenant`];
  if (payload.key !== undefined && Object.hasOwn(config.tenants, payload.key)) {
    const t = config.tenants[payload.key]!;
    if (t.tenantId.toLowerCase() === tenantId.toLowerCase()) return undefined; // already configured as is
    return `tenants:\n  ${payload.key}:\n    tenantId: ${tenantId}   # ${[`was ${t.tenantId}`, ...check].join("; ")}\n`;
  }
  const key = suggestKey(payload.tid);
  const comment = check.length ? `   # ${check[0]}` : "";
  return `tenants:\n  ${key}:\n    tenantId: ${tenantId}${comment}\n    sender: noreply@${isTenantGuid(payload.tid) ? "example.com" : payload.tid}   # the ONE mailbox to send from\n`;
}

function suggestKey(tenant: string): string {
  if (isTenantGuid(tenant)) return "new-tenant";
  const label = tenant.split(".")[0]!.toLowerCase().replace(/[^a-z0-9-]/g, "-").replace(/^-+/, "");
  return label || "new-tenant";
}

type VerifiedState = Extract<StateCheck, { ok: true }>;

/** What the callback's query says, each value single and clipped. */
interface Callback {
  readonly tenant: string | undefined;
  readonly adminConsent: string | undefined;
  readonly error: string | undefined;
  readonly errorDescription: string | undefined;
  readonly aadsts: string | undefined;
}

/** The page for a state this service did not sign, or that has expired (or no key to check it). */
function invalidStatePage(reason: Exclude<StateCheck, { ok: true }>["reason"], tenant: string | undefined): Page {
  return {
    status: 400,
    outcome: "invalid_state",
    title: "This consent link is not valid",
    paragraphs: [
      reason === "expired"
        ? "The link you followed has expired. Nothing was recorded by noreply-relay."
        : "The link you followed was not issued by this noreply-relay service, or was changed. Nothing was recorded by noreply-relay.",
      "If you did grant consent in Microsoft Entra ID just now, that consent exists in your tenant regardless; ask your noreply-relay contact for a new link so they learn about it.",
    ],
    facts: tenant !== undefined && isTenantGuid(tenant) ? [["Tenant ID (as sent by Microsoft)", tenant]] : [],
  };
}

/**
 * Consent granted in `tenant` with a state that is genuine, first used, and (when made for a
 * GUID) for this very tenant.
 *
 * A state made for a domain (the CLI takes a customer's domain when its GUID is not known) cannot
 * be checked against the GUID in Microsoft's answer without asking Entra from this
 * unauthenticated page. It is accepted, as the consent did happen and refusing would make every
 * domain link useless, but flagged: the page, the operator's snippet and the log
 * (tenantBinding "unchecked_domain") say the GUID was not checked against the domain. That is
 * safe enough because nothing is configured from here: mail flows only after an operator adds
 * the tenant, the snippet tells them to check the GUID first, a tenant can only send from
 * mailboxes of domains it has verified (so a look-alike tenant cannot send as the customer's
 * noreply@domain), and the state is single use, so whoever holds a link gets one callback.
 */
function grantedPage(tenant: string, verified: VerifiedState, config: ConsentRouteConfig): Page {
  const { payload } = verified;
  const snippet = configSnippet(tenant, payload, config);
  return {
    status: 200,
    outcome: "granted",
    title: "Consent granted: thank you",
    paragraphs: [
      "noreply-relay can now request tokens for your organization. One step is left for you: restricting the app to the single noreply mailbox. Your noreply-relay contact will send you a PowerShell script for that.",
      ...(isTenantGuid(payload.tid)
        ? []
        : [
            `This link was made for ${payload.tid}. Microsoft's answer names the organization only by its tenant ID, so noreply-relay could not check that tenant ${tenant} is ${payload.tid}; your noreply-relay contact will confirm it before setting it up.`,
          ]),
    ],
    facts: [
      ["Tenant ID", tenant],
      ["Application (client) ID", payload.app],
      ...(payload.key !== undefined ? ([["noreply-relay tenant key", payload.key]] as const) : []),
    ],
    ...(snippet !== undefined ? { snippet } : {}),
  };
}

/**
 * Registers GET /consent/callback. Needs `consent.stateSecretFile|stateSecretEnv`
 * at request time (read per callback, so a rotated key is picked up); without it every
 * callback is refused as invalid_state.
 */
export function registerConsentRoutes(routes: RouteTable, deps: ConsentRouteDeps): void {
  const callbacks = counter(deps.registry);
  const currentConfig = typeof deps.config === "function" ? deps.config : () => deps.config as ConsentRouteConfig;

  routes.get("/consent/callback", async (request, res) => {
    const config = currentConfig();
    const query: unknown = request.query;
    const errorDescription = clip(single(query, "error_description"));
    const cb: Callback = {
      tenant: single(query, "tenant"),
      adminConsent: single(query, "admin_consent"),
      error: clip(single(query, "error"), MAX_ERROR),
      errorDescription,
      aadsts: /AADSTS(\d{5,9})(?!\d)/.exec(errorDescription ?? "")?.[1],
    };

    let key: Buffer | undefined;
    let setupProblem: string | undefined;
    try {
      key = readStateSecret(config.consent, deps.env ?? process.env);
    } catch (err) {
      setupProblem = (err as Error).message;
    }
    const check = key ? verifyConsentState(single(query, "state"), key, deps.clock.now()) : ({ ok: false, reason: "missing" } as const);

    let page: Page;
    if (!check.ok) {
      page = invalidStatePage(check.reason, cb.tenant);
      deps.logger.warn(
        { event: "consent_callback", outcome: page.outcome, reason: setupProblem ? "no_state_key" : check.reason, tenantId: page.facts.length ? cb.tenant : undefined },
        setupProblem ? `consent callback refused: ${setupProblem}` : `consent callback refused: state ${check.reason}`,
      );
    } else {
      page = await verifiedCallback(check, cb, config);
    }

    callbacks.inc({ outcome: page.outcome });
    // Inside createApp the request's own log line carries the outcome too (absent on a bare express app).
    const relay = contextOf(request);
    if (relay) {
      relay.outcome = `consent_${page.outcome}`;
      if (cb.aadsts !== undefined) relay.aadsts = cb.aadsts;
    }
    const html = render(page);
    res.writeHead(page.status, {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": CSP,
      "cache-control": "no-store",
      "referrer-policy": "no-referrer",
      "x-content-type-options": "nosniff",
      "x-frame-options": "DENY",
      ...(page.retryAfterSeconds !== undefined ? { "retry-after": String(page.retryAfterSeconds) } : {}),
      "content-length": Buffer.byteLength(html),
    });
    res.end(html);
  });

  /** A genuine, unexpired state: use it up, then see what Microsoft says. */
  async function verifiedCallback(verified: VerifiedState, cb: Callback, config: ConsentRouteConfig): Promise<Page> {
    const { payload } = verified;
    const about = { event: "consent_callback", intendedTenant: payload.tid, tenantKey: payload.key, clientId: payload.app };
    let first: boolean;
    try {
      first = await deps.once.claim(verified.id, payload.exp * 1000 - deps.clock.now() + CLAIM_SLACK_MS);
    } catch (err) {
      // Without the book a replay cannot be told from a first use: refuse, and leave the state
      // unused so the same link works once the store is back.
      deps.logger.warn({ ...about, outcome: "error", reason: "once_book_unavailable", err }, "consent callback refused: cannot check whether the link was used before");
      return {
        status: 503,
        outcome: "error",
        title: "Please try again in a minute",
        paragraphs: ["noreply-relay could not check this link just now. Nothing was recorded. Reload this page in a minute: the link still works."],
        facts: [],
        retryAfterSeconds: RETRY_AFTER_SECONDS,
      };
    }
    const tenantId = cb.tenant !== undefined && isTenantGuid(cb.tenant) ? cb.tenant : undefined;

    if (!first) {
      deps.logger.warn({ ...about, outcome: "invalid_state", reason: "replayed", tenantId }, "consent callback refused: the link was used before");
      return {
        status: 400,
        outcome: "invalid_state",
        title: "This consent link has already been used",
        paragraphs: [
          "Each consent link works once, and this one was used before. Nothing new was recorded by noreply-relay.",
          "If you did grant consent in Microsoft Entra ID just now, that consent exists in your tenant regardless; ask your noreply-relay contact for a new link so they learn about it.",
        ],
        facts: tenantId !== undefined ? [["Tenant ID (as sent by Microsoft)", tenantId]] : [],
      };
    }

    if (cb.error !== undefined) {
      const denied = cb.error === "access_denied" || cb.aadsts === "65004";
      const page: Page = {
        status: 200,
        outcome: denied ? "denied" : "error",
        title: denied ? "Consent was not granted" : "Microsoft Entra ID reported an error",
        paragraphs: denied
          ? ["The administrator declined the permissions, so noreply-relay cannot send mail for this organization.", "If this was a mistake, ask your noreply-relay contact for a new link."]
          : [
              "Microsoft Entra ID did not complete the consent. Common causes: the account that signed in is not an administrator of the organization (a Global, Application or Cloud Application Administrator), or it belongs to another organization.",
              "Send the details below to your noreply-relay contact; they will send you a new link.",
            ],
        facts: [["Intended tenant", payload.tid]],
        entra: { error: cb.error, ...(cb.errorDescription !== undefined ? { description: cb.errorDescription } : {}) },
      };
      deps.logger.warn({ ...about, outcome: page.outcome, error: errorCode(cb.error), aadsts: cb.aadsts }, `admin consent ${page.outcome}`);
      return page;
    }

    if (cb.adminConsent?.toLowerCase() === "true" && tenantId !== undefined) {
      if (isTenantGuid(payload.tid) && payload.tid.toLowerCase() !== tenantId.toLowerCase()) {
        deps.logger.warn(
          { ...about, outcome: "invalid_state", reason: "tenant_mismatch", tenantId },
          "consent callback refused: the link was made for another tenant than Microsoft's answer names",
        );
        return {
          status: 400,
          outcome: "invalid_state",
          title: "This consent link was made for another organization",
          paragraphs: [
            `This link was made for tenant ${payload.tid}, but Microsoft's answer names tenant ${tenantId}. Nothing was recorded by noreply-relay.`,
            "If your organization should send mail through noreply-relay, ask your noreply-relay contact for a link made for it.",
          ],
          facts: [
            ["Tenant ID (as sent by Microsoft)", tenantId],
            ["Link made for tenant", payload.tid],
          ],
        };
      }
      const tenantBinding = isTenantGuid(payload.tid) ? "tenant_id" : "unchecked_domain";
      deps.logger.info({ ...about, outcome: "granted", tenantId, tenantBinding }, "admin consent granted");
      return grantedPage(tenantId, verified, config);
    }

    deps.logger.warn({ ...about, outcome: "error", adminConsent: clip(cb.adminConsent, MAX_ERROR) }, "consent callback without admin_consent=True or a tenant id");
    return {
      status: 400,
      outcome: "error",
      title: "Incomplete response from Microsoft",
      paragraphs: ["The redirect from Microsoft Entra ID did not say whether consent was granted. Ask your noreply-relay contact for a new link."],
      facts: [["Intended tenant", payload.tid]],
    };
  }
}

/**
 * The route module for `createApp({ routes: [consentRoutes] })` (src/http/optional-routes.ts):
 * the current config from the config source, the app's registry, logger, clock and once book.
 */
export const consentRoutes: RouteRegistrar = (routes, ctx) =>
  registerConsentRoutes(routes, { config: () => ctx.configSource.current(), registry: ctx.registry, logger: ctx.logger, clock: ctx.clock, once: ctx.once });
