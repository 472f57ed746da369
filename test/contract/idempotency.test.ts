import { randomUUID } from "node:crypto";
import { connect } from "node:net";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { createApp, type RelayApp } from "../../src/app.js";
import type { Config } from "../../src/config/schema.js";
import { checkIdempotencyKey } from "../../src/delivery/idempotency-store.js";
import { idempotencyDisposition } from "../../src/mail/send-answer.js";
import { PROBLEMS, type ProblemCode } from "../../src/core/problems.js";
import type { GraphSender, TokenProvider } from "../../src/core/ports.js";
import { fixedConfigSource } from "../../src/config/config-source.js";
import { createApiClient, type ApiClient, type SendRequest } from "../support/api-client.js";
import { specValidator } from "../support/checked-fetch.js";
import { startHarness } from "../support/harness.js";

/*
 * Idempotency-Key as openapi.yaml describes it, against the real app: replays (Idempotent-Replayed,
 * the first answer's body and X-Request-Id) on every status the spec says is remembered, the two
 * 409 cases, and the key's syntax. Every answer comes through the typed client, which checks it
 * against openapi.yaml (status, headers, body) and throws on a mismatch.
 */

const validator = specValidator();
const REPLAYED = "Idempotent-Replayed";

const h = await startHarness();
const relay = createApiClient({ baseUrl: h.url, apiKey: h.keys.ops, validator });

/** Apps built by createApp with stand-in adapters, closed after the file. */
const extraApps: RelayApp[] = [];
async function relayWith(tokenProvider: TokenProvider, graphSender: GraphSender, config: Config = h.config): Promise<ApiClient> {
  const app = await createApp({ configSource: fixedConfigSource(config), tokenProvider, graphSender, registry: new Registry(), logger: pino({ level: "silent" }) });
  extraApps.push(app);
  const url = await app.listen(0, "127.0.0.1");
  return createApiClient({ baseUrl: url, apiKey: h.keys.ops, validator });
}

afterAll(async () => {
  await Promise.all(extraApps.map((app) => app.shutdown(1000)));
  await h.close();
});

beforeEach(() => {
  h.emulator.state.reset();
});

const newKey = (): string => `order-${randomUUID()}`;
function mail(subject: string, extra: Partial<SendRequest> = {}): SendRequest {
  return { tenant: "contoso", to: ["someone@example.com"], subject, text: "Hello", ...extra };
}

function resolve(node: unknown): unknown {
  let current = node;
  while (typeof current === "object" && current !== null && typeof (current as { $ref?: unknown }).$ref === "string") {
    current = (current as { $ref: string }).$ref
      .slice(2)
      .split("/")
      .reduce<unknown>((n, k) => (n as Record<string, unknown>)[k.replaceAll("~1", "/").replaceAll("~0", "~")], validator.spec);
  }
  return current;
}

describe("openapi.yaml: Idempotent-Replayed and Idempotency-Key agree with the code", () => {
  it("when POST /send's responses are read, then Idempotent-Replayed is documented on exactly the statuses whose outcome is remembered", () => {
    // Outcomes of POST /send: sent (202), dry_run (200), and every problem code but the edge 404/405.
    const outcomes: [string, number][] = [
      ["sent", 202],
      ["dry_run", 200],
      ...(Object.keys(PROBLEMS) as ProblemCode[]).filter((c) => c !== "not_found" && c !== "method_not_allowed").map((c): [string, number] => [c, PROBLEMS[c].status]),
    ];
    const remembered = new Set(outcomes.filter(([outcome]) => idempotencyDisposition(outcome) === "complete").map(([, status]) => String(status)));
    const responses = validator.findOperation("POST", "/send")?.operation.responses ?? {};
    const documented = Object.entries(responses)
      .filter(([, ref]) => (resolve(ref) as { headers?: Record<string, unknown> }).headers?.[REPLAYED] !== undefined)
      .map(([status]) => status);

    expect([...remembered].sort()).toEqual(["202", "500", "504"]);
    expect(documented.sort()).toEqual([...remembered].sort());
  });

  it("when a 202 says Idempotent-Replayed with another value than true, then the spec refuses it", () => {
    const answer = (replayed: string) => ({
      method: "POST",
      path: "/send",
      status: 202,
      headers: { "x-request-id": randomUUID(), "content-type": "application/json", "idempotent-replayed": replayed },
      body: { id: randomUUID(), internetMessageId: "<a@contoso.com>", tenant: "contoso", sender: "noreply@contoso.com", acceptedAt: "2025-01-15T09:30:00.000Z" },
    });
    expect(validator.validateResponse(answer("true"))).toEqual([]);
    expect(validator.validateResponse(answer("false")).join("\n")).toMatch(/header Idempotent-Replayed/);
  });

  it("when keys are checked by the spec's pattern and by checkIdempotencyKey, then both accept and refuse the same ones", () => {
    const candidates = ["", " ", "   ", "\t", "a", " a ", "a b", "x".repeat(254), "x".repeat(255), "x".repeat(256), " ".repeat(255), `${" ".repeat(254)}x`];
    for (let c = 0; c <= 0xff; c++) {
      const ch = String.fromCharCode(c);
      candidates.push(ch, `key${ch}key`, `${ch}key`);
    }
    candidates.push("k\u2028k", "k\u{1F600}k", "caf\u00e9");
    const body = mail("syntax");
    const disagreements = candidates.filter((key) => {
      const specOk = validator.validateRequest({ method: "POST", path: "/send", headers: { "content-type": "application/json", "idempotency-key": key }, body }).length === 0;
      const codeOk = checkIdempotencyKey(key) === undefined;
      return specOk !== codeOk;
    });
    expect(disagreements.map((k) => JSON.stringify(k))).toEqual([]);
    // And the two outcomes both occur, so the comparison above proves something.
    expect(checkIdempotencyKey("x".repeat(255))).toBeUndefined();
    expect(checkIdempotencyKey("x".repeat(256))).toBeDefined();
  });
});

describe("POST /send replays, checked against openapi.yaml", () => {
  it("when a sent message is retried with the same key and body, then 202 again with Idempotent-Replayed: true, the same body and X-Request-Id, and nothing is sent", async () => {
    const key = newKey();
    const subject = `replay ${key}`;
    const first = await relay.send(mail(subject), { idempotencyKey: key });
    const replay = await relay.send(mail(subject), { idempotencyKey: key });

    expect(first.status).toBe(202);
    expect(first.headers.get(REPLAYED)).toBeNull();
    expect(replay.status).toBe(202);
    expect(replay.headers.get(REPLAYED)).toBe("true");
    expect(replay.body).toEqual(first.body);
    const firstId = first.headers.get("x-request-id");
    expect(replay.headers.get("x-request-id")).toBe(firstId);
    expect(h.emulator.state.messages({ subject })).toHaveLength(1);
    // The replay's own log line has its own id and names the first as replayOf.
    const replayLine = h.logs.requests().find((l) => l.replayOf === firstId);
    expect(replayLine).toMatchObject({ outcome: "duplicate", status: 202 });
    expect(replayLine?.requestId).not.toBe(firstId);
  });

  it("when a 504 outcome_unknown is retried with the same key and body, then the same 504 comes back replayed and Graph is not called again", async () => {
    const key = newKey();
    h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@contoso.com", action: "acceptThen504", times: 1 });
    const first = await relay.send(mail("unknown outcome"), { idempotencyKey: key });
    const replay = await relay.send(mail("unknown outcome"), { idempotencyKey: key });

    expect(first.status).toBe(504);
    expect(first.headers.get(REPLAYED)).toBeNull();
    expect(replay.status).toBe(504);
    expect(replay.headers.get(REPLAYED)).toBe("true");
    expect(replay.body).toEqual(first.body);
    expect(replay.headers.get("x-request-id")).toBe(first.headers.get("x-request-id"));
    if (replay.status === 504) expect(replay.body.requestId).toBe(first.headers.get("x-request-id"));
    expect(h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(1);
  });

  it("when a 500 internal_error is retried with the same key and body, then the same 500 comes back replayed and the failing step is not run again", async () => {
    // A bug in the Graph step: the message may have gone out before it, so the 500 is remembered.
    let graphCalls = 0;
    const buggy = await relayWith(
      { getToken: () => Promise.resolve("token") },
      {
        send: () => {
          graphCalls++;
          return Promise.reject(new TypeError("Cannot read properties of undefined (reading 'headers')"));
        },
      },
    );
    const key = newKey();
    const first = await buggy.send(mail("bug"), { idempotencyKey: key });
    const replay = await buggy.send(mail("bug"), { idempotencyKey: key });

    expect(first.status).toBe(500);
    expect(first.headers.get(REPLAYED)).toBeNull();
    expect(replay.status).toBe(500);
    expect(replay.headers.get(REPLAYED)).toBe("true");
    expect(replay.body).toEqual(first.body);
    expect(replay.headers.get("x-request-id")).toBe(first.headers.get("x-request-id"));
    expect(graphCalls).toBe(1);
  });

  it("when the first answer sent nothing (503), then a retry with the same key is not a replay and sends the message", async () => {
    const key = newKey();
    const subject = `retry ${key}`;
    h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@contoso.com", action: "respond", status: 503, times: 1 });
    const failed = await relay.send(mail(subject), { idempotencyKey: key });
    const retried = await relay.send(mail(subject), { idempotencyKey: key });

    expect(failed.status).toBe(503);
    expect(retried.status).toBe(202);
    expect(retried.headers.get(REPLAYED)).toBeNull();
    expect(retried.headers.get("x-request-id")).not.toBe(failed.headers.get("x-request-id"));
    expect(h.emulator.state.messages({ subject })).toHaveLength(1);
  });
});

describe("POST /send 409 idempotency_conflict, both cases, checked against openapi.yaml", () => {
  it("when the key comes back with a different body, then 409 naming the key and nothing more is sent", async () => {
    const key = newKey();
    expect((await relay.send(mail(`first ${key}`), { idempotencyKey: key })).status).toBe(202);
    const res = await relay.send(mail(`second ${key}`), { idempotencyKey: key });

    expect(res.status).toBe(409);
    if (res.status === 409) expect(res.body).toMatchObject({ code: "idempotency_conflict", detail: `Idempotency-Key "${key}" was used before with a different body` });
    expect(res.headers.get(REPLAYED)).toBeNull();
    expect(h.emulator.state.messages()).toHaveLength(1);
  });

  it("when a replay's deadline comes while the first request is still sending, then 409, and once the first has finished the replay gets its 202", async () => {
    // Graph that answers only when released, whatever the deadline (1 s here) says.
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let graphCalls = 0;
    const slow = await relayWith(
      { getToken: () => Promise.resolve("token") },
      {
        send: async () => {
          graphCalls++;
          await released;
          return { attempts: 1 };
        },
      },
      { ...h.config, server: { ...h.config.server, requestDeadlineSeconds: 1 } },
    );
    const key = newKey();
    const first = slow.send(mail("slow"), { idempotencyKey: key });
    for (let i = 0; graphCalls === 0 && i < 200; i++) await new Promise((r) => setTimeout(r, 10));
    expect(graphCalls).toBe(1);

    const started = Date.now();
    const waited = await slow.send(mail("slow"), { idempotencyKey: key });
    expect(waited.status).toBe(409);
    if (waited.status === 409) {
      expect(waited.body).toMatchObject({ code: "idempotency_conflict", detail: "the first request with this Idempotency-Key is still being processed; retry later" });
    }
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(waited.headers.get(REPLAYED)).toBeNull();

    release();
    const answered = await first;
    expect(answered.status).toBe(202);
    const later = await slow.send(mail("slow"), { idempotencyKey: key });
    expect(later.status).toBe(202);
    expect(later.headers.get(REPLAYED)).toBe("true");
    expect(later.body).toEqual(answered.body);
    expect(later.headers.get("x-request-id")).toBe(answered.headers.get("x-request-id"));
    expect(graphCalls).toBe(1);
  });
});

describe("Idempotency-Key syntax, checked against openapi.yaml", () => {
  const refused: [string, string][] = [
    ["a control character (tab)", "order\t42"],
    ["256 characters", "k".repeat(256)],
    ["only spaces (sent empty: HTTP drops them)", "   "],
    ["a character outside ASCII", "caf\u00e9"],
  ];

  it.each(refused)("when the key has %s, then the spec refuses it and the relay answers 400 validation_failed naming Idempotency-Key, sending nothing", async (_what, key) => {
    const body = mail(`bad key ${randomUUID()}`);
    const requestErrors = validator.validateRequest({ method: "POST", path: "/send", headers: { "content-type": "application/json", "idempotency-key": key }, body });
    expect(requestErrors.join("\n")).toMatch(/header parameter Idempotency-Key/);

    const res = await relay.send(body, { idempotencyKey: key });
    expect(res.status).toBe(400);
    if (res.status === 400) {
      expect(res.body).toMatchObject({ code: "validation_failed", detail: "the Idempotency-Key header is invalid" });
      expect(res.body.errors?.map((e) => e.path)).toEqual(["Idempotency-Key"]);
    }
    expect(h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(0);
  });

  it("when the key has 255 printable characters with spaces inside, then the spec and the relay accept it", async () => {
    const key = `${randomUUID()} ~!"#$%&'()*+,-./:;<=>?@[\\]^_\`{|}`.padEnd(255, "z");
    const body = mail(`long key ${randomUUID()}`);
    expect(validator.validateRequest({ method: "POST", path: "/send", headers: { "content-type": "application/json", "idempotency-key": key }, body })).toEqual([]);
    const first = await relay.send(body, { idempotencyKey: key });
    const replay = await relay.send(body, { idempotencyKey: key });
    expect(first.status).toBe(202);
    expect(replay.headers.get(REPLAYED)).toBe("true");
  });

  /*
   * Control characters other than tab never reach the relay's routes: Node's HTTP parser refuses
   * the request and the relay answers from its client-error handler. fetch refuses to send such a
   * header, hence a raw socket.
   */
  it("when a key with another control character is sent over a raw socket, then 400 validation_failed as the spec describes it, with its X-Request-Id", async () => {
    const res = await rawSend(h.url, h.keys.ops, "order\u000142", JSON.stringify(mail("raw")));
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ code: "validation_failed", status: 400 });
    expect(validator.validateResponse({ method: "POST", path: "/send", ...res })).toEqual([]);
    expect(JSON.parse(res.body).requestId).toBe(res.headers["x-request-id"]);
    expect(h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(0);
  });
});

/** POST /send over a plain socket, with a header value fetch would refuse to send. */
function rawSend(baseUrl: string, apiKey: string, idempotencyKey: string, body: string): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const { hostname, port } = new URL(baseUrl);
  const request =
    `POST /send HTTP/1.1\r\nHost: ${hostname}:${port}\r\nAuthorization: Bearer ${apiKey}\r\nContent-Type: application/json\r\n` +
    `Idempotency-Key: ${idempotencyKey}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
  return new Promise((resolvePromise, reject) => {
    const socket = connect(Number(port), hostname, () => socket.end(request, "latin1"));
    const chunks: Buffer[] = [];
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", reject);
    socket.on("end", () => {
      const text = Buffer.concat(chunks).toString("latin1");
      const [head = "", ...rest] = text.split("\r\n\r\n");
      const [statusLine = "", ...lines] = head.split("\r\n");
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(":")).trim().toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
      resolvePromise({ status: Number(statusLine.split(" ")[1]), headers, body: rest.join("\r\n\r\n") });
    });
  });
}
