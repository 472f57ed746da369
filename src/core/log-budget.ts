/**
 * At most `max` log lines per `windowMs`; says how many were left out when a new window opens.
 * For lines a client can cause at will (failed logins on HTTP and SMTP), so it cannot flood the log.
 */
export class LogBudget {
  #windowStart = Number.NEGATIVE_INFINITY;
  #used = 0;
  #suppressed = 0;

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
  ) {}

  take(now: number): { allowed: boolean; suppressedBefore: number } {
    let suppressedBefore = 0;
    if (now - this.#windowStart >= this.windowMs) {
      suppressedBefore = this.#suppressed;
      this.#windowStart = now;
      this.#used = 0;
      this.#suppressed = 0;
    }
    if (this.#used < this.max) {
      this.#used += 1;
      return { allowed: true, suppressedBefore };
    }
    this.#suppressed += 1;
    return { allowed: false, suppressedBefore };
  }
}
