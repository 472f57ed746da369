import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createEntraTokenProvider, type EntraTokenProvider } from "../../src/auth/entra-token-provider.js";
import type { Config } from "../../src/config/schema.js";
import { createGraphMailSender, type GraphMailSender } from "../../src/graph/graph-mail-sender.js";
import { RelayError } from "../../src/core/problems.js";
import { serializeSendMail } from "../../src/mail/graph-message.js";
import type { GraphJsonSendRequest, GraphMessage } from "../../src/core/ports.js";
import {
  APP,
  CONTOSO,
  FABRIKAM,
  GOOD_SECRET,
  capturingLogger,
  closedPort,
  recordingObserver,
  startHarness,
  targetOf,
  type Harness,
  type RecordingObserver,
} from "../auth/emulator-harness.js";

const NORTHWIND = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

let h: Harness;
let config: Config;
let tokens: EntraTokenProvider;
let observer: RecordingObserver;
let sender: GraphMailSender | undefined;

beforeAll(async () => {
  h = await startHarness({
    tenants: [
      {
        id: CONTOSO,
        domains: ["contoso.com"],
        mailboxes: [{ address: "noreply@contoso.com" }, { address: "blocked@contoso.com" }, { address: "legacy@contoso.com", state: "notRestEnabled" }],
        consents: [{ appId: APP, roles: ["Mail.Send"] }],
        accessPolicies: [{ appId: APP, deny: ["blocked@contoso.com"] }],
      },
      // Consented, but not for Mail.Send.
      { id: FABRIKAM, domains: ["fabrikam.com"], mailboxes: [{ address: "noreply@fabrikam.com" }], consents: [{ appId: APP, roles: ["User.Read.All"] }] },
      // Service principal without any consented permission: tokens carry no roles.
      { id: NORTHWIND, mailboxes: [{ address: "noreply@northwind.example" }], consents: [{ appId: APP, roles: [] }] },
    ],
    apps: [{ clientId: APP, secrets: [{ value: GOOD_SECRET }] }],
  });
  config = h.config({
    app: { clientId: APP, credential: { type: "secret", secretFile: h.file("secret", GOOD_SECRET) } },
    tenants: {
      contoso: { tenantId: CONTOSO, sender: "noreply@contoso.com" },
      blocked: { tenantId: CONTOSO, sender: "blocked@contoso.com" },
      legacy: { tenantId: CONTOSO, sender: "legacy@contoso.com" },
      ghost: { tenantId: CONTOSO, sender: "ghost@contoso.com" },
      fabrikam: { tenantId: FABRIKAM, sender: "noreply@fabrikam.com" },
      northwind: { tenantId: NORTHWIND, sender: "noreply@northwind.example" },
      // A contoso mailbox with a fabrikam token: Graph refuses the token for that organisation.
      mismatch: { tenantId: FABRIKAM, sender: "noreply@contoso.com" },
    },
  });
  tokens = createEntraTokenProvider({ config, observer: recordingObserver(), logger: capturingLogger().logger });
});

afterAll(async () => {
  await tokens.close();
  await h.close();
});

afterEach(async () => {
  await sender?.close();
  sender = undefined;
  h.emulator.state.reset();
});

function makeSender(overrides: Partial<Parameters<typeof createGraphMailSender>[0]> = {}): GraphMailSender {
  observer = recordingObserver();
  sender = createGraphMailSender({ config, tokenProvider: tokens, observer, logger: capturingLogger().logger, ...overrides });
  return sender;
}

const message: GraphMessage = {
  subject: "Your invoice 42",
  body: { contentType: "Text", content: "Please find your invoice attached." },
  toRecipients: [{ emailAddress: { address: "alice@example.com", name: "Alice" } }],
  ccRecipients: [{ emailAddress: { address: "bob@example.com" } }],
};

function request(tenantKey: string, overrides: Partial<GraphJsonSendRequest> = {}): GraphJsonSendRequest {
  const tenant = config.tenants[tenantKey]!;
  return {
    target: targetOf(config, tenantKey),
    sender: tenant.sender,
    message,
    saveToSentItems: false,
    deadline: Date.now() + 10_000,
    requestId: randomUUID(),
    ...overrides,
  };
}

async function refusal(promise: Promise<unknown>): Promise<RelayError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RelayError);
  return err as RelayError;
}

function statuses(): (number | "error")[] {
  return observer.of("graphResponse").map((c) => c.status);
}

describe("accepted", () => {
  it("when Graph answers 202, then exactly one message is stored from the configured sender with the given fields", async () => {
    const s = makeSender();
    const result = await s.send(request("contoso", { saveToSentItems: true }));

    const stored = h.emulator.state.messages();
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      tenantId: CONTOSO,
      appId: APP,
      sender: "noreply@contoso.com",
      subject: "Your invoice 42",
      body: { contentType: "text", content: "Please find your invoice attached." },
      toRecipients: [{ address: "alice@example.com", name: "Alice" }],
      ccRecipients: [{ address: "bob@example.com" }],
      saveToSentItems: true,
      requestId: result.graphRequestId,
    });
    expect(result.attempts).toBe(1);
    expect(statuses()).toEqual([202]);
    expect(observer.of("graphResponse")[0]!.seconds).toBeGreaterThan(0);
  });

  it("when the use case hands over the serialised body, then those exact bytes are sent", async () => {
    const s = makeSender();
    const body = JSON.stringify({ message: { ...message, subject: "Pre-serialised" }, saveToSentItems: false });
    await s.send(request("contoso", { body }));
    expect(h.emulator.state.messages()[0]?.subject).toBe("Pre-serialised");
  });

  it("when the body comes in parts (an attachment's base64 on its own), then the parts joined are sent, attachment intact", async () => {
    const s = makeSender();
    const contentBytes = randomBytes(100 * 1024).toString("base64");
    const withFile: GraphMessage = {
      ...message,
      subject: "In parts ✓",
      attachments: [{ "@odata.type": "#microsoft.graph.fileAttachment", name: "invoice.pdf", contentType: "application/pdf", contentBytes }],
    };
    const body = serializeSendMail(withFile, false);
    expect(body.parts.length).toBeGreaterThan(1);
    await s.send(request("contoso", { message: withFile, body }));
    const stored = h.emulator.state.messages();
    expect(stored).toHaveLength(1);
    expect(stored[0]!.raw).toBe(JSON.stringify({ message: withFile, saveToSentItems: false }));
    expect(stored[0]!.attachments[0]).toMatchObject({ name: "invoice.pdf", size: 100 * 1024, contentBytes });
  });
});

describe("Graph refusals", () => {
  it("when an ApplicationAccessPolicy blocks the mailbox (403 RAOP), then policy_denied with Graph's code and request-id", async () => {
    const err = await refusal(makeSender().send(request("blocked")));
    expect(err.code).toBe("policy_denied");
    expect(err.extras.graphCode).toBe("ErrorAccessDenied");
    expect(err.extras.graphRequestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(err.message).toContain("Test-ApplicationAccessPolicy");
    expect(h.emulator.state.messages()).toHaveLength(0);
  });

  it("when the token has roles but not Mail.Send (403), then permission_missing", async () => {
    const err = await refusal(makeSender().send(request("fabrikam")));
    expect(err.code).toBe("permission_missing");
    expect(err.extras.graphCode).toBe("ErrorAccessDenied");
    expect(err.message).toContain("admin consent for Mail.Send");
  });

  it("when the token has no roles at all (401 NoPermissionsInAccessToken), then permission_missing without a token retry", async () => {
    const err = await refusal(makeSender().send(request("northwind")));
    expect(err.code).toBe("permission_missing");
    expect(err.extras.graphCode).toBe("NoPermissionsInAccessToken");
    expect(statuses()).toEqual([401]);
  });

  it("when the sender mailbox does not exist (404 ErrorInvalidUser), then mailbox_unavailable", async () => {
    const err = await refusal(makeSender().send(request("ghost")));
    expect(err.code).toBe("mailbox_unavailable");
    expect(err.extras.graphCode).toBe("ErrorInvalidUser");
  });

  it("when the mailbox is not enabled for REST (404 MailboxNotEnabledForRESTAPI), then mailbox_unavailable", async () => {
    const err = await refusal(makeSender().send(request("legacy")));
    expect(err.code).toBe("mailbox_unavailable");
    expect(err.extras.graphCode).toBe("MailboxNotEnabledForRESTAPI");
    expect(err.message).toContain("not an Exchange Online mailbox enabled for the REST API");
  });

  it("when a recipient is invalid (400 ErrorInvalidRecipients), then recipient_rejected quoting Graph", async () => {
    const bad = { ...message, toRecipients: [{ emailAddress: { address: "not-an-address" } }] };
    const err = await refusal(makeSender().send(request("contoso", { message: bad })));
    expect(err.code).toBe("recipient_rejected");
    expect(err.extras.graphCode).toBe("ErrorInvalidRecipients");
    expect(err.message).toContain("not-an-address");
  });

  it("when a custom header is not an x- header (400 InvalidInternetMessageHeader), then validation_failed", async () => {
    const bad = { ...message, internetMessageHeaders: [{ name: "Order-Id", value: "42" }] };
    const err = await refusal(makeSender().send(request("contoso", { message: bad })));
    expect(err.code).toBe("validation_failed");
    expect(err.extras.graphCode).toBe("InvalidInternetMessageHeader");
  });

  it("when the request is over 4 MB (413), then payload_too_large", async () => {
    const big = { ...message, body: { contentType: "Text" as const, content: "x".repeat(4 * 1024 * 1024 + 1) } };
    const err = await refusal(makeSender().send(request("contoso", { message: big })));
    expect(err.code).toBe("payload_too_large");
  });

  it("when Graph refuses the token for the mailbox's organisation (401), then one retry with a fresh token, then credential_rejected", async () => {
    const err = await refusal(makeSender().send(request("mismatch")));
    expect(err.code).toBe("credential_rejected");
    expect(err.extras.graphCode).toBe("InvalidAuthenticationToken");
    expect(statuses()).toEqual([401, 401]);
  });

  it("when Graph fails with 500 after the message was written, then outcome_unknown without a retry (it may have gone out)", async () => {
    h.emulator.state.inject({ kind: "sendMail", action: "respond", status: 500, times: 1 });
    const err = await refusal(makeSender().send(request("contoso")));
    expect(err.code).toBe("outcome_unknown");
    expect(err.extras.graphCode).toBe("InternalServerError");
    expect(statuses()).toEqual([500]);
  });
});

describe("throttling and unavailability", () => {
  it("when Graph answers 429 with Retry-After: 1 and then 202, then the send succeeds after at least 1 s in 2 attempts", async () => {
    h.emulator.state.inject({ kind: "sendMail", action: "respond", status: 429, retryAfter: 1, times: 1 });
    const started = Date.now();
    // A default wait longer than the deadline: only an honoured Retry-After leads to success.
    const result = await makeSender({ retryPolicy: { throttledDefaultWaitMs: 60_000 } }).send(request("contoso"));
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    expect(result.attempts).toBe(2);
    expect(statuses()).toEqual([429, 202]);
    expect(observer.of("graphThrottled")).toEqual([{ kind: "graphThrottled", tenant: "contoso" }]);
    expect(h.emulator.state.messages()).toHaveLength(1);
  });

  it("when Retry-After is an HTTP-date under an odd-cased header name, then it is honoured too", async () => {
    const at = new Date(Date.now() + 2_000).toUTCString();
    h.emulator.state.inject({ kind: "sendMail", action: "respond", status: 429, headers: { "RETRY-after": at }, times: 1 });
    const started = Date.now();
    const result = await makeSender({ retryPolicy: { throttledDefaultWaitMs: 60_000 } }).send(request("contoso"));
    // HTTP-dates have whole seconds: the wait is between 1 and 2 s.
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(result.attempts).toBe(2);
  });

  it("when Graph's Retry-After has decimals (0.249), then the sender waits about a quarter second, not its default", async () => {
    h.emulator.state.inject({ kind: "sendMail", action: "respond", status: 429, retryAfter: 0.249, times: 1 });
    const started = Date.now();
    // A default wait longer than the deadline: only a Retry-After read with its decimals leads to success.
    const result = await makeSender({ retryPolicy: { throttledDefaultWaitMs: 60_000 } }).send(request("contoso"));
    const elapsed = Date.now() - started;
    expect(result.attempts).toBe(2);
    expect(elapsed).toBeGreaterThanOrEqual(249);
    expect(elapsed).toBeLessThan(1_500);
    expect(statuses()).toEqual([429, 202]);
  });

  it("when Graph's Retry-After is 30.5 and outlasts the deadline, then one attempt and rate_limited with Retry-After 31", async () => {
    h.emulator.state.inject({ kind: "sendMail", action: "respond", status: 429, retryAfter: 30.5 });
    const err = await refusal(makeSender().send(request("contoso", { deadline: Date.now() + 5_000 })));
    expect(err.code).toBe("rate_limited");
    expect(err.extras.retryAfterSeconds).toBe(31);
    expect(statuses()).toEqual([429]);
  });

  it("when Graph's Retry-After is a day, then the send, the mailbox's throttle and the caller see the configured maximum instead", async () => {
    h.emulator.state.inject({ kind: "sendMail", action: "respond", status: 429, retryAfter: 86_400 });
    const held: number[] = [];
    const started = Date.now();
    const err = await refusal(makeSender({ maxRetryAfterMs: () => 120_000 }).send(request("contoso", { onThrottled: (until) => held.push(until) })));
    expect(err.code).toBe("rate_limited");
    expect(err.extras.retryAfterSeconds).toBe(120);
    expect(held).toHaveLength(1);
    expect(held[0]! - started).toBeLessThanOrEqual(121_000);
  });

  it("when Graph's Retry-After outlasts the deadline, then rate_limited with retryAfterSeconds at once", async () => {
    h.emulator.state.inject({ kind: "sendMail", action: "respond", status: 429, retryAfter: 60 });
    const started = Date.now();
    const err = await refusal(makeSender().send(request("contoso", { deadline: Date.now() + 5_000 })));
    expect(err.code).toBe("rate_limited");
    expect(err.extras.retryAfterSeconds).toBe(60);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(statuses()).toEqual([429]);
    expect(observer.of("graphThrottled")).toHaveLength(1);
  });

  it("when Graph answers 503 with Retry-After and then 202, then the send succeeds", async () => {
    h.emulator.state.inject({ kind: "sendMail", action: "respond", status: 503, retryAfter: 1, times: 1 });
    const result = await makeSender().send(request("contoso"));
    expect(result.attempts).toBe(2);
    expect(statuses()).toEqual([503, 202]);
  });

  it("when Graph answers 503 without Retry-After, then upstream_unavailable without a retry", async () => {
    h.emulator.state.inject({ kind: "sendMail", action: "respond", status: 503 });
    const err = await refusal(makeSender().send(request("contoso")));
    expect(err.code).toBe("upstream_unavailable");
    expect(err.extras.retryAfterSeconds).toBe(5);
    expect(statuses()).toEqual([503]);
  });

  it("when nothing listens at the Graph address, then upstream_unavailable after one quick retry (nothing was written)", async () => {
    const port = await closedPort();
    const down = { ...config, cloud: { ...config.cloud, graphBaseUrl: `https://127.0.0.1:${port}` } };
    observer = recordingObserver();
    sender = createGraphMailSender({ config: down, tokenProvider: tokens, observer, logger: capturingLogger().logger });
    const err = await refusal(sender.send(request("contoso")));
    expect(err.code).toBe("upstream_unavailable");
    expect(err.message).toContain("ECONNREFUSED");
    expect(statuses()).toEqual(["error", "error"]);
  });
});

describe("outcome unknown: never retried", () => {
  it.each([500, 502, 504])("when Graph stores the message and then answers %i, then outcome_unknown and the emulator holds exactly one message", async (status) => {
    h.emulator.state.inject({ kind: "sendMail", action: "acceptThen504", status });
    const err = await refusal(makeSender().send(request("contoso")));
    expect(err.code).toBe("outcome_unknown");
    expect(err.message).toContain(`HTTP ${status}`);
    expect(h.emulator.state.messages()).toHaveLength(1);
    expect(await h.sendMailRequests()).toBe(1);
  });

  it("when the connection is reset after the body was sent, then outcome_unknown and no second request", async () => {
    h.emulator.state.inject({ kind: "sendMail", action: "reset", when: "afterBody" });
    const err = await refusal(makeSender().send(request("contoso")));
    expect(err.code).toBe("outcome_unknown");
    expect(statuses()).toEqual(["error"]);
    expect(await h.sendMailRequests()).toBe(1);
  });

  it("when Graph hangs, then outcome_unknown by the deadline", async () => {
    h.emulator.state.inject({ kind: "sendMail", action: "hang" });
    const started = Date.now();
    const err = await refusal(makeSender().send(request("contoso", { deadline: Date.now() + 1_000 })));
    const elapsed = Date.now() - started;
    expect(err.code).toBe("outcome_unknown");
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(1_300);
    expect(statuses()).toEqual(["error"]);
  });

  it("when the per-attempt timeout is shorter than the deadline and Graph hangs, then the attempt timeout ends it", async () => {
    h.emulator.state.inject({ kind: "sendMail", action: "hang" });
    const started = Date.now();
    const err = await refusal(makeSender({ attemptTimeoutMs: 300 }).send(request("contoso")));
    expect(err.code).toBe("outcome_unknown");
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});

describe("token problems", () => {
  it("when Entra rejects the credential, then the sender passes credential_rejected on and never calls Graph", async () => {
    const wrong = h.config({
      app: { clientId: APP, credential: { type: "secret", secretFile: h.file("wrong", "nope") } },
      tenants: { contoso: { tenantId: CONTOSO, sender: "noreply@contoso.com" } },
    });
    const badTokens = createEntraTokenProvider({ config: wrong, observer: recordingObserver(), logger: capturingLogger().logger });
    try {
      observer = recordingObserver();
      sender = createGraphMailSender({ config: wrong, tokenProvider: badTokens, observer, logger: capturingLogger().logger });
      const err = await refusal(sender.send({ ...request("contoso"), target: targetOf(wrong, "contoso") }));
      expect(err.code).toBe("credential_rejected");
      expect(err.extras.aadsts).toBe("7000215");
      expect(statuses()).toEqual([]);
      expect(await h.sendMailRequests()).toBe(0);
    } finally {
      await badTokens.close();
    }
  });
});
