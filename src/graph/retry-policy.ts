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
