import { writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/free-port.js";
import { metricValue, startHarness, type Harness } from "../support/harness.js";

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

describe("metrics.port listener limits", () => {
  let h: Harness;
  let port = 0;
  beforeAll(async () => {
    port = await freePort();
    h = await startHarness({
      logLevel: "warn",
      configure: (c) => {
        c.server = { ...c.server, http: { headersTimeoutSeconds: 1, requestTimeoutSeconds: 2 } };
        c.metrics = { port };
      },
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("when a client trickles its headers to metrics.port, then it gets 408 and is cut off like on the API port", async () => {
    const started = Date.now();
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, "127.0.0.1", () => socket.write("GET /metrics HTTP/1.1\r\nHost: x\r\n"));
      let data = "";
      socket.on("data", (c: Buffer) => (data += c.toString("latin1")));
      socket.on("close", () => resolve(data));
      socket.on("error", reject);
      setTimeout(() => reject(new Error("the metrics listener kept the connection open")), 8_000).unref();
    });
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe("an empty metrics token", () => {
  it("when metrics.tokenFile is empty, then start-up fails and says so instead of leaving /metrics open", async () => {
    await expect(
      startHarness({
        logLevel: "silent",
        configure: (c, dir) => void (c.metrics = { tokenFile: join(dir, "metrics-token") }),
        beforeLoad: (dir) => writeFile(join(dir, "metrics-token"), "\n"),
      }),
    ).rejects.toThrow(/tokenFile .*metrics-token is empty/);
  });

  it("when metrics.tokenEnv names an unset variable, then loading the config fails", async () => {
    await expect(startHarness({ logLevel: "silent", configure: (c) => void (c.metrics = { tokenEnv: "NRR_TEST_UNSET_METRICS_TOKEN" }), env: {} })).rejects.toThrow(
      /metrics\.tokenEnv: environment variable NRR_TEST_UNSET_METRICS_TOKEN is not set/,
    );
  });
});
