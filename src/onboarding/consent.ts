import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { AppConfig, Config } from "../config/schema.js";

/*
 * Admin consent: the link an operator sends to a customer's admin, and the signed `state`
 * that comes back with Microsoft's redirect. Shared by the CLI (which makes links) and the
 * /consent/callback route (which checks them), so both agree on one format.
 *
 * state = base64url(JSON payload) "." base64url(HMAC-SHA256(key, first part))
 * The payload names the tenant the link was made for, a random nonce and when it stops being
 * valid, so a callback cannot be forged or replayed after its time. Single use (a state accepted
 * once, on any replica) and the tenant binding are the callback route's part
 * (src/http/consent-routes.ts): it claims `StateCheck.id` in the shared once book.
 */

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i;

/** Shortest signing key accepted: 32 bytes, the size of the HMAC-SHA256 output. */
export const MIN_STATE_SECRET_BYTES = 32;
/** A state longer than this is refused before any parsing (Entra echoes it verbatim). */
const MAX_STATE_LENGTH = 2048;

export function isTenantGuid(value: string): boolean {
  return GUID.test(value);
}

/** GUID or a DNS name as Entra accepts it in the authority path. */
export function isTenantIdOrDomain(value: string): boolean {
  return GUID.test(value) || DOMAIN.test(value);
}

/** Why a consent link could not be made; `path` names the config key when one is to blame. */
export class ConsentSetupError extends Error {
  readonly path: string | undefined;

  constructor(message: string, path?: string) {
    super(path ? `${path}: ${message}` : message);
    this.name = "ConsentSetupError";
    this.path = path;
  }
}

/** What a signed state vouches for. */
export interface ConsentStatePayload {
  /** Format version. */
  readonly v: 1;
  /** The tenant the link was made for: GUID or domain, as given. */
  readonly tid: string;
  /** Tenant key from the config, when the link was made for a configured tenant. */
  readonly key?: string;
  /** Client id of the app whose consent was asked. */
  readonly app: string;
  /** Expiry, epoch seconds. */
  readonly exp: number;
  /** Random, so two links for the same tenant differ. */
  readonly n: string;
}

export type StateCheck =
  | {
      readonly ok: true;
      readonly payload: ConsentStatePayload;
      /**
       * Names this state for its single use: a digest of the signed payload (which holds the
       * nonce). Not the signature's text, and the signature must be spelled canonically, so
       * one state has one id.
       */
      readonly id: string;
    }
  | { readonly ok: false; readonly reason: "missing" | "malformed" | "bad_signature" | "expired" };

function sign(key: Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data, "utf8").digest();
}

/** Signs a state for one consent link. `now` is epoch milliseconds. */
export function createConsentState(input: {
  tenant: string;
  tenantKey?: string;
  clientId: string;
  key: Buffer;
  now: number;
  ttlSeconds: number;
}): string {
  const payload: ConsentStatePayload = {
    v: 1,
    tid: input.tenant,
    ...(input.tenantKey !== undefined ? { key: input.tenantKey } : {}),
    app: input.clientId,
    exp: Math.floor(input.now / 1000) + input.ttlSeconds,
    n: randomBytes(9).toString("base64url"),
  };
  const body = Buffer.from(JSON.stringify(payload), "utf8").toString("base64url");
  return `${body}.${sign(input.key, body).toString("base64url")}`;
}

/**
 * Checks a state from a callback: signature first (constant-time), then shape, then expiry.
 * Nothing of an unsigned payload is trusted or even parsed.
 */
export function verifyConsentState(state: string | undefined, key: Buffer, now: number): StateCheck {
  if (state === undefined || state === "") return { ok: false, reason: "missing" };
  if (state.length > MAX_STATE_LENGTH) return { ok: false, reason: "malformed" };
  const parts = state.split(".");
  if (parts.length !== 2 || !/^[A-Za-z0-9_-]+$/.test(parts[0]!) || !/^[A-Za-z0-9_-]+$/.test(parts[1]!)) {
    return { ok: false, reason: "malformed" };
  }
  const [body, mac] = parts as [string, string];
  const expected = sign(key, body);
  const given = Buffer.from(mac, "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: "bad_signature" };
  // base64url's last character has spare bits a decoder ignores: only the canonical spelling
  // counts, so a state cannot be made to look new by changing them.
  if (given.toString("base64url") !== mac) return { ok: false, reason: "bad_signature" };
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(body, "base64url").toString("utf8"));
  } catch {
    return { ok: false, reason: "malformed" };
  }
  if (!isPayload(payload)) return { ok: false, reason: "malformed" };
  if (payload.exp * 1000 <= now) return { ok: false, reason: "expired" };
  return { ok: true, payload, id: `consent-state:${createHash("sha256").update(body, "utf8").digest("base64url")}` };
}

function isPayload(p: unknown): p is ConsentStatePayload {
  if (p === null || typeof p !== "object") return false;
  const o = p as Record<string, unknown>;
  return (
    o.v === 1 &&
    typeof o.tid === "string" &&
    isTenantIdOrDomain(o.tid) &&
    (o.key === undefined || typeof o.key === "string") &&
    typeof o.app === "string" &&
    GUID.test(o.app) &&
    typeof o.exp === "number" &&
    Number.isFinite(o.exp) &&
    typeof o.n === "string"
  );
}

/** `{authorityHost}/{tenant}/adminconsent?client_id=…&redirect_uri=…&state=…` (the v1 endpoint: consents to the app's configured permissions). */
export function buildConsentUrl(input: { authorityHost: string; tenant: string; clientId: string; redirectUri: string; state: string }): string {
  if (!isTenantIdOrDomain(input.tenant)) throw new ConsentSetupError(`"${input.tenant}" is not a tenant GUID or domain`);
  const url = new URL(`${input.authorityHost.replace(/\/+$/, "")}/${encodeURIComponent(input.tenant)}/adminconsent`);
  url.searchParams.set("client_id", input.clientId);
  url.searchParams.set("redirect_uri", input.redirectUri);
  url.searchParams.set("state", input.state);
  return url.toString();
}

/** The redirect URI Entra sends the admin back to: `consent.redirectUri`, else `{server.publicUrl}/consent/callback`. */
export function consentRedirectUri(config: Pick<Config, "consent" | "server">): string {
  if (config.consent?.redirectUri) return config.consent.redirectUri;
  if (config.server.publicUrl) return `${config.server.publicUrl}/consent/callback`;
  throw new ConsentSetupError("set consent.redirectUri or server.publicUrl (the URL Entra redirects the admin back to)", "consent.redirectUri");
}

/**
 * The key that signs states, from `consent.stateSecretFile` or `consent.stateSecretEnv`.
 * A trailing newline in the file is not part of the key (editors add one).
 */
export function readStateSecret(consent: Config["consent"], env: NodeJS.ProcessEnv = process.env): Buffer {
  if (!consent) throw new ConsentSetupError("missing: admin consent needs a consent section with stateSecretFile or stateSecretEnv", "consent");
  let raw: string | undefined;
  let path: string;
  if (consent.stateSecretFile !== undefined) {
    path = "consent.stateSecretFile";
    try {
      raw = readFileSync(consent.stateSecretFile, "utf8").replace(/\r?\n$/, "");
    } catch (err) {
      throw new ConsentSetupError(`cannot read file (${(err as NodeJS.ErrnoException).code ?? "error"})`, path);
    }
  } else if (consent.stateSecretEnv !== undefined) {
    path = "consent.stateSecretEnv";
    raw = env[consent.stateSecretEnv];
    if (!raw) throw new ConsentSetupError(`environment variable ${consent.stateSecretEnv} is not set`, path);
  } else {
    throw new ConsentSetupError("give stateSecretFile or stateSecretEnv (the key that signs consent links)", "consent.stateSecretFile");
  }
  const key = Buffer.from(raw, "utf8");
  if (key.length < MIN_STATE_SECRET_BYTES) {
    throw new ConsentSetupError(`the key must be at least ${MIN_STATE_SECRET_BYTES} bytes (e.g. openssl rand -base64 48)`, path);
  }
  return key;
}

/** Who a consent link is for: a configured tenant, or a customer not yet in the config. */
export interface ConsentTarget {
  /** GUID or domain put in the authority path. */
  readonly tenant: string;
  /** Set when `tenant` came from a configured tenant key. */
  readonly tenantKey?: string;
  readonly app: AppConfig;
}

/**
 * Resolves the CLI argument: a configured tenant key (its tenantId and app), else a tenant
 * GUID or domain of a customer not yet configured (then the top-level app is used).
 */
export function resolveConsentTarget(config: Pick<Config, "tenants" | "app">, arg: string): ConsentTarget {
  const configured = Object.hasOwn(config.tenants, arg) ? config.tenants[arg] : undefined;
  if (configured) {
    const app = configured.app ?? config.app;
    if (!app) throw new ConsentSetupError("no app: set the top-level app or this tenant's app", `tenants.${arg}.app`);
    return { tenant: configured.tenantId, tenantKey: arg, app };
  }
  if (!isTenantIdOrDomain(arg)) {
    throw new ConsentSetupError(`"${arg}" is neither a configured tenant key nor a tenant GUID or domain`);
  }
  if (!config.app) throw new ConsentSetupError("a customer not yet configured is onboarded with the top-level app, and there is none", "app");
  return { tenant: arg, app: config.app };
}

/** Everything needed for one link, ready to print. */
export interface ConsentLink {
  readonly url: string;
  readonly tenant: string;
  readonly tenantKey?: string;
  readonly clientId: string;
  readonly redirectUri: string;
  readonly expiresAt: Date;
}

/** Makes the admin-consent link for a tenant key, tenant GUID or domain. */
export function makeConsentLink(
  config: Pick<Config, "tenants" | "app" | "consent" | "server" | "cloud">,
  arg: string,
  options: { now: number; env?: NodeJS.ProcessEnv },
): ConsentLink {
  const target = resolveConsentTarget(config, arg);
  const redirectUri = consentRedirectUri(config);
  const key = readStateSecret(config.consent, options.env);
  const ttlSeconds = config.consent?.stateTtlSeconds ?? 7 * 86_400;
  const state = createConsentState({
    tenant: target.tenant,
    ...(target.tenantKey !== undefined ? { tenantKey: target.tenantKey } : {}),
    clientId: target.app.clientId,
    key,
    now: options.now,
    ttlSeconds,
  });
  const url = buildConsentUrl({ authorityHost: config.cloud.authorityHost, tenant: target.tenant, clientId: target.app.clientId, redirectUri, state });
  return {
    url,
    tenant: target.tenant,
    ...(target.tenantKey !== undefined ? { tenantKey: target.tenantKey } : {}),
    clientId: target.app.clientId,
    redirectUri,
    expiresAt: new Date((Math.floor(options.now / 1000) + ttlSeconds) * 1000),
  };
}
