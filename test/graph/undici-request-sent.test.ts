import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Agent, type Dispatcher } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/*
 * src/graph/graph-middleware.ts tells "Graph cannot have seen it" from "Graph may have sent it"
 * by undici calling the handler's onRequestSent once the whole request is on the socket. undici
 * does not declare that hook in its types, so package.json pins undici exactly, and this test
 * fails when an upgrade stops calling it, or calls it at the wrong moment.
 */

let server: Server;
let origin = "";
beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.end("ok"));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

/** Dispatches one POST and records the order in which undici calls the handler. */
function dispatch(path: string, body: string, to = origin): Promise<string[]> {
  const agent = new Agent();
  const events: string[] = [];
  return new Promise<string[]>((resolve) => {
    const handler = {
      onConnect: () => events.push("connect"),
      onRequestSent: () => events.push("requestSent"),
      onHeaders: () => (events.push("headers"), true),
      onData: () => true,
      onComplete: () => resolve(events),
      onError: () => (events.push("error"), resolve(events)),
    } as unknown as Dispatcher.DispatchHandler;
    agent.dispatch({ origin: to, path, method: "POST", body, headers: { "content-type": "text/plain" } }, handler);
  }).finally(() => agent.close());
}

describe("undici's onRequestSent", () => {
  it("when a request with a body is answered, then onRequestSent comes once, after connecting and before the answer's headers", async () => {
    const events = await dispatch("/", "x".repeat(200_000));
    expect(events.filter((e) => e === "requestSent")).toHaveLength(1);
    expect(events.indexOf("connect")).toBeLessThan(events.indexOf("requestSent"));
    expect(events.indexOf("requestSent")).toBeLessThan(events.indexOf("headers"));
  });

  it("when the connection fails before anything is written, then the request is not reported as sent", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const events = await dispatch("/", "x", `http://127.0.0.1:${port}`);
    expect(events).toEqual(["error"]);
  });
});
