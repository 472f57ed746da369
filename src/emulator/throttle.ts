import type { ThrottlingConfig } from "./scenario.js";

/** Result of asking for a slot: either a release function or why (and for how long) not. */
export type ThrottleDecision =
  | { ok: true; release: () => void }
  | { ok: false; reason: "concurrency" | "rate" | "incomingBytes"; retryAfterSeconds: number };

const DAY_MS = 86_400_000;

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
  private readonly uploads = new Map<string, { start: number; bytes: number }>();
  /** Recipients submitted per mailbox: [epoch ms, count], oldest first. */
  private readonly submissions = new Map<string, [number, number][]>();

  constructor(private readonly config: () => ThrottlingConfig) {}

  /**
   * A slot for one request of `bytes` request-body bytes. The upload budget (150 MB per 5 minutes
   * per app and mailbox in Outlook) counts every request that reaches the mailbox, the refused
   * ones too, as Graph meters what it received.
   */
  tryAcquire(appId: string, mailboxId: string, bytes = 0): ThrottleDecision {
    const { mailboxConcurrency, requestsPerWindow, windowSeconds, uploadBytesPerWindow, uploadWindowSeconds } = this.config();
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

    if (uploadBytesPerWindow > 0) {
      const now = Date.now();
      const windowMs = uploadWindowSeconds * 1000;
      let u = this.uploads.get(key);
      if (u === undefined || now - u.start >= windowMs) {
        u = { start: now, bytes: 0 };
        this.uploads.set(key, u);
      }
      u.bytes += bytes;
      if (u.bytes > uploadBytesPerWindow) {
        return { ok: false, reason: "incomingBytes", retryAfterSeconds: Math.max(1, Math.ceil((u.start + windowMs - now) / 1000)) };
      }
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

  /**
   * Exchange's recipient rate limit: whether `count` more recipients fit the mailbox's rolling
   * 24 h (`recipientsPerDay`); when they do, they are counted.
   */
  trySubmit(mailboxId: string, count: number): boolean {
    const { recipientsPerDay } = this.config();
    if (recipientsPerDay === 0) return true;
    const now = Date.now();
    const list = (this.submissions.get(mailboxId) ?? []).filter(([at]) => now - at < DAY_MS);
    const used = list.reduce((n, [, c]) => n + c, 0);
    if (used + count > recipientsPerDay) {
      this.submissions.set(mailboxId, list);
      return false;
    }
    list.push([now, count]);
    this.submissions.set(mailboxId, list);
    return true;
  }

  /** Forgets windows and daily counts (in-flight counts stay: those requests are still running). */
  resetWindows(): void {
    this.windows.clear();
    this.uploads.clear();
    this.submissions.clear();
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
