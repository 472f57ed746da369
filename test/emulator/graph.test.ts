import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../src/emulator/start-emulator.js";
import { APP, APP_NO_CONSENT, APP_READ_ONLY, APP_SCOPED, client, CONTOSO, FABRIKAM, mail, NOREPLY_ID, scenario } from "./fixtures.js";

let emu: Emulator;
let http: ReturnType<typeof client>;
let token: string;

beforeAll(async () => {
  emu = await startEmulator({ scenario: scenario() });
  http = client(emu);
  token = await http.accessToken(CONTOSO, APP);
});
afterAll(async () => {
  await http.close();
  await emu.close();
});
afterEach(() => {
  emu.state.clearFaults();
  emu.state.setThrottling(null);
});

type Res = Awaited<ReturnType<typeof http.sendMail>>;

async function expectGraphError(res: Res, status: number, code: string, message: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toBe("application/json");
  const requestId = res.headers.get("request-id");
  expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
  const body = (await res.json()) as { error: { code: string; message: string; innerError: Record<string, string> } };
  expect(body.error.code).toBe(code);
  expect(body.error.message).toBe(message);
  expect(body.error.innerError["request-id"]).toBe(requestId);
  expect(body.error.innerError["client-request-id"]).toBe(res.headers.get("client-request-id"));
  expect(body.error.innerError.date).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
}

describe("sendMail success", () => {
  it("answers 202 with an empty body, request-id, and the echoed client-request-id", async () => {
    const res = await http.sendMail("noreply@contoso.com", token, mail({ subject: "ids" }), { "client-request-id": "6f0c4d2e-0000-4000-8000-000000000001" });
    expect(res.status).toBe(202);
    expect(await res.text()).toBe("");
    expect(res.headers.get("request-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers.get("client-request-id")).toBe("6f0c4d2e-0000-4000-8000-000000000001");
    const [m] = emu.state.messages({ requestId: res.headers.get("request-id")! });
    expect(m?.subject).toBe("ids");
  });

  it("finds the mailbox by UPN in any case, by alias and by object id", async () => {
    for (const user of ["NoReply@Contoso.COM", "no-reply@contoso.com", NOREPLY_ID]) {
      const res = await http.sendMail(user, token, mail({ subject: `lookup ${user}` }));
      expect(res.status).toBe(202);
      expect(emu.state.messages({ subject: `lookup ${user}` })[0]?.mailbox).toBe("noreply@contoso.com");
    }
  });

  it("accepts the MIME form (text/plain base64) and parses it", async () => {
    const mime = [
      "From: Relay <noreply@contoso.com>",
      "To: Alice <alice@example.org>, bob@example.org",
      "Cc: carol@example.org",
      "Reply-To: support@contoso.com",
      "Subject: MIME receipt",
      "X-Relay-Id: r-7",
      "MIME-Version: 1.0",
      'Content-Type: multipart/mixed; boundary="b1"',
      "",
      "--b1",
      "Content-Type: text/html; charset=utf-8",
      "",
      "<p>Hello</p>",
      "--b1",
      'Content-Type: application/pdf; name="r.pdf"',
      'Content-Disposition: attachment; filename="r.pdf"',
      "Content-Transfer-Encoding: base64",
      "",
      Buffer.from("%PDF-1.4 tiny").toString("base64"),
      "--b1--",
      "",
    ].join("\r\n");
    const res = await http.sendMail("noreply@contoso.com", token, Buffer.from(mime).toString("base64"), { "content-type": "text/plain" });
    expect(res.status).toBe(202);
    const [m] = emu.state.messages({ subject: "MIME receipt" });
    expect(m).toMatchObject({
      format: "mime",
      from: { address: "noreply@contoso.com", name: "Relay" },
      toRecipients: [{ address: "alice@example.org", name: "Alice" }, { address: "bob@example.org" }],
      ccRecipients: [{ address: "carol@example.org" }],
      replyTo: [{ address: "support@contoso.com" }],
      body: { contentType: "html" },
      internetMessageHeaders: [{ name: "X-Relay-Id", value: "r-7" }],
      attachments: [{ name: "r.pdf", contentType: "application/pdf", size: 13, isInline: false }],
    });
  });
});

describe("sendMail errors, exactly as Graph answers", () => {
  it("401 InvalidAuthenticationToken: no token, garbage, expired, other audience", async () => {
    await expectGraphError(await http.sendMail("noreply@contoso.com", undefined, mail()), 401, "InvalidAuthenticationToken", "Access token is empty.");
    await expectGraphError(await http.sendMail("noreply@contoso.com", "not-a-jwt", mail()), 401, "InvalidAuthenticationToken", "Access token validation failure.");
    const expired = await emu.state.mintAccessToken({ tenantId: CONTOSO, appId: APP, claims: { exp: Math.floor(Date.now() / 1000) - 10 } });
    await expectGraphError(await http.sendMail("noreply@contoso.com", expired, mail()), 401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.");
    const vault = await emu.state.mintAccessToken({ tenantId: CONTOSO, appId: APP, claims: { aud: "https://vault.azure.net" } });
    await expectGraphError(await http.sendMail("noreply@contoso.com", vault, mail()), 401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.");
  });

  it("a token signed by someone else is refused", async () => {
    const other = await startEmulator({ scenario: scenario() });
    const c = client(other);
    try {
      const foreign = await c.accessToken(CONTOSO, APP);
      await expectGraphError(await http.sendMail("noreply@contoso.com", foreign, mail()), 401, "InvalidAuthenticationToken", "Access token validation failure.");
    } finally {
      await c.close();
      await other.close();
    }
  });

  it("a token of tenant A is refused for a mailbox of tenant B (401)", async () => {
    await expectGraphError(await http.sendMail("info@fabrikam.com", token, mail()), 401, "InvalidAuthenticationToken", "Access token validation failure.");
    const fabrikamToken = await http.accessToken(FABRIKAM, APP);
    expect((await http.sendMail("info@fabrikam.com", fabrikamToken, mail())).status).toBe(202);
    await expectGraphError(await http.sendMail("noreply@contoso.com", fabrikamToken, mail()), 401, "InvalidAuthenticationToken", "Access token validation failure.");
  });

  it("401 NoPermissionsInAccessToken without any role; 403 ErrorAccessDenied with roles but no Mail.Send", async () => {
    await expectGraphError(await http.sendMail("noreply@contoso.com", await http.accessToken(CONTOSO, APP_NO_CONSENT), mail()), 401, "NoPermissionsInAccessToken",
      "The token contains no permissions, or permissions can not be understood.");
    await expectGraphError(await http.sendMail("noreply@contoso.com", await http.accessToken(CONTOSO, APP_READ_ONLY), mail()), 403, "ErrorAccessDenied",
      "Access is denied. Check credentials and try again.");
  });

  it("403 ErrorAccessDenied [RAOP] outside the app's access policy", async () => {
    const scoped = await http.accessToken(CONTOSO, APP_SCOPED);
    expect((await http.sendMail("noreply@contoso.com", scoped, mail())).status).toBe(202);
    await expectGraphError(await http.sendMail("billing@contoso.com", scoped, mail()), 403, "ErrorAccessDenied",
      "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.");
  });

  it("404 ErrorInvalidUser and MailboxNotEnabledForRESTAPI", async () => {
    await expectGraphError(await http.sendMail("ghost@contoso.com", token, mail()), 404, "ErrorInvalidUser", "The requested user 'ghost@contoso.com' is invalid.");
    await expectGraphError(await http.sendMail("legacy@contoso.com", token, mail()), 404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise.");
  });

  it("400 ErrorInvalidRecipients: none, or one that cannot be resolved", async () => {
    await expectGraphError(await http.sendMail("noreply@contoso.com", token, mail({ toRecipients: [] })), 400, "ErrorInvalidRecipients",
      "At least one recipient is not valid., A message can't be sent because it contains no recipients.");
    await expectGraphError(await http.sendMail("noreply@contoso.com", token, mail({}, "not-an-address")), 400, "ErrorInvalidRecipients",
      "At least one recipient is not valid., Recipient 'not-an-address' is not resolved. All recipients must be resolved before a message can be submitted.");
  });

  it("400 InvalidInternetMessageHeader / InvalidInternetMessageHeaderCollection", async () => {
    const h = (n: number, name = (i: number) => `X-Custom-${i}`) => Array.from({ length: n }, (_, i) => ({ name: name(i), value: "v" }));
    expect((await http.sendMail("noreply@contoso.com", token, mail({ internetMessageHeaders: h(5, (i) => `x-lower-${i}`) }))).status).toBe(202);
    await expectGraphError(await http.sendMail("noreply@contoso.com", token, mail({ internetMessageHeaders: [{ name: "Reply-By", value: "x" }] })), 400,
      "InvalidInternetMessageHeader", "The internet message header name 'Reply-By' should start with 'x-' or 'X-'.");
    await expectGraphError(await http.sendMail("noreply@contoso.com", token, mail({ internetMessageHeaders: h(6) })), 400,
      "InvalidInternetMessageHeaderCollection", "Maximum number of headers in one message should be less than or equal to 5.");
  });

  it("413 over 4 MB", async () => {
    const big = mail({ attachments: [{ "@odata.type": "#microsoft.graph.fileAttachment", name: "big.bin", contentBytes: Buffer.alloc(3_200_000).toString("base64") }] });
    await expectGraphError(await http.sendMail("noreply@contoso.com", token, big), 413, "RequestEntityTooLarge", "The maximum request length supported is 4MB.");
  });

  it("400 ErrorMimeContentInvalidBase64String", async () => {
    await expectGraphError(await http.sendMail("noreply@contoso.com", token, "this is not base64!", { "content-type": "text/plain" }), 400,
      "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.");
  });
});

describe("throttling like Outlook", () => {
  it("the 5th concurrent request of an app to a mailbox gets 429 ApplicationThrottled with Retry-After", async () => {
    emu.state.setThrottling({ mailboxConcurrency: 4, requestsPerWindow: 0 });
    emu.state.inject({ kind: "sendMail", action: "latency", fixedMs: 300 });
    const results = await Promise.all(Array.from({ length: 5 }, () => http.sendMail("noreply@contoso.com", token, mail({ subject: "burst" }))));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([202, 202, 202, 202, 429]);
    const throttled = results.find((r) => r.status === 429)!;
    expect(Number(throttled.headers.get("retry-after"))).toBeGreaterThan(0);
    await expectGraphError(throttled, 429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.");
    // Another mailbox of the same app is not affected.
    emu.state.clearFaults();
    expect((await http.sendMail("billing@contoso.com", token, mail())).status).toBe(202);
  });

  it("the per-mailbox request budget per window answers 429 with the seconds left", async () => {
    emu.state.setThrottling({ mailboxConcurrency: 0, requestsPerWindow: 2, windowSeconds: 60 });
    expect((await http.sendMail("billing@contoso.com", token, mail())).status).toBe(202);
    expect((await http.sendMail("billing@contoso.com", token, mail())).status).toBe(202);
    const third = await http.sendMail("billing@contoso.com", token, mail());
    expect(Number(third.headers.get("retry-after"))).toBeGreaterThan(50);
    await expectGraphError(third, 429, "TooManyRequests", "Please retry again later.");
  });

  it("can be turned off", async () => {
    emu.state.setThrottling(false);
    emu.state.inject({ kind: "sendMail", action: "latency", fixedMs: 100 });
    const results = await Promise.all(Array.from({ length: 8 }, () => http.sendMail("noreply@contoso.com", token, mail())));
    expect(results.every((r) => r.status === 202)).toBe(true);
  });
});
