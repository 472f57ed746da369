import type { ThrottlingConfig } from "./scenario.js";

/** Result of asking for a slot: either a release function or why (and for how long) not. */
export type ThrottleDecision =
  | { ok: true; release: () => void }
  | { ok: false; reason: "concurrency" | "rate"; retryAfterSeconds: number };

const noop = () => {};

/**
 * Outlook's per (app, mailbox) limits: requests in flight (MailboxConcurrency, 4 in Exchange
 * Online) and requests per time window (10,000 per 10 minutes). A limit of 0 disables it.
 * Slots are held until the response is finished, so injected latency counts as in flight.
 */
export class Throttle {
  private readonly inFlight = new Map<string, number>();
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(private readonly config: () => ThrottlingConfig) {}

  tryAcquire(appId: string, mailboxId: string): ThrottleDecision {
    const { mailboxConcurrency, requestsPerWindow, windowSeconds } = this.config();
    if (mailboxConcurrency === 0 && requestsPerWindow === 0) return { ok: true, release: noop };
    const key = `${appId.toLowerCase()}|${mailboxId}`;

    const current = this.inFlight.get(key) ?? 0;
    if (mailboxConcurrency > 0 && current >= mailboxConcurrency) return { ok: false, reason: "concurrency", retryAfterSeconds: 1 };

    if (requestsPerWindow > 0) {
      const now = Date.now();
      const windowMs = windowSeconds * 1000;
      let w = this.windows.get(key);
      if (w === undefined || now - w.start >= windowMs) {
        w = { start: now, count: 0 };
        this.windows.set(key, w);
      }
      if (w.count >= requestsPerWindow) {
        return { ok: false, reason: "rate", retryAfterSeconds: Math.max(1, Math.ceil((w.start + windowMs - now) / 1000)) };
      }
      w.count++;
    }

    if (mailboxConcurrency === 0) return { ok: true, release: noop };
    this.inFlight.set(key, current + 1);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        const n = (this.inFlight.get(key) ?? 1) - 1;
        if (n <= 0) this.inFlight.delete(key);
        else this.inFlight.set(key, n);
      },
    };
  }

  /** Forgets windows (in-flight counts stay: those requests are still running). */
  resetWindows(): void {
    this.windows.clear();
  }
}
