import { describe, expect, it } from "vitest";
import { MemoryIdempotencyStore, idempotencyDisposition, requestFingerprint, type StoredResponse } from "../../src/delivery/idempotency-store.js";
import { MailboxLimiter, mailboxKey } from "../../src/delivery/mailbox-limiter.js";
import { RecipientGuard } from "../../src/delivery/recipient-guard.js";
import { isRelayError, RelayError } from "../../src/core/problems.js";

/*
 * The delivery blocks composed in the order POST /send uses them (docs/delivery.md), against a
 * Graph stand-in that enforces Graph's own rule (a fifth concurrent request for a mailbox gets
 * 429) and injects faults. It shows the blocks keep the promises before the real send
 * path uses them; the component tests and the soak prove it again over HTTP with the emulator.
 */

type Fault = "none" | "throttle" | "unavailable" | "unknown";

interface Message {
  readonly id: string;
  readonly key: string | undefined;
}

/** Graph as far as these blocks care: 4 concurrent per mailbox, latency, and the faults it is told to show. */
function graphStandIn(options: { latencyMs: () => number; fault: () => Fault }) {
  const inFlight = new Map<string, number>();
  const messages: Message[] = [];
  let concurrency429 = 0;
  let seq = 0;
  return {
    messages,
    concurrency429: () => concurrency429,
    async send(mailbox: string, key: string | undefined): Promise<string> {
      const n = (inFlight.get(mailbox) ?? 0) + 1;
      inFlight.set(mailbox, n);
      try {
        await new Promise((r) => setTimeout(r, options.latencyMs()));
        if (n > 4) {
          concurrency429 += 1;
          throw new RelayError("rate_limited", "ApplicationThrottled: MailboxConcurrency", { retryAfterSeconds: 1 });
        }
        const fault = options.fault();
        if (fault === "throttle") throw new RelayError("rate_limited", "Graph throttled", { retryAfterSeconds: 1 });
        if (fault === "unavailable") throw new RelayError("upstream_unavailable", "503, nothing sent", { retryAfterSeconds: 1 });
        seq += 1;
        const id = `m${seq}`;
        messages.push({ id, key });
        if (fault === "unknown") throw new RelayError("outcome_unknown", "504 after the body was sent");
        return id;
      } finally {
        inFlight.set(mailbox, (inFlight.get(mailbox) ?? 1) - 1);
      }
    },
  };
}

interface Tenant {
  readonly key: string;
  readonly sender: string;
  readonly limits: { maxConcurrency: number; maxQueue: number; recipientsPerDay: number };
}

function relay(graph: ReturnType<typeof graphStandIn>, options: { deadlineMs: number; throttleMs?: number }) {
  const store = new MemoryIdempotencyStore();
  const limiter = new MailboxLimiter();
  const guard = new RecipientGuard();
  let answers = 0;

  async function handle(caller: string, idempotencyKey: string | undefined, tenant: Tenant, body: { to: string[] }): Promise<StoredResponse> {
    const deadline = Date.now() + options.deadlineMs;
    // 1. Idempotency, right after authentication.
    let claim = idempotencyKey === undefined ? undefined : await store.begin(caller, idempotencyKey, requestFingerprint(body));
    if (claim?.kind === "in_flight") claim = await claim.wait(AbortSignal.timeout(options.deadlineMs));
    if (claim?.kind === "replay") return { ...claim.response, headers: { ...claim.response.headers, "idempotent-replayed": "true" } };
    if (claim?.kind === "conflict") return problem(new RelayError("idempotency_conflict", "different body"));
    const owner = claim;
    try {
      // 2. (validation, tenant and sender checks would be here) 3. recipient guard.
      const mailbox = mailboxKey(tenant.sender);
      const reservation = guard.reserve(mailbox, body.to.length, tenant.limits.recipientsPerDay);
      let id: string;
      try {
        // 4. mailbox slot, 5. Graph.
        const permit = await limiter.acquire(mailbox, { deadline });
        try {
          id = await graph.send(mailbox, idempotencyKey);
        } catch (err) {
          if (isRelayError(err) && err.code === "rate_limited") limiter.noteThrottled(mailbox, Date.now() + (options.throttleMs ?? 1000));
          throw err;
        } finally {
          permit.release();
        }
      } catch (err) {
        if (!(isRelayError(err) && err.code === "outcome_unknown")) reservation.release();
        throw err;
      }
      const response: StoredResponse = { status: 202, headers: { "content-type": "application/json" }, body: { id, tenant: tenant.key } };
      await owner?.complete(response);
      return response;
    } catch (err) {
      const relayError = isRelayError(err) ? err : new RelayError("internal_error", String(err));
      const response = problem(relayError);
      if (idempotencyDisposition(relayError.code) === "complete") await owner?.complete(response);
      return response;
    } finally {
      await owner?.abandon(); // no-op after complete
    }
  }

  return {
    limiter,
    guard,
    answers: () => answers,
    async send(caller: string, key: string | undefined, tenant: Tenant, body: { to: string[] }): Promise<StoredResponse> {
      const response = await handle(caller, key, tenant, body);
      answers += 1;
      return response;
    },
  };
}

function problem(err: RelayError): StoredResponse {
  return {
    status: err.status,
    headers: err.extras.retryAfterSeconds !== undefined ? { "retry-after": String(err.extras.retryAfterSeconds) } : {},
    body: { code: err.code },
  };
}

const contoso: Tenant = { key: "contoso", sender: "noreply@contoso.com", limits: { maxConcurrency: 4, maxQueue: 1000, recipientsPerDay: 10_000 } };
const fabrikam: Tenant = { key: "fabrikam", sender: "NoReply@Fabrikam.com", limits: { maxConcurrency: 4, maxQueue: 1000, recipientsPerDay: 10_000 } };

describe("delivery blocks composed", () => {
  it("when 200 sends flood one mailbox, then Graph sees no concurrency 429 and every request gets exactly one 202", async () => {
    const graph = graphStandIn({ latencyMs: () => 1 + Math.floor(Math.random() * 3), fault: () => "none" });
    const service = relay(graph, { deadlineMs: 20_000 });
    const responses = await Promise.all(Array.from({ length: 200 }, (_, i) => service.send("billing", `k${i}`, contoso, { to: ["a@example.com"] })));
    expect(graph.concurrency429()).toBe(0);
    expect(responses.every((r) => r.status === 202)).toBe(true);
    expect(service.answers()).toBe(200);
    expect(new Set(responses.map((r) => (r.body as { id: string }).id)).size).toBe(200);
    expect(graph.messages).toHaveLength(200);
  });

  it("when one mailbox is flooded, then another tenant's sends are as fast as on a quiet day", async () => {
    const graph = graphStandIn({ latencyMs: () => 5, fault: () => "none" });
    const service = relay(graph, { deadlineMs: 20_000 });
    const flood = Promise.all(Array.from({ length: 200 }, () => service.send("billing", undefined, contoso, { to: ["a@example.com"] })));
    const started = performance.now();
    const latencies: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      const t0 = performance.now();
      expect((await service.send("billing", undefined, fabrikam, { to: ["b@example.com"] })).status).toBe(202);
      latencies.push(performance.now() - t0);
    }
    const quietLoad = performance.now() - started;
    await flood;
    // The flood needs 200/4 × 5 ms ≈ 250 ms; in its line each fabrikam send would wait about that long.
    // Alone in its own line, each is about one Graph call (the bound leaves room for a busy CI machine).
    expect(Math.max(...latencies)).toBeLessThan(100);
    expect(quietLoad).toBeLessThan(200);
    expect(service.limiter.snapshot(mailboxKey(contoso.sender))?.inFlight).toBe(0);
  });

  it("when 20 concurrent replays of each of 10 keys arrive, then each key is sent exactly once and all replays get its answer", async () => {
    const graph = graphStandIn({ latencyMs: () => 3, fault: () => "none" });
    const service = relay(graph, { deadlineMs: 20_000 });
    const jobs = Array.from({ length: 200 }, (_, i) => service.send("billing", `order-${i % 10}`, contoso, { to: [`c${i % 10}@example.com`] }));
    const responses = await Promise.all(jobs);
    expect(graph.messages).toHaveLength(10);
    for (let k = 0; k < 10; k += 1) {
      const ids = new Set(responses.filter((_, i) => i % 10 === k).map((r) => (r.body as { id: string }).id));
      expect(ids.size).toBe(1);
    }
    expect(responses.filter((r) => r.headers["idempotent-replayed"] === "true")).toHaveLength(190);
  });

  it("when the daily recipient limit is reached, then the next send is refused with Retry-After and Graph is not called", async () => {
    const graph = graphStandIn({ latencyMs: () => 0, fault: () => "none" });
    const service = relay(graph, { deadlineMs: 5_000 });
    const small = { ...contoso, limits: { ...contoso.limits, recipientsPerDay: 5 } };
    expect((await service.send("billing", undefined, small, { to: ["a@x.com", "b@x.com", "c@x.com"] })).status).toBe(202);
    expect((await service.send("billing", undefined, small, { to: ["d@x.com", "e@x.com"] })).status).toBe(202);
    const refused = await service.send("billing", "k-over", small, { to: ["f@x.com"] });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(23 * 3600);
    expect(graph.messages).toHaveLength(2);
    expect(service.guard.used(mailboxKey(small.sender))).toBe(5);
  });

  it("when clients retry with Idempotency-Key through random 429/503/504 faults, then no key ever produces a second message", async () => {
    const faults: Fault[] = ["none", "none", "none", "none", "throttle", "unavailable", "unknown"];
    const graph = graphStandIn({
      latencyMs: () => Math.floor(Math.random() * 4),
      fault: () => faults[Math.floor(Math.random() * faults.length)] as Fault,
    });
    const service = relay(graph, { deadlineMs: 2_000, throttleMs: 5 });
    const finals = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const key = `job-${i}`;
        const tenant = i % 2 === 0 ? contoso : fabrikam;
        // A well-behaved client: same key and body on every retry; stops on anything not retryable.
        for (let attempt = 0; ; attempt += 1) {
          const r = await service.send("billing", key, tenant, { to: [`r${i}@example.com`] });
          if (attempt >= 8 || (r.status !== 429 && r.status !== 503)) return { key, r };
          await new Promise((res) => setTimeout(res, 2));
        }
      }),
    );
    const perKey = new Map<string, number>();
    for (const m of graph.messages) perKey.set(m.key as string, (perKey.get(m.key as string) ?? 0) + 1);
    expect([...perKey.values()].every((n) => n === 1)).toBe(true);
    for (const { key, r } of finals) {
      if (r.status === 202) expect(graph.messages.filter((m) => m.id === (r.body as { id: string }).id && m.key === key)).toHaveLength(1);
      if (r.status === 504) expect(perKey.get(key)).toBe(1); // outcome_unknown: it did go out, and retries replayed the 504
    }
    expect(graph.concurrency429()).toBe(0);
    expect(finals.filter((f) => f.r.status === 202).length).toBeGreaterThan(150);
  });
});
