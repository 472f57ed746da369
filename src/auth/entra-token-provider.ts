import type { AccessToken, TokenCredential } from "@azure/identity";
import type { Logger } from "pino";
import { request, type Dispatcher } from "undici";
import type { Config } from "../config/schema.js";
import { createHttpsAgent } from "../net/http-dispatcher.js";
import { RelayError, isRelayError } from "../core/problems.js";
import { systemClock, type Clock, type SendObserver, type TokenProvider, type TokenTarget } from "../core/ports.js";
import { describeAadsts, isTransientAadsts, parseAadsts } from "./aadsts.js";
import {
  buildCredential,
  credentialFingerprint,
  loadIdentity,
  currentPrimarySecretHash,
  graphScope,
  hasSecondarySecret,
  type BuiltCredential,
  type CredentialBuildContext,
} from "./credential-factory.js";
import { IdentityHttpClient, IdentityHttpRouter, aadstsFromBody, transportCode, type TokenExchange } from "./identity-http-client.js";

/** Seconds a caller is told to wait when Entra ID cannot be reached. */
const UNAVAILABLE_RETRY_AFTER_SECONDS = 5;
/** MSAL treats a token as expired this long before `expiresOn`; asking it earlier only hits its cache. */
const MSAL_RENEWAL_OFFSET_MS = 300_000;
/** A token is never handed out for a Graph call when it expires sooner than this. */
const MIN_REMAINING_LIFETIME_MS = 60_000;
/**
 * After an Entra outage answer, Entra is asked again for that credential no sooner than this
 * (or Entra's own Retry-After, up to MAX_OUTAGE_HOLD_MS), so an outage costs one token request
 * per credential every few seconds rather than one per send, and a send right after recovery
 * waits at most this long.
 */
const OUTAGE_HOLD_MS = UNAVAILABLE_RETRY_AFTER_SECONDS * 1000;
const MAX_OUTAGE_HOLD_MS = 60_000;
/**
 * A shared credential object is replaced after this many token requests, because it keeps two
 * things per request for as long as it lives: @azure/identity's HTTP layer an AbortController
 * (Azure/azure-sdk-for-js#26161, open; ~0.3 KB), and MSAL's cache the token (~2 KB with its
 * cache entry), one per tenant next to the one kept here. Both stay bounded to this many; the
 * new object reads the authority's metadata once more (one request per this many tokens).
 */
const SHARED_CREDENTIAL_REQUESTS = 100;
/** AADSTS codes after which a secret credential may try its other secret. */
const SECRET_REJECTED = new Set(["7000215", "7000222"]);

export interface EntraTokenProviderOptions {
  readonly config: Pick<Config, "cloud" | "tls">;
  readonly observer: SendObserver;
  readonly logger: Logger;
  /** A shared keep-alive agent (e.g. the Graph sender's); when absent one is made and closed by close(). */
  readonly dispatcher?: Dispatcher;
  /** Where secretEnv names are looked up; default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Limit for one HTTP request to Entra ID (ms); default 10 s. */
  readonly requestTimeoutMs?: number;
  readonly clock?: Clock;
  /** Token requests one shared credential object serves before a new one replaces it; default 100 (see SHARED_CREDENTIAL_REQUESTS). */
  readonly sharedCredentialRequests?: number;
}

/** The Entra ID adapter: the port plus the lifecycle operations the app and config reload need. */
export interface EntraTokenProvider extends TokenProvider {
  /**
   * Forgets the cached token of a target (Graph refused it); the next getToken asks Entra again.
   * With `olderThanMs`, only a token obtained at least that long ago is forgotten, so a refusal
   * repeated by every send (consent still missing) asks Entra at most once per interval.
   */
  invalidate(target: TokenTarget, options?: { readonly olderThanMs?: number }): void;
  /** Keeps the credentials of these targets and drops every other one; returns how many were dropped. */
  retain(targets: Iterable<TokenTarget>): number;
  /** Credentials currently held (one per tenant × app × credential config). */
  readonly size: number;
  /** Drops every credential and destroys the HTTP agent if this provider created it. */
  close(): Promise<void>;
  /** Loads the identity library now rather than at the first token request. */
  warmUp(): Promise<void>;
}

interface CredentialEntry {
  readonly target: TokenTarget;
  readonly http: IdentityHttpClient;
  built: BuiltCredential;
  token?: AccessToken;
  /** When to ask MSAL again (before this, the cached token is used without asking). */
  refreshAt: number;
  /** When `token` was stored (epoch ms). */
  obtainedAt: number;
  inflight?: Promise<AccessToken>;
  /** After an outage answer: Entra is not asked again before this (epoch ms); callers get `outage`. */
  heldUntil: number;
  outage?: RelayError;
  /**
   * The next token must come from Entra ID, not from the shared credential's MSAL cache or
   * throttling memory: set after Graph refused the token and after an outage.
   */
  fresh: boolean;
}

/**
 * Creates the TokenProvider on @azure/identity. One entry per (authority, tenant key, tenant,
 * app, credential config), made on first use and kept; the access token is kept in front of
 * MSAL's cache and refreshed in the background before it runs out, and concurrent callers share
 * one in-flight request (MSAL does not coalesce concurrent cache misses). The credential object
 * is shared by every tenant of an app (one per app, authority and secret), and asked per tenant.
 */
export function createEntraTokenProvider(options: EntraTokenProviderOptions): EntraTokenProvider {
  return new EntraTokenProviderImpl(options);
}

class EntraTokenProviderImpl implements EntraTokenProvider {
  private readonly entries = new Map<string, CredentialEntry>();
  /** BuiltCredential.materialKey → the credential every tenant of that app credential uses. */
  private readonly shared = new Map<string, { readonly credential: TokenCredential; requests: number }>();
  private readonly sharedCredentialRequests: number;
  private readonly router: IdentityHttpRouter;
  private readonly keys = new WeakMap<TokenTarget, string>();
  private readonly authorityHost: string;
  private readonly scope: string;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly timeoutMs: number;
  private readonly env: NodeJS.ProcessEnv;
  private readonly clock: Clock;
  private readonly observer: SendObserver;
  private readonly logger: Logger;

  constructor(options: EntraTokenProviderOptions) {
    this.authorityHost = options.config.cloud.authorityHost;
    this.scope = graphScope(options.config.cloud.graphBaseUrl);
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher = options.dispatcher ?? createHttpsAgent(options.config.tls, { connections: 16 });
    this.timeoutMs = options.requestTimeoutMs ?? 10_000;
    this.env = options.env ?? process.env;
    this.clock = options.clock ?? systemClock;
    this.observer = options.observer;
    this.logger = options.logger;
    this.sharedCredentialRequests = options.sharedCredentialRequests ?? SHARED_CREDENTIAL_REQUESTS;
    this.router = new IdentityHttpRouter(this.authorityHost, new IdentityHttpClient(this.dispatcher, () => undefined, this.timeoutMs, this.clock));
  }

  get size(): number {
    return this.entries.size;
  }

  async getToken(target: TokenTarget, signal?: AbortSignal): Promise<string> {
    const cached = this.cachedToken(target);
    if (cached !== undefined) return cached;
    if (this.entries.size === 0) await loadIdentity();
    const entry = this.entryFor(target);
    const now = this.clock.now();
    const token = entry.token;
    if (token !== undefined && now < token.expiresOnTimestamp - MIN_REMAINING_LIFETIME_MS) {
      // Still good for a while: hand it out and renew behind the caller's back (not while Entra is held off).
      if (now < entry.heldUntil) return token.token;
      this.refresh(entry).catch((err: unknown) => this.logger.warn({ tenant: target.tenantKey, code: codeOf(err) }, "background token refresh failed"));
      return token.token;
    }
    return (await raceSignal(this.refresh(entry), signal, target)).token;
  }

  /** The token while it is before its renewal point (getToken's usual case). */
  cachedToken(target: TokenTarget): string | undefined {
    if (this.entries.size === 0) return undefined;
    const entry = this.entries.get(this.keyOf(target));
    const token = entry?.token;
    return token !== undefined && this.clock.now() < entry!.refreshAt ? token.token : undefined;
  }

  invalidate(target: TokenTarget, options: { readonly olderThanMs?: number } = {}): void {
    const entry = this.entries.get(this.keyOf(target));
    if (entry === undefined) return;
    if (options.olderThanMs !== undefined && this.clock.now() - entry.obtainedAt < options.olderThanMs) return;
    entry.token = undefined;
    entry.refreshAt = 0;
    // MSAL's cache still holds the refused token: the next request goes past it.
    entry.fresh = true;
    // Start from freshly read credential material.
    try {
      entry.built = this.build(entry.target, entry.built.slot, entry.http);
    } catch (err) {
      // The secret can no longer be read: keep the old credential; the next request will tell.
      this.logger.warn({ tenant: target.tenantKey, code: codeOf(err) }, "cannot rebuild the credential after its token was refused");
    }
  }

  retain(targets: Iterable<TokenTarget>): number {
    const keep = new Set<string>();
    // Not cached here: a reload lists every tenant, most of which may never send.
    for (const t of targets) keep.add(this.keys.get(t) ?? credentialFingerprint(t, this.authorityHost));
    let dropped = 0;
    for (const key of [...this.entries.keys()]) {
      if (!keep.has(key)) {
        this.entries.delete(key);
        dropped++;
      }
    }
    // MSAL's cache in the shared credentials still holds the dropped tenants' tokens: start
    // anew (each tenant's next renewal makes the credential again; tokens held here stay).
    if (dropped > 0) this.shared.clear();
    return dropped;
  }

  warmUp(): Promise<void> {
    return loadIdentity();
  }

  async close(): Promise<void> {
    this.entries.clear();
    this.shared.clear();
    // Destroy, not close: a token request still waiting on Entra serves nobody once we stop.
    if (this.ownsDispatcher) await this.dispatcher.destroy();
  }

  /**
   * credentialFingerprint (a JSON text and a SHA-256) once per target object rather than on
   * every token lookup: targets from the config are frozen, so their key cannot change.
   */
  private keyOf(target: TokenTarget): string {
    let key = this.keys.get(target);
    if (key === undefined) {
      key = credentialFingerprint(target, this.authorityHost);
      if (Object.isFrozen(target) && Object.isFrozen(target.app) && Object.isFrozen(target.app.credential)) this.keys.set(target, key);
    }
    return key;
  }

  private entryFor(target: TokenTarget): CredentialEntry {
    const key = this.keyOf(target);
    let entry = this.entries.get(key);
    if (entry === undefined) {
      const tenantKey = target.tenantKey;
      const http = new IdentityHttpClient(this.dispatcher, (ex) => this.observer.tokenRequest(tenantKey, ex.outcome), this.timeoutMs, this.clock);
      // Reading an unreadable secret throws here, before the entry exists: the next call retries.
      entry = { target, http, built: this.build(target, "primary", http), refreshAt: 0, obtainedAt: 0, heldUntil: 0, fresh: false };
      this.entries.set(key, entry);
    }
    return entry;
  }

  private build(target: TokenTarget, slot: BuiltCredential["slot"], http: IdentityHttpClient): BuiltCredential {
    const ctx: CredentialBuildContext = { authorityHost: this.authorityHost, httpClient: http, env: this.env };
    return buildCredential(target, slot, ctx);
  }

  /** One acquisition per entry at a time; every caller that arrives meanwhile shares it. */
  private refresh(entry: CredentialEntry): Promise<AccessToken> {
    entry.inflight ??= this.acquire(entry).finally(() => {
      entry.inflight = undefined;
    });
    return entry.inflight;
  }

  private async acquire(entry: CredentialEntry): Promise<AccessToken> {
    const held = entry.heldUntil - this.clock.now();
    if (held > 0 && entry.outage !== undefined) throw heldOutage(entry.outage, held);
    let problem: RelayError;
    try {
      return this.store(entry, await this.requestToken(entry));
    } catch (err) {
      problem = await this.classify(entry, err);
    }
    if (problem.code === "credential_rejected" && problem.extras.aadsts !== undefined && SECRET_REJECTED.has(problem.extras.aadsts) && this.switchSecret(entry)) {
      try {
        return this.store(entry, await this.requestToken(entry));
      } catch (err) {
        problem = await this.classify(entry, err);
      }
    }
    if (problem.code === "upstream_unavailable") this.holdAfterOutage(entry, problem);
    if (problem.code === "credential_rejected") {
      // Repeating it from memory for a while is the job of src/delivery/credential-failure-memory.ts.
      this.logger.warn(
        { tenant: entry.target.tenantKey, clientId: entry.target.app.clientId, aadsts: problem.extras.aadsts },
        "Entra ID rejected the app credential",
      );
    } else {
      this.logger.warn({ tenant: entry.target.tenantKey, code: problem.code }, "Entra ID token request failed");
    }
    throw problem;
  }

  /**
   * After an outage (Entra answered 5xx/429/temporarily_unavailable, or could not be reached):
   * MSAL now throttles this tenant's requests for 60 s (its ThrottlingUtils cache, filled on any
   * 429 or 5xx and checked before every token request, without asking Entra), so sends would
   * keep failing for a minute after Entra is back. The next request therefore goes through a
   * credential object of its own (`fresh`), which has no such memory; the credential material
   * is read again here too. Our own short hold keeps an outage from turning into a request per
   * send.
   */
  private holdAfterOutage(entry: CredentialEntry, problem: RelayError): void {
    entry.heldUntil = this.clock.now() + outageHoldMs(entry.http.lastExchange);
    entry.outage = problem;
    entry.fresh = true;
    try {
      entry.built = this.build(entry.target, entry.built.slot, entry.http);
    } catch (err) {
      // The secret can no longer be read: keep the old credential; the next request will tell.
      this.logger.warn({ tenant: entry.target.tenantKey, code: codeOf(err) }, "cannot rebuild the credential after an Entra outage");
    }
  }

  /**
   * A new token from Entra ID. Usually through the app's shared credential: MSAL's cache misses
   * there, because the token is renewed at or after MSAL's own renewal point. When it does not
   * (MSAL handed back the token held here), and when `fresh` is set, a credential object made
   * for this request alone asks Entra.
   */
  private async requestToken(entry: CredentialEntry): Promise<AccessToken> {
    entry.http.lastExchange = undefined;
    const { target, built } = entry;
    let token: AccessToken | null;
    if (entry.fresh) token = await built.create().getToken(this.scope);
    else {
      const shared = this.sharedCredential(built);
      token = await this.router.run(target.tenantId, entry.http, () => shared.getToken(this.scope, { tenantId: target.tenantId }));
      if (token !== null && token.token === entry.token?.token) token = await built.create().getToken(this.scope);
    }
    if (token === null) throw new Error("the credential returned no token");
    entry.fresh = false;
    return token;
  }

  /** The app credential's shared object, replaced once it has served sharedCredentialRequests token requests. */
  private sharedCredential(built: BuiltCredential): TokenCredential {
    let shared = this.shared.get(built.materialKey);
    if (shared === undefined || shared.requests >= this.sharedCredentialRequests) {
      // Acquisitions still running on the old object finish on it; it is collected after them.
      shared = { credential: built.createMultiTenant(this.router), requests: 0 };
      this.shared.set(built.materialKey, shared);
    }
    shared.requests++;
    return shared.credential;
  }

  private store(entry: CredentialEntry, token: AccessToken): AccessToken {
    const now = this.clock.now();
    entry.heldUntil = 0;
    entry.outage = undefined;
    const lifetime = token.expiresOnTimestamp - now;
    // Renew at MSAL's own renewal point, or half-way for short-lived tokens.
    const renewAt = token.expiresOnTimestamp - Math.min(MSAL_RENEWAL_OFFSET_MS, lifetime / 2);
    entry.token = token;
    entry.obtainedAt = now;
    entry.refreshAt = Math.min(renewAt, token.refreshAfterTimestamp ?? Number.POSITIVE_INFINITY);
    return token;
  }

  /**
   * After Entra refused the secret as invalid or expired: use the primary secret again if its
   * file or variable changed since (rotated in place), else the secondary one if configured.
   */
  private switchSecret(entry: CredentialEntry): boolean {
    const { target } = entry;
    if (target.app.credential.type !== "secret" || entry.built.slot !== "primary") return false;
    const fresh = currentPrimarySecretHash(target, this.env);
    try {
      if (fresh !== undefined && fresh !== entry.built.secretHash) {
        entry.built = this.build(target, "primary", entry.http);
        this.logger.info({ tenant: target.tenantKey, clientId: target.app.clientId }, "client secret changed since it was read; retrying with the new one");
        return true;
      }
      if (!hasSecondarySecret(target.app.credential)) return false;
      entry.built = this.build(target, "secondary", entry.http);
    } catch (err) {
      this.logger.warn({ tenant: target.tenantKey, code: codeOf(err) }, "the other client secret cannot be read");
      return false;
    }
    this.logger.warn(
      { tenant: target.tenantKey, clientId: target.app.clientId },
      "Entra ID rejected the primary client secret; using the secondary secret from now on",
    );
    this.observer.credentialFallback(target.tenantKey);
    return true;
  }

  /** Turns what @azure/identity threw into the problem the caller gets. */
  private async classify(entry: CredentialEntry, err: unknown): Promise<RelayError> {
    if (isRelayError(err)) return err;
    const { target } = entry;
    const message = err instanceof Error ? err.message : String(err);
    const exchange = entry.http.lastExchange;
    // Status and OAuth error first: an outage (5xx, 429, temporarily_unavailable) is never a rejection.
    if (exchange?.outcome === "upstream_unavailable" && exchange.transportError === undefined) return this.entraDown(target, exchange);
    const aadsts = parseAadsts(message) ?? exchange?.aadsts;
    // No status at hand (MSAL may replay an earlier answer without asking): the code's meaning decides.
    if (isTransientAadsts(aadsts)) return this.entraDown(target, { outcome: "upstream_unavailable", ...(aadsts !== undefined ? { aadsts } : {}) });
    if (aadsts !== undefined) return rejected(target, aadsts);
    if (exchange?.outcome === "credential_rejected") {
      return new RelayError(
        "credential_rejected",
        `Entra ID refused the token request of app ${target.app.clientId} in tenant ${target.tenantId} (HTTP ${exchange.status ?? "?"}) without an AADSTS code.`,
      );
    }
    if (exchange === undefined && /endpoints_resolution_error|openid_config_error/.test(message)) {
      // MSAL could not read the tenant's OpenID configuration and hides Entra's answer; ask ourselves.
      return this.probeTenant(target);
    }
    if (exchange === undefined) {
      // No token request was made and no reason is known: an SDK or configuration problem.
      this.logger.error({ tenant: target.tenantKey, err: message }, "token acquisition failed before any token request");
    }
    const why = exchange?.transportError ?? (exchange?.status !== undefined ? `HTTP ${exchange.status}` : "no token request could be made");
    return unavailable(`Entra ID (${new URL(this.authorityHost).host}) did not issue a token for tenant ${target.tenantId}: ${why}. Retry later.`);
  }

  /** Entra answered, but with an outage (503 temporarily_unavailable AADSTS90033, 5xx, 429). */
  private entraDown(target: TokenTarget, exchange: TokenExchange): RelayError {
    const what = [
      exchange.status !== undefined ? `HTTP ${exchange.status}` : undefined,
      exchange.error,
      exchange.aadsts !== undefined ? `AADSTS${exchange.aadsts}` : undefined,
    ].filter((p) => p !== undefined);
    // Honest: Entra is asked again for this credential after exactly this (see holdAfterOutage).
    const retryAfterSeconds = Math.ceil(outageHoldMs(exchange) / 1000);
    return new RelayError(
      "upstream_unavailable",
      `Entra ID (${new URL(this.authorityHost).host}) is temporarily unavailable and issued no token for tenant ${target.tenantId}` +
        `${what.length > 0 ? ` (${what.join(", ")})` : ""}. This is an Entra ID outage, not a problem with the credential. Retry later.`,
      { retryAfterSeconds, ...(exchange.aadsts !== undefined ? { aadsts: exchange.aadsts } : {}) },
    );
  }

  private async probeTenant(target: TokenTarget): Promise<RelayError> {
    const url = `${this.authorityHost}/${encodeURIComponent(target.tenantId)}/v2.0/.well-known/openid-configuration`;
    const host = new URL(this.authorityHost).host;
    try {
      const res = await request(url, { dispatcher: this.dispatcher, signal: AbortSignal.timeout(this.timeoutMs) });
      const text = await res.body.text();
      if (res.statusCode >= 400 && res.statusCode < 500) {
        const code = aadstsFromBody(text);
        if (code !== undefined) return rejected(target, code);
        return new RelayError(
          "credential_rejected",
          `Entra ID has no OpenID configuration for tenant ${target.tenantId} (HTTP ${res.statusCode}): check tenantId.`,
        );
      }
      if (res.statusCode < 300) {
        this.logger.error({ tenant: target.tenantKey }, "MSAL could not resolve the authority although its OpenID configuration is served");
      }
      return unavailable(`Entra ID (${host}) did not serve the OpenID configuration of tenant ${target.tenantId}: HTTP ${res.statusCode}. Retry later.`);
    } catch (err) {
      return unavailable(`Entra ID (${host}) cannot be reached: ${transportCode(err)}. Retry later.`);
    }
  }
}

function rejected(target: TokenTarget, aadsts: string): RelayError {
  return new RelayError("credential_rejected", describeAadsts(aadsts, { clientId: target.app.clientId, tenantId: target.tenantId }), { aadsts });
}

function unavailable(detail: string): RelayError {
  return new RelayError("upstream_unavailable", detail, { retryAfterSeconds: UNAVAILABLE_RETRY_AFTER_SECONDS });
}

/** How long Entra is left alone after an outage answer: its Retry-After within [1 s, 60 s], else 5 s. */
function outageHoldMs(exchange: TokenExchange | undefined): number {
  return Math.min(MAX_OUTAGE_HOLD_MS, Math.max(1_000, Math.ceil((exchange?.retryAfterMs ?? OUTAGE_HOLD_MS) / 1000) * 1000));
}

/** The outage answer again, while Entra is held off, with the time left as its Retry-After. */
function heldOutage(outage: RelayError, remainingMs: number): RelayError {
  return new RelayError("upstream_unavailable", outage.message, { ...outage.extras, retryAfterSeconds: Math.max(1, Math.ceil(remainingMs / 1000)) });
}

function codeOf(err: unknown): string {
  return isRelayError(err) ? err.code : err instanceof Error ? err.name : "error";
}

/**
 * MSAL takes no abort signal, so the caller stops waiting when its signal fires while the
 * shared request goes on for the others (and fills the cache).
 */
function raceSignal<T>(work: Promise<T>, signal: AbortSignal | undefined, target: TokenTarget): Promise<T> {
  if (signal === undefined) return work;
  const abortProblem = (): Error =>
    isRelayError(signal.reason)
      ? signal.reason
      : unavailable(`Entra ID did not issue a token for tenant ${target.tenantId} before the request's deadline. Retry later.`);
  if (signal.aborted) return Promise.reject(abortProblem());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortProblem());
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
