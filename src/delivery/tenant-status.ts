import type { LimitsConfig } from "../config/schema.js";
import type { ProblemCode } from "../core/problems.js";
import { systemClock, type Clock, type TokenTarget } from "../core/ports.js";
import type { RememberedRejection } from "../auth/credential-failure-memory.js";
import type { MailboxSnapshot } from "./mailbox-limiter.js";

/**
 * What an operator needs to see per tenant on GET /tenants: is it sending, and if not, why and
 * since when. The send use case records each outcome; describeTenants joins that with the
 * config and the live counters. Nothing here can hold a secret: credentials appear only as type
 * and expiry.
 */

/** The `outcome` label of noreply_relay_send_total. */
export type SendOutcome = "sent" | "dry_run" | "duplicate" | ProblemCode;

/**
 * Whose side a problem is on. "caller": the request itself (its body, key, rights, sender,
 * size, recipients, Idempotency-Key, or a client too slow to send it): the caller can fix it
 * and it says nothing about the tenant. "service": the tenant's setup (credential, consent,
 * mailbox, access policy), Microsoft's services, limits, or this service's own failure.
 * A Record, so a new problem code does not compile until it is placed here.
 *
 * Used by /tenants (a caller's problem never becomes a tenant's lastProblem) and checked against
 * the chart's error-ratio alert (helm values prometheusRule.errorRatio.notErrorOutcomes leaves out
 * exactly the caller's problems; test/packaging/alert-rules.test.ts).
 */
const PROBLEM_SIDE: Readonly<Record<ProblemCode, "caller" | "service">> = {
  validation_failed: "caller",
  unauthorized: "caller",
  tenant_forbidden: "caller",
  sender_not_allowed: "caller",
  unknown_tenant: "caller",
  idempotency_conflict: "caller",
  payload_too_large: "caller",
  // Graph refused an address the caller gave.
  recipient_rejected: "caller",
  not_found: "caller",
  method_not_allowed: "caller",
  // The caller's request did not arrive in time (a slow or stalled client).
  request_timeout: "caller",
  expectation_failed: "caller",
  policy_denied: "service",
  permission_missing: "service",
  // Graph's throttling or the tenant's daily recipient limit: the tenant's state, worth showing.
  rate_limited: "service",
  mailbox_unavailable: "service",
  credential_rejected: "service",
  upstream_unavailable: "service",
  outcome_unknown: "service",
  internal_error: "service",
};

/** The problems on the caller's side (see PROBLEM_SIDE), in the order of PROBLEMS. */
export const CALLER_PROBLEMS: readonly ProblemCode[] = (Object.keys(PROBLEM_SIDE) as ProblemCode[]).filter((c) => PROBLEM_SIDE[c] === "caller");

/** Whether `code` is the caller's own problem (its request), not the tenant's or the service's. */
export function isCallerProblem(code: ProblemCode): boolean {
  return PROBLEM_SIDE[code] === "caller";
}

/** Problem details worth showing next to the code. */
export interface ProblemNote {
  /** Entra error code of a credential_rejected. */
  readonly aadsts?: string;
  /** Graph's error.code. */
  readonly graphCode?: string;
}

/** The last things that happened to one tenant (epoch ms). */
export interface TenantActivity {
  /** The last send for the tenant, whoever's the fault (a caller's bad request included). */
  readonly lastOutcome: SendOutcome;
  readonly lastOutcomeAt: number;
  /** The last problem on the service's side (isCallerProblem false): why the tenant last failed. */
  readonly lastProblem?: { readonly code: ProblemCode; readonly at: number } & ProblemNote;
}

/** Where the last outcome per tenant is kept: this process (TenantStatusBook) or shared by all replicas. */
export interface TenantActivityBook {
  record(tenantKey: string, outcome: SendOutcome, note?: ProblemNote): void;
  get(tenantKey: string): TenantActivity | undefined;
  /** Drops tenants no longer configured (after a reload). */
  retain(tenantKeys: Iterable<string>): void;
  /** Brings get() up to date with the other replicas (before /tenants reads it). */
  refresh?(): Promise<void>;
}

/** Last outcome and last problem per tenant key, in memory. */
export class TenantStatusBook implements TenantActivityBook {
  readonly #clock: Clock;
  readonly #byTenant = new Map<string, TenantActivity>();
  readonly #onRecord: ((tenantKey: string, activity: TenantActivity) => void) | undefined;

  constructor(options: { clock?: Clock; onRecord?: (tenantKey: string, activity: TenantActivity) => void } = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#onRecord = options.onRecord;
  }

  /**
   * Records one send's outcome. A `duplicate` is not recorded: a replay says nothing new about
   * the tenant and would hide the outcome of the last real send. The last problem stays until
   * the next problem on the service's side, so neither a success nor a caller's own mistake
   * (a bad request, a wrong sender: isCallerProblem) erases why the tenant failed before; such
   * a mistake is still the last outcome, as it was the last thing that happened.
   */
  record(tenantKey: string, outcome: SendOutcome, note: ProblemNote = {}): void {
    if (outcome === "duplicate") return;
    const at = this.#clock.now();
    const before = this.#byTenant.get(tenantKey);
    const problem =
      outcome === "sent" || outcome === "dry_run" || isCallerProblem(outcome) ? before?.lastProblem : { code: outcome, at, ...pickNote(note) };
    const activity: TenantActivity = {
      lastOutcome: outcome,
      lastOutcomeAt: at,
      ...(problem !== undefined ? { lastProblem: problem } : {}),
    };
    this.#byTenant.set(tenantKey, activity);
    this.#onRecord?.(tenantKey, activity);
  }

  get(tenantKey: string): TenantActivity | undefined {
    return this.#byTenant.get(tenantKey);
  }

  /** Takes another replica's news when it is newer than what this one knows. */
  merge(tenantKey: string, activity: TenantActivity): void {
    const mine = this.#byTenant.get(tenantKey);
    if (mine === undefined || activity.lastOutcomeAt > mine.lastOutcomeAt) {
      const lastProblem = newer(activity.lastProblem, mine?.lastProblem);
      this.#byTenant.set(tenantKey, { lastOutcome: activity.lastOutcome, lastOutcomeAt: activity.lastOutcomeAt, ...(lastProblem ? { lastProblem } : {}) });
    } else if (activity.lastProblem && (mine.lastProblem === undefined || activity.lastProblem.at > mine.lastProblem.at)) {
      this.#byTenant.set(tenantKey, { ...mine, lastProblem: activity.lastProblem });
    }
  }

  /**
   * Takes another replica's last problem when it is newer than the one this replica knows (the
   * shared book keeps problems apart from outcomes, so a later success or caller's mistake seen
   * by another replica cannot erase it). Ignored for a tenant with no activity here yet: merge
   * its activity first.
   */
  mergeProblem(tenantKey: string, problem: NonNullable<TenantActivity["lastProblem"]>): void {
    const mine = this.#byTenant.get(tenantKey);
    if (mine === undefined || (mine.lastProblem !== undefined && mine.lastProblem.at >= problem.at)) return;
    this.#byTenant.set(tenantKey, { ...mine, lastProblem: problem });
  }

  /** Drops tenants no longer configured (after a reload). */
  retain(tenantKeys: Iterable<string>): void {
    const keep = new Set(tenantKeys);
    for (const key of [...this.#byTenant.keys()]) if (!keep.has(key)) this.#byTenant.delete(key);
  }
}

function newer<T extends { readonly at: number }>(a: T | undefined, b: T | undefined): T | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a.at >= b.at ? a : b;
}

function pickNote(note: ProblemNote): ProblemNote {
  return {
    ...(note.aadsts !== undefined ? { aadsts: note.aadsts } : {}),
    ...(note.graphCode !== undefined ? { graphCode: note.graphCode } : {}),
  };
}

/** The part of a resolved tenant (src/tenants Tenant) that describeTenants reads. */
export interface DescribableTenant {
  readonly key: string;
  readonly tenantId: string;
  readonly displayName?: string;
  readonly sender: string;
  readonly mailboxKey: string;
  readonly target: TokenTarget;
  readonly limits: LimitsConfig;
  readonly ownApp: boolean;
}

/** Where the live numbers come from; each is optional so /tenants works while parts are not wired. */
export interface TenantStatusSources {
  readonly activity: Pick<TenantActivityBook, "get" | "refresh">;
  readonly recipients?: { used(mailboxKey: string): number | Promise<number> };
  readonly limiter?: { snapshot(mailboxKey: string): MailboxSnapshot | undefined | Promise<MailboxSnapshot | undefined> };
  readonly credentials?: { rejection(tenantKey: string): RememberedRejection | undefined };
}

/** One row of GET /tenants. Times are RFC 3339; never a secret, a file path or an env name. */
export interface TenantView {
  readonly tenant: string;
  readonly displayName?: string;
  readonly tenantId: string;
  readonly sender: string;
  readonly app: {
    readonly clientId: string;
    /** Whether the tenant has its own registration rather than the shared one. */
    readonly own: boolean;
    readonly credentialType: "secret" | "certificate" | "workloadIdentity";
    readonly credentialExpiresAt?: string;
  };
  readonly limits: LimitsConfig;
  readonly lastOutcome?: SendOutcome;
  readonly lastOutcomeAt?: string;
  readonly lastProblem?: { readonly code: ProblemCode; readonly at: string } & ProblemNote;
  /** Recipients counted in the rolling 24 h window for the sender mailbox. */
  readonly recipientsUsed: number;
  readonly inFlight: number;
  readonly waiting: number;
  /** Until when Graph asked us to hold back this mailbox, if still ahead. */
  readonly throttledUntil?: string;
  /** Until when Entra's credential_rejected is answered from memory, if still ahead. */
  readonly credentialRejectedUntil?: string;
}

/**
 * The GET /tenants rows, in the order given (config order from TenantDirectory.list()). With
 * the shared store the live numbers come from Redis: asked for all tenants at once, in chunks,
 * so 10,000 tenants cost a few pipelined round trips, not 20,000 sequential ones.
 */
export async function describeTenants(tenants: Iterable<DescribableTenant>, sources: TenantStatusSources): Promise<TenantView[]> {
  const iso = (ms: number): string => new Date(ms).toISOString();
  await sources.activity.refresh?.();
  const list = [...tenants];
  const rows: TenantView[] = [];
  for (let i = 0; i < list.length; i += 500) {
    const chunk = list.slice(i, i + 500);
    const live = await Promise.all(
      chunk.map(async (t) => {
        const [used, mailbox] = await Promise.all([sources.recipients?.used(t.mailboxKey) ?? 0, sources.limiter?.snapshot(t.mailboxKey)]);
        return { used, mailbox };
      }),
    );
    chunk.forEach((t, j) => rows.push(row(t, live[j]!.used, live[j]!.mailbox)));
  }
  return rows;

  function row(t: DescribableTenant, recipientsUsed: number, mailbox: MailboxSnapshot | undefined): TenantView {
    const credential = t.target.app.credential;
    const activity = sources.activity.get(t.key);
    const rejection = sources.credentials?.rejection(t.key);
    return {
      tenant: t.key,
      ...(t.displayName !== undefined ? { displayName: t.displayName } : {}),
      tenantId: t.tenantId,
      sender: t.sender,
      app: {
        clientId: t.target.app.clientId,
        own: t.ownApp,
        credentialType: credential.type,
        ...(credential.expiresAt !== undefined ? { credentialExpiresAt: credential.expiresAt.toISOString() } : {}),
      },
      limits: { maxConcurrency: t.limits.maxConcurrency, recipientsPerDay: t.limits.recipientsPerDay, maxQueue: t.limits.maxQueue },
      ...(activity ? { lastOutcome: activity.lastOutcome, lastOutcomeAt: iso(activity.lastOutcomeAt) } : {}),
      ...(activity?.lastProblem ? { lastProblem: { ...activity.lastProblem, at: iso(activity.lastProblem.at) } } : {}),
      recipientsUsed,
      inFlight: mailbox?.inFlight ?? 0,
      waiting: mailbox?.waiting ?? 0,
      ...(mailbox?.throttledUntil !== undefined ? { throttledUntil: iso(mailbox.throttledUntil) } : {}),
      ...(rejection ? { credentialRejectedUntil: iso(rejection.until) } : {}),
    };
  }
}
