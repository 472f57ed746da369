/**
 * When a sendMail attempt may be repeated. Only answers that prove Graph did not take the
 * message are retried: 429 and 503 (Graph refused it and said when to come back), a 401 once
 * with a fresh token, and a connection that failed before the request was written. Any other
 * 5xx (500, 502, 504 …), a timeout or a reset after the body went out may have sent the mail and
 * is never retried.
 */
export interface RetryPolicy {
  /** Attempts per send, the first included. */
  readonly maxAttempts: number;
  /**
   * Time an attempt needs after a wait. A wait that leaves less than this before the deadline
   * is not started: the attempt would likely time out, and a timeout is `outcome_unknown`.
   */
  readonly minAttemptMs: number;
  /** Wait after a 429 that carries no Retry-After (Graph normally sends one). */
  readonly throttledDefaultWaitMs: number;
  /** Wait before repeating a request whose connection failed before it was written. */
  readonly notSentRetryDelayMs: number;
  /** Retries of requests that were not written (connection refused, TLS failure). */
  readonly maxNotSentRetries: number;
}

export const defaultRetryPolicy: RetryPolicy = Object.freeze({
  maxAttempts: 5,
  minAttemptMs: 1_000,
  throttledDefaultWaitMs: 2_000,
  notSentRetryDelayMs: 200,
  maxNotSentRetries: 1,
});

/** Response headers as undici gives them; names may arrive in any case from other sources. */
export type ResponseHeaders = Readonly<Record<string, string | string[] | undefined>>;

/** A header value, looked up case-insensitively (HTTP header names are case-insensitive). */
export function headerValue(headers: ResponseHeaders, name: string): string | undefined {
  const lower = name.toLowerCase();
  let value = headers[lower];
  if (value === undefined) {
    for (const key of Object.keys(headers)) {
      if (key.toLowerCase() === lower) {
        value = headers[key];
        break;
      }
    }
  }
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Retry-After as milliseconds from `now`: delta-seconds ("7"), seconds with decimals as Graph
 * sends them ("2.128" in https://learn.microsoft.com/en-us/graph/throttling, "0.249" seen in
 * the wild; rounded up to the next millisecond, never down), or an HTTP-date
 * ("Wed, 21 Oct 2026 07:28:00 GMT"), RFC 9110 §10.2.3. Undefined when absent or unreadable.
 */
export function parseRetryAfter(headers: ResponseHeaders, now: number): number | undefined {
  const raw = headerValue(headers, "retry-after")?.trim();
  if (raw === undefined || raw === "") return undefined;
  if (/^\d+(?:\.\d+)?$/.test(raw)) return Math.ceil(Number(raw) * 1000);
  // Only an HTTP-date ("Wed, 21 Oct 2026 07:28:00 GMT"); Date.parse would also take "-5" as a year.
  if (!/^[A-Za-z]{3}, /.test(raw)) return undefined;
  const at = Date.parse(raw);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/**
 * A wait Graph asked for, capped at `maxMs` (`server.maxRetryAfterSeconds`): one answer must not
 * hold a mailbox back for hours, whether Graph meant it or a proxy garbled the header.
 */
export function capRetryAfter(waitMs: number, maxMs: number): number {
  return Math.min(waitMs, maxMs);
}

/** Whether waiting `waitMs` still leaves a full attempt before the deadline. */
export function waitFits(now: number, waitMs: number, deadline: number, policy: RetryPolicy): boolean {
  return now + waitMs + policy.minAttemptMs <= deadline;
}

/** Whole seconds for a Retry-After the caller gets (at least 1). */
export function toRetryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}
