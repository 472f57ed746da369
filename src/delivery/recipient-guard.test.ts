import { describe, expect, it } from "vitest";
import { RelayError } from "../core/problems.js";
import { RecipientGuard } from "./recipient-guard.js";

const MINUTE = 60_000;
const DAY = 86_400_000;

function manualClock(start = Date.UTC(2026, 0, 1, 12, 0, 30)) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

function refusal(fn: () => unknown): RelayError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RelayError);
    return err as RelayError;
  }
  throw new Error("expected a refusal");
}

describe("RecipientGuard", () => {
  it("when sends reach the limit exactly, then they pass; when the next would cross it, then it is rate_limited", () => {
    const guard = new RecipientGuard({ clock: manualClock() });
    for (let i = 0; i < 100; i += 1) guard.reserve("m@a.com", 100, 10_000);
    expect(guard.used("m@a.com")).toBe(10_000);
    const err = refusal(() => guard.reserve("m@a.com", 1, 10_000));
    expect(err.code).toBe("rate_limited");
    expect(guard.used("m@a.com")).toBe(10_000);
  });

  it("when refused, then Retry-After is when enough early recipients leave the window", () => {
    const clock = manualClock(Date.UTC(2026, 0, 1, 12, 0, 0));
    const guard = new RecipientGuard({ clock });
    guard.reserve("m@a.com", 30, 100); // bucket 12:00, leaves at 12:01 next day
    clock.advance(60 * MINUTE);
    guard.reserve("m@a.com", 70, 100); // bucket 13:00, leaves at 13:01 next day
    clock.advance(60 * MINUTE); // now 14:00
    // 20 more need 20 to leave: the 12:00 bucket is enough → 22 h 1 min from now.
    expect(refusal(() => guard.reserve("m@a.com", 20, 100)).extras.retryAfterSeconds).toBe(22 * 3600 + 60);
    // 50 more need 50 to leave: the 12:00 bucket is not enough, the 13:00 one is → 23 h 1 min.
    expect(refusal(() => guard.reserve("m@a.com", 50, 100)).extras.retryAfterSeconds).toBe(23 * 3600 + 60);
    // Exactly the 12:00 bucket's 30 is enough.
    expect(refusal(() => guard.reserve("m@a.com", 30, 100)).extras.retryAfterSeconds).toBe(22 * 3600 + 60);
  });

  it("when a full window has passed after a bucket's end, then its recipients no longer count, and not a minute before", () => {
    const clock = manualClock(Date.UTC(2026, 0, 1, 12, 0, 30));
    const guard = new RecipientGuard({ clock });
    guard.reserve("m@a.com", 10, 10);
    clock.advance(DAY + 29_999); // 12:00:59.999 next day: the 12:00 bucket ends 12:01 + 24 h
    expect(() => guard.reserve("m@a.com", 1, 10)).toThrow(RelayError);
    clock.advance(1);
    expect(guard.used("m@a.com")).toBe(0);
    expect(guard.reserve("m@a.com", 10, 10).count).toBe(10);
  });

  it("when a reservation is released, then its recipients are given back once", () => {
    const guard = new RecipientGuard({ clock: manualClock() });
    guard.reserve("m@a.com", 5, 10);
    const r = guard.reserve("m@a.com", 5, 10);
    r.release();
    r.release();
    expect(guard.used("m@a.com")).toBe(5);
    expect(guard.reserve("m@a.com", 5, 10).count).toBe(5);
  });

  it("when a reservation is released after its bucket left the window, then nothing newer is subtracted", () => {
    const clock = manualClock();
    const guard = new RecipientGuard({ clock });
    const old = guard.reserve("m@a.com", 5, 10);
    clock.advance(2 * MINUTE);
    guard.reserve("m@a.com", 2, 10);
    clock.advance(DAY);
    // The first bucket has left the window, the second has not.
    expect(guard.used("m@a.com")).toBe(2);
    old.release();
    expect(guard.used("m@a.com")).toBe(2);
  });

  it("when one message has more recipients than the daily limit, then it is validation_failed, not rate_limited", () => {
    const guard = new RecipientGuard({ clock: manualClock() });
    const err = refusal(() => guard.reserve("m@a.com", 11, 10));
    expect(err.code).toBe("validation_failed");
    expect(err.extras.errors?.[0]?.path).toBe("to");
  });

  it("when mailboxes differ, then each has its own count", () => {
    const guard = new RecipientGuard({ clock: manualClock() });
    guard.reserve("a@a.com", 10, 10);
    expect(guard.reserve("b@b.com", 10, 10).count).toBe(10);
    expect(guard.usage()).toEqual(
      new Map([
        ["a@a.com", 10],
        ["b@b.com", 10],
      ]),
    );
  });

  it("when a mailbox sends all day, then it keeps at most one bucket per minute of the window", () => {
    const clock = manualClock();
    const guard = new RecipientGuard({ clock });
    for (let i = 0; i < 3 * 1440; i += 1) {
      guard.reserve("m@a.com", 1, 1_000_000);
      clock.advance(20_000);
      guard.reserve("m@a.com", 1, 1_000_000);
      clock.advance(40_000);
    }
    // Two sends a minute, one bucket a minute: a window's worth of buckets, never more.
    expect(guard.used("m@a.com")).toBe(2 * 1440);
    expect(guard.stats()).toEqual({ keys: 1, buckets: 1440 });
  });

  it("when every bucket of a key has left the window, then the key is forgotten", () => {
    const clock = manualClock();
    const guard = new RecipientGuard({ clock });
    guard.reserve("m@a.com", 1, 10);
    clock.advance(DAY + 2 * MINUTE);
    expect(guard.usage().size).toBe(0);
  });
});
