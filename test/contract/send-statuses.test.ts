import { randomUUID } from "node:crypto";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeEach, describe, expect, expectTypeOf, it } from "vitest";
import { createApp, type RelayApp } from "../../src/app.js";
import type { GraphSender, TokenProvider } from "../../src/core/ports.js";
import { fixedConfigSource } from "../../src/config/config-source.js";
import { createApiClient, type ApiClient, type ProblemCode, type SendAccepted, type SendRequest } from "../support/api-client.js";
import { checkedFetch, specValidator } from "../support/checked-fetch.js";
import { startHarness } from "../support/harness.js";

/*
 * Every status (and, where one status has several, every problem code) that openapi.yaml
 * documents for POST /send, each produced by the real app with the real Entra and Graph adapters
 * against the emulator, through the typed client that checks each answer against openapi.yaml.
 * The list of what must be covered is read from openapi.yaml, so documenting a new status or
 * code without a case here fails this file.
 */

const validator = specValidator();

type SendResult = Awaited<ReturnType<ApiClient["send"]>>;

interface StatusCase {
  readonly status: number;
  /** The problem code, for error statuses. */
  readonly code?: ProblemCode;
  readonly title: string;
  readonly run: () => Promise<SendResult>;
}

/** `"<status>"` or `"<status> <code>"` for each answer POST /send documents, read from openapi.yaml. */
function documentedSendAnswers(): string[] {
  const operation = validator.findOperation("POST", "/send")?.operation;
  if (operation === undefined) throw new Error("openapi.yaml has no POST /send");
  const out: string[] = [];
  for (const [status, ref] of Object.entries(operation.responses ?? {})) {
    const response = resolve(ref) as { content?: Record<string, { schema?: unknown }> };
    const codes = new Set<string>();
    for (const media of Object.values(response.content ?? {})) collectCodes(media.schema, codes);
    if (codes.size === 0) out.push(status);
    for (const code of codes) out.push(`${status} ${code}`);
  }
  return out;
}

/* The codes a response narrows Problem to: `code.const` or `code.enum` of its allOf branches. */
function collectCodes(schema: unknown, into: Set<string>): void {
  const s = resolve(schema) as { allOf?: unknown[]; properties?: { code?: { const?: string; enum?: string[] } } } | undefined;
  if (s === undefined || typeof s !== "object") return;
  const code = s.properties?.code;
  if (code?.const !== undefined) into.add(code.const);
  for (const c of code?.enum ?? []) into.add(c);
  for (const branch of s.allOf ?? []) collectCodes(branch, into);
}

function resolve(node: unknown): unknown {
  let current = node;
  while (typeof current === "object" && current !== null && typeof (current as { $ref?: unknown }).$ref === "string") {
    current = (current as { $ref: string }).$ref
      .slice(2)
      .split("/")
      .reduce<unknown>((n, k) => (n as Record<string, unknown>)[k.replaceAll("~1", "/").replaceAll("~0", "~")], validator.spec);
  }
  return current;
}

function mail(tenant: string, extra: Partial<SendRequest> = {}): SendRequest {
  return { tenant, to: ["someone@example.com"], subject: "Contract", text: "Hello", ...extra };
}

const h = await startHarness();
const relay = createApiClient({ baseUrl: h.url, apiKey: h.keys.ops, validator });

let buggy: { app: RelayApp; url: string } | undefined;
/* The relay with a token provider that fails the way a bug does (a TypeError), not the way Entra refuses. */
async function relayWithABug(): Promise<string> {
  if (buggy !== undefined) return buggy.url;
  const tokenProvider: TokenProvider = {
    getToken: () => Promise.reject(new TypeError("Cannot read properties of undefined (reading 'token')")),
  };
  const graphSender: GraphSender = { send: () => Promise.reject(new Error("not reached: the token is asked for first")) };
  const app = await createApp({ configSource: fixedConfigSource(h.config), tokenProvider, graphSender, registry: new Registry(), logger: pino({ level: "silent" }) });
  const url = await app.listen(0, "127.0.0.1");
  buggy = { app, url };
  return url;
}

afterAll(async () => {
  await buggy?.app.shutdown(1000);
  await h.close();
});

const cases: StatusCase[] = [
  {
    status: 200,
    title: "when a dry run passes every check, then 200 with the accepted body and nothing reaches Graph",
    run: async () => {
      const res = await relay.send(mail("contoso", { dryRun: true }));
      expect(h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(0);
      return res;
    },
  },
  {
    status: 202,
    title: "when a message is sent, then 202 with its ids and the emulator holds it",
    run: async () => {
      const res = await relay.send(mail("contoso", { subject: "Contract 202" }));
      if (res.status === 202) {
        expectTypeOf(res.body).toEqualTypeOf<SendAccepted>();
        expect(h.emulator.state.messages().map((m) => m.internetMessageId)).toEqual([res.body.internetMessageId]);
      }
      return res;
    },
  },
  {
    status: 400,
    code: "validation_failed",
    title: "when the subject is missing, then 400 validation_failed naming it",
    run: async () => {
      const res = await relay.sendUnchecked({ tenant: "contoso", to: ["someone@example.com"], text: "x" });
      if (res.status === 400) expect(res.body.errors).toEqual([{ path: "subject", message: "is required" }]);
      return res;
    },
  },
  {
    status: 401,
    code: "unauthorized",
    title: "when no API key is sent, then 401 unauthorized",
    run: () => relay.send(mail("contoso"), { apiKey: null }),
  },
  {
    status: 403,
    code: "tenant_forbidden",
    title: "when a caller limited to contoso sends for fabrikam, then 403 tenant_forbidden",
    run: () => relay.send(mail("fabrikam"), { apiKey: h.keys.billing }),
  },
  {
    status: 403,
    code: "sender_not_allowed",
    title: "when from is not the tenant's sender, then 403 sender_not_allowed",
    run: () => relay.send(mail("contoso", { from: "ceo@contoso.com" })),
  },
  {
    status: 403,
    code: "policy_denied",
    title: "when the tenant's access policy excludes the sender mailbox, then 403 policy_denied",
    run: () => relay.send(mail("fabrikam")),
  },
  {
    status: 404,
    code: "unknown_tenant",
    title: "when a caller allowed every tenant names one that does not exist, then 404 unknown_tenant",
    run: () => relay.send(mail("no-such-tenant")),
  },
  {
    status: 409,
    code: "idempotency_conflict",
    title: "when an Idempotency-Key is reused with another body, then 409 idempotency_conflict and the replay of the first sends nothing",
    run: async () => {
      const key = `invoice-${randomUUID()}`;
      const first = await relay.send(mail("contoso", { subject: "Invoice A" }), { idempotencyKey: key });
      const replay = await relay.send(mail("contoso", { subject: "Invoice A" }), { idempotencyKey: key });
      expect(replay).toMatchObject({ status: first.status, body: first.body });
      expect(h.emulator.state.messages()).toHaveLength(1);
      return relay.send(mail("contoso", { subject: "Invoice B" }), { idempotencyKey: key });
    },
  },
  {
    status: 413,
    code: "payload_too_large",
    title: "when the message is over Graph's 4 MB, then 413 payload_too_large",
    run: () => {
      const content = Buffer.alloc(3.1 * 1024 * 1024, 7).toString("base64");
      return relay.send(mail("contoso", { attachments: [{ filename: "big.bin", contentType: "application/octet-stream", content }] }));
    },
  },
  {
    status: 422,
    code: "recipient_rejected",
    title: "when Graph rejects a recipient, then 422 recipient_rejected",
    run: () => {
      h.emulator.state.inject({
        kind: "sendMail",
        mailbox: "noreply@contoso.com",
        action: "respond",
        status: 400,
        times: 1,
        body: { error: { code: "ErrorInvalidRecipients", message: "At least one recipient is not valid." } },
      });
      return relay.send(mail("contoso"));
    },
  },
  {
    status: 429,
    code: "rate_limited",
    title: "when Graph throttles past the deadline, then 429 rate_limited with Retry-After",
    run: async () => {
      h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@tailspin.com", action: "respond", status: 429, retryAfter: 120, times: 1 });
      const res = await relay.send(mail("tailspin"));
      expect(res.headers.get("retry-after")).toBe("120");
      return res;
    },
  },
  {
    status: 500,
    code: "internal_error",
    title: "when the relay hits a bug while sending, then 500 internal_error without the bug's message",
    run: async () => {
      const res = await createApiClient({ baseUrl: await relayWithABug(), apiKey: h.keys.ops, validator }).send(mail("contoso"));
      if (res.status === 500) expect(res.body.detail).not.toMatch(/Cannot read/);
      return res;
    },
  },
  {
    status: 502,
    code: "permission_missing",
    title: "when the app has no Mail.Send consent in the tenant, then 502 permission_missing",
    run: () => relay.send(mail("northwind")),
  },
  {
    status: 502,
    code: "mailbox_unavailable",
    title: "when the sender mailbox is not enabled for REST, then 502 mailbox_unavailable",
    run: () => relay.send(mail("adatum")),
  },
  {
    status: 502,
    code: "credential_rejected",
    title: "when Entra rejects the tenant's secret, then 502 credential_rejected with its AADSTS number",
    run: async () => {
      const res = await relay.send(mail("litware"));
      if (res.status === 502) expect(res.body.aadsts).toMatch(/^\d+$/);
      return res;
    },
  },
  {
    status: 503,
    code: "upstream_unavailable",
    title: "when Graph answers 503, then 503 upstream_unavailable with Retry-After",
    run: () => {
      h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@contoso.com", action: "respond", status: 503, times: 1 });
      return relay.send(mail("contoso"));
    },
  },
  {
    status: 504,
    code: "outcome_unknown",
    title: "when Graph stores the message but answers 504, then 504 outcome_unknown",
    run: () => {
      h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@contoso.com", action: "acceptThen504", times: 1 });
      return relay.send(mail("contoso"));
    },
  },
];

const caseKey = (c: StatusCase): string => (c.code === undefined ? String(c.status) : `${c.status} ${c.code}`);
const produced = new Set<string>();

describe("POST /send: every documented status, produced and checked against openapi.yaml", () => {
  beforeEach(() => {
    h.emulator.state.reset();
  });

  for (const c of cases) {
    it(c.title, async () => {
      const res = await c.run();
      expect(res.status, JSON.stringify(res.body)).toBe(c.status);
      if (c.code !== undefined) {
        const problem = res.body as { code: string; requestId: string };
        expect(problem.code).toBe(c.code);
        expect(problem.requestId).toBe(res.headers.get("x-request-id"));
      }
      produced.add(caseKey(c));
    });
  }

  it("when the answers POST /send documents are read from openapi.yaml, then each has exactly one case above", () => {
    const documented = documentedSendAnswers();
    expect(documented.length).toBeGreaterThan(10);
    expect(cases.map(caseKey).sort()).toEqual([...documented].sort());
  });

  it("when the cases above have run, then each produced its answer", () => {
    expect(cases.map(caseKey).filter((k) => !produced.has(k))).toEqual([]);
  });
});

describe("GET /tenants, checked against openapi.yaml", () => {
  it("when an admin reads /tenants after a send and a refusal, then 200 lists every tenant with its last outcome and problem", async () => {
    expect((await relay.send(mail("contoso"))).status).toBe(202);
    expect((await relay.send(mail("fabrikam"))).status).toBe(403);
    const res = await relay.listTenants({ apiKey: h.keys.admin });
    expect(res.status).toBe(200);
    if (res.status === 200) {
      expect(res.body.tenants.map((t) => t.tenant)).toEqual(Object.keys(h.config.tenants));
      const byKey = new Map(res.body.tenants.map((t) => [t.tenant, t]));
      expect(byKey.get("contoso")).toMatchObject({ sender: "noreply@contoso.com", lastOutcome: "sent" });
      expect(byKey.get("fabrikam")).toMatchObject({ lastOutcome: "policy_denied", lastProblem: { code: "policy_denied" } });
    }
  });

  it("when a caller that is not an admin reads /tenants, then 403 tenant_forbidden", async () => {
    const res = await relay.listTenants();
    expect(res.status).toBe(403);
    if (res.status === 403) expect(res.body.code).toBe("tenant_forbidden");
  });

  it("when /tenants is read without a key, then 401 unauthorized", async () => {
    expect((await relay.listTenants({ apiKey: null })).status).toBe(401);
  });
});

describe("answers of no operation", () => {
  it("when a path the description does not list is requested, then 404 is a not_found Problem", async () => {
    const res = await checkedFetch(`${h.url}/no/such/path?x=1`);
    expect(res.status).toBe(404);
    const body: unknown = await res.json();
    expect(validator.validateComponent("Problem", body)).toEqual([]);
    expect(body).toMatchObject({ code: "not_found", status: 404, requestId: res.headers.get("x-request-id") });
  });

  it("when /send is called with GET, then 405 is a method_not_allowed Problem with Allow: POST", async () => {
    const res = await checkedFetch(`${h.url}/send`);
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
    const body: unknown = await res.json();
    expect(validator.validateComponent("Problem", body)).toEqual([]);
    expect(body).toMatchObject({ code: "method_not_allowed", status: 405 });
  });
});
