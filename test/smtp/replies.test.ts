import { describe, expect, it } from "vitest";
import { EDGE_PROBLEM_CODES, PROBLEM_CODES, PROBLEMS, RelayError, type ProblemCode } from "../../src/core/problems.js";
import { PROBLEM_REPLIES, problemReply, replyText } from "../../src/smtp/replies.js";
import { readDoc, section } from "../docs/markdown.js";

/*
 * The reply table of the SMTP door: every problem code the send use case (or the HTTP edge)
 * can produce has an SMTP reply, the reply's class fits what a client should do, and
 * docs/smtp.md lists it. A new problem code without a reply fails here (and in tsc).
 */

const ALL_CODES: readonly ProblemCode[] = [...PROBLEM_CODES, ...EDGE_PROBLEM_CODES];
/** Codes an SMTP client must retry: nothing was sent (or a resend is answered from the idempotency store). */
const TEMPORARY = new Set<ProblemCode>(["rate_limited", "upstream_unavailable", "outcome_unknown", "request_timeout", "internal_error"]);

describe("SMTP reply table", () => {
  it("when a problem code exists, then it has an SMTP reply, and the table has no other entries", () => {
    for (const code of ALL_CODES) expect(PROBLEM_REPLIES[code], `no SMTP reply for problem code ${code}: add it to src/smtp/replies.ts and docs/smtp.md`).toBeDefined();
    expect(Object.keys(PROBLEM_REPLIES).sort()).toEqual([...ALL_CODES].sort());
  });

  it("when a reply is chosen, then it is 4xx for throttling, outages and unknown outcomes and 5xx for policy, permission and credential problems, with a matching enhanced code", () => {
    for (const code of ALL_CODES) {
      const { code: reply, status } = PROBLEM_REPLIES[code];
      expect({ code, class: Math.floor(reply / 100) }).toEqual({ code, class: TEMPORARY.has(code) ? 4 : 5 });
      expect(status, code).toMatch(/^[45]\.\d{1,3}\.\d{1,3}$/);
      expect(status[0], code).toBe(String(reply)[0]);
    }
    // A problem /send calls retryable is temporary over SMTP too.
    for (const code of ALL_CODES) if (PROBLEMS[code].retryable) expect(TEMPORARY.has(code), code).toBe(true);
    expect(PROBLEM_REPLIES.sender_not_allowed).toEqual({ code: 550, status: "5.7.1" });
    expect(PROBLEM_REPLIES.payload_too_large).toEqual({ code: 552, status: "5.3.4" });
    expect(PROBLEM_REPLIES.unauthorized).toEqual({ code: 535, status: "5.7.8" });
  });

  it("when docs/smtp.md lists the replies, then every problem code is there with its reply", () => {
    const replies = section(readDoc("docs/smtp.md"), "Replies");
    for (const code of ALL_CODES) {
      const { code: reply, status } = PROBLEM_REPLIES[code];
      expect(replies, code).toContain(`| \`${code}\` | ${reply} ${status} |`);
    }
  });

  it("when a refusal becomes a reply, then its text is one printable line of bounded length, with the wait for a temporary one", () => {
    const r = problemReply(new RelayError("rate_limited", "mailbox noreply@contoso.com is throttled\r\nby Graph", { retryAfterSeconds: 7 }));
    expect(r).toEqual({ code: 451, status: "4.7.0", text: "mailbox noreply@contoso.com is throttled by Graph (retry after 7 s)" });
    expect(replyText("x".repeat(2000))).toHaveLength(400);
    const v = problemReply(new RelayError("validation_failed", "the message is invalid", { errors: [{ path: "header.to", message: "bad" }] }));
    expect(v.text).toBe("the message is invalid: bad");
  });
});
