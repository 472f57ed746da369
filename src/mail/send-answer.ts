import { RelayError, type ProblemCode, type ProblemExtras } from "../core/problems.js";

/**
 * A send's answer as the Idempotency-Key store remembers it: what any door (HTTP /send, SMTP)
 * needs to give a replay the first answer again, independent of how that door renders it.
 * JSON only: it goes to Redis as it is.
 */
export type RecordedAnswer = RecordedAcceptance | RecordedProblem;

/** Graph accepted the message (202). */
export interface RecordedAcceptance {
  readonly kind: "accepted";
  /** The id of the request that did the work (its X-Request-Id, its log line). */
  readonly requestId: string;
  readonly id: string;
  readonly internetMessageId: string;
  readonly tenant: string;
  readonly sender: string;
  /** RFC 3339. */
  readonly acceptedAt: string;
}

/** A refusal after which the message may exist (outcome_unknown, an unexpected 500). */
export interface RecordedProblem {
  readonly kind: "problem";
  readonly requestId: string;
  readonly code: ProblemCode;
  readonly detail: string;
  readonly extras: ProblemExtras;
}

/** The RelayError a recorded problem stands for (same code, text and extras as the first answer). */
export function problemOf(answer: RecordedProblem): RelayError {
  return new RelayError(answer.code, answer.detail, answer.extras);
}

/**
 * Outcomes after which provably nothing was sent: the key is abandoned so that a retry (after
 * the caller or an admin fixed the cause) can succeed. Graph's own refusals are here too —
 * Graph said no, so no message exists.
 */
const NOTHING_SENT: ReadonlySet<string> = new Set([
  "dry_run",
  "validation_failed",
  "unauthorized",
  "tenant_forbidden",
  "sender_not_allowed",
  "policy_denied",
  "permission_missing",
  "unknown_tenant",
  "idempotency_conflict",
  "payload_too_large",
  "rate_limited",
  "recipient_rejected",
  "mailbox_unavailable",
  "credential_rejected",
  "upstream_unavailable",
  "request_timeout",
  "expectation_failed",
]);

/**
 * What to do with an owned key once the request has an outcome (`sent`, `dry_run` or a problem
 * code): "complete" remembers the answer — for `sent`, `outcome_unknown`, and anything not
 * known to be harmless (e.g. a 500 from a bug after Graph may have been called), because a
 * second message is worse than a remembered error; "abandon" for outcomes that sent nothing.
 */
export function idempotencyDisposition(outcome: string): "complete" | "abandon" {
  return NOTHING_SENT.has(outcome) ? "abandon" : "complete";
}

/**
 * What a replay gets when the first request with its Idempotency-Key was being sent by an
 * instance that stopped (killed, or cut off from the shared store) before it answered: the
 * message may have gone out, so outcome_unknown, with the first request's id to look it up by.
 */
export function lapsedLeaseAnswer(firstRequestId: string): RecordedProblem {
  return {
    kind: "problem",
    requestId: firstRequestId,
    code: "outcome_unknown",
    detail: "the instance that handled the first request with this Idempotency-Key stopped before it answered; the message may have been sent",
    extras: {},
  };
}
