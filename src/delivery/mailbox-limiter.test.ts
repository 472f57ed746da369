import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { RelayError } from "../core/problems.js";
import { MailboxLimiter, mailboxKey, type MailboxPermit } from "./mailbox-limiter.js";

const clock = { now: () => Date.now() };
const FAR = 10 * 60_000;

/** Settles the microtask queue so resolved acquisitions are observed. */
const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i += 1) await Promise.resolve();
};

function track(promise: Promise<MailboxPermit>) {
  const t: { permit?: MailboxPermit; error?: unknown; settledCount: number } = { settledCount: 0 };
  promise.then(
    (p) => {
      t.permit = p;
      t.settledCount += 1;
    },
    (e: unknown) => {
      t.error = e;
      t.settledCount += 1;
    },
  );
  return t;
}

function retryAfter(err: unknown): number | undefined {
  expect(err).toBeInstanceOf(RelayError);
  expect((err as RelayError).code).toBe("rate_limited");
  return (err as RelayError).extras.retryAfterSeconds;
}

describe("MailboxLimiter with real timers", () => {
  it("when 200 sends acquire one mailbox at once, then never more than 4 are in flight and each settles exactly once", async () => {
    const limiter = new MailboxLimiter({ defaultLimits: { maxConcurrency: 4, maxQueue: 1000 } });
    let inFlight = 0;
    let maxInFlight = 0;
    let sent = 0;
    const settlements = new Array<number>(200).fill(0);
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        try {
          const permit = await limiter.acquire("noreply@contoso.com", { deadline: Date.now() + 20_000 });
          inFlight += 1;
          maxInFlight = Math.max(maxInFlight, inFlight);
          try {
            await new Promise((r) => setTimeout(r, i % 3));
            sent += 1;
          } finally {
            inFlight -= 1;
            permit.release();
            permit.release(); // a second release must not free a second slot
          }
        } finally {
          settlements[i] = (settlements[i] ?? 0) + 1;
        }
      }),
    );
    expect(maxInFlight).toBe(4);
    expect(sent).toBe(200);
    expect(settlements.every((n) => n === 1)).toBe(true);
    expect(limiter.snapshot("noreply@contoso.com")).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it("when one mailbox has 200 sends in line, then another mailbox's acquire is granted at once", async () => {
    const limiter = new MailboxLimiter();
    const hot = Array.from({ length: 200 }, () => track(limiter.acquire("hot@a.com", { deadline: Date.now() + FAR })));
    await flush();
    expect(hot.filter((t) => t.permit).length).toBe(4);
    const started = performance.now();
    const other = await limiter.acquire("cold@b.com", { deadline: Date.now() + FAR });
    expect(performance.now() - started).toBeLessThan(20);
    expect(limiter.snapshot("hot@a.com")).toMatchObject({ inFlight: 4, waiting: 196 });
    expect(limiter.snapshot("cold@b.com")).toMatchObject({ inFlight: 1, waiting: 0 });
    other.release();
    // Clean up: let the hot line drain.
    const drain = async (): Promise<void> => {
      for (;;) {
        const holder = hot.find((t) => t.permit && !(t as { done?: boolean }).done);
        if (!holder) break;
        (holder as { done?: boolean }).done = true;
        holder.permit?.release();
        await flush();
      }
    };
    await drain();
    expect(hot.every((t) => t.settledCount === 1 && t.permit)).toBe(true);
  });

  it("when the line is full, then 4 run, maxQueue wait and the rest are refused at once with Retry-After, each exactly once", async () => {
    const limiter = new MailboxLimiter({ defaultLimits: { maxConcurrency: 4, maxQueue: 50 }, initialSendMs: 800 });
    const all = Array.from({ length: 200 }, () => track(limiter.acquire("m@a.com", { deadline: Date.now() + FAR })));
    await flush();
    expect(all.filter((t) => t.permit).length).toBe(4);
    const refused = all.filter((t) => t.error);
    expect(refused.length).toBe(146);
    // 51st in line behind 4 slots at 0.8 s each: ceil(51/4) rounds × 0.8 s = 10.4 s → 11 s.
    expect(retryAfter(refused[0]?.error)).toBe(11);
    expect(all.filter((t) => t.settledCount === 0).length).toBe(50);
    expect(all.every((t) => t.settledCount <= 1)).toBe(true);
  });
});

describe("MailboxLimiter with a controlled clock", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_700_000_000_000 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("when a slot is free, then acquire starts no timer", async () => {
    const limiter = new MailboxLimiter({ clock });
    const before = vi.getTimerCount();
    const permit = await limiter.acquire("m@a.com", { deadline: Date.now() + FAR });
    expect(vi.getTimerCount()).toBe(before);
    permit.release();
  });

  it("when a waiter's deadline passes, then it gets rate_limited with an estimate from measured send durations", async () => {
    const limiter = new MailboxLimiter({ clock, defaultLimits: { maxConcurrency: 2, maxQueue: 10 } });
    // Teach it that sends take 3 s.
    for (let i = 0; i < 30; i += 1) {
      const p = await limiter.acquire("m@a.com", { deadline: Date.now() + FAR });
      vi.advanceTimersByTime(3000);
      p.release();
    }
    const holders = [track(limiter.acquire("m@a.com", { deadline: Date.now() + FAR })), track(limiter.acquire("m@a.com", { deadline: Date.now() + FAR }))];
    const patient = track(limiter.acquire("m@a.com", { deadline: Date.now() + FAR }));
    const waiter = track(limiter.acquire("m@a.com", { deadline: Date.now() + 5000 }));
    await flush();
    expect(holders.every((h) => h.permit)).toBe(true);
    vi.advanceTimersByTime(4999);
    await flush();
    expect(waiter.settledCount).toBe(0);
    vi.advanceTimersByTime(1);
    await flush();
    // Second in line, 2 slots → 1 round of ~3 s.
    expect(retryAfter(waiter.error)).toBe(3);
    expect(patient.settledCount).toBe(0);
    holders[0]?.permit?.release();
    await flush();
    expect(patient.permit).toBeDefined();
  });

  it("when the deadline has already passed and no slot is free, then acquire refuses at once", async () => {
    const limiter = new MailboxLimiter({ clock, defaultLimits: { maxConcurrency: 1, maxQueue: 10 } });
    await limiter.acquire("m@a.com", { deadline: Date.now() + FAR });
    await expect(limiter.acquire("m@a.com", { deadline: Date.now() })).rejects.toMatchObject({ code: "rate_limited" });
    expect(limiter.snapshot("m@a.com")?.waiting).toBe(0);
  });

  it("when a waiter's signal aborts, then it rejects with the reason and the next waiter keeps its place", async () => {
    const limiter = new MailboxLimiter({ clock, defaultLimits: { maxConcurrency: 1, maxQueue: 10 } });
    const holder = await limiter.acquire("m@a.com", { deadline: Date.now() + FAR });
    const controller = new AbortController();
    const gone = track(limiter.acquire("m@a.com", { deadline: Date.now() + FAR, signal: controller.signal }));
    const next = track(limiter.acquire("m@a.com", { deadline: Date.now() + FAR }));
    controller.abort(new Error("client went away"));
    await flush();
    expect((gone.error as Error).message).toBe("client went away");
    expect(limiter.snapshot("m@a.com")?.waiting).toBe(1);
    holder.release();
    await flush();
    expect(next.permit).toBeDefined();
    expect(vi.getTimerCount()).toBe(0); // the granted waiter's deadline timer was cancelled
  });

  it("when Graph throttled the mailbox until a time within the deadline, then acquire waits until then", async () => {
    const limiter = new MailboxLimiter({ clock });
    limiter.noteThrottled("m@a.com", Date.now() + 3000);
    const t = track(limiter.acquire("m@a.com", { deadline: Date.now() + 10_000 }));
    vi.advanceTimersByTime(2999);
    await flush();
    expect(t.settledCount).toBe(0);
    vi.advanceTimersByTime(1);
    await flush();
    expect(t.permit).toBeDefined();
    expect(limiter.throttledUntil("m@a.com")).toBeUndefined();
  });

  it("when Graph's throttling outlasts the deadline, then acquire refuses at once with the remaining time", async () => {
    const limiter = new MailboxLimiter({ clock });
    limiter.noteThrottled("m@a.com", Date.now() + 42_500);
    await expect(limiter.acquire("m@a.com", { deadline: Date.now() + 30_000 })).rejects.toMatchObject({
      code: "rate_limited",
      extras: { retryAfterSeconds: 43 },
    });
    expect(limiter.throttledUntil("m@a.com")).toBe(Date.now() + 42_500);
  });

  it("when throttling is noted while sends wait, then waiters who cannot outlast it are refused now and the rest wait", async () => {
    const limiter = new MailboxLimiter({ clock, defaultLimits: { maxConcurrency: 1, maxQueue: 10 } });
    const holder = await limiter.acquire("m@a.com", { deadline: Date.now() + FAR });
    const short = track(limiter.acquire("m@a.com", { deadline: Date.now() + 5000 }));
    const long = track(limiter.acquire("m@a.com", { deadline: Date.now() + 60_000 }));
    limiter.noteThrottled("m@a.com", Date.now() + 10_000);
    await flush();
    expect(retryAfter(short.error)).toBe(10);
    holder.release(); // a free slot does not beat the throttle
    await flush();
    expect(long.settledCount).toBe(0);
    vi.advanceTimersByTime(10_000);
    await flush();
    expect(long.permit).toBeDefined();
  });

  it("when one mailbox is throttled, then another is not", async () => {
    const limiter = new MailboxLimiter({ clock });
    limiter.noteThrottled("hot@a.com", Date.now() + 60_000);
    await expect(limiter.acquire("cold@b.com", { deadline: Date.now() + 1000 })).resolves.toBeDefined();
  });

  it("when the limit is raised on reload, then waiters get the new slots at once; when lowered, holders keep theirs", async () => {
    const limiter = new MailboxLimiter({ clock });
    limiter.configure("m@a.com", { maxConcurrency: 1, maxQueue: 10 });
    const first = await limiter.acquire("m@a.com", { deadline: Date.now() + FAR });
    const waiters = [1, 2, 3].map(() => track(limiter.acquire("m@a.com", { deadline: Date.now() + FAR })));
    limiter.configure("m@a.com", { maxConcurrency: 3, maxQueue: 10 });
    await flush();
    expect(waiters.filter((w) => w.permit).length).toBe(2);
    limiter.configure("m@a.com", { maxConcurrency: 1, maxQueue: 10 });
    first.release();
    waiters[0]?.permit?.release();
    await flush();
    // Still one holder (waiters[1]) = the new limit, so the last waiter keeps waiting.
    expect(limiter.snapshot("m@a.com")).toMatchObject({ inFlight: 1, waiting: 1 });
    waiters[1]?.permit?.release();
    await flush();
    expect(waiters[2]?.permit).toBeDefined();
  });

  it("when a mailbox is removed while in use, then holders and waiters finish under its limit and it is dropped once idle", async () => {
    const limiter = new MailboxLimiter({ clock });
    limiter.configure("m@a.com", { maxConcurrency: 1, maxQueue: 10 });
    const holder = await limiter.acquire("m@a.com", { deadline: Date.now() + FAR });
    const waiter = track(limiter.acquire("m@a.com", { deadline: Date.now() + FAR }));
    limiter.sync(new Map([["other@b.com", { maxConcurrency: 4, maxQueue: 10 }]]));
    // Acquired after removal: still the old state, so the limit of 1 holds.
    const late = track(limiter.acquire("m@a.com", { deadline: Date.now() + FAR }));
    await flush();
    expect(limiter.snapshot("m@a.com")).toMatchObject({ inFlight: 1, waiting: 2 });
    holder.release();
    await flush();
    waiter.permit?.release();
    await flush();
    late.permit?.release();
    expect(limiter.snapshot("m@a.com")).toBeUndefined();
    expect(limiter.snapshot("other@b.com")).toMatchObject({ maxConcurrency: 4 });
  });

  it("when a sender is written in another case, then mailboxKey makes it the same mailbox", () => {
    expect(mailboxKey("NoReply@Contoso.com")).toBe(mailboxKey("noreply@contoso.com"));
  });
});
