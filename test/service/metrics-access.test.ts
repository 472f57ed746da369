import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { metricValue, startHarness, type Harness } from "../support/harness.js";

/** A free loopback port (listen on 0, read it, close). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe("metrics on their own port (config metrics.port)", () => {
  let h: Harness;
  let port = 0;
  beforeAll(async () => {
    port = await freePort();
    h = await startHarness({ logLevel: "warn", configure: (c) => void (c.metrics = { port }) });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("when metrics.port is set, then GET /metrics answers there and the API port answers 404 for it", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(metricValue(await res.text(), "noreply_relay_inflight_sends")).toBe(0);
    expect((await fetch(`http://127.0.0.1:${port}/send`, { method: "POST" })).status).toBe(404);
    expect((await h.get("/metrics")).status).toBe(404);
  });
});
