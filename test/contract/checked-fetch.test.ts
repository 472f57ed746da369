import { randomUUID } from "node:crypto";
import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkedFetch } from "../support/checked-fetch.js";

/*
 * The harness's http() goes through checkedFetch, so every answer a service test receives is
 * checked. That is only worth something if checkedFetch really refuses drift: shown here against
 * a stand-in that answers well or badly on request.
 */

const PROBLEM = "application/problem+json; charset=utf-8";

describe("checkedFetch", () => {
  const app = Fastify({ genReqId: () => randomUUID() });
  let base = "";

  beforeAll(async () => {
    app.addHook("onRequest", (request, reply, done) => {
      reply.header("x-request-id", request.id);
      done();
    });
    app.get("/healthz", async (request, reply) => {
      const mode = (request.query as { mode?: string }).mode;
      if (mode === "drift") return reply.send({ healthy: true });
      if (mode === "no-id") return reply.removeHeader("x-request-id").send({ status: "ok" });
      return reply.send({ status: "ok" });
    });
    app.post("/send", async (request, reply) =>
      reply
        .code(401)
        .type(PROBLEM)
        .send({
          type: "https://noreply-relay.dev/problems/unauthorized",
          title: "Missing or unknown API key",
          status: 401,
          detail: "d",
          code: "unauthorized",
          retryable: false,
          // Another request's id when asked: the body and the header must agree.
          requestId: request.headers["x-mismatch"] === undefined ? request.id : randomUUID(),
        }),
    );
    base = await app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(() => app.close());

  it("when the answer conforms, then it is returned unread", async () => {
    const res = await checkedFetch(`${base}/healthz`);
    expect(await res.json()).toEqual({ status: "ok" });
  });

  it("when the body drifts from openapi.yaml, then it throws naming the mismatch and showing the body", async () => {
    await expect(checkedFetch(`${base}/healthz?mode=drift`)).rejects.toThrow(
      /GET \/healthz → 200: body must have required property 'status'[\s\S]*body: \{"healthy":true\}/,
    );
  });

  it("when X-Request-Id is missing, then it throws", async () => {
    await expect(checkedFetch(`${base}/healthz?mode=no-id`)).rejects.toThrow(/header X-Request-Id is required but missing/);
  });

  it("when a problem's requestId is not the X-Request-Id header, then it throws", async () => {
    await expect(checkedFetch(`${base}/send`, { method: "POST", headers: { "x-mismatch": "1" } })).rejects.toThrow(/body\/requestId .* is not the X-Request-Id header/);
    expect((await checkedFetch(`${base}/send`, { method: "POST" })).status).toBe(401);
  });

  it("when a path the spec does not list answers fastify's own 404, then it throws because the relay promises a not_found problem", async () => {
    await expect(checkedFetch(`${base}/nope`)).rejects.toThrow(/GET \/nope → 404: content-type .* is not application\/problem\+json/);
  });

  it("when a test opts out with a reason, then the answer is not checked; without a reason, then it throws", async () => {
    const res = await checkedFetch(`${base}/healthz?mode=drift`, { offSpec: "shows that the opt-out skips the check" });
    expect(await res.json()).toEqual({ healthy: true });
    await expect(checkedFetch(`${base}/healthz`, { offSpec: " " })).rejects.toThrow(/offSpec needs a reason/);
  });
});
