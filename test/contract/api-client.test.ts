import express from "express";
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from "vitest";
import { registerDocsRoutes } from "../../src/http/docs-routes.js";
import { createApiClient, type ProblemCode, type SendAccepted } from "../support/api-client.js";
import { loadOpenApiValidator } from "../support/openapi-validator.js";
import { listenApp, routeApp } from "../support/route-app.js";

/* The typed client against stand-in routes: it sends what the spec describes and checks what comes back. */

const accepted: SendAccepted = {
  id: "0b8f2d6e-3c1a-4e59-8f7d-2a6b9c4e1f03",
  internetMessageId: "<0b8f2d6e@contoso.com>",
  tenant: "contoso",
  sender: "noreply@contoso.com",
  acceptedAt: "2025-01-15T09:30:00.000Z",
};

describe("api client", () => {
  const seen: { authorization?: string; idempotencyKey?: string; body: unknown }[] = [];
  let base = "";
  let close = (): Promise<void> => Promise.resolve();

  beforeAll(async () => {
    // UUID request ids in X-Request-Id, as the relay's app gives every answer (routeApp does too).
    const app = await routeApp(async (routes, raw) => {
      raw.use(express.json());
      await registerDocsRoutes(routes, {});
      routes.post("/send", (req, res) => {
        seen.push({
          authorization: req.headers.authorization,
          idempotencyKey: req.headers["idempotency-key"] as string | undefined,
          body: req.body as unknown,
        });
        if (req.headers.authorization === undefined) {
          res.status(401).type("application/problem+json; charset=utf-8").send(
            JSON.stringify({
              type: "https://noreply-relay.dev/problems/unauthorized",
              title: "Missing or unknown API key",
              status: 401,
              detail: "send the API key as Authorization: Bearer <key>",
              code: "unauthorized",
              retryable: false,
              requestId: res.getHeader("x-request-id"),
            }),
          );
          return;
        }
        // Drifted on purpose when asked: a 202 without internetMessageId.
        if ((req.body as { subject?: string }).subject === "drift") {
          res.status(202).json({ ...accepted, internetMessageId: undefined });
          return;
        }
        res.status(202).json(accepted);
      });
    });
    ({ url: base, close } = await listenApp(app));
  });
  afterAll(() => close());

  const validator = loadOpenApiValidator();

  it("when a message is sent, then the key, the Idempotency-Key and the body arrive and the 202 body is typed", async () => {
    const relay = createApiClient({ baseUrl: base, apiKey: "k-1", validator });
    const res = await relay.send({ tenant: "contoso", to: ["a@example.com"], subject: "Hi", text: "Hello" }, { idempotencyKey: "idem-1" });
    expect(res.status).toBe(202);
    if (res.status === 202) {
      expectTypeOf(res.body).toEqualTypeOf<SendAccepted>();
      expect(res.body.internetMessageId).toBe(accepted.internetMessageId);
    }
    expect(seen.at(-1)).toEqual({ authorization: "Bearer k-1", idempotencyKey: "idem-1", body: { tenant: "contoso", to: ["a@example.com"], subject: "Hi", text: "Hello" } });
  });

  it("when the call is made without a key, then the problem body is typed by its status", async () => {
    const relay = createApiClient({ baseUrl: base, apiKey: "k-1", validator });
    const res = await relay.send({ tenant: "contoso", to: ["a@example.com"], subject: "Hi", text: "Hello" }, { apiKey: null });
    expect(res.status).toBe(401);
    if (res.status === 401) {
      expectTypeOf(res.body.code).toEqualTypeOf<ProblemCode & "unauthorized">();
      expect(res.body.code).toBe("unauthorized");
    }
  });

  it("when the relay answers something the spec does not describe, then the call throws naming the mismatch", async () => {
    const relay = createApiClient({ baseUrl: base, apiKey: "k-1", validator });
    await expect(relay.send({ tenant: "contoso", to: ["a@example.com"], subject: "drift", text: "x" })).rejects.toThrow(
      /POST \/send → 202: body must have required property 'internetMessageId'/,
    );
  });

  it("when the spec and the docs page are fetched, then they are text and conform", async () => {
    const relay = createApiClient({ baseUrl: base, validator });
    const spec = await relay.openApi();
    expect(spec.status).toBe(200);
    expect(spec.body).toMatch(/^openapi: 3\.1\.0/);
    expect((await relay.docs()).body).toContain("swagger-ui");
  });
});
