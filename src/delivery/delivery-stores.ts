import type { Logger } from "pino";
import type { Config, StoreConfig } from "../config/schema.js";
import { systemClock, type Clock, type StoreObserver } from "../core/ports.js";
import { MemoryRejectionBook, type RejectionBook } from "../auth/credential-failure-memory.js";
import { MemoryIdempotencyStore, type IdempotencyStore } from "./idempotency-store.js";
import { MailboxLimiter, type MailboxGate } from "./mailbox-limiter.js";
import { RecipientGuard, type RecipientLedger } from "./recipient-guard.js";
import { MemoryOnceBook, type OnceBook } from "./once-book.js";
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
