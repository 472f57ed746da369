import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { consentRoutes } from "../../src/http/consent-routes.js";
import { tenantsRoute } from "../../src/http/tenants-route.js";
import { message } from "../support/fixtures.js";
import { metricValue, startHarness, type Harness } from "../support/harness.js";
import { specValidator } from "../support/checked-fetch.js";

/*
 * The HTTP edge against clients that do not play by the rules, over raw sockets: nothing is read
 * for a request that will be refused, slow clients are cut off, one client cannot take every
 * connection, Node's own refusals are problem+json, and 100 Continue is only for a caller that
 * may send. Every answer here is parsed from the wire and checked against openapi.yaml where the
 * spec describes it.
 */

let h: Harness;
let port = 0;
const TOKEN = "metrics-token-for-the-hostile-http-test";

beforeAll(async () => {
  h = await startHarness({
    logLevel: "info",
    routes: [tenantsRoute, consentRoutes],
    configure: (c) => {
      c.server = { ...c.server, http: { headersTimeoutSeconds: 1, requestTimeoutSeconds: 2, maxConnectionsPerClient: 12 } };
      c.metrics = { tokenEnv: "NRR_TEST_METRICS_TOKEN" };
    },
    env: { NRR_TEST_METRICS_TOKEN: TOKEN },
  });
  port = Number(new URL(h.url).port);
});
afterAll(async () => {
  await h?.close();
});

interface RawAnswer {
  readonly statusLine: string;
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  /** Whether the server closed the connection after the answer. */
  readonly closed: boolean;
  readonly raw: string;
}

/** Opens a connection, writes `head` (and then whatever `afterConnect` writes), collects the first answer. */
function rawExchange(head: string, options: { then?: (socket: Socket) => void; waitMs?: number } = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(head);
      options.then?.(socket);
    });
    let data = "";
    let closed = false;
    const finish = (): void => {
      clearTimeout(timer);
      const end = data.indexOf("\r\n\r\n", data.startsWith("HTTP/1.1 100") ? data.indexOf("\r\n\r\n") + 4 : 0);
      const start = data.startsWith("HTTP/1.1 100") ? data.indexOf("\r\n\r\n") + 4 : 0;
      const headLines = data.slice(start, end).split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of headLines.slice(1)) {
        const i = line.indexOf(":");
        if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      const body = end >= 0 ? data.slice(end + 4, end + 4 + Number(headers["content-length"] ?? data.length)) : "";
      resolve({ statusLine: headLines[0] ?? "", status: Number((headLines[0] ?? "").split(" ")[1]), headers, body, closed, raw: data });
      socket.destroy();
    };
    const timer = setTimeout(finish, options.waitMs ?? 5000);
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => {
      data += d;
      const start = data.startsWith("HTTP/1.1 100") ? data.indexOf("\r\n\r\n") + 4 : 0;
      const end = data.indexOf("\r\n\r\n", start);
      const length = /content-length:\s*(\d+)/i.exec(data.slice(start, end))?.[1];
      if (end >= 0 && length !== undefined && data.length >= end + 4 + Number(length)) setTimeout(finish, 100);
    });
    socket.on("close", () => {
      closed = true;
      finish();
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code !== "ECONNRESET" && err.code !== "EPIPE") reject(err);
    });
  });
}

function expectProblem(answer: RawAnswer, status: number, code: string): void {
  expect(answer.status, answer.raw.slice(0, 300)).toBe(status);
  expect(answer.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = JSON.parse(answer.body) as { code: string; requestId: string; status: number };
  expect(body.code).toBe(code);
  expect(body.status).toBe(status);
  expect(answer.headers["x-request-id"]).toBe(body.requestId);
}

const EIGHT_MB = 8 * 1024 * 1024;

describe("nothing is read for a request that will be refused", () => {
  it.each([
    ["an unknown path", "POST /nope", 404, "not_found"],
    ["/healthz with POST", "POST /healthz", 405, "method_not_allowed"],
    ["/metrics with POST", "POST /metrics", 405, "method_not_allowed"],
    ["/tenants with POST", "POST /tenants", 405, "method_not_allowed"],
    ["/consent/callback with POST", "POST /consent/callback", 405, "method_not_allowed"],
    ["/send without a valid key", "POST /send", 401, "unauthorized"],
  ])("when %s announces an 8 MB body and sends only its first bytes, then the refusal comes at once and the connection closes", async (_, line, status, code) => {
    const started = Date.now();
    const answer = await rawExchange(`${line} HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer wrong\r\nContent-Type: application/json\r\nContent-Length: ${EIGHT_MB}\r\n\r\n{"tenant":"contoso",`);
    expectProblem(answer, status, code);
    expect(answer.headers.connection).toBe("close");
    expect(answer.closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe("time limits", () => {
  it("when a body dribbles in slower than server.http.requestTimeoutSeconds, then 408 request_timeout and the connection closes", async () => {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const answer = await rawExchange(
      `POST /send HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${h.keys.ops}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`,
      {
        then: (socket) => {
          timer = setInterval(() => socket.write(" "), 300);
        },
        waitMs: 8000,
      },
    );
    clearInterval(timer);
    expectProblem(answer, 408, "request_timeout");
    expect(Date.now() - started).toBeGreaterThanOrEqual(1800);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(0);
  });

  it("when the headers do not arrive within server.http.headersTimeoutSeconds, then 408 request_timeout as problem+json", async () => {
    const answer = await rawExchange("GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ", { waitMs: 5000 });
    expectProblem(answer, 408, "request_timeout");
    expect(answer.closed).toBe(true);
  });
});

describe("connections", () => {
  it("when one client holds server.http.maxConnectionsPerClient connections, then the next gets 503 and is closed, and others still work", async () => {
    const held: Socket[] = [];
    try {
      for (let i = 0; i < 12; i++) {
        held.push(await new Promise<Socket>((resolve) => {
          const s = connect(port, "127.0.0.1", () => resolve(s));
          s.on("error", () => {});
        }));
      }
      const answer = await rawExchange("GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n");
      expectProblem(answer, 503, "upstream_unavailable");
      expect(Number(answer.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    } finally {
      for (const s of held) s.destroy();
    }
    await new Promise((r) => setTimeout(r, 100));
    expect((await h.get("/healthz")).status).toBe(200);
  });
});

describe("Node's own refusals", () => {
  it("when an HTTP/1.1 request has no Host header, then 400 validation_failed as problem+json", async () => {
    const answer = await rawExchange("GET /healthz HTTP/1.1\r\n\r\n");
    expectProblem(answer, 400, "validation_failed");
  });

  it("when Expect names something else than 100-continue, then 417 expectation_failed as problem+json", async () => {
    const answer = await rawExchange("GET /healthz HTTP/1.1\r\nHost: relay\r\nExpect: magic\r\n\r\n");
    expectProblem(answer, 417, "expectation_failed");
  });

  it("when the request line is not HTTP, then 400 validation_failed as problem+json", async () => {
    const answer = await rawExchange("NOT HTTP AT ALL\r\n\r\n");
    expectProblem(answer, 400, "validation_failed");
  });
});

describe("Expect: 100-continue", () => {
  const body = JSON.stringify(message("contoso", { subject: "after 100 Continue" }));

  it("when the API key is unknown, then no 100 Continue is sent and the answer is 401 without reading the body", async () => {
    const answer = await rawExchange(`POST /send HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer wrong\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: ${EIGHT_MB}\r\n\r\n`);
    expect(answer.raw.startsWith("HTTP/1.1 100")).toBe(false);
    expectProblem(answer, 401, "unauthorized");
  });

  it("when the API key is known, then 100 Continue comes first and the message is sent", async () => {
    let sawContinue = false;
    const answer = await rawExchange(
      `POST /send HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${h.keys.ops}\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`,
      {
        then: (socket) => {
          socket.once("data", (first: string) => {
            sawContinue = first.startsWith("HTTP/1.1 100 Continue");
            socket.write(body);
          });
        },
      },
    );
    expect(sawContinue).toBe(true);
    expect(answer.status).toBe(202);
    expect(h.emulator.state.messages({ subject: "after 100 Continue" })).toHaveLength(1);
  });
});

describe("callers that hang up", () => {
  it("when a caller closes the connection halfway through its body, then the request is counted as client_closed (499), not as a 200", async () => {
    const before = metricValue((await h.get("/metrics", { key: TOKEN })).text, "noreply_relay_send_total", { tenant: "_unknown", outcome: "client_closed" });
    await new Promise<void>((resolve) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.write(`POST /send HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${h.keys.ops}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"tenant":`);
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 100);
      });
      socket.on("error", () => {});
    });
    const text = await (async () => {
      for (let i = 0; i < 50; i++) {
        const t = (await h.get("/metrics", { key: TOKEN })).text;
        if (metricValue(t, "noreply_relay_send_total", { tenant: "_unknown", outcome: "client_closed" }) > before) return t;
        await new Promise((r) => setTimeout(r, 20));
      }
      return "";
    })();
    expect(metricValue(text, "noreply_relay_send_total", { tenant: "_unknown", outcome: "client_closed" })).toBe(before + 1);
    expect(text).toMatch(/noreply_relay_http_request_duration_seconds_count\{method="POST",route="\/send",status="499"\} \d+/);
    expect(h.logs.requests().some((l) => l.route === "/send" && l.status === 499 && l.outcome === "client_closed")).toBe(true);
  });
});

describe("/metrics with a token", () => {
  it("when the scrape has no token or a wrong one, then 401; with the token, then 200 and promtool-style text", async () => {
    expect((await h.get("/metrics")).status).toBe(401);
    expect((await h.get("/metrics", { key: "not-the-token" })).status).toBe(401);
    const ok = await h.get("/metrics", { key: TOKEN });
    expect(ok.status).toBe(200);
    expect(metricValue(ok.text, "noreply_relay_inflight_sends")).toBe(0);
  });
});

describe("unauthorized requests in the log", () => {
  it("when a client guesses keys 60 times, then all are counted but at most 20 request lines are logged for them", async () => {
    const before = h.logs.requests().filter((l) => l.status === 401).length;
    await Promise.all(Array.from({ length: 60 }, () => h.send(message("contoso"), { key: "guess" })));
    const lines = h.logs.requests().filter((l) => l.status === 401).length - before;
    expect(lines).toBeLessThanOrEqual(20);
    const counted = metricValue((await h.get("/metrics", { key: TOKEN })).text, "noreply_relay_send_total", { tenant: "_unknown", outcome: "unauthorized" });
    expect(counted).toBeGreaterThanOrEqual(60);
  });
});

describe("answers the spec describes", () => {
  it("when the edge answers 408 or 417, then openapi.yaml documents the problem codes", () => {
    const codes = specValidator().spec.components?.schemas?.ProblemCode as { enum?: string[] } | undefined;
    expect(codes?.enum).toEqual(expect.arrayContaining(["request_timeout", "expectation_failed"]));
  });
});
