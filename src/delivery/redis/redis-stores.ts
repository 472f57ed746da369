import { hostname } from "node:os";
import { systemClock } from "../../core/ports.js";
import type { DeliveryStores, StoreOptions } from "../delivery-stores.js";
import { MailboxLimiter, type MailboxGate, type MailboxLimits, type MailboxPermit, type MailboxSnapshot } from "../mailbox-limiter.js";
import { RecipientGuard, type RecipientLedger, type RecipientReservation } from "../recipient-guard.js";
import { isStoreUnavailable } from "../store-unavailable.js";
import { connectRedis, type RedisConnection } from "./redis-connection.js";
import { IDEMPOTENCY_SCRIPTS, RedisIdempotencyStore } from "./redis-idempotency-store.js";
import { MAILBOX_SCRIPTS, RedisMailboxLimiter } from "./redis-mailbox-limiter.js";
import { RECIPIENT_SCRIPTS, RedisRecipientGuard } from "./redis-recipient-guard.js";
import { createRedisActivityBook } from "./redis-activity-book.js";
import { RedisOnceBook } from "./redis-once-book.js";
import { RedisRejectionBook } from "./redis-rejection-book.js";
import type { RejectionBook } from "../../auth/credential-failure-memory.js";

/** The shared stores (store.type redis): connects first and rejects when Redis cannot be reached. */
export async function createRedisStores<A>(options: StoreOptions<A>): Promise<DeliveryStores<A>> {
  const clock = options.clock ?? systemClock;
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
