import { describe, expect, it } from "vitest";
import {
  MemoryIdempotencyStore,
  canonicalJson,
  checkIdempotencyKey,
  requestFingerprint,
  type IdempotencyClaim,
  type IdempotencyNew,
} from "./idempotency-store.js";

function manualClock(start = 1_700_000_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

/** An answer as a use case might remember it (the store keeps any JSON). */
interface StoredResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: { id?: string; tenant?: string; sender?: string; pad?: string };
}

const accepted = (id: string): StoredResponse => ({
  status: 202,
  headers: { "content-type": "application/json" },
  body: { id, tenant: "contoso", sender: "noreply@contoso.com" },
});

function asNew(claim: IdempotencyClaim<StoredResponse>): IdempotencyNew<StoredResponse> {
  if (claim.kind !== "new") throw new Error(`expected new, got ${claim.kind}`);
  return claim;
}

describe("requestFingerprint", () => {
  it("when only key order and whitespace differ, then the fingerprints are equal", () => {
    const a = JSON.parse('{"tenant":"contoso","to":["a@example.com"],"headers":{"X-B":"2","X-A":"1"}}') as unknown;
    const b = JSON.parse('{ "headers": { "X-A": "1", "X-B": "2" },\n  "to": [ "a@example.com" ], "tenant": "contoso" }') as unknown;
    expect(requestFingerprint(a)).toBe(requestFingerprint(b));
    expect(requestFingerprint(a)).toMatch(/^[0-9a-f]{64}$/);
  });

  it("when a value, an array order or an added empty member differs, then the fingerprints differ", () => {
    const base = { tenant: "contoso", to: ["a@example.com", "b@example.com"], subject: "Invoice" };
    const fp = requestFingerprint(base);
    expect(requestFingerprint({ ...base, subject: "Invoice " })).not.toBe(fp);
    expect(requestFingerprint({ ...base, to: ["b@example.com", "a@example.com"] })).not.toBe(fp);
    expect(requestFingerprint({ ...base, cc: [] })).not.toBe(fp);
    expect(requestFingerprint({ ...base, n: 1 })).not.toBe(requestFingerprint({ ...base, n: "1" }));
  });

  it("when canonicalised, then the text is sorted, compact JSON with undefined members dropped", () => {
    expect(canonicalJson({ b: [1, 2.5, null, true], a: { d: "x\"y", c: undefined }, "é": 1e21 })).toBe(
      '{"a":{"d":"x\\"y"},"b":[1,2.5,null,true],"é":1e+21}',
    );
    expect(canonicalJson(JSON.parse("1.0"))).toBe("1");
  });

  it("when a value nests 1,000,000 levels deep, then it is fingerprinted without overflowing the stack", () => {
    const levels = 1_000_000;
    const deep = JSON.parse(`${"[".repeat(levels)}${"]".repeat(levels)}`) as unknown;
    expect(requestFingerprint(deep)).toMatch(/^[0-9a-f]{64}$/);
    let objects: unknown = 1;
    for (let i = 0; i < 200_000; i++) objects = { [`k${i % 3}`]: objects, z: i % 2 === 0 ? undefined : [i] };
    expect(() => requestFingerprint(objects)).not.toThrow();
  });

  it("when values of every JSON kind are canonicalised, then the text equals JSON.stringify of the same value with sorted keys", () => {
    const value = JSON.parse('{"z":[{"b":1,"a":[[],{}]},"s\\u00e9\\n",-0.5,1e300,null,false],"a":{"y":{"x":{"w":"deep"}}},"":0}') as unknown;
    const sorted = (v: unknown): unknown =>
      Array.isArray(v) ? v.map(sorted) : v !== null && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted((v as Record<string, unknown>)[k])])) : v;
    expect(canonicalJson(value)).toBe(JSON.stringify(sorted(value)));
    expect(canonicalJson([undefined, () => 1, new Date(0)])).toBe('[null,null,"1970-01-01T00:00:00.000Z"]');
  });
});

describe("checkIdempotencyKey", () => {
  it("when the key is 1–255 printable characters, then it is accepted", () => {
    expect(checkIdempotencyKey("order-42/attempt")).toBeUndefined();
    expect(checkIdempotencyKey("k".repeat(255))).toBeUndefined();
  });

  it("when the key is empty, too long, blank or has control characters, then it is a field error", () => {
    for (const bad of ["", "k".repeat(256), "   ", "a\nb", "ключ"]) {
      expect(checkIdempotencyKey(bad)?.path).toBe("Idempotency-Key");
    }
  });
});

describe("MemoryIdempotencyStore", () => {
  it("when a key is new, then the caller owns it; after complete, a replay gets the same status, headers and body", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>();
    const first = asNew(await store.begin("billing", "k1", "fp"));
    await first.complete(accepted("m1"));
    const again = await store.begin("billing", "k1", "fp");
    expect(again).toEqual({ kind: "replay", response: accepted("m1") });
  });

  it("when the stored response object is mutated after complete, then the replay is unchanged", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>();
    const response = { status: 202, headers: {}, body: { id: "m1" } };
    await asNew(await store.begin("billing", "k1", "fp")).complete(response);
    response.body.id = "changed";
    const again = await store.begin("billing", "k1", "fp");
    expect(again.kind === "replay" && again.response.body).toEqual({ id: "m1" });
  });

  it("when the same key comes with another body, then it is a conflict, both while running and after", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>();
    const first = asNew(await store.begin("billing", "k1", "fp-a"));
    expect((await store.begin("billing", "k1", "fp-b")).kind).toBe("conflict");
    await first.complete(accepted("m1"));
    expect((await store.begin("billing", "k1", "fp-b")).kind).toBe("conflict");
  });

  it("when two callers use the same key, then each has its own", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>();
    await asNew(await store.begin("billing", "k1", "fp")).complete(accepted("m1"));
    expect((await store.begin("crm", "k1", "fp")).kind).toBe("new");
    // "a" + "b:c" and "a:b" + "c" must not meet.
    await asNew(await store.begin("a", "b:c", "fp")).complete(accepted("m2"));
    expect((await store.begin("a:b", "c", "fp")).kind).toBe("new");
  });

  it("when a replay arrives while the first is running, then it waits and gets the first answer", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>();
    const first = asNew(await store.begin("billing", "k1", "fp"));
    const second = await store.begin("billing", "k1", "fp");
    expect(second.kind).toBe("in_flight");
    let answered = false;
    const waiting = second.kind === "in_flight" ? second.wait().finally(() => (answered = true)) : Promise.reject(new Error());
    await Promise.resolve();
    expect(answered).toBe(false);
    await first.complete(accepted("m1"));
    expect(await waiting).toEqual({ kind: "replay", response: accepted("m1") });
  });

  it("when the first abandons with three replays waiting, then exactly the oldest becomes owner and the others get its answer", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>();
    const first = asNew(await store.begin("billing", "k1", "fp"));
    const waits = await Promise.all([1, 2, 3].map(() => store.begin("billing", "k1", "fp")));
    const results: IdempotencyClaim<StoredResponse>[] = [];
    const settled = waits.map((w, i) =>
      w.kind === "in_flight" ? w.wait().then((r) => (results[i] = r)) : Promise.reject(new Error(w.kind)),
    );
    await first.abandon();
    await settled[0];
    expect(results[0]?.kind).toBe("new");
    expect(results[1]).toBeUndefined();
    await asNew(results[0] as IdempotencyClaim<StoredResponse>).complete(accepted("m2"));
    await Promise.all(settled);
    expect(results.map((r) => r.kind)).toEqual(["new", "replay", "replay"]);
  });

  it("when the first abandons with nobody waiting, then the key is free for a retry", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>();
    await asNew(await store.begin("billing", "k1", "fp-a")).abandon();
    // Even a different body: nothing was sent, so nothing is remembered.
    expect((await store.begin("billing", "k1", "fp-b")).kind).toBe("new");
    expect(store.stats()).toEqual({ entries: 0, bytes: 0, inFlight: 1 });
  });

  it("when complete or abandon is called again, then the second call changes nothing", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>();
    const first = asNew(await store.begin("billing", "k1", "fp"));
    await first.complete(accepted("m1"));
    await first.abandon();
    await first.complete(accepted("m-other"));
    const again = await store.begin("billing", "k1", "fp");
    expect(again.kind === "replay" && again.response.body).toEqual(accepted("m1").body);
  });

  it("when a waiter's signal aborts, then it rejects with the reason and leaves the line", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>();
    const first = asNew(await store.begin("billing", "k1", "fp"));
    const a = await store.begin("billing", "k1", "fp");
    const b = await store.begin("billing", "k1", "fp");
    if (a.kind !== "in_flight" || b.kind !== "in_flight") throw new Error("expected in_flight");
    const controller = new AbortController();
    const aWait = a.wait(controller.signal);
    const bWait = b.wait();
    controller.abort(new Error("deadline"));
    await expect(aWait).rejects.toThrow("deadline");
    await first.abandon();
    // The aborted waiter was skipped: b is the new owner.
    expect((await bWait).kind).toBe("new");
    await expect(a.wait(controller.signal)).rejects.toThrow("deadline");
  });

  it("when the first finishes between begin and wait, then wait answers at once", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>();
    const first = asNew(await store.begin("billing", "k1", "fp"));
    const second = await store.begin("billing", "k1", "fp");
    await first.complete(accepted("m1"));
    if (second.kind !== "in_flight") throw new Error("expected in_flight");
    expect((await second.wait()).kind).toBe("replay");
  });

  it("when 50 concurrent requests share a key and the owner sends once, then exactly one is new and 49 replay", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>();
    let sends = 0;
    const answers = await Promise.all(
      Array.from({ length: 50 }, async () => {
        let claim = await store.begin("billing", "k1", "fp");
        if (claim.kind === "in_flight") claim = await claim.wait();
        if (claim.kind !== "new") return claim.kind;
        sends += 1;
        await new Promise((r) => setTimeout(r, 5));
        await claim.complete(accepted("m1"));
        return "sent";
      }),
    );
    expect(sends).toBe(1);
    expect(answers.filter((a) => a === "sent")).toHaveLength(1);
    expect(answers.filter((a) => a === "replay")).toHaveLength(49);
  });

  it("when the TTL has passed since completion, then the key is forgotten", async () => {
    const clock = manualClock();
    const store = new MemoryIdempotencyStore<StoredResponse>({ ttlSeconds: 60, clock });
    await asNew(await store.begin("billing", "k1", "fp")).complete(accepted("m1"));
    clock.advance(59_999);
    expect((await store.begin("billing", "k1", "fp")).kind).toBe("replay");
    clock.advance(1);
    expect((await store.begin("billing", "k1", "fp")).kind).toBe("new");
    expect(store.stats().entries).toBe(0);
  });

  it("when more keys complete than maxEntries, then the oldest are evicted first", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>({ maxEntries: 3 });
    for (const k of ["k1", "k2", "k3", "k4"]) await asNew(await store.begin("billing", k, "fp")).complete(accepted(k));
    expect(store.stats().entries).toBe(3);
    const kinds = [];
    for (const k of ["k2", "k3", "k4"]) kinds.push((await store.begin("billing", k, "fp")).kind);
    expect(kinds).toEqual(["replay", "replay", "replay"]);
    expect((await store.begin("billing", "k1", "fp")).kind).toBe("new");
  });

  it("when remembered bytes exceed maxBytes, then the oldest are evicted until they fit", async () => {
    const big = (id: string): StoredResponse => ({ status: 202, headers: {}, body: { id, pad: "x".repeat(400) } });
    const store = new MemoryIdempotencyStore<StoredResponse>({ maxBytes: 2048 });
    for (const k of ["k1", "k2", "k3", "k4", "k5", "k6"]) await asNew(await store.begin("billing", k, "fp")).complete(big(k));
    const { entries, bytes } = store.stats();
    expect(bytes).toBeLessThanOrEqual(2048);
    expect(entries).toBeGreaterThan(0);
    expect(entries).toBeLessThan(6);
    expect((await store.begin("billing", "k6", "fp")).kind).toBe("replay");
    expect((await store.begin("billing", "k1", "fp")).kind).toBe("new");
  });

  it("when an answer has non-ASCII text, then the replay gives it back unchanged", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>();
    const answer = { status: 202, headers: { "x-note": "Grüße" }, body: { id: "m1", pad: "Příliš žluťoučký 😀 \u0000 \u2028" } };
    await asNew(await store.begin("billing", "ключ-не-важен", "fp")).complete(answer);
    expect(await store.begin("billing", "ключ-не-важен", "fp")).toEqual({ kind: "replay", response: answer });
  });

  it("when a replay's answer is mutated, then the next replay is unchanged", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>();
    await asNew(await store.begin("billing", "k1", "fp")).complete(accepted("m1"));
    const first = await store.begin("billing", "k1", "fp");
    if (first.kind !== "replay") throw new Error(first.kind);
    (first.response.body as { id: string }).id = "changed";
    expect(await store.begin("billing", "k1", "fp")).toEqual({ kind: "replay", response: accepted("m1") });
  });

  it("when thousands of keys pass through a small store and then expire, then the count and bytes come back to zero", async () => {
    const clock = manualClock();
    const store = new MemoryIdempotencyStore<StoredResponse>({ ttlSeconds: 60, maxEntries: 100, clock });
    for (let i = 0; i < 5000; i++) {
      await asNew(await store.begin("billing", `k${i}`, `fp${i}`)).complete(accepted(`m${i}`));
      if (i % 1000 === 0) clock.advance(1);
    }
    expect(store.stats().entries).toBe(100);
    // The newest 100 are kept, in order: the oldest of them answers, the one before is forgotten.
    expect((await store.begin("billing", "k4900", "fp4900")).kind).toBe("replay");
    expect((await store.begin("billing", "k4900", "other")).kind).toBe("conflict");
    expect((await store.begin("billing", "k4899", "fp4899")).kind).toBe("new");
    clock.advance(60_000);
    expect(store.stats()).toEqual({ entries: 0, bytes: 0, inFlight: 1 });
  });

  it("when maxBytes is the least the config allows, then a small answer is still remembered", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>({ maxBytes: 1024 });
    await asNew(await store.begin("billing", "k1", "fp")).complete(accepted("m1"));
    expect((await store.begin("billing", "k1", "fp")).kind).toBe("replay");
    expect(store.stats().bytes).toBeLessThanOrEqual(1024);
  });

  it("when one response is larger than maxBytes, then it is not remembered but its waiters still get it", async () => {
    const store = new MemoryIdempotencyStore<StoredResponse>({ maxBytes: 1024 });
    await asNew(await store.begin("billing", "small", "fp")).complete(accepted("s"));
    const first = asNew(await store.begin("billing", "huge", "fp"));
    const waiter = await store.begin("billing", "huge", "fp");
    const answer = waiter.kind === "in_flight" ? waiter.wait() : Promise.reject(new Error());
    await first.complete({ status: 202, headers: {}, body: { pad: "x".repeat(2000) } });
    expect((await answer).kind).toBe("replay");
    expect(store.stats().entries).toBe(1); // the small one survived
    expect((await store.begin("billing", "small", "fp")).kind).toBe("replay");
  });
});
