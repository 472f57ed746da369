import type { IncomingMessage, ServerResponse } from "node:http";
import { IncomingMessage as NodeIncomingMessage, ServerResponse as NodeServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { message } from "../support/fixtures.js";
import { startHarness, type Harness } from "../support/harness.js";

// express gives every request and response its app's prototypes. Changing a live object's
// prototype made a fifth of each request's allocations outlive V8's young generation (see
// createListener in src/http/listener.ts); the listener makes them with those prototypes instead.
describe("requests and responses are born with express's prototypes", () => {
  let h: Harness;
  const seen: { req: object | null; res: object | null; reqIsNode: boolean; resIsNode: boolean }[] = [];

  beforeAll(async () => {
    h = await startHarness();
    // Before express's handler: what Node made, before anything could change it.
    h.relay.server.prependListener("request", (req: IncomingMessage, res: ServerResponse) => {
      seen.push({ req: Object.getPrototypeOf(req) as object | null, res: Object.getPrototypeOf(res) as object | null, reqIsNode: req instanceof NodeIncomingMessage, resIsNode: res instanceof NodeServerResponse });
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("when a send and a probe arrive, then both had express's request and response prototypes from the start, and are still Node's classes", async () => {
    expect((await h.send(message("contoso"))).status).toBe(202);
    expect((await h.get("/healthz")).status).toBe(200);
    expect(seen).toHaveLength(2);
    for (const s of seen) {
      expect(s.req).toBe(h.relay.express.request);
      expect(s.res).toBe(h.relay.express.response);
      expect(s.reqIsNode).toBe(true);
      expect(s.resIsNode).toBe(true);
    }
  });
});
