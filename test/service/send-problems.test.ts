import { connect } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { PROBLEM_CODES, PROBLEMS, type ProblemCode } from "../../src/core/problems.js";
import { CONTOSO, message, standardScenario } from "../support/fixtures.js";
import { metricValue, startHarness, type Harness, type HttpResult } from "../support/harness.js";

/*
 * Every problem code of the contract, each produced by a real scenario: the service on
 * port 0 with the real Entra and Graph adapters, talking HTTPS to the emulator.
 */

const produced = new Set<ProblemCode>();

function expectProblem(res: HttpResult, code: ProblemCode): void {
  expect(res.status, res.text).toBe(PROBLEMS[code].status);
  expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  expect(res.json).toMatchObject({
    type: `https://noreply-relay.dev/problems/${code}`,
    title: PROBLEMS[code].title,
    status: PROBLEMS[code].status,
    code,
    retryable: PROBLEMS[code].retryable,
  });
  expect(typeof res.json.detail).toBe("string");
  expect(res.json.requestId).toBe(res.headers.get("x-request-id"));
  produced.add(code);
}

describe("POST /send: problem codes", () => {
  let h: Harness;
  const networkCalls = (): number => h.emulator.state.requests().length;

  beforeAll(async () => {
    const scenario = standardScenario();
    scenario.tenants![0]!.mailboxes!.push({ address: "quota@contoso.com" });
    h = await startHarness({
      scenario,
      configure: (c) => {
        c.tenants["contoso-quota"] = { tenantId: CONTOSO.id, sender: "quota@contoso.com", limits: { recipientsPerDay: 3 } };
      },
    });
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.reset();
  });

  describe("refused before any network call", () => {
    it("when no API key is sent, then 401 unauthorized with a Bearer challenge and no call to Entra or Graph", async () => {
      const res = await h.send(message(), { key: null });
      expectProblem(res, "unauthorized");
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
      expect(networkCalls()).toBe(0);
    });

    it("when an unknown API key is sent, then 401 unauthorized", async () => {
      const res = await h.send(message(), { key: "not-a-key" });
      expectProblem(res, "unauthorized");
      expect(networkCalls()).toBe(0);
    });

    it("when an unauthenticated caller names a tenant that does not exist or sends garbage, then it learns nothing: 401 either way", async () => {
      expectProblem(await h.send(message("no-such-tenant"), { key: "nope" }), "unauthorized");
      expectProblem(await h.send("{not json", { key: "nope" }), "unauthorized");
      expectProblem(await h.send(message(), { key: null, headers: { authorization: "Basic Zm9vOmJhcg==" } }), "unauthorized");
    });

    it("when a caller limited to contoso sends for fabrikam, then 403 tenant_forbidden and nothing is called", async () => {
      const res = await h.send(message("fabrikam"), { key: h.keys.billing });
      expectProblem(res, "tenant_forbidden");
      expect(networkCalls()).toBe(0);
    });

    it("when a caller limited to contoso names a tenant that does not exist, then 403 too: it cannot probe tenant names", async () => {
      expectProblem(await h.send(message("no-such-tenant"), { key: h.keys.billing }), "tenant_forbidden");
    });

    it("when a caller allowed every tenant names one that does not exist, then 404 unknown_tenant", async () => {
      const res = await h.send(message("no-such-tenant"));
      expectProblem(res, "unknown_tenant");
      expect(networkCalls()).toBe(0);
    });

    it("when from is not the tenant's sender, then 403 sender_not_allowed and nothing is called", async () => {
      const res = await h.send(message("contoso", { from: "ceo@contoso.com" }));
      expectProblem(res, "sender_not_allowed");
      expect(networkCalls()).toBe(0);
    });

    it("when the message is over Graph's 4 MB as JSON, then 413 payload_too_large and nothing is sent", async () => {
      // 3.1 MiB of bytes is ~4.1 MiB of base64: under maxBodyBytes, over Graph's limit.
      const content = Buffer.alloc(3.1 * 1024 * 1024, 7).toString("base64");
      const res = await h.send(message("contoso", { attachments: [{ filename: "big.bin", contentType: "application/octet-stream", content }] }));
      expectProblem(res, "payload_too_large");
      expect(res.json.detail).toMatch(/4 MB/);
      expect(networkCalls()).toBe(0);
    });

    it("when the request body is over server.maxBodyBytes, then 413 payload_too_large as problem+json", async () => {
      const res = await h.send(message("contoso", { text: "x".repeat(h.config.server.maxBodyBytes + 1) }));
      expectProblem(res, "payload_too_large");
    });

    it("when a mailbox's daily recipient limit would be crossed, then 429 rate_limited with Retry-After, before Graph", async () => {
      expect((await h.send(message("contoso-quota", { to: ["a@example.com", "b@example.com"] }))).status).toBe(202);
      const before = h.emulator.state.requests({ kind: "sendMail" }).length;
      const res = await h.send(message("contoso-quota", { to: ["c@example.com", "d@example.com"] }));
      expectProblem(res, "rate_limited");
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(before);
    });
  });

  describe("refused by Entra ID or Graph", () => {
    it("when the tenant's access policy excludes the sender, then 403 policy_denied and the policy metric counts it", async () => {
      const res = await h.send(message("fabrikam"));
      expectProblem(res, "policy_denied");
      expect(res.json.graphCode).toBe("ErrorAccessDenied");
      expect(h.emulator.state.messages()).toHaveLength(0);
      const metrics = (await h.get("/metrics")).text;
      expect(metricValue(metrics, "noreply_relay_policy_denied_total", { tenant: "fabrikam" })).toBe(1);
      expect(metricValue(metrics, "noreply_relay_send_total", { tenant: "fabrikam", outcome: "policy_denied" })).toBe(1);
    });

    it("when the app has no Mail.Send consent in the tenant, then 502 permission_missing", async () => {
      expectProblem(await h.send(message("northwind")), "permission_missing");
    });

    it("when the sender mailbox is not enabled for REST, then 502 mailbox_unavailable", async () => {
      expectProblem(await h.send(message("adatum")), "mailbox_unavailable");
    });

    it("when Entra rejects the tenant's secret, then 502 credential_rejected with the AADSTS code", async () => {
      const res = await h.send(message("litware"));
      expectProblem(res, "credential_rejected");
      expect(res.json.aadsts).toBe("7000215");
    });

    it("when Graph rejects a recipient, then 422 recipient_rejected with Graph's reason", async () => {
      h.emulator.state.inject({
        kind: "sendMail",
        mailbox: "noreply@contoso.com",
        action: "respond",
        status: 400,
        times: 1,
        body: { error: { code: "ErrorInvalidRecipients", message: "At least one recipient is not valid., Recipient 'x@example.com' is not resolved." } },
      });
      const res = await h.send(message("contoso"));
      expectProblem(res, "recipient_rejected");
      expect(res.json.graphCode).toBe("ErrorInvalidRecipients");
    });

    it("when Graph keeps throttling past the deadline, then 429 rate_limited with Graph's Retry-After", async () => {
      h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@tailspin.com", action: "respond", status: 429, retryAfter: 120, times: 1 });
      const res = await h.send(message("tailspin"));
      expectProblem(res, "rate_limited");
      expect(res.headers.get("retry-after")).toBe("120");
      expect(h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(1);
    });

    it("when Graph answers 503 without Retry-After, then 503 upstream_unavailable with a Retry-After for the caller", async () => {
      h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@contoso.com", action: "respond", status: 503, times: 1 });
      const res = await h.send(message("contoso"));
      expectProblem(res, "upstream_unavailable");
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(h.emulator.state.messages()).toHaveLength(0);
    });

    it("when Graph stores the message but answers 504, then 504 outcome_unknown", async () => {
      h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@contoso.com", action: "acceptThen504", times: 1 });
      expectProblem(await h.send(message("contoso")), "outcome_unknown");
    });
  });

  describe("invalid requests", () => {
    it("when the body is not valid JSON, then 400 validation_failed as problem+json (never a 500)", async () => {
      const res = await h.send('{"tenant": "contoso", ');
      expectProblem(res, "validation_failed");
      expect(res.json.errors).toEqual([{ path: "(body)", message: expect.stringMatching(/not valid JSON/) }]);
      expect(networkCalls()).toBe(0);
    });

    it("when the body has a __proto__ or constructor.prototype key anywhere, then 400 validation_failed and nothing is polluted or sent", async () => {
      const mail = JSON.stringify(message("contoso")).slice(1, -1);
      const bodies = [
        `{${mail},"__proto__":{"isAdmin":true}}`,
        `{${mail},"\\u005f_proto__":{"isAdmin":true}}`,
        `{${mail},"headers":{"__proto__":"v"}}`,
        `{${mail},"attachments":[{"filename":"a.txt","contentType":"text/plain","content":"QQ==","__proto__":{"isAdmin":true}}]}`,
        `{${mail},"constructor":{"prototype":{"isAdmin":true}}}`,
      ];
      for (const body of bodies) {
        const res = await h.send(body, { headers: { "idempotency-key": `poison-${bodies.indexOf(body)}` } });
        expectProblem(res, "validation_failed");
        // The error names the key: "__proto__", "headers.__proto__", "attachments[0].__proto__", "constructor.prototype".
        expect(res.json.errors, body).toEqual([{ path: expect.stringMatching(/(?:^|\.)(?:__proto__|constructor\.prototype)$/), message: expect.stringMatching(/not accepted as a key/) }]);
      }
      expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
      expect(networkCalls()).toBe(0);
      expect((await h.send(`{${mail}}`)).status).toBe(202);
    });

    it("when the body is empty, then 400 validation_failed", async () => {
      expectProblem(await h.send(""), "validation_failed");
    });

    it("when the content type is not JSON, then 400 validation_failed", async () => {
      const res = await h.send(JSON.stringify(message()), { headers: { "content-type": "text/plain" } });
      expectProblem(res, "validation_failed");
      expect(res.json.errors[0].message).toMatch(/application\/json/);
    });

    it("when the body is JSON but not an object, then 400 naming the body", async () => {
      const res = await h.send("[1,2]");
      expectProblem(res, "validation_failed");
      expect(res.json.errors).toEqual([{ path: "(body)", message: "must be an object" }]);
    });

    it("when fields are wrong, then errors[] names each by its path", async () => {
      const res = await h.send({
        tenant: "contoso",
        to: ["ok@example.com", { address: "two@@example.com" }, "has space@example.com", `${"l".repeat(65)}@example.com`],
        cc: [42],
        subject: "Line\r\nBcc: evil@example.com",
        html: "<p>x</p>",
        headers: { "Y-Custom": "v", "X-Ok": "line\nbreak" },
        attachments: [{ filename: "a.txt", contentType: "text/plain", content: "not base64!" }],
        importance: "urgent",
        colour: "red",
      });
      expectProblem(res, "validation_failed");
      const byPath = Object.fromEntries((res.json.errors as { path: string; message: string }[]).map((e) => [e.path, e.message]));
      expect(byPath).toEqual({
        "to[1].address": "must contain exactly one @",
        "to[2]": "must not contain spaces, tabs or line breaks",
        "to[3]": "the part before @ must be 1 to 64 characters",
        "cc[0]": 'must be an address string or an object {"address", "name"}',
        subject: "must not contain line breaks",
        'headers["Y-Custom"]': expect.stringMatching(/start with X-/),
        'headers["X-Ok"]': "must not contain line breaks",
        "attachments[0].content": expect.stringMatching(/base64/),
        importance: expect.stringMatching(/low|normal|high/),
        colour: "unknown field",
      });
      expect(networkCalls()).toBe(0);
    });

    it("when rules across fields are broken, then each is reported at the field to fix", async () => {
      const headers = Object.fromEntries(["X-A", "X-B", "X-C", "X-D", "X-E", "x-a"].map((n) => [n, "1"]));
      const res = await h.send({
        tenant: "contoso",
        subject: "s",
        headers,
        attachments: [{ filename: "logo.png", contentType: "image/png", content: "AAAA", inline: true }],
      });
      expectProblem(res, "validation_failed");
      expect(res.json.errors).toEqual(
        expect.arrayContaining([
          { path: "to", message: "at least one recipient is required in to, cc or bcc" },
          { path: "text", message: "give text or html (or both)" },
          { path: "headers", message: "at most 5 custom headers (6 given)" },
          { path: 'headers["x-a"]', message: expect.stringMatching(/duplicate/) },
          { path: "attachments[0].contentId", message: "is required for an inline attachment" },
        ]),
      );
    });

    it("when more than 500 recipients are given, then 400 at to", async () => {
      const to = Array.from({ length: 300 }, (_, i) => `to${i}@example.com`);
      const bcc = Array.from({ length: 201 }, (_, i) => `bcc${i}@example.com`);
      const res = await h.send(message("contoso", { to, bcc }));
      expectProblem(res, "validation_failed");
      expect(res.json.errors).toEqual([{ path: "to", message: expect.stringMatching(/at most 500 recipients/) }]);
    });

    it("when required fields are missing, then each is named as required", async () => {
      const res = await h.send({ to: ["a@example.com"], text: "x" });
      expectProblem(res, "validation_failed");
      expect(res.json.errors).toEqual(
        expect.arrayContaining([
          { path: "tenant", message: "is required" },
          { path: "subject", message: "is required" },
        ]),
      );
    });
  });

  describe("other routes", () => {
    it("when a path does not exist, then 404 as problem+json", async () => {
      const res = await h.get("/nope?x=1");
      expect(res.status).toBe(404);
      expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
      expect(res.json.code).toBe("not_found");
    });

    it("when a route is called with the wrong method, then 405 with Allow, as problem+json", async () => {
      const res = await h.get("/send");
      expect(res.status).toBe(405);
      expect(res.headers.get("allow")).toBe("POST");
      expect(res.json.code).toBe("method_not_allowed");
    });
  });

  describe("malformed HTTP", () => {
    it("when the request is not valid HTTP, then the answer is still a 400 problem+json", async () => {
      const { port } = new URL(h.url);
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), "127.0.0.1", () => socket.write("NOT HTTP AT ALL\r\n\r\n"));
        let data = "";
        socket.setEncoding("utf8").on("data", (d: string) => (data += d));
        socket.on("end", () => resolve(data)).on("error", reject);
      });
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      expect(answer).toMatch(/Content-Type: application\/problem\+json/);
      expect(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4))).toMatchObject({ status: 400, code: "validation_failed" });
    });
  });

  it("when an Idempotency-Key is reused with another body, then 409 idempotency_conflict and nothing more is sent", async () => {
    const headers = { "idempotency-key": "problem-codes-conflict" };
    expect((await h.send(message("contoso", { subject: "first" }), { headers })).status).toBe(202);
    expectProblem(await h.send(message("contoso", { subject: "second" }), { headers }), "idempotency_conflict");
    expect(h.emulator.state.messages()).toHaveLength(1);
  });

  it("when all the scenarios above ran, then every problem code of the contract was produced", () => {
    const missing = PROBLEM_CODES.filter((c) => !produced.has(c));
    expect(missing).toEqual([]);
  });
});
