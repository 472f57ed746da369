import type { ProblemCode, RelayError } from "../core/problems.js";

/**
 * An SMTP reply: the basic code (RFC 5321 §4.2), the enhanced status code (RFC 3463) and a
 * short reason. 4xx tells the client to keep the message and try again later; 5xx to give up
 * and report the failure (a bounce) to whoever submitted it.
 */
export interface SmtpReply {
  readonly code: number;
  readonly status: string;
  readonly text: string;
}

/**
 * Every problem code of the send use case as an SMTP reply (docs/smtp.md, "Replies"):
 * policy, permission and credential problems are permanent (5xx), so a device does not retry
 * a message that can never go; throttling and outages are temporary (4xx), so it does.
 * outcome_unknown is temporary too: the client resends, and the resend, with the same
 * Message-ID, is answered from the idempotency store instead of being sent again.
 */
export const PROBLEM_REPLIES: Readonly<Record<ProblemCode, { readonly code: number; readonly status: string }>> = Object.freeze({
  validation_failed: { code: 554, status: "5.6.0" },
  unauthorized: { code: 535, status: "5.7.8" },
  tenant_forbidden: { code: 550, status: "5.7.1" },
  sender_not_allowed: { code: 550, status: "5.7.1" },
  policy_denied: { code: 550, status: "5.7.1" },
  permission_missing: { code: 550, status: "5.7.1" },
  unknown_tenant: { code: 550, status: "5.7.1" },
  idempotency_conflict: { code: 554, status: "5.6.0" },
  payload_too_large: { code: 552, status: "5.3.4" },
  rate_limited: { code: 451, status: "4.7.0" },
  recipient_rejected: { code: 550, status: "5.1.1" },
  mailbox_unavailable: { code: 554, status: "5.2.0" },
  credential_rejected: { code: 554, status: "5.7.0" },
  upstream_unavailable: { code: 451, status: "4.4.1" },
  outcome_unknown: { code: 451, status: "4.4.0" },
  not_found: { code: 554, status: "5.5.0" },
  method_not_allowed: { code: 554, status: "5.5.0" },
  request_timeout: { code: 451, status: "4.4.2" },
  expectation_failed: { code: 554, status: "5.5.0" },
  internal_error: { code: 451, status: "4.3.0" },
});

/** Longest reason text; SMTP reply lines stay short (RFC 5321 §4.5.3.1.5 allows 512 octets in all). */
const MAX_TEXT = 400;

/** A reason text that is one line of printable characters, at most MAX_TEXT long. */
export function replyText(text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is replaced
  const line = text.replace(/[\u0000-\u001f\u007f]+/g, " ").trim();
  return line.length <= MAX_TEXT ? line : `${line.slice(0, MAX_TEXT - 1)}…`;
}

/** The reply for a refusal of the use case. */
export function problemReply(err: RelayError): SmtpReply {
  const { code, status } = PROBLEM_REPLIES[err.code];
  const first = err.extras.errors?.[0];
  const reason = first !== undefined && err.code === "validation_failed" ? `${err.message}: ${first.message}` : err.message;
  const wait = err.extras.retryAfterSeconds;
  return { code, status, text: replyText(wait !== undefined && code < 500 ? `${reason} (retry after ${wait} s)` : reason) };
}

/** An Error that smtp-server turns into this reply (the enhanced code goes first in the text: see smtp-door.ts). */
export function replyError(reply: SmtpReply): Error & { responseCode: number } {
  return Object.assign(new Error(`${reply.status} ${reply.text}`), { responseCode: reply.code });
}
