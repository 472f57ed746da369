import { describe, expect, it } from "vitest";
import { mapGraphRefusal, parseGraphErrorBody } from "../../src/graph/graph-errors.js";
import { capRetryAfter, defaultRetryPolicy, toRetryAfterSeconds, waitFits } from "../../src/graph/retry-policy.js";
import { headerValue, parseRetryAfter } from "../../src/net/retry-after.js";

const NOW = Date.parse("2026-03-01T12:00:00Z");

describe("Retry-After", () => {
  it("when given in seconds, then it is that many milliseconds", () => {
    expect(parseRetryAfter({ "retry-after": "7" }, NOW)).toBe(7_000);
  });

  it("when given in seconds with decimals as Graph sends them (2.128, 0.249, 30.5), then they count, rounded up to the millisecond", () => {
    expect(parseRetryAfter({ "retry-after": "2.128" }, NOW)).toBe(2_128);
    expect(parseRetryAfter({ "retry-after": "0.249" }, NOW)).toBe(249);
    expect(parseRetryAfter({ "retry-after": "30.5" }, NOW)).toBe(30_500);
    expect(parseRetryAfter({ "retry-after": "0.0001" }, NOW)).toBe(1);
    expect(toRetryAfterSeconds(30_500)).toBe(31);
  });

  it("when a Retry-After is longer than the configured maximum, then it is clamped to it", () => {
    expect(capRetryAfter(86_400_000, 600_000)).toBe(600_000);
    expect(capRetryAfter(2_128, 600_000)).toBe(2_128);
  });

  it("when given as an HTTP-date, then it is the time until then (never negative)", () => {
    expect(parseRetryAfter({ "retry-after": "Sun, 01 Mar 2026 12:00:30 GMT" }, NOW)).toBe(30_000);
    expect(parseRetryAfter({ "retry-after": "Sun, 01 Mar 2026 11:00:00 GMT" }, NOW)).toBe(0);
  });

  it("when the header name has another case, then it is still found", () => {
    expect(parseRetryAfter({ "Retry-After": "3" }, NOW)).toBe(3_000);
    expect(headerValue({ "REQUEST-ID": "abc" }, "request-id")).toBe("abc");
  });

  it("when absent or unreadable, then undefined", () => {
    expect(parseRetryAfter({}, NOW)).toBeUndefined();
    expect(parseRetryAfter({ "retry-after": "soon" }, NOW)).toBeUndefined();
    expect(parseRetryAfter({ "retry-after": "-5" }, NOW)).toBeUndefined();
    expect(parseRetryAfter({ "retry-after": "1e3" }, NOW)).toBeUndefined();
    expect(parseRetryAfter({ "retry-after": "2." }, NOW)).toBeUndefined();
  });

  it("when a wait leaves less than one attempt's time before the deadline, then it does not fit", () => {
    expect(waitFits(NOW, 1_000, NOW + 2_000, defaultRetryPolicy)).toBe(true);
    expect(waitFits(NOW, 1_500, NOW + 2_000, defaultRetryPolicy)).toBe(false);
    expect(toRetryAfterSeconds(1_001)).toBe(2);
    expect(toRetryAfterSeconds(0)).toBe(1);
  });
});

describe("Graph refusal mapping", () => {
  const ctx = { sender: "noreply@contoso.com", tenantId: "contoso.com", clientId: "1111" };
  const map = (status: number, code: string, message: string, headers: Record<string, string> = {}) =>
    mapGraphRefusal(status, { code, message }, headers, ctx).error;

  it.each([
    [403, "ErrorAccessDenied", "policy_denied", "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings."],
    [403, "ErrorAccessDenied", "permission_missing", "Access is denied. Check credentials and try again."],
    [401, "NoPermissionsInAccessToken", "permission_missing", "The token contains no permissions, or permissions can not be understood."],
    [404, "ErrorInvalidUser", "mailbox_unavailable", "The requested user 'x' is invalid."],
    [404, "MailboxNotEnabledForRESTAPI", "mailbox_unavailable", "The mailbox is either inactive, soft-deleted, or is hosted on-premise."],
    [404, "ResourceNotFound", "mailbox_unavailable", "Resource could not be discovered."],
    [400, "ErrorInvalidRecipients", "recipient_rejected", "At least one recipient is not valid."],
    [413, "RequestEntityTooLarge", "payload_too_large", "The maximum request length supported is 4MB."],
    [400, "ErrorMessageSizeExceeded", "payload_too_large", "The message exceeds the maximum supported size."],
    [400, "InvalidInternetMessageHeader", "validation_failed", "The internet message header name 'a' should start with 'x-' or 'X-'."],
    [400, "ErrorMimeContentInvalidBase64String", "validation_failed", "Invalid base64 string for MIME content."],
    [401, "InvalidAuthenticationToken", "credential_rejected", "Access token validation failure."],
    [500, "InternalServerError", "upstream_unavailable", "Internal Server Error"],
    [502, "BadGateway", "upstream_unavailable", "Bad Gateway"],
    [403, "ErrorSendAsDenied", "sender_not_allowed", "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message."],
    [403, "ErrorQuotaExceeded", "mailbox_unavailable", "Mailbox has exceeded maximum mailbox size."],
    [403, "ErrorMessageSubmissionBlocked", "mailbox_unavailable", ""],
    [401, "OrganizationFromTenantGuidNotFound", "mailbox_unavailable", "The tenant for tenant guid 'x' does not exist."],
    [429, "ErrorSubmissionQuotaExceeded", "rate_limited", ""],
    [403, "ErrorSubmissionQuotaExceeded", "rate_limited", ""],
  ])("when Graph answers %i %s, then the problem is %s", (status, code, expected, message) => {
    expect(map(status, code, message).code).toBe(expected);
  });

  it("when the tenant uses RBAC for Applications, then a 403 or a roles-less 401 is policy_denied about the management scope, never advice to grant Mail.Send", () => {
    for (const [status, code, message] of [
      [403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."],
      [401, "NoPermissionsInAccessToken", "The token contains no permissions, or permissions can not be understood."],
    ] as const) {
      const err = mapGraphRefusal(status, { code, message }, {}, { ...ctx, accessModel: "rbac" }).error;
      expect(err.code).toBe("policy_denied");
      expect(err.message).toContain("management scope");
      expect(err.message).not.toContain("admin consent");
    }
  });

  it("when Graph gives a request-id header, then it and the error code are kept, Graph's message is not", () => {
    const err = map(403, "ErrorAccessDenied", "Access to OData is disabled: [RAOP]", { "request-id": "rid-1" });
    expect(err.extras).toEqual({ graphCode: "ErrorAccessDenied", graphRequestId: "rid-1" });
    expect(err.message).not.toContain("OData");
  });

  it("when the body is not Graph's error JSON, then it is read as empty and the request-id comes from the body when the header is absent", () => {
    expect(parseGraphErrorBody("<html>bad gateway</html>")).toEqual({});
    const body = parseGraphErrorBody(JSON.stringify({ error: { code: "X", message: "m", innerError: { "request-id": "rid-2" } } }));
    expect(mapGraphRefusal(400, body, {}, ctx).error.extras.graphRequestId).toBe("rid-2");
  });
});
