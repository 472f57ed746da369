import { collectDefaultMetrics, Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { ConfigReloadOutcome } from "../config/config-watcher.js";
import type { SendObserver, StoreObserver } from "../core/ports.js";

/** Tenant label for refusals that happen before a configured tenant is known (never a caller-chosen string). */
export const NO_TENANT = "_unknown";

/** One credential's expiry, exported as `noreply_relay_credential_expiry_timestamp_seconds`. */
export interface CredentialExpiry {
  readonly tenant: string;
  /** `primary` (client secret), `certificate` or `workloadIdentity`. */
  readonly credential: string;
  readonly expiresAt: Date;
}

type Child = { inc(value?: number): void };

const CONFIG_RELOAD_OUTCOMES: readonly ConfigReloadOutcome[] = ["success", "invalid", "unchanged"];

/*
 * prom-client's `labels(...)` looks the series up by a joined string on every call; the
 * hot path instead keeps the children it has seen in small maps keyed by tenant, so a
 * send costs map lookups and no label objects.
 */
class TenantSeries {
  readonly send = new Map<string, Child>();
  readonly graph = new Map<string, Child>();
  readonly token = new Map<string, Child>();
  private policyDeniedChild: Child | undefined;
  private throttledChild: Child | undefined;
  private fallbackChild: Child | undefined;

  constructor(
    readonly tenant: string,
    private readonly m: RelayMetrics,
  ) {}

  // Created on first use: with 10,000 tenants, series nobody incremented would cost memory and scrape time.
  get policyDenied(): Child {
    return (this.policyDeniedChild ??= this.m.policyDenied.labels(this.tenant));
  }

  get throttled(): Child {
    return (this.throttledChild ??= this.m.throttledTotal.labels(this.tenant));
  }

  get fallback(): Child {
    return (this.fallbackChild ??= this.m.credentialFallbacks.labels(this.tenant));
  }

  sendChild(outcome: string): Child {
    let c = this.send.get(outcome);
    if (c === undefined) this.send.set(outcome, (c = this.m.sendTotal.labels(this.tenant, outcome)));
    return c;
  }

  graphChild(status: string): Child {
    let c = this.graph.get(status);
    if (c === undefined) this.graph.set(status, (c = this.m.graphRequests.labels(this.tenant, status)));
    return c;
  }

  tokenChild(outcome: string): Child {
    let c = this.token.get(outcome);
    if (c === undefined) this.token.set(outcome, (c = this.m.tokenRequests.labels(this.tenant, outcome)));
    return c;
  }
}

/** The contract's metrics (docs/operations.md, "Metrics") on one registry; also the adapters' SendObserver. */
export class RelayMetrics implements SendObserver {
  readonly sendTotal: Counter<"tenant" | "outcome">;
  readonly policyDenied: Counter<"tenant">;
  readonly graphRequests: Counter<"tenant" | "status">;
  readonly graphDuration: Histogram;
  readonly tokenRequests: Counter<"tenant" | "outcome">;
  readonly throttledTotal: Counter<"tenant">;
  readonly inflightSends: Gauge;
  readonly credentialExpiry: Gauge<"tenant" | "credential">;
  readonly httpDuration: Histogram<"method" | "route" | "status">;
  readonly credentialFallbacks: Counter<"tenant">;
  readonly recipientsUsed: Gauge<"tenant">;
  readonly configReloads: Counter<"outcome">;
  private recipientsSource: () => ReadonlyMap<string, number> | Promise<ReadonlyMap<string, number>> = () => new Map();

  private readonly tenants = new Map<string, TenantSeries>();
  // route -> method -> status -> child
  private readonly http = new Map<string, Map<string, Map<number, { observe(v: number): void }>>>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.sendTotal = new Counter({
      name: "noreply_relay_send_total",
      help: "POST /send requests by tenant and outcome (sent, dry_run, duplicate, or a problem code).",
      labelNames: ["tenant", "outcome"],
      registers,
    });
    this.policyDenied = new Counter({
      name: "noreply_relay_policy_denied_total",
      help: "Sends Graph refused because an ApplicationAccessPolicy or RBAC scope excludes the sender mailbox.",
      labelNames: ["tenant"],
      registers,
    });
    this.graphRequests = new Counter({
      name: "noreply_relay_graph_requests_total",
      help: "HTTP attempts to Microsoft Graph sendMail by tenant and response status (error = no response).",
      labelNames: ["tenant", "status"],
      registers,
    });
    this.graphDuration = new Histogram({
      name: "noreply_relay_graph_request_duration_seconds",
      help: "Duration of one HTTP attempt to Microsoft Graph sendMail.",
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32],
      registers,
    });
    this.tokenRequests = new Counter({
      name: "noreply_relay_token_requests_total",
      help: "Token requests to Microsoft Entra ID (cache hits excluded) by tenant and outcome.",
      labelNames: ["tenant", "outcome"],
      registers,
    });
    this.throttledTotal = new Counter({
      name: "noreply_relay_graph_throttled_total",
      help: "Graph 429 answers for the tenant's sender mailbox.",
      labelNames: ["tenant"],
      registers,
    });
    this.inflightSends = new Gauge({
      name: "noreply_relay_inflight_sends",
      help: "Sends currently waiting for or talking to Microsoft Graph.",
      registers,
    });
    this.credentialExpiry = new Gauge({
      name: "noreply_relay_credential_expiry_timestamp_seconds",
      help: "When each tenant's app credential expires (Unix time), from the config's expiresAt.",
      labelNames: ["tenant", "credential"],
      registers,
    });
    this.httpDuration = new Histogram({
      name: "noreply_relay_http_request_duration_seconds",
      help: "HTTP requests served, by method, route pattern and status.",
      labelNames: ["method", "route", "status"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.credentialFallbacks = new Counter({
      name: "noreply_relay_credential_fallback_total",
      help: "Token requests that succeeded only with the secondary secret (rotate the primary).",
      labelNames: ["tenant"],
      registers,
    });
    this.recipientsUsed = new Gauge({
      name: "noreply_relay_recipients_used",
      help: "Recipients (to+cc+bcc) in the rolling 24 h window of the tenant's sender mailbox; sends are refused at limits.recipientsPerDay.",
      labelNames: ["tenant"],
      registers,
      // Read at scrape time: one series per tenant whose mailbox sent in the window, none for idle tenants.
      collect: async () => {
        this.recipientsUsed.reset();
        let source: ReadonlyMap<string, number>;
        try {
          source = await this.recipientsSource();
        } catch {
          return; // the shared store is away: no series rather than a failed scrape
        }
        for (const [tenant, used] of source) this.recipientsUsed.labels(tenant).set(used);
      },
    });
    this.configReloads = new Counter({
      name: "noreply_relay_config_reload_total",
      help: "Config file reloads by outcome: success (applied), invalid (refused; the previous config stays), unchanged.",
      labelNames: ["outcome"],
      registers,
    });
    // All three from the start, so an alert on outcome="invalid" sees the first refusal as an increase.
    for (const outcome of CONFIG_RELOAD_OUTCOMES) this.configReloads.labels(outcome).inc(0);
  }

  private series(tenant: string): TenantSeries {
    let s = this.tenants.get(tenant);
    if (s === undefined) this.tenants.set(tenant, (s = new TenantSeries(tenant, this)));
    return s;
  }

  /** One /send answered: outcome is sent, dry_run, duplicate or a problem code. */
  sendOutcome(tenant: string, outcome: string): void {
    const s = this.series(tenant);
    s.sendChild(outcome).inc();
    if (outcome === "policy_denied") s.policyDenied.inc();
  }

  /** Replaces the expiry gauge's series with the current config's credentials. */
  setCredentialExpiries(expiries: readonly CredentialExpiry[]): void {
    this.credentialExpiry.reset();
    for (const e of expiries) this.credentialExpiry.labels(e.tenant, e.credential).set(Math.floor(e.expiresAt.getTime() / 1000));
  }

  /** Where the recipients gauge reads its values at scrape time: tenant key → recipients used. */
  setRecipientsSource(source: () => ReadonlyMap<string, number> | Promise<ReadonlyMap<string, number>>): void {
    this.recipientsSource = source;
  }

  /** One config reload finished. */
  configReload(outcome: ConfigReloadOutcome): void {
    this.configReloads.labels(outcome).inc();
  }

  /** One HTTP request served; `route` is the route pattern (never the raw URL). */
  httpRequest(method: string, route: string, status: number, seconds: number): void {
    let byMethod = this.http.get(route);
    if (byMethod === undefined) this.http.set(route, (byMethod = new Map<string, Map<number, { observe(v: number): void }>>()));
    let byStatus = byMethod.get(method);
    if (byStatus === undefined) byMethod.set(method, (byStatus = new Map<number, { observe(v: number): void }>()));
    let child = byStatus.get(status);
    if (child === undefined) byStatus.set(status, (child = this.httpDuration.labels(method, route, String(status))));
    child.observe(seconds);
  }

  // SendObserver

  tokenRequest(tenantKey: string, outcome: "success" | "credential_rejected" | "upstream_unavailable"): void {
    this.series(tenantKey).tokenChild(outcome).inc();
  }

  credentialFallback(tenantKey: string): void {
    this.series(tenantKey).fallback.inc();
  }

  graphResponse(tenantKey: string, status: number | "error", seconds: number): void {
    this.series(tenantKey).graphChild(String(status)).inc();
    this.graphDuration.observe(seconds);
  }

  graphThrottled(tenantKey: string): void {
    this.series(tenantKey).throttled.inc();
  }
}

/**
 * Metrics of the shared store, registered only when the service runs with `store.type: redis`
 * (a memory store has nothing to report, and a constant `store_up 0` would trip the alert).
 */
export class StoreMetrics implements StoreObserver {
  readonly up: Gauge;
  readonly errors: Counter<"operation">;
  readonly fallbacks: Counter<"operation">;
  readonly leasesLost: Counter<"kind">;
  readonly roundTrips: Counter;
  #roundTripsSource: () => number = () => 0;
  #roundTripsSeen = 0;

  constructor(registry: Registry) {
    const registers = [registry];
    this.roundTrips = new Counter({
      name: "noreply_relay_store_round_trips_total",
      help: "Network round trips to the shared store (Redis): pipelined commands count once.",
      registers,
      collect: () => {
        const now = this.#roundTripsSource();
        if (now > this.#roundTripsSeen) this.roundTrips.inc(now - this.#roundTripsSeen);
        this.#roundTripsSeen = now;
      },
    });
    this.up = new Gauge({
      name: "noreply_relay_store_up",
      help: "1 while this pod reaches the shared store (Redis), 0 while it does not.",
      registers,
    });
    this.errors = new Counter({
      name: "noreply_relay_store_errors_total",
      help: "Shared-store (Redis) commands that failed or timed out, by operation.",
      labelNames: ["operation"],
      registers,
    });
    this.fallbacks = new Counter({
      name: "noreply_relay_store_fallback_total",
      help: "Sends let through under this pod's own limits while Redis was unavailable (store.onUnavailable: local), by limit.",
      labelNames: ["operation"],
      registers,
    });
    this.leasesLost = new Counter({
      name: "noreply_relay_store_lease_lost_total",
      help: "Leases (mailbox slots, pending Idempotency-Keys) that lapsed while this pod still worked under them.",
      labelNames: ["kind"],
      registers,
    });
    for (const op of ["mailbox", "recipients"]) this.fallbacks.labels(op).inc(0);
    for (const kind of ["mailbox", "idempotency"]) this.leasesLost.labels(kind).inc(0);
  }

  /** Where the round-trip counter reads its total at scrape time. */
  setRoundTripsSource(source: () => number): void {
    this.#roundTripsSource = source;
  }

  storeUp(up: boolean): void {
    this.up.set(up ? 1 : 0);
  }

  storeError(operation: string): void {
    this.errors.labels(operation).inc();
  }

  storeFallback(operation: "mailbox" | "recipients"): void {
    this.fallbacks.labels(operation).inc();
  }

  storeLeaseLost(kind: "mailbox" | "idempotency"): void {
    this.leasesLost.labels(kind).inc();
  }
}

/*
 * prom-client's default Node gauges `nodejs_active_{handles,requests,resources}_total`
 * end in _total without being counters, which `promtool check metrics` rejects. Their
 * per-type siblings (nodejs_active_handles{type}) carry the same information.
 */
const NON_CONFORMING_DEFAULTS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

const byRegistry = new WeakMap<Registry, RelayMetrics>();

/**
 * The RelayMetrics of a registry, created (with process/Node default metrics) on first use.
 * server.ts calls it to hand the observer to the adapters; createApp calls it again and
 * gets the same instance, so both sides count on one set of series.
 */
export function getRelayMetrics(registry: Registry, options: { defaultMetrics?: boolean } = {}): RelayMetrics {
  let m = byRegistry.get(registry);
  if (m === undefined) {
    m = new RelayMetrics(registry);
    if (options.defaultMetrics ?? true) {
      collectDefaultMetrics({ register: registry });
      for (const name of NON_CONFORMING_DEFAULTS) registry.removeSingleMetric(name);
    }
    byRegistry.set(registry, m);
  }
  return m;
}
