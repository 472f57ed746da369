/**
 * The one list of problem codes (openapi.yaml, the README's problem table). Every refusal the service gives
 * is one of these, with a fixed HTTP status and a fixed "retryable" hint for callers.
 */
export const PROBLEM_CODES = [
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
  "outcome_unknown",
] as const;

/**
 * Codes for refusals at the HTTP edge that are not about sending (no such route, wrong
 * method, a bug). Kept apart from PROBLEM_CODES so the contract's list stays exactly the
 * contract's; both share one shape and one mapper.
 */
export const EDGE_PROBLEM_CODES = ["not_found", "method_not_allowed", "request_timeout", "expectation_failed", "internal_error"] as const;

export type ProblemCode = (typeof PROBLEM_CODES)[number] | (typeof EDGE_PROBLEM_CODES)[number];

/** Base of every problem's `type` URI: `https://noreply-relay.dev/problems/<code>`. Stable; documents may live there. */
export const PROBLEM_TYPE_BASE = "https://noreply-relay.dev/problems/";

interface ProblemSpec {
  readonly status: number;
  readonly title: string;
  /** Whether the caller may retry the same request unchanged and expect a different answer. */
  readonly retryable: boolean;
}

export const PROBLEMS: Readonly<Record<ProblemCode, ProblemSpec>> = Object.freeze({
  validation_failed: { status: 400, title: "The request is invalid", retryable: false },
  unauthorized: { status: 401, title: "Missing or unknown API key", retryable: false },
  tenant_forbidden: { status: 403, title: "This caller may not send for this tenant", retryable: false },
  sender_not_allowed: { status: 403, title: "The sender is not the tenant's configured sender", retryable: false },
  policy_denied: { status: 403, title: "The tenant's Exchange access policy refused the sender mailbox", retryable: false },
  permission_missing: { status: 502, title: "The app has no Mail.Send permission in the tenant", retryable: false },
  unknown_tenant: { status: 404, title: "No such tenant", retryable: false },
  idempotency_conflict: { status: 409, title: "Idempotency-Key reused with a different request", retryable: false },
  payload_too_large: { status: 413, title: "The message is too large", retryable: false },
  rate_limited: { status: 429, title: "Too many requests", retryable: true },
  recipient_rejected: { status: 422, title: "Microsoft Graph rejected a recipient", retryable: false },
  mailbox_unavailable: { status: 502, title: "The sender mailbox cannot send: missing, not enabled for the REST API, full or blocked", retryable: false },
  credential_rejected: { status: 502, title: "Microsoft Entra ID rejected the app credential", retryable: false },
  upstream_unavailable: { status: 503, title: "Microsoft Entra ID or Graph is unavailable", retryable: true },
  outcome_unknown: { status: 504, title: "Microsoft Graph may have accepted the message but did not confirm it", retryable: false },
  not_found: { status: 404, title: "No such resource", retryable: false },
  method_not_allowed: { status: 405, title: "Method not allowed for this resource", retryable: false },
  request_timeout: { status: 408, title: "The request was not received in time", retryable: true },
  expectation_failed: { status: 417, title: "The Expect header asks for something this service does not do", retryable: false },
  internal_error: { status: 500, title: "Internal error", retryable: false },
});

/** One field-level complaint inside a `validation_failed` problem. */
export interface FieldError {
  readonly path: string;
  readonly message: string;
}

/** Extra members a problem may carry besides the standard ones. */
export interface ProblemExtras {
  /** Entra error code (e.g. "7000222") for `credential_rejected`; the transient one (e.g. "90033") for an Entra outage's `upstream_unavailable`. */
  aadsts?: string;
  /** Field errors for `validation_failed`. */
  errors?: readonly FieldError[];
  /** Field errors found but left out of `errors` (validation stopped early); the answer adds those over its own cap. */
  errorsOmitted?: number;
  /** Seconds the caller should wait; sent as the `Retry-After` header too. */
  retryAfterSeconds?: number;
  /** Graph's `error.code`, when Graph gave one. */
  graphCode?: string;
  /** Graph's `request-id`, so an operator can ask Microsoft about it. */
  graphRequestId?: string;
}

/**
 * The typed error of the service. Anything that is thrown as a RelayError becomes a
 * problem+json response with the code's status; anything else is a bug (500).
 */
export class RelayError extends Error {
  readonly code: ProblemCode;
  readonly extras: ProblemExtras;

  constructor(code: ProblemCode, detail: string, extras: ProblemExtras = {}) {
    super(detail);
    this.name = "RelayError";
    this.code = code;
    this.extras = extras;
  }

  get status(): number {
    return PROBLEMS[this.code].status;
  }

  get retryable(): boolean {
    return PROBLEMS[this.code].retryable;
  }
}

/** Type guard usable across module boundaries. */
export function isRelayError(err: unknown): err is RelayError {
  return err instanceof RelayError;
}

/** A RelayError as it is; anything else is a bug: `internal_error` with a fixed text (the cause is logged, never shown). */
export function toRelayError(err: unknown): RelayError {
  return isRelayError(err) ? err : new RelayError("internal_error", "an unexpected error occurred; it has been logged");
}
