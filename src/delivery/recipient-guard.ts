import { RelayError } from "../core/problems.js";
import { systemClock, type Clock } from "../core/ports.js";

/**
 * Daily recipient guard. Exchange Online blocks a mailbox for 24 hours once it has sent to
 * 10,000 recipients (to+cc+bcc) in a rolling day; refusing the send that would cross the limit
 * keeps the noreply mailbox usable. Counts live in per-minute buckets, so one key costs at most
 * 1440 small records however busy it is. A bucket is forgotten a full window after its END,
 * so the count errs towards "too many", never "too few".
 */

export interface RecipientGuardOptions {
  readonly clock?: Clock;
  /** The rolling window (ms). Default 24 h. */
  readonly windowMs?: number;
  /** Bucket width (ms). Default 1 minute. */
  readonly bucketMs?: number;
}

/** Recipients counted for one send; release() if the send provably did not go out. */
export interface RecipientReservation {
  readonly count: number;
  /** Gives the recipients back (validation refused at Graph, 429 …). Further calls are no-ops. */
  release(): void;
}

interface Bucket {
  readonly start: number;
  count: number;
  /** False once pruned, so a late release cannot subtract from the total twice. */
  live: boolean;
}

interface Tally {
  readonly buckets: Bucket[];
  total: number;
}

/**
 * The daily recipient guard as the send use case sees it: this class for one process,
 * RedisRecipientGuard (src/delivery/redis) for all replicas, counting each mailbox once.
 */
export interface RecipientLedger {
  /** See RecipientGuard.reserve. */
  reserve(key: string, count: number, limit: number): RecipientReservation | Promise<RecipientReservation>;
  /** Recipients counted for `key` in the current window. */
  used(key: string): number | Promise<number>;
  /** Recipients counted per key for the given keys (keys with none left out), for the gauge. */
  usage(keys: readonly string[]): ReadonlyMap<string, number> | Promise<ReadonlyMap<string, number>>;
  /** Exchange refused the mailbox for its daily quota: refuse every reserve() until `untilMs` (see RecipientGuard.exhaust). */
  exhaust(key: string, untilMs: number): void;
}

/** 429 for a mailbox Exchange refused for its daily quota, with the time left. */
export function quotaExhausted(waitMs: number): RelayError {
  return new RelayError("rate_limited", "Exchange Online refused this sender mailbox for its daily recipient quota; nothing was sent", {
    retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)),
  });
}

/** A reservation that holds nothing (zero recipients). */
export const noReservation: RecipientReservation = { count: 0, release: () => {} };

/** validation_failed when one message alone has more recipients than the daily limit: waiting would never help. */
export function assertWithinDailyLimit(count: number, limit: number): void {
  if (count > limit) {
    throw new RelayError("validation_failed", `the message has ${count} recipients; this tenant may send to ${limit} a day`, {
      errors: [{ path: "to", message: `more recipients (${count}) than the tenant's daily limit (${limit})` }],
    });
  }
}

/** 429 for a mailbox at its daily limit, with the seconds until enough recipients leave the window. */
export function dailyLimitReached(limit: number, retryAfterSeconds: number): RelayError {
  return new RelayError("rate_limited", `the sender mailbox has reached its limit of ${limit} recipients in 24 hours`, { retryAfterSeconds });
}

/**
 * Recipients per rolling window per key. Use mailboxKey(tenant.sender) as key: Exchange counts
 * per mailbox, so the count survives a tenant being renamed or re-added on reload.
 */
export class RecipientGuard implements RecipientLedger {
  readonly #clock: Clock;
  readonly #windowMs: number;
  readonly #bucketMs: number;
  readonly #tallies = new Map<string, Tally>();
  /** Mailboxes Exchange refused for its daily quota: key → epoch ms until which reserve() refuses. */
  readonly #exhausted = new Map<string, number>();

  constructor(options: RecipientGuardOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#windowMs = options.windowMs ?? 86_400_000;
    this.#bucketMs = options.bucketMs ?? 60_000;
  }

  /**
   * Counts `count` recipients against `limit` (the tenant's `limits.recipientsPerDay`, passed
   * on each call so a reload needs no extra step). Throws RelayError rate_limited with
   * retryAfterSeconds = when enough earlier recipients leave the window; validation_failed when
   * one message alone has more recipients than the limit, since waiting would never help.
   */
  reserve(key: string, count: number, limit: number): RecipientReservation {
    if (count <= 0) return noReservation;
    assertWithinDailyLimit(count, limit);
    const now = this.#clock.now();
    const exhaustedUntil = this.#exhausted.get(key);
    if (exhaustedUntil !== undefined) {
      if (exhaustedUntil > now) {
        throw quotaExhausted(exhaustedUntil - now);
      }
      this.#exhausted.delete(key);
    }
    let tally = this.#prune(key, now);
    if (tally && tally.total + count > limit) {
      throw dailyLimitReached(limit, this.#secondsUntilRoom(tally, tally.total + count - limit, now));
    }
    if (!tally) {
      tally = { buckets: [], total: 0 };
      this.#tallies.set(key, tally);
    }
    const start = now - (now % this.#bucketMs);
    let bucket = tally.buckets[tally.buckets.length - 1];
    if (!bucket || bucket.start !== start) {
      bucket = { start, count: 0, live: true };
      tally.buckets.push(bucket);
    }
    bucket.count += count;
    tally.total += count;
    const reserved = bucket;
    let released = false;
    return {
      count,
      release: () => {
        if (released) return;
        released = true;
        if (!reserved.live) return;
        reserved.count -= count;
        tally.total -= count;
      },
    };
  }

  /**
   * Exchange refused mailbox `key` for its daily quota (ErrorSubmissionQuotaExceeded): every
   * reserve() until `untilMs` (epoch ms) is refused with rate_limited and the time left as
   * Retry-After, without asking Graph. Exchange's count can exceed ours (other apps and people
   * send from the mailbox too), so this is learnt, not computed.
   */
  exhaust(key: string, untilMs: number): void {
    if (untilMs <= this.#clock.now()) return;
    this.#exhausted.set(key, Math.max(untilMs, this.#exhausted.get(key) ?? 0));
  }

  /** Recipients counted for `key` in the current window (the gauge and GET /tenants). */
  used(key: string): number {
    return this.#prune(key, this.#clock.now())?.total ?? 0;
  }

  /** Every key with recipients in the window (or those of `keys`), for a gauge's collect(). */
  usage(keys?: readonly string[]): Map<string, number> {
    const now = this.#clock.now();
    const out = new Map<string, number>();
    for (const key of keys ?? [...this.#tallies.keys()]) {
      const tally = this.#prune(key, now);
      if (tally) out.set(key, tally.total);
    }
    return out;
  }

  /** Keys and buckets held, to check the memory bound. */
  stats(): { keys: number; buckets: number } {
    let buckets = 0;
    for (const tally of this.#tallies.values()) buckets += tally.buckets.length;
    return { keys: this.#tallies.size, buckets };
  }

  #expiry(bucket: Bucket): number {
    return bucket.start + this.#bucketMs + this.#windowMs;
  }

  #prune(key: string, now: number): Tally | undefined {
    const tally = this.#tallies.get(key);
    if (!tally) return undefined;
    let drop = 0;
    while (drop < tally.buckets.length && this.#expiry(tally.buckets[drop] as Bucket) <= now) {
      const bucket = tally.buckets[drop] as Bucket;
      bucket.live = false;
      tally.total -= bucket.count;
      drop += 1;
    }
    if (drop > 0) tally.buckets.splice(0, drop);
    if (tally.buckets.length === 0) {
      // Nothing left in the window: forget the key, so removed tenants cost nothing.
      this.#tallies.delete(key);
      return undefined;
    }
    return tally;
  }

  #secondsUntilRoom(tally: Tally, needed: number, now: number): number {
    let freed = 0;
    for (const bucket of tally.buckets) {
      freed += bucket.count;
      if (freed >= needed) return Math.max(1, Math.ceil((this.#expiry(bucket) - now) / 1000));
    }
    // Unreachable while count <= limit; kept honest anyway.
    return Math.ceil(this.#windowMs / 1000);
  }
}
