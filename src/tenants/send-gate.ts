import { RelayError } from "../http/problems.js";
import type { Clock } from "../mail/ports.js";

interface Waiter {
  grant(): void;
  timer: NodeJS.Timeout;
}

/**
 * At most `maxConcurrency` sends to one sender mailbox at once (Graph throttles an app
 * past 4 concurrent requests per mailbox), the rest wait in FIFO order up to `maxQueue`.
 * Waiting past the send's deadline, or a full queue, is a local `rate_limited`.
 */
export class SendGate {
  private active = 0;
  private readonly queue: Waiter[] = [];

  constructor(
    readonly maxConcurrency: number,
    readonly maxQueue: number,
    private readonly clock: Clock,
  ) {}

  /** Resolves when a slot is free; the caller must call `release()` exactly once afterwards. */
  acquire(deadline: number): Promise<void> {
    if (this.active < this.maxConcurrency) {
      this.active++;
      return Promise.resolve();
    }
    if (this.queue.length >= this.maxQueue) {
      return Promise.reject(new RelayError("rate_limited", "too many sends are waiting for this tenant's sender mailbox", { retryAfterSeconds: 1 }));
    }
    const wait = deadline - this.clock.now();
    if (wait <= 0) return Promise.reject(timedOut());
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => {
          clearTimeout(waiter.timer);
          resolve();
        },
        timer: setTimeout(() => {
          const i = this.queue.indexOf(waiter);
          if (i >= 0) this.queue.splice(i, 1);
          reject(timedOut());
        }, wait),
      };
      this.queue.push(waiter);
    });
  }

  release(): void {
    const next = this.queue.shift();
    // The slot passes straight to the next waiter, so `active` stays the same.
    if (next !== undefined) next.grant();
    else this.active--;
  }

  get inUse(): number {
    return this.active;
  }

  get waiting(): number {
    return this.queue.length;
  }
}

function timedOut(): RelayError {
  return new RelayError("rate_limited", "the tenant's sender mailbox stayed busy until the request deadline", { retryAfterSeconds: 1 });
}
