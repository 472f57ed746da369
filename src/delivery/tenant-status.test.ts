import { describe, expect, it } from "vitest";
import { PROBLEMS, RelayError } from "../core/problems.js";
import { createRememberingTokenProvider } from "../auth/credential-failure-memory.js";
import { MailboxLimiter } from "./mailbox-limiter.js";
import { RecipientGuard } from "./recipient-guard.js";
import { CALLER_PROBLEMS, TenantStatusBook, describeTenants, isCallerProblem, type DescribableTenant } from "./tenant-status.js";

function manualClock(start = Date.UTC(2026, 0, 1, 8)) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

const contoso: DescribableTenant = {
  key: "contoso",
  tenantId: "72f988bf-86f1-41af-91ab-2d7cd011db47",
  displayName: "Contoso",
  sender: "NoReply@contoso.com",
  mailboxKey: "noreply@contoso.com",
  target: {
    tenantKey: "contoso",
    tenantId: "72f988bf-86f1-41af-91ab-2d7cd011db47",
    app: {
      clientId: "11111111-2222-3333-4444-555555555555",
      credential: { type: "secret", secretFile: "/run/secrets/contoso-secret", secondarySecretEnv: "CONTOSO_NEXT", expiresAt: new Date("2027-06-30T00:00:00Z") },
    },
  },
  limits: { maxConcurrency: 4, recipientsPerDay: 10_000, maxQueue: 1000 },
  ownApp: true,
};

const fabrikam: DescribableTenant = {
  ...contoso,
  key: "fabrikam",
  sender: "noreply@fabrikam.com",
  mailboxKey: "noreply@fabrikam.com",
  target: { ...contoso.target, tenantKey: "fabrikam", app: { clientId: contoso.target.app.clientId, credential: { type: "workloadIdentity", tokenFile: "/var/run/token" } } },
  ownApp: false,
};

describe("TenantStatusBook", () => {
  it("when a send fails and a later one succeeds, then the last outcome is sent and the last problem is kept with its time", () => {
    const clock = manualClock();
    const book = new TenantStatusBook({ clock });
    book.record("contoso", "credential_rejected", { aadsts: "7000215" });
    const failedAt = clock.now();
    clock.advance(60_000);
    book.record("contoso", "sent");
    expect(book.get("contoso")).toEqual({
      lastOutcome: "sent",
      lastOutcomeAt: failedAt + 60_000,
      lastProblem: { code: "credential_rejected", at: failedAt, aadsts: "7000215" },
    });
  });

  it.each(["validation_failed", "sender_not_allowed", "payload_too_large", "idempotency_conflict", "recipient_rejected"] as const)(
    "when the caller's own mistake %s follows a credential_rejected, then it is the last outcome but the last problem stays credential_rejected",
    (mistake) => {
      const clock = manualClock();
      const book = new TenantStatusBook({ clock });
      book.record("contoso", "credential_rejected", { aadsts: "7000215" });
      const failedAt = clock.now();
      clock.advance(1000);
      book.record("contoso", mistake, { graphCode: "ErrorInvalidRecipients" });
      expect(book.get("contoso")).toEqual({
        lastOutcome: mistake,
        lastOutcomeAt: failedAt + 1000,
        lastProblem: { code: "credential_rejected", at: failedAt, aadsts: "7000215" },
      });
    },
  );

  it("when a tenant has only seen callers' mistakes, then it has a last outcome and no last problem", () => {
    const book = new TenantStatusBook({ clock: manualClock() });
    book.record("contoso", "sender_not_allowed");
    expect(book.get("contoso")).toEqual({ lastOutcome: "sender_not_allowed", lastOutcomeAt: expect.any(Number) });
  });

  it("when the tenant's side fails after a caller's mistake, then that becomes the last problem", () => {
    const clock = manualClock();
    const book = new TenantStatusBook({ clock });
    book.record("contoso", "validation_failed");
    clock.advance(1000);
    book.record("contoso", "mailbox_unavailable", { graphCode: "MailboxNotEnabledForRESTAPI" });
    expect(book.get("contoso")?.lastProblem).toEqual({ code: "mailbox_unavailable", at: clock.now(), graphCode: "MailboxNotEnabledForRESTAPI" });
  });

  it("when problems are sorted by side, then the caller's are exactly the 4xx a caller can fix (or a request it did not finish sending)", () => {
    expect([...CALLER_PROBLEMS].sort()).toEqual(
      [
        "validation_failed",
        "unauthorized",
        "tenant_forbidden",
        "sender_not_allowed",
        "unknown_tenant",
        "idempotency_conflict",
        "payload_too_large",
        "recipient_rejected",
        "not_found",
        "method_not_allowed",
        "request_timeout",
        "expectation_failed",
      ].sort(),
    );
    for (const code of CALLER_PROBLEMS) {
      expect(PROBLEMS[code].status, code).toBeGreaterThanOrEqual(400);
      expect(PROBLEMS[code].status, code).toBeLessThan(500);
    }
    for (const code of ["policy_denied", "permission_missing", "rate_limited", "mailbox_unavailable", "credential_rejected", "upstream_unavailable", "outcome_unknown", "internal_error"] as const) {
      expect(isCallerProblem(code), code).toBe(false);
    }
  });

  it("when a replay is answered, then the recorded outcome does not change", () => {
    const book = new TenantStatusBook({ clock: manualClock() });
    book.record("contoso", "policy_denied");
    book.record("contoso", "duplicate");
    expect(book.get("contoso")?.lastOutcome).toBe("policy_denied");
  });

  it("when a reload removes a tenant, then retain drops its record", () => {
    const book = new TenantStatusBook({ clock: manualClock() });
    book.record("contoso", "sent");
    book.record("gone", "sent");
    book.retain(["contoso"]);
    expect(book.get("gone")).toBeUndefined();
    expect(book.get("contoso")).toBeDefined();
  });
});

describe("describeTenants", () => {
  it("when live counters exist, then each row joins config, last outcome, recipients, slots, throttle and remembered rejection", async () => {
    const clock = manualClock();
    const book = new TenantStatusBook({ clock });
    const guard = new RecipientGuard({ clock });
    const limiter = new MailboxLimiter({ clock });
    const tokens = createRememberingTokenProvider(
      { getToken: () => Promise.reject(new RelayError("credential_rejected", "bad secret", { aadsts: "7000215" })) },
      { holdMs: 30_000, clock },
    );
    book.record("contoso", "rate_limited", { graphCode: "ApplicationThrottled" });
    guard.reserve("noreply@contoso.com", 42, 10_000);
    limiter.noteThrottled("noreply@contoso.com", clock.now() + 5000);
    await tokens.getToken(contoso.target).catch(() => {});
    const permit = await limiter.acquire("noreply@fabrikam.com", { deadline: clock.now() + 1000 });

    const rows = await describeTenants([contoso, fabrikam], { activity: book, recipients: guard, limiter, credentials: tokens });
    permit.release();

    expect(rows[0]).toEqual({
      tenant: "contoso",
      displayName: "Contoso",
      tenantId: "72f988bf-86f1-41af-91ab-2d7cd011db47",
      sender: "NoReply@contoso.com",
      app: { clientId: "11111111-2222-3333-4444-555555555555", own: true, credentialType: "secret", credentialExpiresAt: "2027-06-30T00:00:00.000Z" },
      limits: { maxConcurrency: 4, recipientsPerDay: 10_000, maxQueue: 1000 },
      lastOutcome: "rate_limited",
      lastOutcomeAt: "2026-01-01T08:00:00.000Z",
      lastProblem: { code: "rate_limited", at: "2026-01-01T08:00:00.000Z", graphCode: "ApplicationThrottled" },
      recipientsUsed: 42,
      inFlight: 0,
      waiting: 0,
      throttledUntil: "2026-01-01T08:00:05.000Z",
      credentialRejectedUntil: "2026-01-01T08:00:30.000Z",
    });
    expect(rows[1]).toMatchObject({ tenant: "fabrikam", app: { own: false, credentialType: "workloadIdentity" }, recipientsUsed: 0, inFlight: 1 });
    expect(rows[1]).not.toHaveProperty("lastOutcome");
  });

  it("when rendered to JSON, then no secret file path or environment variable name appears", async () => {
    const json = JSON.stringify(await describeTenants([contoso, fabrikam], { activity: new TenantStatusBook() }));
    for (const leak of ["/run/secrets", "CONTOSO_NEXT", "/var/run/token", "secretFile", "tokenFile"]) expect(json).not.toContain(leak);
  });
});
