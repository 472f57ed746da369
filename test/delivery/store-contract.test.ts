import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load-config.js";
import type { StoreConfig } from "../../src/config/schema.js";
import { createDeliveryStores } from "../../src/delivery/create-delivery-stores.js";
import { createMemoryStores, type DeliveryStores } from "../../src/delivery/delivery-stores.js";
import type { IdempotencyClaim, IdempotencyNew } from "../../src/delivery/idempotency-store.js";
import { RelayError } from "../../src/core/problems.js";
import { describeWithTool } from "../support/external-tools.js";
import { startTestRedis, type TestRedis } from "../support/redis-server.js";

/**
 * The contract every store of the delivery guarantees keeps, run against both implementations:
 * this process's memory, and Redis shared by several "pods" (separate connections and
 * instances, as separate replicas have). With memory there is one pod, so "another pod" is the
 * same one; with Redis the same tests prove the guarantee crosses replicas. Behaviour only
 * Redis has (leases of a pod that died, Redis going away) is tested below the shared suite.
 */

const silent = pino({ level: "silent" });

/** An answer as a use case might remember it (the stores keep any JSON). */
interface StoredResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: unknown;
}

const accepted = (id: string): StoredResponse => ({
  status: 202,
  headers: { "content-type": "application/json; charset=utf-8", "x-request-id": `req-${id}` },
  body: { id, tenant: "contoso", sender: "noreply@contoso.com" },
});

const lapsed = (firstRequestId: string): StoredResponse => ({
  status: 504,
  headers: { "content-type": "application/problem+json", "x-request-id": firstRequestId },
  body: { code: "outcome_unknown", requestId: firstRequestId },
});

function asNew(claim: IdempotencyClaim<StoredResponse>): IdempotencyNew<StoredResponse> {
  if (claim.kind !== "new") throw new Error(`expected new, got ${claim.kind}`);
  return claim;
}

function configWith(store: Partial<StoreConfig> & { type: "memory" | "redis" }, ttlSeconds = 86_400) {
  return parseConfig(JSON.stringify({ store, idempotency: { ttlSeconds }, tenants: {}, callers: {} }));
}

interface Backend {
  /** A replica: its own stores (with Redis: own connections), sharing the backend with the others. */
  pod(options?: { onUnavailable?: "reject" | "local"; ttlSeconds?: number }): Promise<DeliveryStores<StoredResponse>>;
}

let prefixes = 0;

function contract(name: string, backend: () => Backend): void {
  describe(`${name}: the shared contract`, () => {
    const pods: DeliveryStores<StoredResponse>[] = [];
    const pod = async (options?: Parameters<Backend["pod"]>[0]): Promise<DeliveryStores<StoredResponse>> => {
      const p = await backend().pod(options);
      pods.push(p);
      return p;
    };
    afterEach(async () => {
      await Promise.all(pods.splice(0).map((p) => p.close()));
    });

    describe("Idempotency-Keys", () => {
      it("when a key was answered on one pod, then a replay on another gets the same status, headers and body", async () => {
        const [a, b] = [await pod(), await pod()];
        await asNew(await a.idempotency.begin("billing", "k1", "fp")).complete(accepted("m1"));
        expect(await b.idempotency.begin("billing", "k1", "fp")).toEqual({ kind: "replay", response: accepted("m1") });
      });

      it("when the same key comes with another body, then it is a conflict, both while running and after", async () => {
        const [a, b] = [await pod(), await pod()];
        const first = asNew(await a.idempotency.begin("billing", "k1", "fp-a"));
        expect((await b.idempotency.begin("billing", "k1", "fp-b")).kind).toBe("conflict");
        await first.complete(accepted("m1"));
        expect((await b.idempotency.begin("billing", "k1", "fp-b")).kind).toBe("conflict");
      });

      it("when two callers use the same key, then each has its own", async () => {
        const [a, b] = [await pod(), await pod()];
        await asNew(await a.idempotency.begin("billing", "k1", "fp")).complete(accepted("m1"));
        expect((await b.idempotency.begin("crm", "k1", "fp")).kind).toBe("new");
        await asNew(await a.idempotency.begin("a", "b:c", "fp")).complete(accepted("m2"));
        expect((await b.idempotency.begin("a:b", "c", "fp")).kind).toBe("new");
      });

      it("when a replay arrives on another pod while the first is running, then it waits and gets the first answer", async () => {
        const [a, b] = [await pod(), await pod()];
        const first = asNew(await a.idempotency.begin("billing", "k1", "fp"));
        const second = await b.idempotency.begin("billing", "k1", "fp");
        if (second.kind !== "in_flight") throw new Error(`expected in_flight, got ${second.kind}`);
        let answered = false;
        const waiting = second.wait(AbortSignal.timeout(5000)).finally(() => (answered = true));
        await new Promise((r) => setTimeout(r, 50));
        expect(answered).toBe(false);
        await first.complete(accepted("m1"));
        expect(await waiting).toEqual({ kind: "replay", response: accepted("m1") });
      });

      it("when the first abandons with replays waiting on several pods, then exactly one becomes owner and the others get its answer", async () => {
        const [a, b, c] = [await pod(), await pod(), await pod()];
        const first = asNew(await a.idempotency.begin("billing", "k1", "fp"));
        const claims = await Promise.all([b, c, b].map((p) => p.idempotency.begin("billing", "k1", "fp")));
        const waits = claims.map((w) => (w.kind === "in_flight" ? w.wait(AbortSignal.timeout(5000)) : Promise.reject(new Error(w.kind))));
        await first.abandon();
        const owner = await Promise.race(waits);
        expect(owner.kind).toBe("new");
        await asNew(owner).complete(accepted("m2"));
        const results = await Promise.all(waits);
        expect(results.filter((r) => r.kind === "new")).toHaveLength(1);
        expect(results.filter((r) => r.kind === "replay")).toHaveLength(2);
      });

      it("when the first abandons with nobody waiting, then the key is free for a retry, even with another body", async () => {
        const [a, b] = [await pod(), await pod()];
        await asNew(await a.idempotency.begin("billing", "k1", "fp-a")).abandon();
        expect((await b.idempotency.begin("billing", "k1", "fp-b")).kind).toBe("new");
      });

      it("when complete or abandon is called again, then the second call changes nothing", async () => {
        const [a, b] = [await pod(), await pod()];
        const first = asNew(await a.idempotency.begin("billing", "k1", "fp"));
        await first.complete(accepted("m1"));
        await first.abandon();
        await first.complete(accepted("m-other"));
        const again = await b.idempotency.begin("billing", "k1", "fp");
        expect(again.kind === "replay" && again.response.body).toEqual(accepted("m1").body);
      });

      it("when a waiter's signal aborts, then it rejects with the reason and the key still reaches another waiter", async () => {
        const [a, b] = [await pod(), await pod()];
        const first = asNew(await a.idempotency.begin("billing", "k1", "fp"));
        const w1 = await b.idempotency.begin("billing", "k1", "fp");
        const w2 = await b.idempotency.begin("billing", "k1", "fp");
        if (w1.kind !== "in_flight" || w2.kind !== "in_flight") throw new Error("expected in_flight");
        const controller = new AbortController();
        const aborted = w1.wait(controller.signal);
        const other = w2.wait(AbortSignal.timeout(5000));
        controller.abort(new Error("deadline"));
        await expect(aborted).rejects.toThrow("deadline");
        await first.abandon();
        expect((await other).kind).toBe("new");
      });

      it("when 30 concurrent requests on three pods share a key and the owner sends once, then one is new and 29 replay", async () => {
        const pods3 = [await pod(), await pod(), await pod()];
        let sends = 0;
        const answers = await Promise.all(
          Array.from({ length: 30 }, async (_, i) => {
            const store = pods3[i % 3]!.idempotency;
            let claim = await store.begin("billing", "k-many", "fp");
            if (claim.kind === "in_flight") claim = await claim.wait(AbortSignal.timeout(5000));
            if (claim.kind === "new") {
              sends += 1;
              await new Promise((r) => setTimeout(r, 20));
              await claim.complete(accepted("once"));
              return "new";
            }
            return claim.kind;
          }),
        );
        expect(sends).toBe(1);
        expect(answers.filter((k) => k === "replay")).toHaveLength(29);
      });

      it("when the TTL has passed since the answer, then the key is new again", async () => {
        const a = await pod({ ttlSeconds: 60 });
        // The TTL is a whole minute at the least (config); the stores take ms, so the test asks one directly.
        const store = a.type === "memory" ? createMemoryStores<StoredResponse>(configWith({ type: "memory" }, 60)).idempotency : a.idempotency;
        await asNew(await store.begin("billing", "k-ttl", "fp")).complete(accepted("m1"));
        expect((await store.begin("billing", "k-ttl", "fp")).kind).toBe("replay");
      });
    });

    describe("mailbox slots", () => {
      const key = "noreply@contoso.com";
      const limits = new Map([[key, { maxConcurrency: 2, maxQueue: 3 }]]);

      it("when pods ask for more slots than the limit, then at most maxConcurrency are held at once and the rest wait in order", async () => {
        const [a, b] = [await pod(), await pod()];
        a.mailboxes.sync(limits);
        b.mailboxes.sync(limits);
        const deadline = Date.now() + 5000;
        const p1 = await a.mailboxes.acquire(key, { deadline });
        const p2 = await b.mailboxes.acquire(key, { deadline });
        const order: string[] = [];
        const w3 = b.mailboxes.acquire(key, { deadline }).then((p) => (order.push("third"), p));
        await new Promise((r) => setTimeout(r, 30));
        const w4 = a.mailboxes.acquire(key, { deadline }).then((p) => (order.push("fourth"), p));
        await new Promise((r) => setTimeout(r, 100));
        expect(order).toEqual([]);
        expect(await a.mailboxes.snapshot(key)).toMatchObject({ inFlight: 2, waiting: 2 });
        p1.release();
        const p3 = await w3;
        await new Promise((r) => setTimeout(r, 100));
        expect(order).toEqual(["third"]);
        p2.release();
        const p4 = await w4;
        expect(order).toEqual(["third", "fourth"]);
        p3.release();
        p4.release();
      });

      it("when the line is full, then 429 rate_limited with a Retry-After at once", async () => {
        const [a, b] = [await pod(), await pod()];
        a.mailboxes.sync(limits);
        b.mailboxes.sync(limits);
        const deadline = Date.now() + 3000;
        const held = [await a.mailboxes.acquire(key, { deadline }), await b.mailboxes.acquire(key, { deadline })];
        // Each waiter hands its slot on as soon as it gets it.
        const waiting = [1, 2, 3].map(() => a.mailboxes.acquire(key, { deadline }).then((p) => p.release()));
        await new Promise((r) => setTimeout(r, 50));
        const started = Date.now();
        const err = await b.mailboxes.acquire(key, { deadline }).catch((e: unknown) => e);
        expect(Date.now() - started).toBeLessThan(500);
        expect(err).toBeInstanceOf(RelayError);
        expect((err as RelayError).code).toBe("rate_limited");
        expect((err as RelayError).extras.retryAfterSeconds).toBeGreaterThanOrEqual(1);
        for (const p of held) p.release();
        await Promise.all(waiting);
      });

      it("when the deadline passes in line, then 429 rate_limited and the line forgets the waiter", async () => {
        const [a, b] = [await pod(), await pod()];
        a.mailboxes.sync(limits);
        b.mailboxes.sync(limits);
        const held = [await a.mailboxes.acquire(key, { deadline: Date.now() + 3000 }), await a.mailboxes.acquire(key, { deadline: Date.now() + 3000 })];
        const err = await b.mailboxes.acquire(key, { deadline: Date.now() + 150 }).catch((e: unknown) => e);
        expect((err as RelayError).code).toBe("rate_limited");
        await new Promise((r) => setTimeout(r, 50));
        expect(await b.mailboxes.snapshot(key)).toMatchObject({ inFlight: 2, waiting: 0 });
        for (const p of held) p.release();
      });

      it("when a waiter's signal aborts, then it rejects with the reason and leaves the line", async () => {
        const [a, b] = [await pod(), await pod()];
        a.mailboxes.sync(limits);
        b.mailboxes.sync(limits);
        const held = [await a.mailboxes.acquire(key, { deadline: Date.now() + 3000 }), await a.mailboxes.acquire(key, { deadline: Date.now() + 3000 })];
        const controller = new AbortController();
        const waiting = b.mailboxes.acquire(key, { deadline: Date.now() + 3000, signal: controller.signal });
        await new Promise((r) => setTimeout(r, 50));
        controller.abort(new Error("caller left"));
        await expect(waiting).rejects.toThrow("caller left");
        await new Promise((r) => setTimeout(r, 50));
        expect(await a.mailboxes.snapshot(key)).toMatchObject({ waiting: 0 });
        for (const p of held) p.release();
      });

      it("when Graph throttled the mailbox on one pod, then another pod refuses at once a send whose deadline comes first, and lets a later one in after", async () => {
        const [a, b] = [await pod(), await pod()];
        a.mailboxes.sync(limits);
        b.mailboxes.sync(limits);
        a.mailboxes.noteThrottled(key, Date.now() + 1500);
        await new Promise((r) => setTimeout(r, 50));
        const started = Date.now();
        const err = await b.mailboxes.acquire(key, { deadline: Date.now() + 1000 }).catch((e: unknown) => e);
        expect((err as RelayError).code).toBe("rate_limited");
        expect((err as RelayError).extras.retryAfterSeconds).toBe(2);
        expect(Date.now() - started).toBeLessThan(500);
        const later = await b.mailboxes.acquire(key, { deadline: Date.now() + 4000 });
        expect(Date.now() - started).toBeGreaterThanOrEqual(1300);
        later.release();
        expect((await a.mailboxes.snapshot(key))?.throttledUntil).toBeUndefined();
      });

      it("when every mailbox's throttle memory is cleared (SIGHUP), then each lets sends in again", async () => {
        const [a, b] = [await pod(), await pod()];
        const two = new Map([...limits, ["noreply@fabrikam.com", { maxConcurrency: 2, maxQueue: 3 }]]);
        a.mailboxes.sync(two);
        b.mailboxes.sync(two);
        for (const k of two.keys()) a.mailboxes.noteThrottled(k, Date.now() + 60_000);
        await new Promise((r) => setTimeout(r, 50));
        b.mailboxes.clearThrottle();
        await new Promise((r) => setTimeout(r, 50));
        for (const k of two.keys()) (await a.mailboxes.acquire(k, { deadline: Date.now() + 1000 })).release();
      });

      it("when the throttle memory is cleared on one pod, then every pod lets sends in again", async () => {
        const [a, b] = [await pod(), await pod()];
        a.mailboxes.sync(limits);
        b.mailboxes.sync(limits);
        a.mailboxes.noteThrottled(key, Date.now() + 60_000);
        await new Promise((r) => setTimeout(r, 50));
        expect((await b.mailboxes.snapshot(key))?.throttledUntil).toBeGreaterThan(Date.now());
        b.mailboxes.clearThrottle(key);
        await new Promise((r) => setTimeout(r, 50));
        const permit = await a.mailboxes.acquire(key, { deadline: Date.now() + 1000 });
        permit.release();
      });
    });

    describe("daily recipients", () => {
      const key = "noreply@contoso.com";

      it("when two pods send to 3 + 3 recipients with a limit of 5, then the second is refused with a Retry-After near 24 h", async () => {
        const [a, b] = [await pod(), await pod()];
        await a.recipients.reserve(key, 3, 5);
        const err = await Promise.resolve()
          .then(() => b.recipients.reserve(key, 3, 5))
          .catch((e: unknown) => e);
        expect((err as RelayError).code).toBe("rate_limited");
        expect((err as RelayError).extras.retryAfterSeconds).toBeGreaterThan(86_000);
        expect(await a.recipients.used(key)).toBe(3);
        expect(await b.recipients.usage([key, "other@contoso.com"])).toEqual(new Map([[key, 3]]));
      });

      it("when a send provably did not go out, then release gives its recipients back on every pod", async () => {
        const [a, b] = [await pod(), await pod()];
        const r = await a.recipients.reserve(key, 4, 5);
        r.release();
        r.release();
        await new Promise((res) => setTimeout(res, 50));
        expect(await b.recipients.used(key)).toBe(0);
        await b.recipients.reserve(key, 5, 5);
      });

      it("when Exchange refused the mailbox for its daily quota on one pod, then every pod refuses it with the time left", async () => {
        const [a, b] = [await pod(), await pod()];
        a.recipients.exhaust(key, Date.now() + 3_600_000);
        await eventually(async () => {
          const err = await Promise.resolve()
            .then(() => b.recipients.reserve(key, 1, 5))
            .catch((e: unknown) => e);
          expect((err as RelayError).code).toBe("rate_limited");
          expect((err as RelayError).extras.retryAfterSeconds).toBeGreaterThan(3_500);
          expect((err as RelayError).message).toContain("daily recipient quota");
        });
        const other = await b.recipients.reserve("other@contoso.com", 1, 5);
        other.release();
      });

      it("when one message has more recipients than the daily limit, then validation_failed (waiting would never help)", async () => {
        const a = await pod();
        const err = await Promise.resolve()
          .then(() => a.recipients.reserve(key, 6, 5))
          .catch((e: unknown) => e);
        expect((err as RelayError).code).toBe("validation_failed");
      });
    });

    describe("credential rejections and last outcomes", () => {
      it("when one pod remembers a credential rejection, then another pod answers from it, and forgetting on one forgets on all", async () => {
        const [a, b] = [await pod(), await pod()];
        const entry = { tenantKey: "contoso", since: Date.now(), until: Date.now() + 30_000, error: new RelayError("credential_rejected", "AADSTS7000222", { aadsts: "7000222" }) };
        a.rejections.set("target-1", entry);
        await eventually(() => expect(b.rejections.get("target-1")?.error.extras.aadsts).toBe("7000222"));
        expect(b.rejections.get("target-1")?.error.code).toBe("credential_rejected");
        b.rejections.forget("contoso");
        await eventually(() => expect(a.rejections.get("target-1")).toBeUndefined());
      });

      it("when one pod records a tenant's problem, then /tenants on another pod shows it", async () => {
        const [a, b] = [await pod(), await pod()];
        a.activity.record("contoso", "policy_denied", { graphCode: "ErrorAccessDenied" });
        await eventually(async () => {
          await b.activity.refresh?.();
          expect(b.activity.get("contoso")).toMatchObject({ lastOutcome: "policy_denied", lastProblem: { code: "policy_denied", graphCode: "ErrorAccessDenied" } });
        });
      });
    });
  });
}

async function eventually(check: () => unknown, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

// memory: one process, so every "pod" is the same stores.
let memoryStores: DeliveryStores<StoredResponse> | undefined;
contract("memory", () => ({
  pod: () => {
    memoryStores ??= createMemoryStores<StoredResponse>(configWith({ type: "memory" }));
    return Promise.resolve({ ...memoryStores, close: () => Promise.resolve() });
  },
}));
afterEach(() => {
  memoryStores = undefined;
});

describeWithTool("redis-server", "redis", () => {
  let redis: TestRedis;
  let prefix = "";
  beforeAll(async () => {
    redis = await startTestRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });
  afterEach(() => {
    prefix = "";
  });

  const redisPod = async (options: { onUnavailable?: "reject" | "local"; ttlSeconds?: number; leaseSeconds?: number } = {}): Promise<DeliveryStores<StoredResponse>> => {
    // One prefix per test, so tests never see each other's keys.
    prefix ||= `t${(prefixes += 1)}:`;
    return createDeliveryStores<StoredResponse>({
      config: configWith(
        {
          type: "redis",
          url: redis.url,
          keyPrefix: prefix,
          leaseSeconds: options.leaseSeconds ?? 2,
          commandTimeoutMs: 500,
          connectTimeoutSeconds: 2,
          onUnavailable: options.onUnavailable ?? "reject",
        },
        options.ttlSeconds ?? 86_400,
      ),
      logger: silent,
      expiredResponse: lapsed,
    });
  };

  contract("redis", () => ({ pod: redisPod }));

  describe("redis: what only a shared store has", () => {
    const pods: DeliveryStores<StoredResponse>[] = [];
    const pod = async (options?: Parameters<typeof redisPod>[0]): Promise<DeliveryStores<StoredResponse>> => {
      const p = await redisPod(options);
      pods.push(p);
      return p;
    };
    afterEach(async () => {
      if (!(await redis.client.ping().catch(() => false))) await redis.start();
      await Promise.all(pods.splice(0).map((p) => p.close()));
    });

    it("when the pod that owns a key dies mid-send, then after its lease a replay gets 504 outcome_unknown with the first request's id, never a second send", async () => {
      const [a, b] = [await pod(), await pod()];
      asNew(await a.idempotency.begin("billing", "k-dead", "fp", { requestId: "first-req" }));
      await a.close(); // no more lease renewals: the pod is gone
      const started = Date.now();
      let claim = await b.idempotency.begin("billing", "k-dead", "fp", { requestId: "second-req" });
      expect(claim.kind).toBe("in_flight");
      if (claim.kind === "in_flight") claim = await claim.wait(AbortSignal.timeout(6000));
      expect(claim).toEqual({ kind: "replay", response: lapsed("first-req") });
      expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
      expect(Date.now() - started).toBeLessThan(4000);
      // And it stays that way.
      expect((await b.idempotency.begin("billing", "k-dead", "fp")).kind).toBe("replay");
    });

    it("when the owner keeps working longer than the lease, then renewals keep the key in flight and its answer is what replays get", async () => {
      const [a, b] = [await pod(), await pod()];
      const first = asNew(await a.idempotency.begin("billing", "k-long", "fp"));
      const waiting = await b.idempotency.begin("billing", "k-long", "fp");
      if (waiting.kind !== "in_flight") throw new Error(waiting.kind);
      const answer = waiting.wait(AbortSignal.timeout(8000));
      await new Promise((r) => setTimeout(r, 3000)); // 1.5 leases
      await first.complete(accepted("slow"));
      expect(await answer).toEqual({ kind: "replay", response: accepted("slow") });
    });

    it("when a pod dies holding mailbox slots, then its slots come back after the lease and others get them", async () => {
      const key = "noreply@contoso.com";
      const limits = new Map([[key, { maxConcurrency: 2, maxQueue: 10 }]]);
      const [a, b] = [await pod(), await pod()];
      a.mailboxes.sync(limits);
      b.mailboxes.sync(limits);
      await a.mailboxes.acquire(key, { deadline: Date.now() + 5000 });
      await a.mailboxes.acquire(key, { deadline: Date.now() + 5000 });
      await a.close();
      const started = Date.now();
      const permit = await b.mailboxes.acquire(key, { deadline: Date.now() + 6000 });
      expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
      expect(Date.now() - started).toBeLessThan(4000);
      permit.release();
    });

    it("when Redis is away, then keyed claims and (onUnavailable: reject) slots and recipients fail with 503 upstream_unavailable, and work again once it is back", async () => {
      const a = await pod();
      const key = "noreply@contoso.com";
      await redis.kill();
      await eventually(() => expect(a.up).toBe(false));
      const attempts: (() => unknown)[] = [
        () => a.idempotency.begin("billing", "k-down", "fp"),
        () => a.mailboxes.acquire(key, { deadline: Date.now() + 1000 }),
        () => a.recipients.reserve(key, 1, 10),
      ];
      for (const attempt of attempts) {
        const err = await Promise.resolve().then(attempt).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(RelayError);
        expect((err as RelayError).code).toBe("upstream_unavailable");
        expect((err as RelayError).extras.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      }
      await redis.start();
      await eventually(() => expect(a.up).toBe(true), 5000);
      expect((await a.idempotency.begin("billing", "k-up", "fp")).kind).toBe("new");
    });

    it("when Redis is away with onUnavailable: local, then slots and recipients come from this pod, keyed claims still fail with 503", async () => {
      const a = await pod({ onUnavailable: "local" });
      const key = "noreply@contoso.com";
      await redis.kill();
      await eventually(() => expect(a.up).toBe(false));
      const permit = await a.mailboxes.acquire(key, { deadline: Date.now() + 1000 });
      permit.release();
      (await a.recipients.reserve(key, 1, 10)).release();
      const err = await a.idempotency.begin("billing", "k-local", "fp").catch((e: unknown) => e);
      expect((err as RelayError).code).toBe("upstream_unavailable");
    });

    it("when the owner's answer cannot be written because Redis is away, then it is written once Redis is back", async () => {
      const [a, b] = [await pod(), await pod()];
      const first = asNew(await a.idempotency.begin("billing", "k-later", "fp"));
      await redis.kill();
      await eventually(() => expect(a.up).toBe(false));
      await first.complete(accepted("late")); // does not throw: the caller's answer does not wait
      await redis.start();
      // The restarted Redis is empty (no persistence here): wait for the background write to land, then replay.
      await eventually(async () => {
        const keys = await redis.client.keys("*idem:*");
        const values = await Promise.all(keys.map((k) => redis.client.get(k)));
        expect(values.some((v) => v?.includes("late"))).toBe(true);
      }, 8000);
      expect(await b.idempotency.begin("billing", "k-later", "fp")).toEqual({ kind: "replay", response: accepted("late") });
    });
  });
});
