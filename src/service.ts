import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { RememberingTokenProvider } from "./auth/credential-failure-memory.js";
import type { ConfigSource } from "./config/config-source.js";
import type { Config } from "./config/schema.js";
import { Lifecycle } from "./core/lifecycle.js";
import { systemClock, type Clock, type GraphSender, type TokenProvider, type TokenTarget } from "./core/ports.js";
import { createMemoryStores, type DeliveryStores } from "./delivery/delivery-stores.js";
import { describeTenants, type TenantView } from "./delivery/tenant-status.js";
import type { RecordedAnswer } from "./mail/send-answer.js";
import { SendMail } from "./mail/send-mail.js";
import { getRelayMetrics, type RelayMetrics } from "./metrics/relay-metrics.js";
import { CallerDirectory } from "./tenants/caller-directory.js";
import { buildTenantDirectory, type TenantDirectory } from "./tenants/tenant-directory.js";

/**
 * The token provider as the service uses it. Besides tokens, whatever of these it has: `retain`
 * (the Entra provider: keep these targets' credentials, drop the rest) and `forget` /
 * `rejection` (src/auth/credential-failure-memory.ts) are used on reload and by /tenants.
 */
export type ServiceTokenProvider = TokenProvider &
  Partial<Pick<RememberingTokenProvider, "forget" | "rejection">> & {
    retain?(targets: Iterable<TokenTarget>): number;
  };

/** Everything the service needs from outside; server.ts wires the real ones, tests their own. */
export interface ServiceDeps {
  /** The loaded config and its reloads. */
  readonly configSource: ConfigSource;
  readonly tokenProvider: ServiceTokenProvider;
  readonly graphSender: GraphSender;
  /** Metrics go here, never to prom-client's global registry. */
  readonly registry: Registry;
  readonly logger: Logger;
  readonly clock?: Clock;
  /**
   * Where Idempotency-Keys, mailbox slots, daily recipients and last outcomes are kept (see
   * src/delivery/delivery-stores.ts); default this process's memory, sized by the start-up config.
   */
  readonly stores?: DeliveryStores<RecordedAnswer>;
}

/**
 * The service without any door: the send use case and what it works with, kept current across
 * config reloads. The HTTP adapter (src/app.ts) and any other door (SMTP) use this.
 */
export interface RelayService {
  readonly sendMail: SendMail;
  /** Readiness and the work a graceful stop waits for. */
  readonly lifecycle: Lifecycle;
  readonly metrics: RelayMetrics;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly configSource: ConfigSource;
  readonly tokenProvider: ServiceTokenProvider;
  readonly stores: DeliveryStores<RecordedAnswer>;
  /** The config in force. */
  readonly config: () => Config;
  /** The current tenants (a new directory after each reload). */
  readonly tenants: () => TenantDirectory;
  /** The current callers. */
  readonly callers: () => CallerDirectory;
  /** Every configured tenant's configuration and live state, in config order (the GET /tenants rows). */
  readonly tenantStatus: () => Promise<TenantView[]>;
  /** Forgets every mailbox's Graph throttle memory (SIGHUP); sends held back by it go at once. */
  readonly clearThrottles: () => void;
}

/** Builds the service: tenants, callers, stores and the send use case, following config reloads. */
export function createService(deps: ServiceDeps): RelayService {
  const { configSource, tokenProvider, registry } = deps;
  const clock = deps.clock ?? systemClock;
  const metrics = getRelayMetrics(registry);
  const lifecycle = new Lifecycle();

  let config: Config = configSource.current();
  let tenants = buildTenantDirectory(config);
  let callers = new CallerDirectory(config);
  // Made once: a reload does not resize or move them (idempotency and store are restart-only keys).
  const stores = deps.stores ?? createMemoryStores<RecordedAnswer>(config, clock);
  const { mailboxes: limiter, recipients, activity: tenantStatus, idempotency } = stores;
  const publishTenants = (): void => {
    limiter.sync(new Map(tenants.list().map((t) => [t.mailboxKey, t.limits])));
    // No per-tenant zero series: the chart's alerts handle a series' first appearance, and
    // 10,000 tenants × zeros would make every scrape megabytes long.
    metrics.setCredentialExpiries(tenants.credentialExpiries());
  };
  publishTenants();
  // Recipients are counted per mailbox, the gauge is per tenant key (tenants may share a mailbox).
  // Mapped at scrape time: one pass over the tenants costs less than a standing map of 10,000.
  metrics.setRecipientsSource(async () => {
    const list = tenants.list();
    const byMailbox = await recipients.usage([...new Set(list.map((t) => t.mailboxKey))]);
    const byTenant = new Map<string, number>();
    if (byMailbox.size === 0) return byTenant;
    for (const t of list) {
      const used = byMailbox.get(t.mailboxKey);
      if (used !== undefined) byTenant.set(t.key, used);
    }
    return byTenant;
  });
  /*
   * A reload swaps what new requests see. Sends in flight keep the Tenant, token target and
   * mailbox slot they started with. Unchanged tenants keep their objects, so their credentials
   * and cached tokens stay; a changed tenant's remembered credential rejection and its mailbox's
   * throttle memory are forgotten so the new settings are tried at once.
   */
  configSource.subscribe((next) => {
    const previous = tenants;
    config = next;
    tenants = buildTenantDirectory(next, previous);
    callers = new CallerDirectory(next);
    publishTenants();
    tenantStatus.retain(tenants.list().map((t) => t.key));
    tokenProvider.retain?.(tenants.list().map((t) => t.target));
    for (const t of previous.list()) if (tenants.get(t.key) !== t) tokenProvider.forget?.(t.key);
    // A renamed or re-added tenant keeps its mailbox's throttle memory; a changed one starts without it.
    for (const t of tenants.list()) {
      const before = previous.get(t.key);
      if (before !== undefined && before !== t) limiter.clearThrottle(t.mailboxKey);
    }
  });

  const sendMail = new SendMail({
    tenants: () => tenants,
    tokenProvider,
    graphSender: deps.graphSender,
    limiter,
    recipients,
    idempotency,
    clock,
    deadlineSeconds: () => config.server.requestDeadlineSeconds,
    inflight: metrics.inflightSends,
    status: tenantStatus,
    work: lifecycle,
  });

  const credentials = tokenProvider.rejection !== undefined ? { rejection: tokenProvider.rejection.bind(tokenProvider) } : undefined;
  return {
    sendMail,
    lifecycle,
    metrics,
    registry,
    logger: deps.logger,
    clock,
    configSource,
    tokenProvider,
    stores,
    config: () => config,
    tenants: () => tenants,
    callers: () => callers,
    tenantStatus: () =>
      describeTenants(tenants.list(), { activity: tenantStatus, recipients, limiter, ...(credentials !== undefined ? { credentials } : {}) }),
    clearThrottles: () => limiter.clearThrottle(),
  };
}
