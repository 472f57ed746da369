import { describe, expect, it } from "vitest";
import { PROBLEM_CODES } from "../core/problems.js";
import { idempotencyDisposition, lapsedLeaseAnswer, problemOf } from "./send-answer.js";

describe("idempotencyDisposition", () => {
  it("when a message was or may have been sent, or the outcome is not known to be harmless, then the answer is remembered", () => {
    for (const outcome of ["sent", "outcome_unknown", "internal_error", "something_new"]) expect(idempotencyDisposition(outcome)).toBe("complete");
  });

  it("when a contract problem code is added, then it needs a deliberate place here: all but outcome_unknown sent nothing", () => {
    const remembered = PROBLEM_CODES.filter((code) => idempotencyDisposition(code) === "complete");
    expect(remembered).toEqual(["outcome_unknown"]);
  });

  it("when provably nothing was sent, then the key is abandoned so a retry can succeed", () => {
    for (const outcome of ["dry_run", "validation_failed", "rate_limited", "policy_denied", "recipient_rejected", "credential_rejected", "upstream_unavailable"]) {
      expect(idempotencyDisposition(outcome)).toBe("abandon");
    }
  });
});

describe("lapsedLeaseAnswer", () => {
  it("when the first request's instance stopped mid-send, then the answer is outcome_unknown naming that request", () => {
    const answer = lapsedLeaseAnswer("first-request");
    expect(answer).toMatchObject({ kind: "problem", requestId: "first-request", code: "outcome_unknown" });
    expect(problemOf(answer).status).toBe(504);
    // It travels as JSON (Redis): nothing may be lost on the way.
    expect(JSON.parse(JSON.stringify(answer))).toEqual(answer);
  });
});
