import { randomUUID } from "node:crypto";
import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerDocsRoutes } from "../../src/http/docs-routes.js";
import { loadOpenApiValidator } from "../support/openapi-validator.js";

/* The helper must catch drift, or the contract tests built on it prove nothing. */

const validator = loadOpenApiValidator();
const PROBLEM = "application/problem+json; charset=utf-8";
const RID = "5b0f3c1e-7a3d-4e8b-b1c6-5d0e2f3a4b5c";
const accepted = {
  id: "0b8f2d6e-3c1a-4e59-8f7d-2a6b9c4e1f03",
  internetMessageId: "<0b8f2d6e@contoso.com>",
  tenant: "contoso",
  sender: "noreply@contoso.com",
  acceptedAt: "2025-01-15T09:30:00.000Z",
};
function problem(code: string, status: number, extra: Record<string, unknown> = {}) {
  return { type: `https://noreply-relay.dev/problems/${code}`, title: "t", status, detail: "d", code, retryable: false, requestId: RID, ...extra };
}

describe("openapi validator", () => {
  it("when a 202 has the documented body, then there are no errors", () => {
    expect(validator.validateResponse({ method: "POST", path: "/send", status: 202, headers: { "x-request-id": RID, "content-type": "application/json" }, body: accepted })).toEqual([]);
  });

  it("when the body is raw JSON text, then it is parsed before validation", () => {
    expect(validator.validateResponse({ method: "post", path: "/send", status: 202, headers: { "x-request-id": RID, "content-type": "application/json; charset=utf-8" }, body: JSON.stringify(accepted) })).toEqual([]);
  });

  it("when a 202 lacks a field or has a malformed one, then each is reported", () => {
    const { acceptedAt: _, ...rest } = accepted;
    const errors = validator.validateResponse({ method: "POST", path: "/send", status: 202, headers: { "x-request-id": RID, "content-type": "application/json" }, body: { ...rest, id: "42" } });
    expect(errors).toEqual([
      "POST /send → 202: body must have required property 'acceptedAt'",
      'POST /send → 202: body/id must match format "uuid"',
    ]);
  });

  it("when the status is not documented for the operation, then that is the error", () => {
    expect(validator.validateResponse({ method: "POST", path: "/send", status: 418 })).toEqual([
      expect.stringMatching(/^POST \/send → 418: status 418 is not documented/),
    ]);
  });

  it("when the path or method is not described, then that is the error", () => {
    expect(validator.validateResponse({ method: "GET", path: "/nowhere", status: 200 })).toEqual(["GET /nowhere → 200: /nowhere is not a path of the description"]);
    expect(validator.validateResponse({ method: "DELETE", path: "/send", status: 200 })).toEqual([
      "DELETE /send → 200: DELETE /send is not described (methods: POST)",
    ]);
  });

  it("when a 429 has no Retry-After, then it is reported; when the header is there, then it is checked as an integer", () => {
    const body = problem("rate_limited", 429, { retryable: true });
    expect(validator.validateResponse({ method: "POST", path: "/send", status: 429, headers: { "x-request-id": RID, "content-type": PROBLEM }, body })).toEqual([
      "POST /send → 429: header Retry-After is required but missing",
    ]);
    expect(validator.validateResponse({ method: "POST", path: "/send", status: 429, headers: { "x-request-id": RID, "content-type": PROBLEM, "retry-after": "30" }, body })).toEqual([]);
    expect(validator.validateResponse({ method: "POST", path: "/send", status: 429, headers: { "x-request-id": RID, "content-type": PROBLEM, "retry-after": "soon" }, body })).toEqual([
      "POST /send → 429: header Retry-After must be integer",
    ]);
  });

  it("when a problem's code belongs to another status, then it is reported", () => {
    const errors = validator.validateResponse({ method: "POST", path: "/send", status: 403, headers: { "x-request-id": RID, "content-type": PROBLEM }, body: problem("unknown_tenant", 403) });
    expect(errors).toEqual([expect.stringContaining("POST /send → 403: body/code must be equal to one of the allowed values")]);
  });

  it("when validation_failed has no errors[] or credential_rejected no aadsts, then it is reported", () => {
    expect(validator.validateResponse({ method: "POST", path: "/send", status: 400, headers: { "x-request-id": RID, "content-type": PROBLEM }, body: problem("validation_failed", 400) })).toEqual([
      "POST /send → 400: body must have required property 'errors'",
    ]);
    expect(validator.validateResponse({ method: "POST", path: "/send", status: 502, headers: { "x-request-id": RID, "content-type": PROBLEM }, body: problem("credential_rejected", 502) })).toEqual([
      "POST /send → 502: body must have required property 'aadsts'",
    ]);
  });

  it("when an error answers application/json instead of problem+json, then the content type is reported", () => {
    expect(validator.validateResponse({ method: "POST", path: "/send", status: 401, headers: { "x-request-id": RID, "content-type": "application/json" }, body: problem("unauthorized", 401) })).toEqual([
      "POST /send → 401: content-type application/json is not documented (documented: application/problem+json)",
    ]);
  });

  it("when a request has an overlong Idempotency-Key or an unknown field, then both are reported", () => {
    const errors = validator.validateRequest({
      method: "POST",
      path: "/send",
      headers: { "x-request-id": RID, "content-type": "application/json", "idempotency-key": "k".repeat(256) },
      body: { tenant: "contoso", to: ["a@example.com"], subject: "s", text: "t", bodyText: "x" },
    });
    expect(errors).toEqual([
      "POST /send: header parameter Idempotency-Key must NOT have more than 255 characters",
      "POST /send request: body must NOT have additional properties (bodyText)",
    ]);
  });

  it("when an answer belongs to no operation, then it can be checked against a component schema", () => {
    expect(validator.validateComponent("Problem", problem("not_found", 404))).toEqual([]);
    expect(validator.validateComponent("Problem", { ...problem("not_found", 404), code: "gone" })).toEqual([
      expect.stringMatching(/^Problem\/code must be equal to one of the allowed values/),
    ]);
    expect(() => validator.validateComponent("Nope", {})).toThrow(/no components.schemas.Nope/);
  });

  it("when an answer lacks X-Request-Id or carries one that is not a UUID, then it is reported", () => {
    expect(validator.validateResponse({ method: "POST", path: "/send", status: 202, headers: { "content-type": "application/json" }, body: accepted })).toEqual([
      "POST /send → 202: header X-Request-Id is required but missing",
    ]);
    expect(validator.validateResponse({ method: "GET", path: "/healthz", status: 200, headers: { "x-request-id": "req-1", "content-type": "application/json" }, body: { status: "ok" } })).toEqual([
      'GET /healthz → 200: header X-Request-Id must match format "uuid"',
    ]);
  });

  it("when the spec is revalidated, then a 304 without a body and with its ETag conforms, and one without ETag does not", () => {
    const etag = '"abc"';
    expect(validator.validateResponse({ method: "GET", path: "/openapi.yaml", status: 304, headers: { "x-request-id": RID, etag } })).toEqual([]);
    expect(validator.validateResponse({ method: "GET", path: "/docs", status: 304, headers: { "x-request-id": RID } })).toEqual(["GET /docs → 304: header ETag is required but missing"]);
  });

  it("when a path is not described, then only a 404 not_found problem with X-Request-Id conforms", () => {
    const headers = { "x-request-id": RID, "content-type": PROBLEM };
    expect(validator.validateAnyResponse({ method: "GET", path: "/nope?x=1", status: 404, headers, body: problem("not_found", 404) })).toEqual([]);
    expect(validator.validateAnyResponse({ method: "GET", path: "/nope", status: 200, headers, body: "" })).toEqual([
      "GET /nope → 200: /nope is not a path of the description, so only 404 not_found may answer it",
    ]);
    expect(validator.validateAnyResponse({ method: "GET", path: "/nope", status: 404, headers: { "content-type": PROBLEM }, body: problem("unknown_tenant", 404) })).toEqual([
      "GET /nope → 404: header X-Request-Id is required but missing",
      "GET /nope → 404: body/code must be not_found, got \"unknown_tenant\"",
    ]);
    expect(validator.validateAnyResponse({ method: "GET", path: "/nope", status: 404, headers: { "x-request-id": RID, "content-type": "text/plain" }, body: "Not Found" })).toEqual([
      "GET /nope → 404: content-type text/plain is not application/problem+json",
    ]);
  });

  it("when a described path is called with another method, then only a 405 method_not_allowed problem naming the methods in Allow conforms", () => {
    const headers = { "x-request-id": RID, "content-type": PROBLEM, allow: "POST" };
    expect(validator.validateAnyResponse({ method: "GET", path: "/send", status: 405, headers, body: problem("method_not_allowed", 405) })).toEqual([]);
    expect(validator.validateAnyResponse({ method: "GET", path: "/send", status: 405, headers: { ...headers, allow: "GET" }, body: { ...problem("method_not_allowed", 405), detail: 7 } })).toEqual([
      "GET /send → 405: header Allow must name POST",
      "GET /send → 405: body Problem/detail must be string",
    ]);
    expect(validator.validateAnyResponse({ method: "GET", path: "/send", status: 404, headers, body: problem("not_found", 404) })).toEqual([
      "GET /send → 404: GET /send is not described (methods: POST), so only 405 method_not_allowed may answer it",
    ]);
  });

  it("when validateAnyResponse gets an answer of a described operation, then it checks it like validateResponse", () => {
    expect(validator.validateAnyResponse({ method: "POST", path: "/send", status: 418, headers: { "x-request-id": RID } })).toEqual([
      expect.stringMatching(/^POST \/send → 418: status 418 is not documented/),
    ]);
  });

  it("when the path carries a query string, then the operation is still found", () => {
    expect(validator.findOperation("GET", "/tenants?verbose=1")?.operation.operationId).toBe("listTenants");
  });
});

describe("openapi validator over real HTTP", () => {
  const app = Fastify();
  let base = "";
  beforeAll(async () => {
    // As the relay's app does for every answer (src/app.ts).
    app.addHook("onRequest", (_request, reply, done) => {
      reply.header("x-request-id", randomUUID());
      done();
    });
    await registerDocsRoutes(app, {});
    base = await app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(() => app.close());

  it("when the served /openapi.yaml and /docs are validated, then they conform and stay readable", async () => {
    for (const path of ["/openapi.yaml", "/docs"]) {
      const res = await fetch(`${base}${path}`);
      await validator.assertFetchResponse("GET", res);
      expect((await res.text()).length).toBeGreaterThan(0);
      const again = await fetch(`${base}${path}`, { headers: { "if-none-match": res.headers.get("etag") ?? "" } });
      expect(again.status).toBe(304);
      await validator.assertFetchResponse("GET", again);
    }
  });
});
