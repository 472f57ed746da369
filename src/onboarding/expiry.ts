import type { Config, CredentialConfig } from "../config/schema.js";
import type { Clock } from "../core/ports.js";

/*
 * Credential expiry: which tenant uses which credential until when, and a daily warning in
 * the log for those that run out within 30 days. Only `expiresAt` from the config is used;
 * no secret is read, and none is ever logged.
 */

/** Warn this many days ahead. */
export const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

export type ExpiryStatus = "ok" | "expiring" | "expired" | "unknown";

export interface CredentialExpiry {
  /** Tenant key from the config. */
  readonly tenantKey: string;
  readonly credential: CredentialConfig["type"];
  /** Whether the credential is the tenant's own app or the shared top-level app. */
  readonly source: "tenant" | "shared";
  readonly clientId: string;
  readonly expiresAt?: Date;
  /** Whole days left, rounded down; negative once expired. Absent without expiresAt. */
  readonly daysLeft?: number;
  readonly status: ExpiryStatus;
}

/** Days left, rounded down (so "0" means it ends within 24 hours). */
export function daysLeft(expiresAt: Date, now: number): number {
  return Math.floor((expiresAt.getTime() - now) / DAY_MS);
}

/** Whole days since an expiry that has passed (0 on the first day). */
export function daysAgo(expiresAt: Date, now: number): number {
  return Math.max(0, Math.floor((now - expiresAt.getTime()) / DAY_MS));
}

export function expiryStatus(expiresAt: Date | undefined, now: number, warnDays = EXPIRY_WARNING_DAYS): ExpiryStatus {
  if (!expiresAt) return "unknown";
  if (expiresAt.getTime() <= now) return "expired";
  if (expiresAt.getTime() - now < warnDays * DAY_MS) return "expiring";
  return "ok";
}

/**
 * One row per tenant: the credential it uses (its own app, else the top-level app), sorted by
 * tenant key. With `only`, just the rows of those statuses (the start-up check of 10,000
 * tenants then sorts the few it warns about, not all of them).
 */
export function listCredentialExpiry(
  config: Pick<Config, "app" | "tenants">,
  now: number,
  warnDays = EXPIRY_WARNING_DAYS,
  only?: ReadonlySet<ExpiryStatus>,
): CredentialExpiry[] {
  const rows: CredentialExpiry[] = [];
  for (const [tenantKey, tenant] of Object.entries(config.tenants)) {
    const app = tenant.app ?? config.app;
    if (!app) continue; // the schema refuses this; nothing to report
    const expiresAt = app.credential.expiresAt;
    const status = expiryStatus(expiresAt, now, warnDays);
    if (only !== undefined && !only.has(status)) continue;
    rows.push({
      tenantKey,
      credential: app.credential.type,
      source: tenant.app ? "tenant" : "shared",
      clientId: app.clientId,
      ...(expiresAt ? { expiresAt, daysLeft: daysLeft(expiresAt, now) } : {}),
      status,
    });
  }
  return rows.sort((a, b) => a.tenantKey.localeCompare(b.tenantKey));
}

/** The subset of pino's Logger the scheduler writes to. */
export interface ExpiryLogger {
  warn(obj: object, msg: string): void;
}

export interface ExpiryWarningsOptions {
  /** The current config; a function so a reloaded config is seen by the next check. */
  readonly config: Pick<Config, "app" | "tenants"> | (() => Pick<Config, "app" | "tenants">);
  readonly logger: ExpiryLogger;
  readonly clock: Clock;
  /** Default 24 h. */
  readonly intervalMs?: number;
  /** Default 30. */
  readonly warnDays?: number;
}

const WARNED: ReadonlySet<ExpiryStatus> = new Set(["expiring", "expired"]);

/**
 * Most tenant keys one warning line lists. A shared app's line once listed all its tenants:
 * ~200 KB at 10,000, more than log pipelines keep in one record (Docker's json-file log splits
 * lines at 16 KB). The line counts them all; `noreply-relay tenants` lists them all.
 */
export const EXPIRY_LINE_MAX_TENANTS = 20;

export interface ExpiryWarnings {
  /** Runs one check now and returns what it warned about. */
  check(): CredentialExpiry[];
  stop(): void;
}

/**
 * Logs one warning line per credential that expires within `warnDays` or has expired: at
 * start (synchronously, before this returns) and then every `intervalMs`. A credential
 * shared by several tenants gives one line: how many, and the first EXPIRY_LINE_MAX_TENANTS
 * keys (sorted). The timer is unref()ed so it never
 * keeps the process alive.
 */
export function startExpiryWarnings(options: ExpiryWarningsOptions): ExpiryWarnings {
  const warnDays = options.warnDays ?? EXPIRY_WARNING_DAYS;
  const current = typeof options.config === "function" ? options.config : () => options.config as Pick<Config, "app" | "tenants">;

  const check = (): CredentialExpiry[] => {
    const now = options.clock.now();
    const rows = listCredentialExpiry(current(), now, warnDays, WARNED);
    const groups = new Map<string, CredentialExpiry[]>();
    for (const row of rows) {
      const k = `${row.clientId}|${row.credential}|${row.expiresAt?.toISOString()}`;
      const group = groups.get(k);
      if (group === undefined) groups.set(k, [row]);
      else group.push(row);
    }
    for (const group of groups.values()) {
      const first = group[0]!;
      const listed = group.slice(0, EXPIRY_LINE_MAX_TENANTS).map((r) => r.tenantKey);
      const omitted = group.length - listed.length;
      const named = `${group.length === 1 ? "tenant" : `${group.length} tenants`} ${listed.join(", ")}${omitted === 0 ? "" : ` and ${omitted} more (noreply-relay tenants lists them)`}`;
      options.logger.warn(
        {
          event: "credential_expiry",
          tenant: group.length === 1 ? listed[0] : undefined,
          tenants: listed,
          tenantCount: group.length,
          ...(omitted > 0 ? { tenantsOmitted: omitted } : {}),
          credential: first.credential,
          clientId: first.clientId,
          expiresAt: first.expiresAt?.toISOString(),
          daysLeft: first.daysLeft,
          status: first.status,
        },
        first.status === "expired"
          ? `credential of app ${first.clientId} (${first.credential}) EXPIRED ${first.expiresAt ? daysAgo(first.expiresAt, now) : 0} day(s) ago: ${named} cannot send until it is renewed`
          : `credential of app ${first.clientId} (${first.credential}) expires in ${first.daysLeft} day(s): renew it and update expiresAt (${named})`,
      );
    }
    return rows;
  };

  check();
  const timer = setInterval(() => {
    try {
      check();
    } catch (err) {
      // A broken check must not take the server down; the next day tries again.
      options.logger.warn({ event: "credential_expiry", err }, "credential expiry check failed");
    }
  }, options.intervalMs ?? DAY_MS);
  timer.unref();
  return { check, stop: () => clearInterval(timer) };
}
