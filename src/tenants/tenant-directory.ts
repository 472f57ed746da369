import type { AppConfig, Config, LimitsConfig, TenantConfig } from "../config/schema.js";
import { mailboxKey } from "../delivery/mailbox-limiter.js";
import type { TokenTarget } from "../core/ports.js";
import type { CredentialExpiry } from "../metrics/relay-metrics.js";

/** One configured tenant, resolved once per config load; the send path only reads it. */
export interface Tenant {
  /** The key callers use (`contoso`); also the metrics/log label. */
  readonly key: string;
  readonly tenantId: string;
  readonly displayName?: string;
  /** The ONLY mailbox this tenant sends from, as configured. */
  readonly sender: string;
  /** Lower-cased sender, for the case-insensitive `from` check. */
  readonly senderLower: string;
  /** Domain part of the sender: the right-hand side of generated Message-IDs. */
  readonly senderDomain: string;
  readonly saveToSentItems: boolean;
  /** How the tenant grants Mail.Send (`tenants.<key>.accessModel`): decides what a 403 means. */
  readonly accessModel: "consent" | "rbac";
  /** What the token provider and Graph sender key their caches on; same object while the tenant is unchanged. */
  readonly target: TokenTarget;
  readonly limits: LimitsConfig;
  /** Key of the sender mailbox in the mailbox limiter and recipient guard (src/delivery). */
  readonly mailboxKey: string;
  readonly credentialExpiries: readonly CredentialExpiry[];
  /** Whether the tenant uses its own app registration rather than the top-level one. */
  readonly ownApp: boolean;
  /**
   * The tenant's own config as loaded; with `appFingerprint`, decides whether a reload keeps the
   * object (compared as JSON then: a reload is rare, and 10,000 tenants' JSON kept in memory for
   * it was ~2.5 MB).
   */
  readonly config: TenantConfig;
  /** JSON of its app registration and the cloud/TLS settings; one string shared by all tenants on that app. */
  readonly appFingerprint: string;
}

/** The tenants of one config load. Immutable; a reload builds a new one. */
export class TenantDirectory {
  private readonly byKey: ReadonlyMap<string, Tenant>;

  constructor(tenants: Iterable<Tenant>) {
    this.byKey = new Map([...tenants].map((t) => [t.key, t]));
  }

  get(key: string): Tenant | undefined {
    return this.byKey.get(key);
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  get size(): number {
    return this.byKey.size;
  }

  /** In config order (for /tenants and the CLI). */
  list(): Tenant[] {
    return [...this.byKey.values()];
  }

  /** Every credential expiry of every tenant, for the expiry gauge. */
  credentialExpiries(): CredentialExpiry[] {
    return this.list().flatMap((t) => t.credentialExpiries);
  }
}

/**
 * Resolves each tenant of `config`. With `previous` (a reload), a tenant whose resolved
 * config did not change keeps its object, and with it its token target (so the token
 * cache survives). Concurrency and recipient counts live in src/delivery, keyed by mailbox.
 */
export function buildTenantDirectory(config: Config, previous?: TenantDirectory): TenantDirectory {
  const tenants: Tenant[] = [];
  const appFingerprints = new Map<AppConfig, string>();
  for (const [key, tc] of Object.entries(config.tenants)) {
    const app = tc.app ?? config.app;
    // The config schema refuses a tenant without an app; this only guards the types.
    if (app === undefined) throw new Error(`tenant ${key} has no app registration`);
    let appFingerprint = appFingerprints.get(app);
    if (appFingerprint === undefined) appFingerprints.set(app, (appFingerprint = JSON.stringify([app, config.cloud, config.tls])));
    const old = previous?.get(key);
    const same = old !== undefined && old.appFingerprint === appFingerprint && (old.config === tc || JSON.stringify(old.config) === JSON.stringify(tc));
    tenants.push(same ? old : resolveTenant(key, tc, app, appFingerprint));
  }
  return new TenantDirectory(tenants);
}

function resolveTenant(key: string, tc: TenantConfig, app: AppConfig, appFingerprint: string): Tenant {
  const sender = tc.sender;
  const at = sender.lastIndexOf("@");
  return Object.freeze({
    key,
    tenantId: tc.tenantId,
    ...(tc.displayName !== undefined ? { displayName: tc.displayName } : {}),
    sender,
    senderLower: sender.toLowerCase(),
    senderDomain: sender.slice(at + 1).toLowerCase(),
    saveToSentItems: tc.saveToSentItems,
    accessModel: tc.accessModel,
    target: Object.freeze({ tenantKey: key, tenantId: tc.tenantId, app }),
    limits: tc.limits,
    mailboxKey: mailboxKey(sender),
    credentialExpiries: credentialExpiries(key, app),
    ownApp: tc.app !== undefined,
    config: tc,
    appFingerprint,
  });
}

function credentialExpiries(tenant: string, app: AppConfig): CredentialExpiry[] {
  const c = app.credential;
  if (c.expiresAt === undefined) return [];
  const credential = c.type === "secret" ? "primary" : c.type;
  return [{ tenant, credential, expiresAt: c.expiresAt }];
}
