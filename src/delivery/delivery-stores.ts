import { hostname } from "node:os";
import type { Logger } from "pino";
import type { Config, StoreConfig } from "../config/schema.js";
import { systemClock, type Clock, type StoreObserver } from "../core/ports.js";
import { MemoryRejectionBook, type RejectionBook } from "../auth/credential-failure-memory.js";
import { MemoryIdempotencyStore, type IdempotencyStore } from "./idempotency-store.js";
import { MailboxLimiter, type MailboxGate, type MailboxLimits, type MailboxPermit, type MailboxSnapshot } from "./mailbox-limiter.js";
import { RecipientGuard, type RecipientLedger, type RecipientReservation } from "./recipient-guard.js";
import { connectRedis, isStoreUnavailable, type RedisConnection } from "./redis/redis-connection.js";
import { IDEMPOTENCY_SCRIPTS, RedisIdempotencyStore } from "./redis/redis-idempotency-store.js";
import { MAILBOX_SCRIPTS, RedisMailboxLimiter } from "./redis/redis-mailbox-limiter.js";
import { RECIPIENT_SCRIPTS, RedisRecipientGuard } from "./redis/redis-recipient-guard.js";
import { MemoryOnceBook, type OnceBook } from "./once-book.js";
import { createRedisActivityBook } from "./redis/redis-activity-book.js";
import { RedisOnceBook } from "./redis/redis-once-book.js";
import { RedisRejectionBook } from "./redis/redis-rejection-book.js";
import { TenantStatusBook, type TenantActivityBook } from "./tenant-status.js";

/**
 * Where the delivery guarantees keep their state: Idempotency-Keys, mailbox slots and Graph's
 * throttling, the daily recipient counts, remembered credential rejections. `memory` keeps them
 * in this process (one replica); `redis` shares them between all replicas.
 */
export interface DeliveryStores<A> {
  readonly type: StoreConfig["type"];
  /** Idempotency-Keys with the use case's answer `A`. */
  readonly idempotency: IdempotencyStore<A>;
  readonly mailboxes: MailboxGate;
  readonly recipients: RecipientLedger;
  readonly rejections: RejectionBook;
  /** Last outcome per tenant for GET /tenants. */
  readonly activity: TenantActivityBook;
  /** Ids that may be used once (admin-consent state). */
  readonly once: OnceBook;
  /** Whether the shared store answers now (always true for memory). */
  readonly up: boolean;
  /** With `onUnavailable: reject`, a pod that cannot reach Redis is not ready. */
  readonly readyWithoutStore: boolean;
  /** Network round trips to Redis so far (0 for memory): the bench divides it by sends. */
  readonly roundTrips: number;
  close(): Promise<void>;
}

export interface StoreOptions<A> {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly env?: NodeJS.ProcessEnv;
  readonly observer?: StoreObserver;
  /** A replay's answer when the first request's pod stopped mid-send (see RedisIdempotencyOptions). */
  readonly expiredResponse: (firstRequestId: string) => A;
}

/** The in-process stores (store.type memory). */
export function createMemoryStores<A>(config: Config, clock: Clock = systemClock): DeliveryStores<A> {
  return {
    type: "memory",
    idempotency: new MemoryIdempotencyStore<A>({ ...config.idempotency, clock }),
    mailboxes: new MailboxLimiter({ clock }),
    recipients: new RecipientGuard({ clock }),
    rejections: new MemoryRejectionBook(),
    activity: new TenantStatusBook({ clock }),
    once: new MemoryOnceBook({ clock }),
    up: true,
    readyWithoutStore: true,
    roundTrips: 0,
    close: () => Promise.resolve(),
  };
}

/** The stores `config.store` asks for; with redis, connects first and rejects when Redis cannot be reached. */
export async function createDeliveryStores<A>(options: StoreOptions<A>): Promise<DeliveryStores<A>> {
  const clock = options.clock ?? systemClock;
  if (options.config.store.type === "memory") return createMemoryStores<A>(options.config, clock);
  const { config, logger, observer } = options;
  const store = config.store;
  const connection = await connectRedis(
    {
      config: store,
      logger,
      ...(options.env !== undefined ? { env: options.env } : {}),
      ...(observer !== undefined ? { observer } : {}),
      clientName: `noreply-relay:${hostname()}`.replace(/[^\x21-\x7e]/g, "_"),
    },
    [...IDEMPOTENCY_SCRIPTS, ...MAILBOX_SCRIPTS, ...RECIPIENT_SCRIPTS],
  );
  const leaseMs = Math.round(store.leaseSeconds * 1000);
  const idempotency = new RedisIdempotencyStore<A>({
    connection,
    logger,
    ttlMs: config.idempotency.ttlSeconds * 1000,
    leaseMs,
    expiredResponse: options.expiredResponse,
    onLeaseLost: () => observer?.storeLeaseLost("idempotency"),
  });
  const sharedMailboxes = new RedisMailboxLimiter({ connection, logger, leaseMs, clock, onLeaseLost: () => observer?.storeLeaseLost("mailbox") });
  const sharedRecipients = new RedisRecipientGuard({ connection, clock });
  let rejections: RejectionBook;
  try {
    rejections = await RedisRejectionBook.open(connection, logger, clock);
  } catch (err) {
    await connection.close();
    throw err;
  }
  const local = store.onUnavailable === "local";
  const note = (operation: "mailbox" | "recipients"): void => observer?.storeFallback(operation);
  return {
    type: "redis",
    idempotency,
    mailboxes: local ? new FallbackMailboxGate(sharedMailboxes, new MailboxLimiter({ clock }), connection, note) : sharedMailboxes,
    recipients: local ? new FallbackRecipientLedger(sharedRecipients, new RecipientGuard({ clock }), connection, note) : sharedRecipients,
    rejections,
    activity: createRedisActivityBook(connection, clock),
    once: new RedisOnceBook(connection),
    get up() {
      return connection.up;
    },
    readyWithoutStore: local,
    get roundTrips() {
      return connection.writes;
    },
    async close() {
      idempotency.close();
      sharedMailboxes.close();
      await connection.close();
    },
  };
}

/**
 * `onUnavailable: local`: slots come from Redis while it answers, and from this pod's own
 * limiter while it does not (each pod then allows maxConcurrency, so N pods may reach N×).
 */
class FallbackMailboxGate implements MailboxGate {
  constructor(
    private readonly shared: MailboxGate,
    private readonly local: MailboxLimiter,
    private readonly connection: RedisConnection,
    private readonly note: (operation: "mailbox") => void,
  ) {}

  sync(limits: ReadonlyMap<string, MailboxLimits>): void {
    this.shared.sync(limits);
    this.local.sync(limits);
  }

  async acquire(key: string, options: { deadline: number; signal?: AbortSignal }): Promise<MailboxPermit> {
    if (this.connection.up) {
      try {
        return await this.shared.acquire(key, options);
      } catch (err) {
        if (!isStoreUnavailable(err)) throw err;
      }
    }
    this.note("mailbox");
    return this.local.acquire(key, options);
  }

  noteThrottled(key: string, untilMs: number): void {
    this.shared.noteThrottled(key, untilMs);
    this.local.noteThrottled(key, untilMs);
  }

  clearThrottle(key?: string): void {
    this.shared.clearThrottle(key);
    this.local.clearThrottle(key);
  }

  async snapshot(key: string): Promise<MailboxSnapshot | undefined> {
    try {
      return await this.shared.snapshot(key);
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      return this.local.snapshot(key);
    }
  }
}

/** `onUnavailable: local` for the daily recipient count: this pod's own count while Redis is away. */
class FallbackRecipientLedger implements RecipientLedger {
  constructor(
    private readonly shared: RecipientLedger,
    private readonly local: RecipientGuard,
    private readonly connection: RedisConnection,
    private readonly note: (operation: "recipients") => void,
  ) {}

  async reserve(key: string, count: number, limit: number): Promise<RecipientReservation> {
    if (this.connection.up) {
      try {
        return await this.shared.reserve(key, count, limit);
      } catch (err) {
        if (!isStoreUnavailable(err)) throw err;
      }
    }
    this.note("recipients");
    return this.local.reserve(key, count, limit);
  }

  exhaust(key: string, untilMs: number): void {
    this.shared.exhaust(key, untilMs);
    this.local.exhaust(key, untilMs);
  }

  async used(key: string): Promise<number> {
    try {
      return await this.shared.used(key);
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      return this.local.used(key);
    }
  }

  async usage(keys: readonly string[]): Promise<ReadonlyMap<string, number>> {
    try {
      return await this.shared.usage(keys);
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      return this.local.usage(keys);
    }
  }
}
