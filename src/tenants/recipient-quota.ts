import { RelayError } from "../http/problems.js";
import type { Clock } from "../mail/ports.js";

const DAY_MS = 24 * 60 * 60 * 1000;

/** Recipients counted for one send; `refund()` gives them back when the send surely did not happen. */
export interface QuotaReservation {
  refund(): void;
}

interface Entry {
  at: number;
  n: number;
}

/**
 * Recipients per rolling 24 h for one sender mailbox. Exchange Online blocks a mailbox that
 * exceeds its recipient rate limit (10,000 a day) for up to 24 h, for every app using it, so
 * the service refuses (429) before it gets there.
 */
export class RecipientQuota {
  private readonly entries: Entry[] = [];
  private head = 0;
  private used = 0;

  constructor(
    readonly limit: number,
    private readonly clock: Clock,
  ) {}

  /** Counts `n` recipients now, or throws `rate_limited` with the wait until they fit. */
  reserve(n: number): QuotaReservation {
    const now = this.clock.now();
    this.expire(now);
    if (this.used + n > this.limit) {
      throw new RelayError("rate_limited", `the sender mailbox reached its limit of ${this.limit} recipients per 24 hours`, {
        retryAfterSeconds: this.secondsUntilFree(n, now),
      });
    }
    const entry: Entry = { at: now, n };
    this.entries.push(entry);
    this.used += n;
    return {
      refund: () => {
        this.used -= entry.n;
        entry.n = 0;
      },
    };
  }

  get recipientsUsed(): number {
    this.expire(this.clock.now());
    return this.used;
  }

  private expire(now: number): void {
    const cutoff = now - DAY_MS;
    while (this.head < this.entries.length && this.entries[this.head]!.at <= cutoff) {
      this.used -= this.entries[this.head]!.n;
      this.head++;
    }
    // Compact now and then instead of shifting on every expiry.
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries.splice(0, this.head);
      this.head = 0;
    }
  }

  private secondsUntilFree(n: number, now: number): number {
    let free = this.limit - this.used;
    for (let i = this.head; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      free += e.n;
      if (free >= n) return Math.max(1, Math.ceil((e.at + DAY_MS - now) / 1000));
    }
    return Math.ceil(DAY_MS / 1000);
  }
}
