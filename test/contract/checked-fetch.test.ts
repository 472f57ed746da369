import { randomUUID } from "node:crypto";
import type { Express } from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkedFetch } from "../support/checked-fetch.js";
import { checkedRequest } from "../support/checked-request.js";
import { listenApp, routeApp } from "../support/route-app.js";

/*
 * The harness's http() goes through checkedFetch, so every answer a service test receives is
 * checked. That is only worth something if checkedFetch really refuses drift: shown here against
 * a stand-in that answers well or badly on request.
 */

const PROBLEM = "application/problem+json; charset=utf-8";

/** A stand-in relay that answers well or badly on request. */
function standIn(): Promise<Express> {
  return routeApp((routes) => {
    routes.get("/healthz", (req, res) => {
      const mode = req.query.mode;
      if (mode === "drift") res.json({ healthy: true });
      else if (mode === "no-id") {
        res.removeHeader("x-request-id");
        res.json({ status: "ok" });
      } else res.json({ status: "ok" });
    });
    routes.post("/send", (req, res) => {
      res
        .status(401)
        .type(PROBLEM)
        .send(
          JSON.stringify({
            type: "https://noreply-relay.dev/problems/unauthorized",
            title: "Missing or unknown API key",
            status: 401,
            detail: "d",
            code: "unauthorized",
            retryable: false,
            // Another request's id when asked: the body and the header must agree.
            requestId: req.headers["x-mismatch"] === undefined ? res.getHeader("x-request-id") : randomUUID(),
          }),
        );
    });
  });
}

describe("checkedFetch", () => {
  let base = "";
  let close = (): Promise<void> => Promise.resolve();

  beforeAll(async () => {
    ({ url: base, close } = await listenApp(await standIn()));
  });
  afterAll(() => close());

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

  it("when a path the spec does not list answers a plain 404, then it throws because the relay promises a not_found problem", async () => {
    await expect(checkedFetch(`${base}/nope`)).rejects.toThrow(/GET \/nope → 404: content-type .* is not application\/problem\+json/);
  });

  it("when a test opts out with a reason, then the answer is not checked; without a reason, then it throws", async () => {
    const res = await checkedFetch(`${base}/healthz?mode=drift`, { offSpec: "shows that the opt-out skips the check" });
    expect(await res.json()).toEqual({ healthy: true });
    await expect(checkedFetch(`${base}/healthz`, { offSpec: " " })).rejects.toThrow(/offSpec needs a reason/);
  });
});

describe("checkedRequest (supertest)", () => {
  let app: Express;
  beforeAll(async () => {
    app = await standIn();
  });

  it("when the answer conforms, then it is returned", async () => {
    expect((await checkedRequest(app).get("/healthz")).json).toEqual({ status: "ok" });
  });

  it("when the body drifts, a header is missing or a problem's requestId differs, then it throws naming the mismatch", async () => {
    await expect(checkedRequest(app).get("/healthz?mode=drift")).rejects.toThrow(/GET \/healthz → 200: body must have required property 'status'/);
    await expect(checkedRequest(app).get("/healthz?mode=no-id")).rejects.toThrow(/header X-Request-Id is required but missing/);
    await expect(checkedRequest(app).post("/send", { headers: { "x-mismatch": "1" } })).rejects.toThrow(/is not the X-Request-Id header/);
    await expect(checkedRequest(app).get("/nope")).rejects.toThrow(/GET \/nope → 404/);
  });

  it("when a test opts out with a reason, then the answer is not checked; without a reason, then it throws", async () => {
    expect((await checkedRequest(app).get("/healthz?mode=drift", { offSpec: "shows that the opt-out skips the check" })).json).toEqual({ healthy: true });
    await expect(checkedRequest(app).get("/healthz", { offSpec: " " })).rejects.toThrow(/offSpec needs a reason/);
  });
});
