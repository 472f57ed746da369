import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listenApp, routeApp } from "../support/route-app.js";
import { registerDocsRoutes } from "../../src/http/docs-routes.js";
import { createOpenApiValidator, loadOpenApiValidator, type OpenApiDocument } from "../support/openapi-validator.js";

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

  it("when a problem+json or text answer drifts, then it is caught although openapi-backend itself checks only application/json", () => {
    const headers = { "x-request-id": RID, "content-type": PROBLEM };
    expect(validator.validateResponse({ method: "GET", path: "/tenants", status: 403, headers, body: { ...problem("tenant_forbidden", 403), detail: 7 } })).toEqual([
      "GET /tenants → 403: body/detail must be string",
    ]);
    const metrics = { "x-request-id": RID, "content-type": "text/plain; version=0.0.4; charset=utf-8" };
    expect(validator.validateResponse({ method: "GET", path: "/metrics", status: 200, headers: metrics, body: "up 1\n" })).toEqual([]);
    expect(validator.validateResponse({ method: "GET", path: "/metrics", status: 200, headers: metrics, body: "" })).toEqual([
      "GET /metrics → 200: body is empty but text/plain is documented",
    ]);
  });

  it("when any response or request openapi.yaml documents is checked, then its schemas compile", () => {
    for (const [path, item] of Object.entries(validator.spec.paths ?? {})) {
      for (const [method, operation] of Object.entries(item)) {
        if (typeof operation !== "object" || operation === null || !("responses" in operation)) continue;
        expect(() => validator.validateRequest({ method, path, headers: { "content-type": "application/json" }, body: {} }), `${method} ${path}`).not.toThrow();
        for (const status of Object.keys((operation as { responses: object }).responses)) {
          for (const contentType of ["application/json", PROBLEM, "text/plain", "text/html", "application/yaml"]) {
            expect(() => validator.validateResponse({ method, path, status: Number(status), headers: { "content-type": contentType }, body: "{}" }), `${method} ${path} ${status}`).not.toThrow();
          }
        }
      }
    }
  });
});

/* What openapi-backend is relied on for, and what the shims add, on OpenAPI 3.1 features openapi.yaml does not (yet) use. */
describe("openapi validator on an OpenAPI 3.1 document", () => {
  const doc = {
    openapi: "3.1.0",
    info: { title: "t", version: "1" },
    paths: {
      "/items/{id}": {
        get: {
          operationId: "getItem",
          parameters: [
            { name: "id", in: "path", required: true, schema: { type: "string", pattern: "^[0-9]+$" } },
            { name: "limit", in: "query", schema: { type: "integer" } },
          ],
          responses: {
            "200": {
              description: "ok",
              headers: { "X-Trace": { required: true, schema: { type: "string" } }, "X-Count": { schema: { type: "integer" } } },
              content: { "application/json": { schema: { $ref: "#/components/schemas/Item", required: ["note"] } } },
            },
            "4XX": { description: "refused", content: { "application/problem+json": { schema: { type: "object", properties: { status: { maximum: 499 } }, required: ["status"] } } } },
            default: { description: "other", content: { "text/plain": { schema: { type: "string", minLength: 2 } } } },
          },
        },
      },
      "/items/new": { get: { operationId: "newItem", responses: { "204": { description: "nothing" } } } },
    },
    components: {
      schemas: {
        Item: {
          type: "object",
          properties: { name: { type: ["string", "null"], examples: ["a"] }, kind: { const: "item" }, at: { type: "string", format: "date-time" }, note: { type: "string" } },
          required: ["name", "kind"],
        },
      },
    },
  } as unknown as OpenApiDocument;
  const v = createOpenApiValidator(doc);
  const ok = { "x-trace": "t", "content-type": "application/json" };

  it("when a body uses null unions, const and formats, then they are checked as JSON Schema 2020-12", () => {
    expect(v.validateResponse({ method: "GET", path: "/items/1", status: 200, headers: ok, body: { name: null, kind: "item", note: "" } })).toEqual([]);
    expect(v.validateResponse({ method: "GET", path: "/items/1", status: 200, headers: ok, body: { name: 1, kind: "thing", at: "noon", note: "" } })).toEqual([
      "GET /items/1 → 200: body/name must be string,null",
      'GET /items/1 → 200: body/kind must be equal to constant ({"allowedValue":"item"})',
      'GET /items/1 → 200: body/at must match format "date-time"',
    ]);
  });

  it("when a $ref has sibling keywords, then they apply too", () => {
    expect(v.validateResponse({ method: "GET", path: "/items/1", status: 200, headers: ok, body: { name: "a", kind: "item" } })).toEqual([
      "GET /items/1 → 200: body must have required property 'note'",
    ]);
  });

  it("when a header is optional, then only its value is checked; when required, then its absence is reported", () => {
    const body = { name: "a", kind: "item", note: "" };
    expect(v.validateResponse({ method: "GET", path: "/items/1", status: 200, headers: ok, body })).toEqual([]);
    expect(v.validateResponse({ method: "GET", path: "/items/1", status: 200, headers: { "content-type": "application/json", "x-count": "many" }, body })).toEqual([
      "GET /items/1 → 200: header X-Trace is required but missing",
      "GET /items/1 → 200: header X-Count must be integer",
    ]);
  });

  it("when the status falls to 4XX or default, then that response's media type and schema apply", () => {
    expect(v.validateResponse({ method: "GET", path: "/items/1", status: 404, headers: { "content-type": "application/problem+json" }, body: { status: 404 } })).toEqual([]);
    expect(v.validateResponse({ method: "GET", path: "/items/1", status: 409, headers: { "content-type": "application/problem+json" }, body: { status: 500 } })).toEqual([
      "GET /items/1 → 409: body/status must be <= 499",
    ]);
    expect(v.validateResponse({ method: "GET", path: "/items/1", status: 503, headers: { "content-type": "text/plain" }, body: "x" })).toEqual([
      "GET /items/1 → 503: body must NOT have fewer than 2 characters",
    ]);
    expect(v.validateResponse({ method: "GET", path: "/items/new", status: 500 })).toEqual(["GET /items/new → 500: status 500 is not documented (documented: 204)"]);
  });

  it("when a response documents no content, then a body is reported", () => {
    expect(v.validateResponse({ method: "GET", path: "/items/new", status: 204 })).toEqual([]);
    expect(v.validateResponse({ method: "GET", path: "/items/new", status: 204, body: "x" })).toEqual(["GET /items/new → 204: has a body but the description documents none"]);
  });

  it("when paths are matched, then a concrete path wins over a template and a trailing slash is another path", () => {
    expect(v.findOperation("GET", "/items/new")?.operation.operationId).toBe("newItem");
    expect(v.findOperation("GET", "/items/7")?.operation.operationId).toBe("getItem");
    expect(v.findOperation("GET", "/items/new/")).toBeUndefined();
  });

  it("when a request's parameters are wrong or undescribed, then each is reported", () => {
    expect(v.validateRequest({ method: "GET", path: "/items/12?limit=3" })).toEqual([]);
    expect(v.validateRequest({ method: "GET", path: "/items/ab?limit=x&extra=1", body: "x" })).toEqual([
      'GET /items/ab: path parameter id must match pattern "^[0-9]+$"',
      "GET /items/ab: query parameter extra is not described",
      "GET /items/ab: query parameter limit must be integer",
      "GET /items/ab: has a body but the description documents none",
    ]);
  });

  it("when a $ref points nowhere, then loading says which", () => {
    const broken = structuredClone(doc);
    (broken.paths!["/items/new"]!.get as { responses: object }).responses = { "200": { $ref: "#/components/responses/Gone" } };
    expect(() => createOpenApiValidator(broken)).toThrow("$ref #/components/responses/Gone points nowhere");
  });
});

describe("openapi validator over real HTTP", () => {
  let base = "";
  let close = (): Promise<void> => Promise.resolve();
  beforeAll(async () => {
    // UUID X-Request-Id on every answer, as the relay's app does (routeApp too).
    ({ url: base, close } = await listenApp(await routeApp((routes) => registerDocsRoutes(routes, {}))));
  });
  afterAll(() => close());

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
