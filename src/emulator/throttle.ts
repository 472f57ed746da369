import type { ThrottlingConfig } from "./scenario.js";

/** Result of asking for a slot: either a release function or why (and for how long) not. */
export type ThrottleDecision =
  | { ok: true; release: () => void }
  | { ok: false; reason: "concurrency" | "rate"; retryAfterSeconds: number };

/** What the emulator measured for one (app, mailbox): see `Throttle.meters`. */
export interface ConcurrencyMeter {
  readonly appId: string;
  readonly mailboxId: string;
  /** sendMail requests being processed now. */
  readonly inFlight: number;
  /**
   * Most sendMail requests for this mailbox at the same time since the last reset, counting a
   * request that arrived while the others ran even if the MailboxConcurrency rule refused it.
   */
  readonly peak: number;
  /** Requests refused with 429 ApplicationThrottled (the MailboxConcurrency rule). */
  readonly concurrencyRejections: number;
}

interface Meter {
  readonly appId: string;
  readonly mailboxId: string;
  inFlight: number;
  peak: number;
  concurrencyRejections: number;
}

/**
 * Outlook's per (app, mailbox) limits: requests in flight (MailboxConcurrency, 4 in Exchange
 * Online) and requests per time window (10,000 per 10 minutes). A limit of 0 disables it.
 * Slots are held until the answer is written, so injected latency counts as in flight.
 * Requests in flight are measured even with the limits off, so tests can read the peak.
 */
export class Throttle {
  private readonly meters = new Map<string, Meter>();
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(private readonly config: () => ThrottlingConfig) {}

  tryAcquire(appId: string, mailboxId: string): ThrottleDecision {
    const { mailboxConcurrency, requestsPerWindow, windowSeconds } = this.config();
    const key = `${appId.toLowerCase()}|${mailboxId}`;
    let meter = this.meters.get(key);
    if (meter === undefined) {
      meter = { appId: appId.toLowerCase(), mailboxId, inFlight: 0, peak: 0, concurrencyRejections: 0 };
      this.meters.set(key, meter);
    }
    const current = meter.inFlight;
    meter.peak = Math.max(meter.peak, current + 1);

    if (mailboxConcurrency > 0 && current >= mailboxConcurrency) {
      meter.concurrencyRejections++;
      return { ok: false, reason: "concurrency", retryAfterSeconds: 1 };
    }

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

    meter.inFlight = current + 1;
    const held = meter;
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        held.inFlight = Math.max(0, held.inFlight - 1);
      },
    };
  }

  /** Forgets windows (in-flight counts stay: those requests are still running). */
  resetWindows(): void {
    this.windows.clear();
  }

  /** Per (app, mailbox) that sendMail reached since the last reset: in flight now, peak, concurrency refusals. */
  concurrency(): ConcurrencyMeter[] {
    return [...this.meters.values()].map((m) => ({ ...m }));
  }

  /** Starts peaks and refusal counts afresh (at the requests in flight now). */
  resetConcurrency(): void {
    for (const [key, m] of this.meters) {
      if (m.inFlight === 0) this.meters.delete(key);
      else {
        m.peak = m.inFlight;
        m.concurrencyRejections = 0;
      }
    }
  }
}
