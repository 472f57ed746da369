import { spawnSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { spawnServer } from "../support/child-server.js";
import { describeWithTool, externalTool } from "../support/external-tools.js";
import { CONTOSO, message, standardScenario } from "../support/fixtures.js";
import { metricValue, startHarness, type Harness, type Replica } from "../support/harness.js";
import { startTestRedis, type TestRedis } from "../support/redis-server.js";

/**
 * Two replicas of the service (each with its own process state and port) on one emulator and
 * one real redis-server, `store.type: redis`: the guarantees hold across them. The same tests
 * with the memory store would fail (a retry on the other replica sends again, each replica
 * counts its own recipients and slots); the store contract suite proves the pieces, this proves
 * the wiring through the HTTP API.
 */

const SMALL = "small@contoso.com";
const NARROW = "narrow@contoso.com";

describeWithTool("redis-server", "several replicas on a shared Redis store", () => {
  let redis: TestRedis;
  let h: Harness;
  let r2: Replica;

  beforeAll(async () => {
    redis = await startTestRedis();
    const scenario = standardScenario();
    scenario.tenants![0]!.mailboxes!.push({ address: SMALL }, { address: NARROW });
    // Graph's own rule at 2 for the narrow mailbox's test: a third concurrent request gets 429 MailboxConcurrency.
    scenario.throttling = { mailboxConcurrency: 2, requestsPerWindow: 0 };
    h = await startHarness({
      scenario,
      logLevel: "warn",
      configure: (c) => {
        c.store = { type: "redis", url: redis.url, keyPrefix: "shared-test:", leaseSeconds: 2, connectTimeoutSeconds: 5 };
        c.tenants.contoso!.limits = { maxConcurrency: 2 };
        c.tenants.small = { tenantId: CONTOSO.id, sender: SMALL, limits: { recipientsPerDay: 5 } };
        c.tenants.narrow = { tenantId: CONTOSO.id, sender: NARROW, limits: { maxConcurrency: 2 } };
      },
    });
    r2 = await h.replica();
  });

  afterAll(async () => {
    await h?.close();
    await redis?.stop();
  });

  afterEach(() => {
    h.emulator.state.clearFaults();
  });

  it("when a keyed send was answered by one replica, then the retry on the other is a replay: same answer, one message", async () => {
    const body = message("contoso", { subject: "Invoice 42 across replicas" });
    const key = { "idempotency-key": "invoice-42-replicas" };
    const first = await h.send(body, { headers: key });
    expect(first.status).toBe(202);
    const again = await r2.send(body, { headers: key });
    expect(again.status).toBe(202);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.json).toEqual(first.json);
    expect(again.headers.get("x-request-id")).toBe(first.headers.get("x-request-id"));
    expect(h.emulator.state.messages().filter((m) => m.subject === "Invoice 42 across replicas")).toHaveLength(1);
  });

  it("when the first keyed request is still at Graph on one replica, then the same key on the other waits and gets its answer", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@contoso.com", action: "latency", fixedMs: 600, times: 1 });
    const body = message("contoso", { subject: "Slow invoice across replicas" });
    const key = { "idempotency-key": "slow-invoice-replicas" };
    const firstP = h.send(body, { headers: key });
    await new Promise((r) => setTimeout(r, 150));
    const second = await r2.send(body, { headers: key });
    const first = await firstP;
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.json.id).toBe(first.json.id);
    expect(h.emulator.state.messages().filter((m) => m.subject === "Slow invoice across replicas")).toHaveLength(1);
  });

  it("when two replicas send 3 + 3 recipients with recipientsPerDay 5, then the second is refused with 429 and a Retry-After near a day", async () => {
    const three = ["a@example.com", "b@example.com", "c@example.com"];
    expect((await h.send(message("small", { to: three }))).status).toBe(202);
    const refused = await r2.send(message("small", { to: three }));
    expect(refused.status).toBe(429);
    expect(refused.json.code).toBe("rate_limited");
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(86_000);
    const rows = (await r2.get("/tenants", { key: h.keys.admin })).json.tenants as { tenant: string; recipientsUsed: number }[];
    expect(rows.find((r) => r.tenant === "small")?.recipientsUsed).toBe(3);
  });

  it("when 12 sends for a mailbox limited to 2 arrive through both replicas, then Graph never sees a third at once (no MailboxConcurrency 429)", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: NARROW, action: "latency", fixedMs: 80 });
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? h : r2).send(message("narrow", { subject: `narrow ${i}` }))));
    expect(answers.map((a) => a.status)).toEqual(Array(12).fill(202));
    const refusals = h.emulator.state.requests({ kind: "sendMail", mailbox: NARROW }).filter((r) => r.status === 429);
    expect(refusals).toHaveLength(0);
  });

  it("when Graph throttles a mailbox on one replica beyond the deadline, then the other refuses at once without calling Graph", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@fabrikam.com", action: "respond", status: 429, retryAfter: 40, times: 1 });
    // fabrikam's policy denies its mailbox in the standard scenario, so use a tenant whose sends go through: northwind.
    h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@northwind.com", action: "respond", status: 429, retryAfter: 40, times: 1 });
    const first = await h.send(message("northwind"));
    expect(first.status).toBe(429);
    const before = h.emulator.state.requests({ kind: "sendMail", mailbox: "noreply@northwind.com" }).length;
    const started = Date.now();
    const second = await r2.send(message("northwind"));
    expect(second.status).toBe(429);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(Number(second.headers.get("retry-after"))).toBeGreaterThanOrEqual(35);
    expect(h.emulator.state.requests({ kind: "sendMail", mailbox: "noreply@northwind.com" }).length).toBe(before);
    const row = ((await r2.get("/tenants", { key: h.keys.admin })).json.tenants as { tenant: string; throttledUntil?: string }[]).find((r) => r.tenant === "northwind");
    expect(Date.parse(row?.throttledUntil ?? "")).toBeGreaterThan(Date.now() + 30_000);
  });

  it("when Entra rejected a tenant's credential on one replica, then the other answers from the shared memory without asking Entra", async () => {
    const first = await h.send(message("litware"));
    expect(first.status).toBe(502);
    expect(first.json.code).toBe("credential_rejected");
    // The rejection reaches the store in the background: wait until the other replica sees it,
    // without sending there (a send before then asks Entra itself, which is allowed).
    type Row = { tenant: string; lastProblem?: { code: string }; credentialRejectedUntil?: string };
    await expectEventually(async () => {
      const row = ((await r2.get("/tenants", { key: h.keys.admin })).json.tenants as Row[]).find((r) => r.tenant === "litware");
      expect(row?.credentialRejectedUntil).toBeDefined();
      expect(row?.lastProblem?.code).toBe("credential_rejected");
    });
    const tokenRequests = h.emulator.state.requests({ kind: "token" }).length;
    const second = await r2.send(message("litware"));
    expect(second.status).toBe(502);
    expect(second.json.detail).toContain("remembered");
    expect(h.emulator.state.requests({ kind: "token" }).length).toBe(tokenRequests);
  });

  it("when one replica saw a tenant's problem, then /tenants on the other shows it", async () => {
    const denied = await h.send(message("fabrikam"));
    expect(denied.json.code).toBe("policy_denied");
    const rows = (await r2.get("/tenants", { key: h.keys.admin })).json.tenants as { tenant: string; lastOutcome?: string }[];
    expect(rows.find((r) => r.tenant === "fabrikam")?.lastOutcome).toBe("policy_denied");
  });

  it("when the service runs on Redis, then /readyz names the store and /metrics has the store's series", async () => {
    const ready = await r2.get("/readyz");
    expect(ready.status).toBe(200);
    expect(ready.json).toEqual({ status: "ready", store: { type: "redis", status: "ok" } });
    const text = (await r2.get("/metrics")).text;
    expect(metricValue(text, "noreply_relay_store_up")).toBe(1);
    expect(metricValue(text, "noreply_relay_store_round_trips_total")).toBeGreaterThan(0);
    expect(text).toContain("noreply_relay_store_errors_total");
    if (externalTool("promtool").available) {
      const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
      expect(check.stdout + check.stderr).toBe("");
    }
  });

  // Last: it stops Redis.
  it("when Redis goes away, then keyed and keyless sends get 503 and /readyz turns 503; once it is back, sends work again", async () => {
    await redis.kill();
    await expectEventually(async () => expect((await r2.get("/readyz", {})).status).toBe(503));
    const readyz = await r2.get("/readyz");
    expect(readyz.json).toEqual({ status: "store_unavailable", store: { type: "redis", status: "unavailable" } });
    const keyed = await r2.send(message("contoso"), { headers: { "idempotency-key": "while-redis-down" } });
    expect(keyed.status).toBe(503);
    expect(keyed.json.code).toBe("upstream_unavailable");
    expect(keyed.json.detail).toContain("shared store");
    expect(Number(keyed.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const keyless = await r2.send(message("contoso"));
    expect(keyless.status).toBe(503);
    expect(metricValue((await r2.get("/metrics")).text, "noreply_relay_store_up")).toBe(0);
    await redis.start();
    await expectEventually(async () => expect((await r2.get("/readyz")).status).toBe(200), 8000);
    expect((await r2.send(message("contoso"), { headers: { "idempotency-key": "after-redis-back" } })).status).toBe(202);
  });
});

describe("start-up with store.type redis", () => {
  it("when Redis cannot be reached, then the process exits 1 naming the endpoint, without listening", async () => {
    const h = await startHarness({ logLevel: "silent" });
    try {
      const config = { ...h.configInput, store: { type: "redis", url: "redis://127.0.0.1:1", connectTimeoutSeconds: 1 } };
      const path = join(h.dir, "redis-config.json");
      await writeFile(path, JSON.stringify(config));
      const child = spawnServer({ NOREPLY_RELAY_CONFIG: path });
      const code = await child.exited;
      expect(code).toBe(1);
      const stderr = child.stderr.join("");
      expect(stderr).toContain("cannot reach Redis at redis://127.0.0.1:1");
      expect(child.stdout.join("\n")).not.toContain("noreply-relay listening");
    } finally {
      await h.close();
    }
  });
});

async function expectEventually(check: () => Promise<void>, timeoutMs = 4000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
